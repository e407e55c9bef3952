// Typed Dockerfile instructions and stages (BuildKit's frontend/dockerfile/instructions).
export { parseStages, parseInstruction, parseCommand, isStage, findStage, instructionNames } from "./parse.js";
export { expandCommand, expandRunMounts } from "./expand.js";
export { parseMount, parseDevice, networkModes, securityModes } from "./runflags.js";
export type { WordExpander } from "./runflags.js";
export { BFlags } from "./bflag.js";
export type { Flag } from "./bflag.js";
export { suggest, withSuggestion } from "./suggest.js";
export { parseGoDuration, parseRAMInBytes } from "./goparse.js";
export type * from "./types.js";
