import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { openCache, tempRoot } from "../cache/testhelpers.js";
import type { ImmutableRef } from "../cache/index.js";
import type { Uploads } from "../session/index.js";
import type { OpContext } from "../solver/types.js";
import { HttpSourceOp } from "./http.js";

void test("http://buildkit-session/ID is pulled from the client's upload once per session, keyed by its content", async () => {
  await using root = await tempRoot();
  await using cache = await openCache(root.path, []);
  const pulls: string[] = [];
  const uploads: Uploads = {
    async *pull(_signal, url) {
      pulls.push(`${url.host}${url.pathname}`);
      yield Buffer.from("uploaded ");
      yield Buffer.from("bytes\n");
    },
  };
  const signal = AbortSignal.timeout(10_000);
  const url = "http://buildkit-session/0123abcd";
  const first = new HttpSourceOp({ mgr: cache.mgr, upload: uploads }, url, { filename: "context" });
  const key = await first.cacheMap(signal);
  const [ref] = (await first.exec(signal, {} as OpContext)) as ImmutableRef[];
  try {
    {
      await using mnt = await ref!.mount(signal);
      assert.equal(await readFile(path.join(mnt.path, "context"), "utf8"), "uploaded bytes\n");
    }
    // The build solves the same source again (the frontend read it first): no second pull.
    const again = new HttpSourceOp({ mgr: cache.mgr, upload: uploads }, url, { filename: "context" });
    assert.deepEqual(await again.cacheMap(signal), key);
    const [ref2] = await again.exec(signal, {} as OpContext);
    await ref2?.release();
    assert.deepEqual(pulls, ["buildkit-session/0123abcd"]);
  } finally {
    await ref?.release();
  }
  // A session that offers no uploads fails clearly.
  const none = new HttpSourceOp({ mgr: cache.mgr }, "http://buildkit-session/other", {});
  await assert.rejects(none.cacheMap(signal), /no upload \/other offered by the client session/);
});
