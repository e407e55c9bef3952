// The content store: verified, content-addressed blobs on disk.
export * from "./types.js";
export * from "./store.js";
export { SharedFlight } from "./sharedflight.js";
export { decompressLayer, layerCompression } from "./decompress.js";
