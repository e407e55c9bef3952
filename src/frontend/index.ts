export * from "./types.js";
export * from "./dockerfile-frontend.js";
export * from "./attestations.js";
