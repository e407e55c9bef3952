#!/usr/bin/env bash
# Sets up a fresh Debian machine for kiln and proves it works: system packages, npm dependencies,
# the bundled CLI, a local registry that mirrors docker.io with a busybox image built from
# Debian's busybox-static, then a real multi-stage build into an OCI image that skopeo inspects,
# umoci unpacks and runc runs. Run as root from anywhere; re-running is cheap.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export DEBIAN_FRONTEND=noninteractive

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh needs root (runc, overlayfs mounts, apt): run it with sudo" >&2
  exit 1
fi

step() { printf '\n==> %s\n' "$*"; }

step "Debian packages"
scripts/install-deps.sh

step "npm dependencies"
npm ci --no-audit --no-fund
node -e 'require("better-sqlite3"); require("zstd-napi"); console.log("native modules load")'

step "bundle the CLI"
npm run build --silent

port="${KILN_DEMO_REGISTRY_PORT:-5000}"
pidfile="/tmp/kiln-demo-registry.pid"
work="$(mktemp -d /tmp/kiln-demo.XXXXXX)"
cleanup() {
  scripts/fixture-registry.sh stop --pid-file "$pidfile" >/dev/null 2>&1 || true
  runc delete -f "kiln-demo-$$" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step "local registry on 127.0.0.1:$port mirroring docker.io (busybox from busybox-static)"
scripts/fixture-registry.sh start --port "$port" --pid-file "$pidfile"

config="$work/buildkitd.toml"
cat >"$config" <<EOF
[registry."docker.io"]
  mirrors = ["127.0.0.1:$port"]
[registry."127.0.0.1:$port"]
  http = true
EOF

out="$repo/kiln-demo.oci.tar"
step "kiln build examples/multistage -> $out"
bin/kiln --config "$config" build examples/multistage --progress plain -o "type=oci,dest=$out,name=kiln-demo:latest"

step "skopeo inspect oci-archive:$out"
skopeo inspect "oci-archive:$out" | jq '{Digest, Architecture, Os, Layers, Env, Labels}'

step "umoci unpack + runc run"
mkdir -p "$work/layout"
tar -xf "$out" -C "$work/layout"
umoci unpack --image "$work/layout:latest" "$work/bundle" >/dev/null
jq '.process.terminal = false' "$work/bundle/config.json" >"$work/config.json" && mv "$work/config.json" "$work/bundle/config.json"
runc run --bundle "$work/bundle" "kiln-demo-$$"

step "done: kiln-demo.oci.tar is an OCI image; 'sudo npm test' runs the tests"
