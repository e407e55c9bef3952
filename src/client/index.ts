// The client library: finds the daemon (--addr, BUILDKIT_HOST, TLS) and calls its Control API.
export * from "./address.js";
export * from "./client.js";
export * from "./gateway.js";
