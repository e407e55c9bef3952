// Git references in ADD sources, as BuildKit's gitutil reads them:
// `https://host/org/repo.git#ref:subdir`, `git://…`, `ssh://…`, `git@host:org/repo.git`.
import { parseGitProtocol } from "../../../llb/index.js";

export interface GitRef {
  /** The repository URL without the fragment. */
  remote: string;
  /** Branch, tag or commit; "" for the default branch. */
  commit: string;
  subDir: string;
  /** `github.com/…` without a scheme: BuildKit treats it as a local path in ADD. */
  indistinguishableFromLocal: boolean;
}

/** gitutil.ParseGitRef; undefined when `ref` is not a git reference. */
export function parseGitRef(ref: string): GitRef | undefined {
  let indistinguishableFromLocal = false;
  if (ref.startsWith("github.com/")) {
    indistinguishableFromLocal = true;
  } else {
    const { protocol } = parseGitProtocol(ref);
    if (protocol === "unknown") return undefined;
    // An http(s) URL is a git repository only with the `.git[#…]` suffix.
    if ((protocol === "http" || protocol === "https") && !/\.git(?:#.+)?$/.test(ref)) return undefined;
  }
  const hash = ref.indexOf("#");
  const remote = hash < 0 ? ref : ref.slice(0, hash);
  if (remote === "") return undefined;
  const fragment = hash < 0 ? "" : ref.slice(hash + 1);
  const colon = fragment.indexOf(":");
  return {
    remote,
    commit: colon < 0 ? fragment : fragment.slice(0, colon),
    subDir: colon < 0 ? "" : fragment.slice(colon + 1),
    indistinguishableFromLocal,
  };
}

export function isHTTPSource(src: string): boolean {
  return src.startsWith("http://") || src.startsWith("https://");
}
