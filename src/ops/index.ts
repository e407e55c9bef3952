export * from "./exec.js";
export * from "./file.js";
export * from "./fsops.js";
export * from "./user.js";
export * from "./merge.js";
