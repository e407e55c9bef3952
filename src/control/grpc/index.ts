export * from "./service.js";
export * from "./convert.js";
export * from "./jobs.js";
export * from "./version.js";
export * from "./workerid.js";
export * from "./gateway.js";
export * from "./errdetails.js";
