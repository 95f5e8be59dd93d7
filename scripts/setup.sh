#!/usr/bin/env bash
# Installs what Sluice needs to build, run and test, skipping what is already there.
#   scripts/setup.sh            everything (build, demo, tests)
#   scripts/setup.sh --runtime  only what `sluice demo` needs
# Debian packages come from apt (run as root or with sudo); Rust crates from crates.io;
# hls.js, dash.js and the browser-test driver from npm into web/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-all}
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi

# protoc compiles the protocol definition at build time; the local orchestrator
# transcodes with GStreamer (x264enc is in -ugly, avdec_h264 in -libav) and links it for
# its live runner (the -dev packages); the gateway's /start hook pulls streams with
# ffmpeg; the tests call that hook with curl, as MediaMTX does. The orchestrator's CPU AI
# pipelines run ffmpeg too, and write text-to-image prompts in DejaVu Sans (fontconfig).
# WHIP ingest links GStreamer's WebRTC library (plugins-bad headers) and needs libnice's
# elements (gstreamer1.0-nice) for webrtcbin's ICE.
runtime_pkgs=(
  pkg-config protobuf-compiler nodejs npm ffmpeg fonts-dejavu-core
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
)
# The WebRTC loss test makes a network namespace (iproute2) and drops packets in it with
# tc netem or, on kernels without netem, an nftables random-drop rule.
test_pkgs=(
  curl
  chromium python3 python3-venv
  iproute2 nftables
)
pkgs=("${runtime_pkgs[@]}")
if [ "$mode" != "--runtime" ]; then pkgs+=("${test_pkgs[@]}"); fi

missing=()
for p in "${pkgs[@]}"; do
  # node and npm may come from outside Debian (the machine image ships its own).
  case "$p" in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "Installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "Debian packages: all present"
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install the Rust toolchain (rustup) first" >&2
  exit 1
fi

if [ ! -f web/node_modules/hls.js/dist/hls.min.js ] || [ ! -f web/node_modules/dashjs/dist/modern/umd/dash.all.min.js ] \
  || { [ "$mode" != "--runtime" ] && [ ! -d web/node_modules/playwright-core ]; }; then
  say "Installing hls.js, dash.js and playwright-core into web/node_modules (npm)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
else
  say "npm packages: present"
fi

if [ "$mode" != "--runtime" ] && ! cargo fuzz --version >/dev/null 2>&1; then
  say "Installing cargo-fuzz (crates.io)"
  cargo install --locked cargo-fuzz
fi

# Livepeer's Python clients, for the interop tests, in a virtualenv outside the tree.
# livepeer-gateway declares Python >= 3.12 but runs on 3.11; it needs a binary PyAV wheel.
pyenv=${SLUICE_PYENV:-$HOME/.cache/sluice/pyenv}
if [ "$mode" != "--runtime" ] && ! "$pyenv/bin/python" -c "import livepeer_gateway.trickle_publisher, livepeer_ai, openai, importlib.util as u; assert u.find_spec('pytrickle')" >/dev/null 2>&1; then
  say "Installing livepeer-gateway, pytrickle, livepeer-ai and openai into $pyenv (PyPI)"
  command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }
  python3 -m venv "$pyenv"
  "$pyenv/bin/pip" install -q --only-binary=av "av<19"
  "$pyenv/bin/pip" install -q --ignore-requires-python "livepeer-gateway==1.0.0"
  # Only pytrickle's client modules are used (they need aiohttp, already there); its
  # declared dependencies (torch, OpenCV, …) are not installed.
  "$pyenv/bin/pip" install -q --no-deps "pytrickle==0.1.6"
  # The AI SDK (client of the gateway's AI routes) and the OpenAI client (the /v1 alias).
  "$pyenv/bin/pip" install -q "livepeer-ai==0.10.0" "openai==3.63.0"
else
  say "Python clients: present"
fi

say "Fetching Rust crates"
cargo fetch --locked -q
