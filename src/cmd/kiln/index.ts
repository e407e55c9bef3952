// Entry point of the kiln CLI.
import { main } from "./main.js";

// `kiln du | head`: a closed pipe ends the output quietly, as Go programs do.
for (const s of [process.stdout, process.stderr]) {
  s.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
}

// No top-level await: the bundle is CommonJS so that V8's code cache can serve it (bin/run-bundle.cjs).
void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
