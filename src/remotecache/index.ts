// Cache import/export (BuildKit's cache/remotecache): the cacheconfig model, local and registry backends.
export * from "./config.js";
export * from "./graph.js";
export * from "./backends.js";
export * from "./remotecache.js";
export * from "./explain.js";
