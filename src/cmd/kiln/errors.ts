// Prints an error the way BuildKit's clients do: one message, the Dockerfile excerpt, no stack.
import { KilnError, isAbortError } from "../../util/index.js";

export function printError(err: unknown, debug: boolean, interrupted: boolean): number {
  if (interrupted || isAbortError(err)) {
    process.stderr.write("error: build canceled\n");
    return 130;
  }
  const out: string[] = [];
  if (err instanceof KilnError) {
    const loc = err.location;
    if (loc) {
      out.push(`${loc.file}:${loc.startLine}`);
      out.push("--------------------");
      loc.lines.forEach((l, i) => out.push(`${String(loc.startLine + i).padStart(4)} | >>> ${l}`));
      out.push("--------------------");
    }
    out.push(`error: ${err.message}`);
    if (err.hint) out.push(err.hint.split("\n").map((l) => `  ${l}`).join("\n"));
  } else {
    out.push(`error: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (debug && err instanceof Error) {
    let c: unknown = err;
    while (c instanceof Error) {
      out.push(c.stack ?? String(c));
      c = c.cause;
    }
  }
  process.stderr.write(out.join("\n") + "\n");
  return 1;
}
