// COPY --exclude and .dockerignore use Docker's pattern language (moby/patternmatcher), as
// BuildKit does, not gitignore's: `*.md` is a top-level pattern, `**/*.md` reaches every depth,
// and `!` takes entries back, even from inside an excluded directory.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { kilnEnv, stopSharedRegistry, type KilnEnv } from "../helpers/kiln.js";

let env: KilnEnv;
const files = { "README.md": "r\n", "a.txt": "a\n", "sub/x.md": "x\n", "sub/deep/y.md": "y\n", "sub/deep/z.txt": "z\n" };

before(async () => {
  env = await kilnEnv();
});
after(async () => {
  await env?.close();
  await stopSharedRegistry();
});

async function listing(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of (await readdir(path.join(dir, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = rel === "" ? e.name : `${rel}/${e.name}`;
    out.push(e.isDirectory() ? `${p}/` : p);
    if (e.isDirectory()) out.push(...(await listing(dir, p)));
  }
  return out;
}

async function build(name: string, extra: Record<string, string>): Promise<string> {
  const ctx = await env.context({ ...files, ...extra });
  const dest = path.join(env.tmp, name);
  const r = await env.run(["build", ctx, "-o", `type=local,dest=${dest}`]);
  assert.equal(r.code, 0, r.stderr);
  return dest;
}

void test("COPY --exclude: `*.md` leaves sub/x.md, `**/*.md` takes every .md, `!` re-includes below an excluded directory", async () => {
  const dest = await build("copy-exclude", {
    Dockerfile: ["FROM scratch", "COPY --exclude=*.md --exclude=Dockerfile . /top/", "COPY --exclude=**/*.md --exclude=Dockerfile . /all/", "COPY --exclude=sub --exclude=!sub/deep/z.txt --exclude=Dockerfile . /neg/", ""].join("\n"),
  });
  assert.deepEqual(await listing(path.join(dest, "top")), ["a.txt", "sub/", "sub/deep/", "sub/deep/y.md", "sub/deep/z.txt", "sub/x.md"]);
  assert.deepEqual(await listing(path.join(dest, "all")), ["a.txt", "sub/", "sub/deep/", "sub/deep/z.txt"]);
  assert.deepEqual(await listing(path.join(dest, "neg")), ["README.md", "a.txt", "sub/", "sub/deep/", "sub/deep/z.txt"]);
});

void test(".dockerignore: `*.md` leaves sub/x.md, `**/*.md` with `!sub/deep/y.md` keeps only that one, `/a.txt` is the top-level a.txt", async () => {
  const df = "FROM scratch\nCOPY . /\n";
  const top = await build("ignore-top", { Dockerfile: df, ".dockerignore": "*.md\nDockerfile\n.dockerignore\n" });
  assert.deepEqual(await listing(top), ["a.txt", "sub/", "sub/deep/", "sub/deep/y.md", "sub/deep/z.txt", "sub/x.md"]);
  const deep = await build("ignore-deep", { Dockerfile: df, ".dockerignore": "**/*.md\n!sub/deep/y.md\n/a.txt\nDockerfile\n.dockerignore\n" });
  assert.deepEqual(await listing(deep), ["sub/", "sub/deep/", "sub/deep/y.md", "sub/deep/z.txt"]);
});

void test("COPY --exclude=**/*.md: the step's cache key leaves out what it excludes, so editing sub/deep/y.md keeps it cached", async () => {
  const ctx = await env.context({ ...files, Dockerfile: "FROM scratch\nCOPY --exclude=**/*.md --exclude=Dockerfile . /all/\n" });
  const first = await env.run(["build", ctx, "--progress", "plain"]);
  assert.equal(first.code, 0, first.stderr);
  await writeFile(path.join(ctx, "sub/deep/y.md"), "edited\n");
  const second = await env.run(["build", ctx, "--progress", "plain"]);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /COPY --exclude=\*\*\/\*\.md --exclude=Dockerfile \. \/all\/\n#\d+ CACHED/);
  await writeFile(path.join(ctx, "sub/deep/z.txt"), "edited\n");
  const third = await env.run(["build", ctx, "--progress", "plain"]);
  assert.equal(third.code, 0, third.stderr);
  assert.doesNotMatch(third.stderr, /\/all\/\n#\d+ CACHED/, "an included file's edit is a new copy");
});
