export * from "./types.js";
export * from "./solver.js";
export * from "./semaphore.js";
