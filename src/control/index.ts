export * from "./controller.js";
