export * from "./convert.js";
