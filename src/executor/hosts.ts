// The container's /etc/hosts, laid out byte for byte as BuildKit's executor/oci/hosts.go writes it.
import { KilnError } from "../util/index.js";
import { goNetIPString, parseIP } from "./ip.js";

export const DEFAULT_HOSTNAME = "buildkitsandbox";

export interface HostIP {
  host: string;
  ip: string;
}

export function hostsFileContent(hostname: string, extraHosts: readonly HostIP[] = []): string {
  let out = `127.0.0.1\tlocalhost ${hostname || DEFAULT_HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
  for (const h of extraHosts) {
    const ip = parseIP(h.ip);
    if (!ip || ip.zone) throw new KilnError("KILN_EXTRA_HOSTS", `invalid IP address ${JSON.stringify(h.ip)} for extra host ${h.host}`);
    out += `${goNetIPString(ip)}\t${h.host}\n`;
  }
  return out;
}
