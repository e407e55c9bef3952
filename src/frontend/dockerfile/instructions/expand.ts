// Variable expansion of instruction fields, exactly the fields BuildKit expands (its Expand and
// ExpandRaw methods); the converter supplies the expander bound to the stage's environment.
import { KilnError } from "../../../util/index.js";
import { DOCKERFILE_PARSE, ParseFailure } from "../parser/index.js";
import { parseMount, type WordExpander } from "./runflags.js";
import type { Command, KeyValuePair, Mount, RunCommand, SourcesAndDest } from "./types.js";

/**
 * The RUN mounts with every value expanded, as BuildKit builds them. Invalid mounts throw
 * KilnError (KILN_DOCKERFILE_PARSE) located at the RUN; expander errors pass through.
 */
export function expandRunMounts(cmd: RunCommand, expand: WordExpander): Mount[] {
  try {
    return cmd.mountSpecs.map((spec) => parseMount(spec, expand));
  } catch (err) {
    if (err instanceof ParseFailure) throw new KilnError(DOCKERFILE_PARSE, err.message, { location: cmd.location });
    throw err;
  }
}

const kvps = (list: KeyValuePair[], expand: WordExpander): KeyValuePair[] =>
  list.map((p) => ({ key: expand(p.key), value: expand(p.value), noDelim: p.noDelim }));

function sourcesAndDest(s: SourcesAndDest, expand: WordExpander, expandRaw: WordExpander): SourcesAndDest {
  const sourcePaths = s.sourcePaths.map(expand);
  const destPath = expand(s.destPath);
  const sourceContents = s.sourceContents.map((c) => (c.expand ? { ...c, data: expandRaw(c.data) } : c));
  return { sourcePaths, destPath, sourceContents };
}

/**
 * A copy of `cmd` with BuildKit's expandable fields expanded: ENV and LABEL keys and values;
 * ADD/COPY --chown, --chmod, ADD --checksum, sources and destination; WORKDIR; USER; VOLUME;
 * STOPSIGNAL; ARG keys and defaults; RUN mounts. Other instructions come back unchanged (BuildKit
 * leaves CMD, ENTRYPOINT, SHELL, HEALTHCHECK, EXPOSE, ONBUILD, MAINTAINER and COPY --from alone
 * here; its dispatcher also skips ARG, handling defaults itself).
 *
 * `expandRaw` expands heredoc bodies of ADD/COPY whose delimiter was unquoted; BuildKit uses a
 * fresh lexer with escape `\` and skipProcessQuotes for it. It defaults to `expand`.
 */
export function expandCommand<T extends Command>(cmd: T, expand: WordExpander, expandRaw: WordExpander = expand): T {
  const c: Command = cmd;
  let out: Command;
  switch (c.kind) {
    case "env":
      out = { ...c, env: kvps(c.env, expand) };
      break;
    case "label":
      out = { ...c, labels: kvps(c.labels, expand) };
      break;
    case "add": {
      const chown = expand(c.chown);
      const chmod = expand(c.chmod);
      const checksum = expand(c.checksum);
      out = { ...c, chown, chmod, checksum, ...sourcesAndDest(c, expand, expandRaw) };
      break;
    }
    case "copy": {
      const chown = expand(c.chown);
      const chmod = expand(c.chmod);
      out = { ...c, chown, chmod, ...sourcesAndDest(c, expand, expandRaw) };
      break;
    }
    case "workdir":
      out = { ...c, path: expand(c.path) };
      break;
    case "user":
      out = { ...c, user: expand(c.user) };
      break;
    case "volume":
      out = { ...c, volumes: c.volumes.map(expand) };
      break;
    case "stopsignal":
      out = { ...c, signal: expand(c.signal) };
      break;
    case "arg":
      out = { ...c, args: c.args.map((a) => ({ ...a, key: expand(a.key), value: a.value === undefined ? undefined : expand(a.value) })) };
      break;
    case "run":
      out = { ...c, mounts: expandRunMounts(c, expand), mountsNeedExpansion: false };
      break;
    default:
      out = { ...c };
  }
  return out as T;
}
