// Starts a bundled entry point (dist/NAME.cjs, from `npm run build`) through V8's code cache, or
// the TypeScript sources through tsx when there is no bundle. Compiling the 3 MB bundle is most of
// the CLI's start-up, and start-up is most of an unchanged rebuild: with the cache, V8 skips
// parsing and compiling what an earlier run already compiled.
// CommonJS, as bin/kiln and bin/kilnd are (bin/package.json): an ES module entry point starts
// Node's asynchronous module loader first, which costs every start ~10 ms.
"use strict";
/* eslint-disable @typescript-eslint/no-require-imports -- CommonJS on purpose, see above */
const { existsSync, readFileSync, renameSync, statSync, writeFileSync, unlinkSync } = require("node:fs");
const { createRequire } = require("node:module");
const path = require("node:path");
const { pathToFileURL } = require("node:url");
const vm = require("node:vm");

const root = path.resolve(__dirname, "..");

async function runBundle(name, sourceEntry) {
  // Builds do thousands of small file operations at once (context sync, copies, diffs); libuv's
  // default of 4 threads leaves them queued. Must be set before the first fs call uses the pool.
  process.env.UV_THREADPOOL_SIZE ??= "16";
  const bundle = path.join(root, "dist", `${name}.cjs`);
  if (!existsSync(bundle)) {
    const { register } = await import("tsx/esm/api");
    register();
    await import(pathToFileURL(path.join(root, sourceEntry)).href);
    return;
  }
  const source = readFileSync(bundle, "utf8");
  const st = statSync(bundle);
  // Named after the bundle's identity, so a rebuilt bundle never meets an old cache.
  const cacheFile = path.join(root, "dist", `${name}.${st.size}-${Math.trunc(st.mtimeMs)}.v8cache`);
  const markerFile = `${cacheFile}.build`;
  let cachedData;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    // No cache yet: this run makes one.
  }
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: bundle, cachedData });
  // A cache holds what had been compiled when it was made: one made by `--help` lacks the build
  // path, so the first build after it writes a fuller one (once; the marker says so). `kiln build`
  // loads the in-process engine or the daemon client lazily, and names the one it ran in
  // globalThis.__kilnCodeCacheTag: each gets its own marker, so the cache ends up holding both
  // rather than whichever ran first.
  const isBuild = process.argv.includes("build") || name === "kilnd";
  const fresh = cachedData === undefined || script.cachedDataRejected;
  if (fresh || isBuild) {
    process.once("exit", () => {
      const tag = globalThis.__kilnCodeCacheTag;
      const marker = tag ? `${markerFile}-${tag}` : markerFile;
      if (fresh || (isBuild && !existsSync(marker))) writeCache(script, cacheFile, isBuild ? marker : undefined);
    });
  }
  const bundleModule = { exports: {} };
  script.runInThisContext()(bundleModule.exports, createRequire(bundle), bundleModule, bundle, path.dirname(bundle));
}

module.exports = { runBundle };

function writeCache(script, cacheFile, markerFile) {
  // Best effort: a read-only install just runs without a cache.
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, script.createCachedData());
    renameSync(tmp, cacheFile);
    if (markerFile) writeFileSync(markerFile, "");
  } catch {
    try {
      unlinkSync(tmp);
    } catch {
      // Nothing was written.
    }
  }
}
