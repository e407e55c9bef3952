export * from "./worker.js";
export * from "./open.js";
export * from "./emulation.js";
export * from "./recovery.js";
export * from "./entitlements.js";
