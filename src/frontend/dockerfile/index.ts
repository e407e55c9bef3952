// The Dockerfile language: parser (text → syntax tree), shell word expander, and typed
// instructions grouped into stages. Pure: no file system, processes or network.
export * from "./parser/index.js";
export * from "./shell/index.js";
export * from "./instructions/index.js";
