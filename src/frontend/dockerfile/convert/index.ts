export * from "./convert.js";
export { marshalImage } from "./image.js";
export { parseGitRef } from "./gitref.js";
