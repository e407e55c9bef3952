import { test } from "node:test";
import assert from "node:assert/strict";
import { control } from "../../api/index.js";
import { discardProgress } from "../../solver/types.js";
import { BuildHistory } from "./history.js";

const { STARTED, COMPLETE, DELETED } = control.BuildHistoryEventType;

function listAll(h: BuildHistory, req: Partial<{ ActiveOnly: boolean; Ref: string }> = {}) {
  const out: { type: number; ref: string }[] = [];
  return h.listen(AbortSignal.timeout(1000), { ActiveOnly: false, Ref: "", EarlyExit: true, ...req }, (ev) => out.push({ type: ev.type ?? 0, ref: ev.record?.Ref ?? "" })).then(() => out);
}

void test("build history: running builds as STARTED, finished ones as COMPLETE with step counts and error; EarlyExit ends the listing", async () => {
  const h = new BuildHistory();
  const a = h.start({ ref: "a", frontend: "dockerfile.v0", frontendAttrs: { target: "x" }, exporters: [{ type: "image", attrs: { name: "n" } }] });
  const p = a.progress(discardProgress);
  const t = new Date();
  p.write({ vertexes: [{ digest: "sha256:1" as never, name: "one", inputs: [], started: t, completed: t, cached: true }] });
  p.write({ vertexes: [{ digest: "sha256:2" as never, name: "two", inputs: [], started: t }] });
  p.write({ vertexes: [{ digest: "sha256:2" as never, name: "two", inputs: [], started: t, completed: t }] });
  h.start({ ref: "b", frontend: "", frontendAttrs: {}, exporters: [] });
  assert.deepEqual(await listAll(h), [
    { type: STARTED, ref: "a" },
    { type: STARTED, ref: "b" },
  ]);
  a.complete({ code: 2, message: "boom" });
  assert.deepEqual(await listAll(h), [
    { type: STARTED, ref: "b" },
    { type: COMPLETE, ref: "a" },
  ]);
  assert.deepEqual(await listAll(h, { ActiveOnly: true }), [{ type: STARTED, ref: "b" }]);
  assert.deepEqual(await listAll(h, { Ref: "a" }), [{ type: COMPLETE, ref: "a" }]);
  let rec: control.BuildHistoryRecord | undefined;
  await h.listen(AbortSignal.timeout(1000), { ActiveOnly: false, Ref: "a", EarlyExit: true }, (ev) => (rec = ev.record as control.BuildHistoryRecord));
  assert.equal(rec?.Frontend, "dockerfile.v0");
  assert.deepEqual(rec?.Exporters.map((e) => e.Type), ["image"]);
  assert.deepEqual([rec?.numTotalSteps, rec?.numCompletedSteps, rec?.numCachedSteps], [2, 2, 1]);
  assert.equal(rec?.error?.message, "boom");
  assert.ok(rec?.CreatedAt && rec.CompletedAt);
});

void test("build history: a listener without EarlyExit sees new events until it stops; delete and pin; the oldest unpinned records go past the limit", async () => {
  const h = new BuildHistory(2);
  const ac = new AbortController();
  const seen: string[] = [];
  const listening = h.listen(ac.signal, { ActiveOnly: false, Ref: "", EarlyExit: false }, (ev) => {
    seen.push(`${ev.type}:${ev.record?.Ref}`);
    if (seen.length === 6) ac.abort();
  });
  h.start({ ref: "1", frontend: "", frontendAttrs: {}, exporters: [] }).complete();
  h.update({ Ref: "1", Pinned: true, Delete: false });
  h.start({ ref: "2", frontend: "", frontendAttrs: {}, exporters: [] }).complete();
  // A third completed record: "2" goes (the oldest unpinned one), "1" is pinned.
  h.start({ ref: "3", frontend: "", frontendAttrs: {}, exporters: [] }).complete();
  await listening;
  assert.deepEqual(seen, [`${STARTED}:1`, `${COMPLETE}:1`, `${STARTED}:2`, `${COMPLETE}:2`, `${STARTED}:3`, `${DELETED}:2`]);
  assert.deepEqual((await listAll(h)).map((e) => e.ref), ["1", "3"]);
  h.update({ Ref: "3", Pinned: false, Delete: true });
  assert.deepEqual((await listAll(h)).map((e) => e.ref), ["1"]);
  assert.throws(() => h.update({ Ref: "3", Pinned: false, Delete: true }), /not found/);
});
