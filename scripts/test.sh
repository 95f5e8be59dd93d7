#!/usr/bin/env bash
# The whole test suite: installs what is missing, then format, lints, unit, property and
# end-to-end tests (real ffmpeg, GStreamer and headless Chromium peers on loopback), the
# counting-allocator copy check, and a build of every fuzz target.
#   scripts/test.sh
# Set CARGO_TARGET_DIR to reuse a build directory across clones (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
started=$SECONDS

scripts/setup.sh

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -q -- -D warnings

say "cargo test --workspace"
cargo test --workspace --locked

say "copy check: payload bytes copied at most once from socket buffer to segment"
cargo bench -q --locked -p bench --bench copy_check

say "cargo fuzz build (every fuzz target compiles)"
(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -O >/dev/null)

say "all checks passed in $((SECONDS - started)) s"
