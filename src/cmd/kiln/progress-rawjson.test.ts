// `--progress rawjson` and the Go formatting the displays rely on.
import { test } from "node:test";
import assert from "node:assert/strict";
import { RawJsonPrinter } from "./progress.js";
import { goBytes, goFixed, goJSONString, goSeconds, goTimeJSON } from "./progress/gofmt.js";
import { TestClock, dg } from "./progress/testclock.js";

const T0 = Date.UTC(2024, 0, 2, 3, 4, 5);

function lines(events: Parameters<RawJsonPrinter["write"]>[0][], clock = new TestClock(T0)): string[] {
  let out = "";
  const p = new RawJsonPrinter({ write: (s: string) => ((out += s), true) } as NodeJS.WritableStream, { clock });
  for (const ev of events) p.write(ev);
  p.finish();
  assert.ok(out.endsWith("\n"));
  return out.slice(0, -1).split("\n");
}

test("rawjson: client.SolveStatus as encoding/json writes it, one object per line", () => {
  const out = lines([
    { vertexes: [{ digest: dg(1), name: "[1/2] FROM docker.io/library/busybox:latest", inputs: [], started: new Date(T0 + 120) }] },
    {
      vertexes: [
        { digest: dg(2), name: "[2/2] RUN echo <hi> & bye", inputs: [dg(1)], started: new Date(T0 + 120), completed: new Date(T0 + 1500), error: "exit code: 1" },
        { digest: dg(3), name: "cached", inputs: [], started: new Date(T0), completed: new Date(T0), cached: true },
      ],
    },
    { statuses: [{ id: "sha256:aaaa", vertex: dg(1), current: 1024, total: 4096, started: new Date(T0 + 1) }] },
    { statuses: [{ id: "exporting layers", vertex: dg(1), current: 0, timestamp: new Date(T0 + 7), started: new Date(T0 + 5), completed: new Date(T0 + 7) }] },
    { logs: [{ vertex: dg(2), stream: 2, data: Buffer.from("hello\n"), timestamp: new Date(T0 + 123) }] },
    { warnings: [{ vertex: dg(2), level: 1, short: "deprecated", detail: ["use X", "not Y"] }] },
  ]);
  const d = (n: number) => dg(n);
  assert.deepEqual(out, [
    `{"vertexes":[{"digest":"${d(1)}","name":"[1/2] FROM docker.io/library/busybox:latest","started":"2024-01-02T03:04:05.12Z"}]}`,
    `{"vertexes":[{"digest":"${d(2)}","inputs":["${d(1)}"],"name":"[2/2] RUN echo \\u003chi\\u003e \\u0026 bye","started":"2024-01-02T03:04:05.12Z","completed":"2024-01-02T03:04:06.5Z","error":"exit code: 1"},` +
      `{"digest":"${d(3)}","name":"cached","started":"2024-01-02T03:04:05Z","completed":"2024-01-02T03:04:05Z","cached":true}]}`,
    // A status without its own timestamp gets the time it was seen.
    `{"statuses":[{"id":"sha256:aaaa","vertex":"${d(1)}","total":4096,"current":1024,"timestamp":"2024-01-02T03:04:05Z","started":"2024-01-02T03:04:05.001Z"}]}`,
    `{"statuses":[{"id":"exporting layers","vertex":"${d(1)}","current":0,"timestamp":"2024-01-02T03:04:05.007Z","started":"2024-01-02T03:04:05.005Z","completed":"2024-01-02T03:04:05.007Z"}]}`,
    `{"logs":[{"vertex":"${d(2)}","stream":2,"data":"aGVsbG8K","timestamp":"2024-01-02T03:04:05.123Z"}]}`,
    `{"warnings":[{"vertex":"${d(2)}","level":1,"short":"ZGVwcmVjYXRlZA==","detail":["dXNlIFg=","bm90IFk="]}]}`,
  ]);
  for (const l of out) JSON.parse(l);
});

test("Go formatting: %.Nf rounds the exact value half to even", () => {
  assert.equal(goFixed(0.25, 1), "0.2");
  assert.equal(goFixed(0.35, 1), "0.3"); // 0.35 is 0.34999… in binary
  assert.equal(goFixed(0.05, 1), "0.1"); // 0.05 is 0.05000…03 in binary
  assert.equal(goFixed(1.125, 2), "1.12");
  assert.equal(goFixed(1.375, 2), "1.38");
  assert.equal(goFixed(9.9999, 3), "10.000");
  assert.equal(goFixed(0, 3), "0.000");
  assert.equal(goFixed(-0.0004, 3), "-0.000");
  assert.equal(goFixed(123.456, 0), "123");
});

test("Go formatting: byte sizes as tonistiigi/units' %.2f", () => {
  assert.equal(goBytes(0), "0B");
  assert.equal(goBytes(999), "999B");
  assert.equal(goBytes(1000), "1.00kB");
  assert.equal(goBytes(1125), "1.12kB");
  assert.equal(goBytes(1_234_567), "1.23MB");
  assert.equal(goBytes(3_400_000), "3.40MB");
  assert.equal(goBytes(5_000_000_000), "5.00GB");
});

test("Go formatting: durations, RFC 3339 times, JSON strings", () => {
  assert.equal(goSeconds(1250), 1.25);
  assert.equal(goSeconds(0), 0);
  assert.equal(goTimeJSON(T0), "2024-01-02T03:04:05Z");
  assert.equal(goTimeJSON(T0 + 100), "2024-01-02T03:04:05.1Z");
  assert.equal(goTimeJSON(T0 + 120), "2024-01-02T03:04:05.12Z");
  assert.equal(goJSONString('a"b\\c\n\t\r\x01<>&\u2028é😀'), '"a\\"b\\\\c\\n\\t\\r\\u0001\\u003c\\u003e\\u0026\\u2028é😀"');
  assert.equal(goJSONString("\ud800x"), '"\\ufffdx"');
});
