import { test } from "node:test";
import assert from "node:assert/strict";
import { JobRegistry } from "./jobs.js";
import type { ProgressEvent } from "../../solver/types.js";
import type { Digest } from "../../util/index.js";

const ev = (name: string): ProgressEvent => ({ vertexes: [{ digest: `sha256:${"0".repeat(64)}` as Digest, name, inputs: [] }] });
const names = (evs: ProgressEvent[]) => evs.map((e) => e.vertexes?.[0]?.name);

void test("a watcher that comes before the solve gets every event and ends with it", async () => {
  const jobs = new JobRegistry();
  try {
    const got: ProgressEvent[] = [];
    const watching = jobs.watch(AbortSignal.timeout(5000), "r1", (e) => got.push(e));
    await new Promise((r) => setTimeout(r, 20));
    const job = jobs.start("r1");
    job.progress.write(ev("a"));
    job.progress.write(ev("b"));
    job.finish();
    await watching;
    assert.deepEqual(names(got), ["a", "b"]);
  } finally {
    jobs.close();
  }
});

void test("a late watcher replays a finished job; an unknown ref fails after the wait", async () => {
  const jobs = new JobRegistry();
  try {
    const job = jobs.start("r2");
    job.progress.write(ev("x"));
    const live: ProgressEvent[] = [];
    const watching = jobs.watch(AbortSignal.timeout(5000), "r2", (e) => live.push(e));
    job.progress.write(ev("y"));
    job.finish();
    await watching;
    assert.deepEqual(names(live), ["x", "y"]);
    const late: ProgressEvent[] = [];
    await jobs.watch(AbortSignal.timeout(5000), "r2", (e) => late.push(e));
    assert.deepEqual(names(late), ["x", "y"]);
    await assert.rejects(jobs.watch(AbortSignal.timeout(5000), "nope", () => {}, 50), /no such job nope/);
    assert.throws(() => {
      const again = jobs.start("r3");
      try {
        jobs.start("r3");
      } finally {
        again.finish();
      }
    }, /job ID r3 exists/);
  } finally {
    jobs.close();
  }
});

void test("a canceled watcher stops waiting", async () => {
  const jobs = new JobRegistry();
  try {
    const ac = new AbortController();
    const job = jobs.start("r4");
    const watching = jobs.watch(ac.signal, "r4", () => {});
    ac.abort(new Error("client went away"));
    await assert.rejects(watching, /client went away/);
    job.finish();
  } finally {
    jobs.close();
  }
});
