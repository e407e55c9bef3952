// Bundles the CLI entry points with esbuild. Pure-JS dependencies go into the bundle too: one
// file parses and links much faster than hundreds of small ESM modules, and start-up time is
// most of an unchanged rebuild. Native addons (and what loads them) stay external.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, rmSync } from "node:fs";

// What kilnd reports as its BuildkitVersion (Info, ListWorkers).
const version = `v${JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version}`;
let revision = "";
try {
  revision = execFileSync("git", ["rev-parse", "HEAD"], { cwd: new URL("..", import.meta.url), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
} catch {
  // Not a git checkout: no revision.
}

const common = {
  outdir: "dist",
  outExtension: { ".js": ".cjs" },
  bundle: true,
  platform: "node",
  // CommonJS, not ESM: only a classic script can be served from V8's code cache on Node 20
  // (bin/run-bundle.cjs), which halves the CLI's start-up.
  format: "cjs",
  target: "node20",
  external: ["better-sqlite3", "zstd-napi", "@napi-rs/xattr"],
  banner: { js: "const __kilnImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  define: { __KILN_VERSION__: JSON.stringify(version), __KILN_REVISION__: JSON.stringify(revision), "import.meta.url": "__kilnImportMetaUrl" },
  sourcemap: "linked",
  logLevel: "warning",
};
await build({ ...common, entryPoints: { kiln: "src/cmd/kiln/index.ts", kilnd: "src/cmd/kilnd/index.ts" } });

// The same CLI without the engine, for commands a daemon serves (bin/kiln picks it, see
// bin/select-bundle.cjs): the engine's modules are behind dynamic imports, and leaving them out
// makes the bundle a fifth of the size, which a daemon client parses, compiles and links at each start.
const engineImports = new Set(["./build-local.js", "../config.js", "../../worker/index.js", "../../control/grpc/index.js", "./debug-llb.js"]);
// Everything those modules export that the CLI reaches for; each fails with one clear message.
const engineExports = ["buildInProcess", "loadConfig", "openWorker", "installEmulators", "registeredEmulators", "supportedPlatforms", "uninstallEmulators", "gcPolicyRecords", "ociWorkerLabels", "workerId", "workerRecord", "dockerfileLLB"];
const withoutEngine = {
  name: "without-engine",
  setup(b) {
    b.onResolve({ filter: /.*/ }, (args) => (args.kind === "dynamic-import" && args.importer.includes("/src/cmd/") && engineImports.has(args.path) ? { path: args.path, namespace: "no-engine" } : undefined));
    b.onLoad({ filter: /.*/, namespace: "no-engine" }, () => ({
      contents: [
        'import { KilnError } from "./src/util/index.js";',
        // Reached only when the daemon bin/kiln saw stopped answering in the meantime.
        'const unavailable = () => { throw new KilnError("KILN_DAEMON_GONE", "the kiln daemon stopped answering: run the command again"); };',
        ...engineExports.map((n) => `export const ${n} = unavailable;`),
      ].join("\n"),
      resolveDir: process.cwd(),
      loader: "ts",
    }));
  },
};
await build({ ...common, entryPoints: { "kiln-client": "src/cmd/kiln/index.ts" }, plugins: [withoutEngine] });
// Old bundles and their code caches would only confuse bin/run-bundle.cjs.
for (const f of readdirSync("dist")) if (f.endsWith(".mjs") || f.endsWith(".mjs.map") || f.endsWith(".v8cache") || f.includes(".v8cache.build")) rmSync(`dist/${f}`, { force: true });
