export * from "./worker.js";
export * from "./open.js";
