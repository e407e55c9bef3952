// Enforces the architecture note's layering: a subsystem imports only what sits below it.
const below = {
  util: [],
  api: ["util"],
  llb: ["api", "util"],
  content: ["api", "util"],
  snapshot: ["content", "util"],
  session: ["remotes", "api", "util"],
  remotes: ["content", "api", "util"],
  executor: ["snapshot", "api", "util"],
  solver: ["api", "util"],
  cache: ["solver", "snapshot", "content", "api", "util"],
  source: ["cache", "content", "remotes", "session", "snapshot", "solver", "llb", "api", "util"],
  ops: ["cache", "executor", "snapshot", "session", "source", "solver", "llb", "api", "util"],
  exporter: ["cache", "content", "remotes", "session", "snapshot", "solver", "api", "util"],
  frontend: ["llb", "solver", "api", "util"],
  worker: ["cache", "content", "remotes", "session", "snapshot", "executor", "solver", "source", "ops", "exporter", "llb", "api", "util"],
  control: ["worker", "frontend", "exporter", "cache", "content", "remotes", "session", "snapshot", "executor", "solver", "source", "ops", "llb", "api", "util"],
  client: ["api", "llb", "session", "util"],
};
const all = [...Object.keys(below), "cmd"];

module.exports = {
  forbidden: [
    ...Object.entries(below).map(([from, ok]) => ({
      name: `layers-${from}`,
      comment: `src/${from} may import only: ${ok.join(", ") || "nothing in src"}`,
      severity: "error",
      from: { path: `^src/${from}/` },
      to: { path: `^src/(${all.filter((f) => f !== from && !ok.includes(f)).join("|")})/` },
    })),
    {
      name: "pure-modules",
      comment: "llb, solver and frontend/dockerfile stay pure: no fs, processes or sockets",
      severity: "error",
      from: { path: "^src/(llb|solver|frontend/dockerfile)/", pathNot: "\\.test\\.ts$" },
      to: { path: "^(fs|node:fs|fs/promises|node:fs/promises|child_process|node:child_process|net|node:net)$" },
    },
    { name: "no-circular", severity: "error", from: {}, to: { circular: true } },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "require", "node", "default"], extensions: [".ts", ".js"] },
  },
};
