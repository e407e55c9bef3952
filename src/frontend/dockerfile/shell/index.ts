// Shell-style word expansion for Dockerfile instructions (BuildKit's frontend/dockerfile/shell).
export { ShellLex, ShellExpandError, envsFromSlice } from "./lex.js";
export type { EnvGetter, LexOptions, ProcessWordResult } from "./lex.js";
