#!/usr/bin/env bash
# Installs the Debian packages kiln and its tests need (idempotent; quick when already there).
set -euo pipefail
pkgs=(runc docker-registry skopeo umoci busybox-static jq tmux iproute2 ca-certificates apache2-utils openssl time qemu-user-static git openssh-client xz-utils bzip2 zstd)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
