// Which bundle `kiln` runs: the engine-less client bundle (dist/kiln-client.cjs) when a daemon
// will do the work, else the whole CLI. Decided from the arguments before either bundle loads,
// by the rules src/cmd/kiln applies: --addr or $BUILDKIT_HOST name a daemon for build, du and
// prune; `kiln build` without them, --root or --config uses the default daemon when it answers.
"use strict";
/* eslint-disable @typescript-eslint/no-require-imports -- CommonJS, as bin/run-bundle.cjs explains */
const { existsSync } = require("node:fs");
const { connect } = require("node:net");
const path = require("node:path");

/** The program's options that take a value (src/cmd/kiln/main.ts, daemon.ts). */
const valueOptions = new Set(["--root", "--config", "--addr", "--tlsservername", "--tlscacert", "--tlscert", "--tlskey", "--tlsdir", "--timeout"]);
const daemonCommands = new Set(["build", "du", "prune"]);

/** The command, and the program's options wherever given (commander takes them after the command too). */
function parse(argv) {
  const given = new Map();
  let command;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") break;
    if (!a.startsWith("-")) {
      command ??= a;
      continue;
    }
    const eq = a.indexOf("=");
    const name = eq < 0 ? a : a.slice(0, eq);
    if (valueOptions.has(name)) given.set(name, eq < 0 ? (argv[++i] ?? "") : a.slice(eq + 1));
  }
  return { command, given };
}

/** Whether a unix socket accepts a connection within 50 ms (src/cmd/kiln/daemon.ts's detectDaemon). */
function answers(sockPath) {
  return new Promise((resolve) => {
    const sock = connect(sockPath);
    const done = (v) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(false), 50);
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

async function kilnBundleName(argv, env) {
  const { command, given } = parse(argv);
  if (!daemonCommands.has(command) || !existsSync(path.join(__dirname, "..", "dist", "kiln-client.cjs"))) return "kiln";
  if (given.get("--addr") || env.BUILDKIT_HOST) return "kiln-client";
  if (command !== "build" || given.has("--root") || given.has("--config")) return "kiln";
  const addr = env.KILN_DEFAULT_HOST || "unix:///run/kiln/kilnd.sock";
  return addr.startsWith("unix:///") && (await answers(addr.slice("unix://".length))) ? "kiln-client" : "kiln";
}

module.exports = { kilnBundleName };
