// Where a client finds the daemon: buildctl's --addr / BUILDKIT_HOST forms and TLS flags.
import { KilnError } from "../util/index.js";

export interface DaemonAddress {
  /** The grpc-js target: `unix:///path` or `host:port`. */
  target: string;
  kind: "unix" | "tcp";
  /** The host part of a tcp address, the default TLS server name. */
  host: string;
}

/** `unix:///run/kiln/kilnd.sock`, `tcp://host:port`, `tcp://[::1]:port`. */
export function parseDaemonAddress(addr: string): DaemonAddress {
  const i = addr.indexOf("://");
  const proto = i < 0 ? "" : addr.slice(0, i);
  const rest = i < 0 ? addr : addr.slice(i + 3);
  switch (proto) {
    case "unix":
      if (!rest.startsWith("/")) throw new KilnError("KILN_FLAGS", `invalid address ${addr}: unix socket paths must be absolute (unix:///path)`);
      return { target: `unix://${rest}`, kind: "unix", host: "" };
    case "tcp": {
      const m = /^(\[[^\]]*\]|[^:[\]/]+):(\d+)\/?$/.exec(rest);
      if (!m || Number(m[2]) > 65535) throw new KilnError("KILN_FLAGS", `invalid address ${addr}: expected tcp://HOST:PORT`);
      const host = m[1]!.replace(/^\[(.*)\]$/, "$1");
      return { target: `${m[1]}:${m[2]}`, kind: "tcp", host };
    }
    default:
      throw new KilnError("KILN_FLAGS", `invalid address ${addr}: expected unix:///PATH or tcp://HOST:PORT${proto ? ` (${proto}:// is not supported)` : ""}`);
  }
}

export interface TLSFlags {
  tlsservername?: string;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  /** A directory holding ca.pem, cert.pem and key.pem. */
  tlsdir?: string;
}

/** buildctl's rules: --tlsdir supplies all three files and excludes the single-file flags. */
export function tlsFiles(f: TLSFlags): { ca?: string; cert?: string; key?: string } | undefined {
  if (f.tlsdir) {
    if (f.tlscacert || f.tlscert || f.tlskey) throw new KilnError("KILN_FLAGS", "cannot specify tlsdir and tlscacert/tlscert/tlskey at the same time");
    const d = f.tlsdir.replace(/\/+$/, "");
    return { ca: `${d}/ca.pem`, cert: `${d}/cert.pem`, key: `${d}/key.pem` };
  }
  if (!f.tlscacert && !f.tlscert && !f.tlskey) return undefined;
  if (Boolean(f.tlscert) !== Boolean(f.tlskey)) throw new KilnError("KILN_FLAGS", "--tlscert and --tlskey must be given together");
  const out: { ca?: string; cert?: string; key?: string } = {};
  if (f.tlscacert) out.ca = f.tlscacert;
  if (f.tlscert) out.cert = f.tlscert;
  if (f.tlskey) out.key = f.tlskey;
  return out;
}
