export * from "./image.js";
export * from "./local.js";
export * from "./http.js";
export * from "./git.js";
export * from "./ocilayout.js";
