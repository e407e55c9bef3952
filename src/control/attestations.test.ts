// Credentials never reach a provenance predicate: URLs are masked as BuildKit's urlutil does.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { redactCredentials } from "./attestations.js";

describe("provenance", () => {
  it("redactCredentials masks user and password, and leaves other strings alone", () => {
    assert.equal(redactCredentials("https://user:pass@example.invalid/repo.git#v1"), "https://xxxxx:xxxxx@example.invalid/repo.git#v1");
    assert.equal(redactCredentials("http://user@127.0.0.1:8080/.git"), "http://xxxxx@127.0.0.1:8080/.git");
    assert.equal(redactCredentials("https://:token@host/x"), "https://:xxxxx@host/x");
    assert.equal(redactCredentials("https://example.invalid/foo.html"), "https://example.invalid/foo.html");
    assert.equal(redactCredentials("git@github.com:moby/buildkit.git"), "git@github.com:moby/buildkit.git");
    assert.equal(redactCredentials("docker-image://busybox"), "docker-image://busybox");
  });
});
