import { test } from "node:test";
import assert from "node:assert/strict";
import { parseDaemonAddress, tlsFiles } from "./address.js";

void test("daemon addresses: unix and tcp, as grpc-js targets, with the TLS server name", () => {
  assert.deepEqual(parseDaemonAddress("unix:///run/kiln/kilnd.sock"), { target: "unix:///run/kiln/kilnd.sock", kind: "unix", host: "" });
  assert.deepEqual(parseDaemonAddress("tcp://127.0.0.1:1234"), { target: "127.0.0.1:1234", kind: "tcp", host: "127.0.0.1" });
  assert.deepEqual(parseDaemonAddress("tcp://buildkit.example.com:1234"), { target: "buildkit.example.com:1234", kind: "tcp", host: "buildkit.example.com" });
  assert.deepEqual(parseDaemonAddress("tcp://[::1]:1234"), { target: "[::1]:1234", kind: "tcp", host: "::1" });
  assert.throws(() => parseDaemonAddress("unix://relative.sock"), /must be absolute/);
  assert.throws(() => parseDaemonAddress("tcp://host"), /tcp:\/\/HOST:PORT/);
  assert.throws(() => parseDaemonAddress("docker-container://buildkitd"), /docker-container:\/\/ is not supported/);
  assert.throws(() => parseDaemonAddress("/run/kilnd.sock"), /expected unix:\/\/\/PATH/);
});

void test("TLS flags: single files or --tlsdir, never both; cert and key together", () => {
  assert.equal(tlsFiles({}), undefined);
  assert.deepEqual(tlsFiles({ tlscacert: "ca.pem" }), { ca: "ca.pem" });
  assert.deepEqual(tlsFiles({ tlscacert: "ca.pem", tlscert: "c.pem", tlskey: "k.pem" }), { ca: "ca.pem", cert: "c.pem", key: "k.pem" });
  assert.deepEqual(tlsFiles({ tlsdir: "/certs/" }), { ca: "/certs/ca.pem", cert: "/certs/cert.pem", key: "/certs/key.pem" });
  assert.throws(() => tlsFiles({ tlsdir: "/certs", tlscert: "c.pem" }), /cannot specify tlsdir and tlscacert\/tlscert\/tlskey at the same time/);
  assert.throws(() => tlsFiles({ tlscert: "c.pem" }), /must be given together/);
});
