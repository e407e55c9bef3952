// Bundles the CLI entry points with esbuild. Pure-JS dependencies go into the bundle too: one
// file parses and links much faster than hundreds of small ESM modules, and start-up time is
// most of an unchanged rebuild. Native addons (and what loads them) stay external.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

// What kilnd reports as its BuildkitVersion (Info, ListWorkers).
const version = `v${JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version}`;
let revision = "";
try {
  revision = execFileSync("git", ["rev-parse", "HEAD"], { cwd: new URL("..", import.meta.url), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
} catch {
  // Not a git checkout: no revision.
}

await build({
  entryPoints: { kiln: "src/cmd/kiln/index.ts", kilnd: "src/cmd/kilnd/index.ts" },
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["better-sqlite3", "zstd-napi", "@napi-rs/xattr"],
  // Bundled CommonJS packages call require(); give the ESM bundle one.
  banner: { js: "import { createRequire as __kilnCreateRequire } from 'node:module'; const require = __kilnCreateRequire(import.meta.url);" },
  define: { __KILN_VERSION__: JSON.stringify(version), __KILN_REVISION__: JSON.stringify(revision) },
  sourcemap: "linked",
  logLevel: "warning",
});
