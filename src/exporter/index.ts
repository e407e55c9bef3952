export * from "./types.js";
export * from "./exporters.js";
export * from "./image.js";
export * from "./layers.js";
export * from "./gojson.js";
export * from "./ocilayout.js";
