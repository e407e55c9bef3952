// Runs every test file in one process (fast); node:test prints the summary CI reads.
// Usage: node --import tsx test/run.ts [substring-filter...]
import { readdir } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = path.resolve(import.meta.dirname, "..");
const filters = process.argv.slice(2);

async function* walk(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else if (entry.name.endsWith(".test.ts")) yield full;
  }
}

const files: string[] = [];
for (const dir of ["src", "test"]) {
  for await (const f of walk(path.join(root, dir))) {
    if (filters.length === 0 || filters.some((s) => f.includes(s))) files.push(f);
  }
}
files.sort();
for (const f of files) await import(pathToFileURL(f).href);
