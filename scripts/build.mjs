// Bundles the CLI entry points with esbuild: a bundled CLI starts markedly faster than tsx.
import { build } from "esbuild";

await build({
  entryPoints: { kiln: "src/cmd/kiln/index.ts" },
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  packages: "external",
  sourcemap: "linked",
  logLevel: "warning",
});
