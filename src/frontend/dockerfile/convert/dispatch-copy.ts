// COPY and ADD → FileOp copies, as dockerfile2llb lowers them: context or stage sources (with
// wildcards, --parents, --exclude), heredoc files, remote URLs and git repositories for ADD, and
// --link as a copy onto scratch merged over the stage.
import path from "node:path";
import { FileAction, State, git, http, merge, newUniqueId, ownerFromString, type Constraints, type CopyOptions } from "../../../llb/index.js";
import { KilnError } from "../../../util/index.js";
import type { AddCommand, CopyCommand } from "../instructions/index.js";
import { dfCmd, displayName, prefixCommand, stateEnv, type DispatchOpt, type DispatchState } from "./dispatchstate.js";
import { isHTTPSource, parseGitRef } from "./gitref.js";
import { commitToHistory } from "./image.js";

const digestRe = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

function parseChmod(chmod: string): number | undefined {
  if (chmod === "") return undefined;
  const bad = () => new KilnError("KILN_DOCKERFILE", `invalid chmod parameter: '${chmod}'. it should be octal string and between 0 and 07777`);
  if (!/^[0-7]+$/.test(chmod)) throw bad();
  const mode = parseInt(chmod, 8);
  if (mode > 0o7777) throw bad();
  return mode;
}

function validateChecksum(c: AddCommand): string {
  if (c.checksum === "") return "";
  if (!digestRe.test(c.checksum)) throw new KilnError("KILN_DOCKERFILE", "invalid checksum digest format");
  const [alg, hex] = c.checksum.split(":") as [string, string];
  const lengths: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };
  if (!(alg in lengths)) throw new KilnError("KILN_DOCKERFILE", "unsupported digest algorithm");
  if (hex.length !== lengths[alg] || !/^[a-f0-9]+$/.test(hex)) throw new KilnError("KILN_DOCKERFILE", "invalid checksum digest length");
  if (c.sourcePaths.length !== 1) throw new KilnError("KILN_DOCKERFILE", "checksum can't be specified for multiple sources");
  if (!isHTTPSource(c.sourcePaths[0]!)) throw new KilnError("KILN_DOCKERFILE", "checksum can't be specified for non-HTTP sources");
  return c.checksum;
}

/** Docker's name for a downloaded file: the URL path's last element. */
function urlFilename(src: string): string {
  try {
    const p = decodeURIComponent(new URL(src).pathname);
    const base = path.posix.basename(p);
    if (base !== "" && base !== "." && base !== "/") return base;
  } catch {
    // an unparsable URL keeps the default name
  }
  return "__unnamed__";
}

export function dispatchCopy(d: DispatchState, c: CopyCommand | AddCommand, source: State, opt: DispatchOpt): void {
  const isAdd = c.kind === "add";
  const dir = d.state.getDir();
  const rel = path.posix.isAbsolute(c.destPath) ? c.destPath : path.posix.join(dir, c.destPath);
  let dest = path.posix.join("/", rel);
  if (c.destPath === "." || c.destPath === "" || c.destPath.endsWith("/")) dest += "/";

  const owner = c.chown !== "" ? ownerFromString(c.chown) : undefined;
  const mode = parseChmod(c.chmod);
  const checksum = isAdd ? validateChecksum(c) : "";
  const exclude = c.excludePatterns.length > 0 ? { excludePatterns: c.excludePatterns } : {};
  const base: CopyOptions = { ...(owner ? { owner } : {}), ...(mode !== undefined ? { mode } : {}), ...exclude };

  let action: FileAction | undefined;
  const add = (st: State, src: string, o: CopyOptions) => {
    action = action ? action.copy(st, src, dest, o) : FileAction.copy(st, src, dest, o);
  };
  let history = isAdd ? "ADD" : "COPY";
  for (const src of c.sourcePaths) {
    history += ` ${src}`;
    const ref = parseGitRef(src);
    if (ref && !ref.indistinguishableFromLocal) {
      if (!isAdd) throw new KilnError("KILN_DOCKERFILE", "source can't be a git ref for COPY");
      const commit = ref.subDir !== "" ? `${ref.commit}:${ref.subDir}` : ref.commit;
      add(git(ref.remote, commit, { keepGitDir: c.keepGitDir === true }), "/", { ...base, createDestPath: true });
    } else if (isHTTPSource(src)) {
      if (!isAdd) throw new KilnError("KILN_DOCKERFILE", "source can't be a URL for COPY");
      // Remote files are unpacked only when asked (--unpack).
      const f = urlFilename(src);
      const unpack = c.kind === "add" && c.unpack === true;
      add(http(src, { filename: f, checksum: checksum || undefined, description: dfCmd("") }), f, { ...base, createDestPath: true, ...(unpack ? { attemptUnpack: true } : {}) });
    } else {
      let from = src;
      let includePatterns: string[] | undefined;
      if (c.kind === "copy" && c.parents) {
        // `COPY --parents a/./b/c d/` copies b/c (under a) to d/b/c; without a pivot the whole path is kept.
        const pivot = src.indexOf("/./");
        const pattern = pivot < 0 ? src : src.slice(pivot + 3);
        from = pivot < 0 ? "/" : src.slice(0, pivot);
        includePatterns = [path.posix.normalize("/" + pattern).replace(/^\//, "")];
      }
      add(source, path.posix.join("/", from), {
        ...base,
        followSymlinks: true,
        copyDirContentsOnly: true,
        attemptUnpack: c.kind === "add" ? (c.unpack ?? true) : false,
        createDestPath: true,
        allowWildcard: true,
        allowEmptyWildcard: true,
        ...(includePatterns ? { includePatterns } : {}),
      });
    }
  }
  for (const content of c.sourceContents) {
    history += ` <<${content.path}`;
    const doc = State.scratch().file(FileAction.mkfile(content.path, 0o664, content.data), { customName: "[internal] preparing inline document" });
    add(doc, content.path, { ...base, createDestPath: true });
  }
  history += ` ${c.destPath}`;
  if (!action) throw new KilnError("KILN_DOCKERFILE", `${c.kind.toUpperCase()} requires at least two arguments`);

  const name = displayName(opt.lex, c.code, stateEnv(d), false);
  const env = d.state.env();
  const fileOpt: Constraints = { customName: prefixCommand(d, name, { env }), sourceLocation: opt.locOf(c.location) };
  if (d.ignoreCache) fileOpt.ignoreCache = true;
  if (c.link && c.chmod === "") {
    // Independent of what is below: the files land on scratch and the result is layered on top.
    const id = newUniqueId();
    d.cmdIndex--;
    const group = prefixCommand(d, name, { env });
    d.cmdIndex--;
    const copied = State.scratch().file(action, { progressGroup: { id, name: group, weak: true } });
    const merged = merge([d.state, copied], { progressGroup: { id, name: group, weak: false }, customName: prefixCommand(d, `LINK ${name}`, { env }) });
    d.state = d.state.withOutput(merged.output());
  } else {
    d.state = d.state.file(action, fileOpt);
  }
  commitToHistory(d.image, history, true, true);
}
