#!/usr/bin/env bash
# Builds Sluice and runs `sluice demo`: a gateway on loopback with the bundled clip
# published into it. Extra arguments go to `sluice demo` (see `sluice demo --help`).
#   scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --runtime
printf '\033[1m==> %s\033[0m\n' "Building sluice (release)"
cargo build --release --locked -q -p engine
exec "${CARGO_TARGET_DIR:-target}/release/sluice" demo "$@"
