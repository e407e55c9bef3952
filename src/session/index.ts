export * from "./types.js";
export * from "./localdirs.js";
export * from "./patterns.js";
export * from "./secrets.js";
export * from "./ssh.js";
export * from "./followlinks.js";
export * from "./wire.js";
