// Entry point of the kilnd daemon.
import { main } from "./main.js";

// No top-level await: the bundle is CommonJS so that V8's code cache can serve it (bin/run-bundle.cjs).
void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
