export * from "./convert.js";
export { marshalImage } from "./image.js";
