#!/usr/bin/env bash
# Starts the fixture registry (docker-registry + busybox) in the background and prints its host;
# `stop` ends it. Options: --port N (5000) --pid-file F --data-dir D --log-file F.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec node --import "$root/node_modules/tsx/dist/loader.mjs" "$root/scripts/fixture-registry.ts" "$@"
