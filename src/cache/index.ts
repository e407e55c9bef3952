export * from "./db.js";
export * from "./refs.js";
export * from "./store.js";
export * from "./contenthash.js";
export * from "./keylock.js";
export * from "./gc.js";
export * from "./filters.js";
