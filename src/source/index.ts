export * from "./image.js";
export * from "./local.js";
