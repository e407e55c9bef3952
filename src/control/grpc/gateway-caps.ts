// The capability lists LLBBridge/Ping answers with: BuildKit v0.11.6's (frontend/gateway/pb/caps.go
// and solver/pb/caps.go), so its clients take the same paths against kilnd as against buildkitd.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { apicaps } from "../../api/index.js";

type APICapInit = MessageInitShape<typeof apicaps.APICapSchema>;

const frontendCapIds = [
  "solve.base",
  "solve.inlinereturn",
  "resolveimage",
  "resolveimage.resolvemode",
  "readfile",
  "return",
  "returnmap",
  "readdir",
  "statfile",
  "importcaches",
  "proto.refarray",
  "reference.output",
  "frontend.inputs",
  "gateway.solve.metadata",
  "gateway.exec",
  "gateway.exec.extrahosts",
  "gateway.exec.signals",
  "frontend.caps",
  "gateway.solve.evaluate",
  "gateway.evaluate",
  "gateway.warnings",
  "reference.attestations",
];

/** Interactive containers are not served; clients asking for them fail up front with this reason. */
const disabledFrontendCaps: Record<string, string> = {
  "gateway.exec": "interactive containers (NewContainer, ExecProcess) are not supported by kilnd",
  "gateway.exec.extrahosts": "interactive containers (NewContainer, ExecProcess) are not supported by kilnd",
  "gateway.exec.signals": "interactive containers (NewContainer, ExecProcess) are not supported by kilnd",
};

// v0.11.6 declares exec.meta.removemountstubs.recursive but never registers it, so it isn't listed.
const llbCapIds = [
  "source.image",
  "source.image.resolvemode",
  "source.image.layerlimit",
  "source.local",
  "source.local.unique",
  "source.local.sessionid",
  "source.local.includepatterns",
  "source.local.followpaths",
  "source.local.excludepatterns",
  "source.local.sharedkeyhint",
  "source.local.differ",
  "source.git",
  "source.git.keepgitdir",
  "source.git.fullurl",
  "source.git.httpauth",
  "source.git.knownsshhosts",
  "source.git.mountsshsock",
  "source.git.subdir",
  "source.http",
  "source.http.checksum",
  "source.http.perm",
  "soruce.http.uidgid",
  "source.ocilayout",
  "source.buildop.llbfilename",
  "exec.meta.base",
  "exec.meta.cgroup.parent",
  "exec.meta.proxyenv",
  "exec.meta.network",
  "exec.meta.setsdefaultpath",
  "exec.meta.security",
  "exec.meta.security.devices.v1",
  "exec.meta.ulimit",
  "exec.mount.bind",
  "exec.mount.bind.readwrite-nooutput",
  "exec.mount.cache",
  "exec.mount.cache.sharing",
  "exec.mount.selector",
  "exec.mount.tmpfs",
  "exec.mount.tmpfs.size",
  "exec.mount.secret",
  "exec.mount.ssh",
  "exec.cgroup",
  "exec.secretenv",
  "file.base",
  "file.rm.wildcard",
  "file.rm.nofollowsymlink",
  "file.copy.includeexcludepatterns",
  "constraints",
  "platform",
  "meta.ignorecache",
  "meta.description",
  "meta.exportcache",
  "cache.gha",
  "cache.s3",
  "cache.azblob",
  "mergeop",
  "diffop",
  "exporter.image.annotations",
  "exporter.image.attestations",
  "exporter.sourcedateepoch",
  "source.policy",
];

// Go's CapList.All sorts by ID.
const byId = (a: APICapInit, b: APICapInit) => ((a.ID ?? "") < (b.ID ?? "") ? -1 : (a.ID ?? "") > (b.ID ?? "") ? 1 : 0);

export function frontendCaps(): APICapInit[] {
  return frontendCapIds
    .map((ID): APICapInit => {
      const off = disabledFrontendCaps[ID];
      return { ID, Enabled: off === undefined, Deprecated: ID === "solve.inlinereturn", DisabledReasonMsg: off ?? "" };
    })
    .sort(byId);
}

export function llbCaps(): APICapInit[] {
  return llbCapIds.map((ID): APICapInit => ({ ID, Enabled: true })).sort(byId);
}
