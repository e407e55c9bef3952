export * from "./types.js";
export * from "./localdirs.js";
export * from "./patterns.js";
