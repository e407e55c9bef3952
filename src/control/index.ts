export * from "./controller.js";
export * from "./step-error.js";
