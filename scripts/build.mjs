// Bundles the CLI entry points with esbuild. Pure-JS dependencies go into the bundle too: one
// file parses and links much faster than hundreds of small ESM modules, and start-up time is
// most of an unchanged rebuild. Native addons (and what loads them) stay external.
import { build } from "esbuild";

await build({
  entryPoints: { kiln: "src/cmd/kiln/index.ts" },
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["better-sqlite3", "zstd-napi", "@napi-rs/xattr"],
  // Bundled CommonJS packages call require(); give the ESM bundle one.
  banner: { js: "import { createRequire as __kilnCreateRequire } from 'node:module'; const require = __kilnCreateRequire(import.meta.url);" },
  sourcemap: "linked",
  logLevel: "warning",
});
