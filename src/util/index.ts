export * from "./digest.js";
export * from "./errors.js";
export * from "./safepath.js";
export * from "./flight.js";
export * from "./fs.js";
export * from "./platform.js";
export * from "./concurrency.js";
export * from "./proc.js";
