// Reference normalisation table, following docker/distribution's ParseNormalizedNamed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { KilnError } from "../util/index.js";
import { familiarName, familiarString, formatReference, parseReference } from "./index.js";

const hex = "a".repeat(64);

const good: [string, string, string][] = [
  // input, normalised, familiar
  ["busybox", "docker.io/library/busybox:latest", "busybox:latest"],
  ["busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"],
  ["library/busybox", "docker.io/library/busybox:latest", "busybox:latest"],
  ["docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"],
  ["index.docker.io/library/busybox:x", "docker.io/library/busybox:x", "busybox:x"],
  ["user/app", "docker.io/user/app:latest", "user/app:latest"],
  ["user/app/sub", "docker.io/user/app/sub:latest", "user/app/sub:latest"],
  ["docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"],
  ["localhost/app", "localhost/app:latest", "localhost/app:latest"],
  ["localhost:5000/app:v1", "localhost:5000/app:v1", "localhost:5000/app:v1"],
  ["127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t"],
  ["ghcr.io/o/app", "ghcr.io/o/app:latest", "ghcr.io/o/app:latest"],
  ["Registry.Example.com/app", "Registry.Example.com/app:latest", "Registry.Example.com/app:latest"],
  ["[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000/app:latest"],
  [`busybox@sha256:${hex}`, `docker.io/library/busybox@sha256:${hex}`, `busybox@sha256:${hex}`],
  [`busybox:1@sha256:${hex}`, `docker.io/library/busybox:1@sha256:${hex}`, `busybox:1@sha256:${hex}`],
  [`h:1/a_b.c-d__e---f:T.a-g_`, "h:1/a_b.c-d__e---f:T.a-g_", "h:1/a_b.c-d__e---f:T.a-g_"],
];

test("reference: normalisation table", () => {
  for (const [input, want, familiar] of good) {
    const ref = parseReference(input);
    assert.equal(formatReference(ref), want, input);
    assert.equal(familiarString(ref), familiar, input);
  }
  assert.deepEqual(parseReference("localhost:5000/a/b:t"), { domain: "localhost:5000", path: "a/b", tag: "t" });
  assert.deepEqual(parseReference("busybox", { defaultTag: false }), { domain: "docker.io", path: "library/busybox" });
  assert.equal(familiarName(parseReference("docker.io/library/busybox")), "busybox");
  assert.equal(familiarName(parseReference("docker.io/user/x")), "user/x");
});

const bad: [string, RegExp][] = [
  ["", /at least one component/],
  [hex, /64-byte hexadecimal/],
  ["Busybox", /must be lowercase/],
  ["docker.io/Library/busybox", /must be lowercase/],
  ["busybox:", /invalid/],
  ["busybox:-bad", /invalid tag/],
  [`busybox:${"t".repeat(129)}`, /invalid tag/],
  ["busybox@sha256:abc", /invalid digest format/],
  [`busybox@sha256:${"A".repeat(64)}`, /invalid digest format/],
  [`busybox@md5:${"a".repeat(32)}`, /unsupported digest algorithm/],
  ["a//b", /invalid reference format/],
  ["a/b/", /invalid reference format/],
  ["-a", /invalid reference format/],
  ["a b", /invalid reference format/],
  [`x/${"a".repeat(260)}`, /more than 255/],
];

test("reference: invalid references are KILN_INVALID_REFERENCE errors", () => {
  for (const [input, why] of bad) {
    assert.throws(
      () => parseReference(input),
      (err: unknown) => {
        assert.ok(err instanceof KilnError, input);
        assert.equal(err.code, "KILN_INVALID_REFERENCE", input);
        assert.match(err.message, why, input);
        return true;
      },
    );
  }
});
