#!/usr/bin/env bash
# Measures a live AI stream end to end on loopback: `sluice orchestrator` (its CPU effect
# runner) and `sluice gateway`, with ffmpeg publishing 512x512 30 fps RTMP
# `?pipeline=negate` in real time for SECS seconds (default 30). Prints the per-frame
# round trip (input access unit received → processed frame back at the gateway), the
# gateway's input and output hand-off times, the job start → first output segment
# delay, and the gateway's and orchestrator's CPU.
#   scripts/live_latency.sh [SECS] [WIDTHxHEIGHT]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
size=${2:-512x512}
bin=${CARGO_TARGET_DIR:-target}/release/sluice
cargo build --release --locked -q -p engine
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin" --log warn orchestrator --listen 127.0.0.1:0 --transcoder echo >"$work/orch.out" 2>"$work/orch.log" &
orch_pid=$!
for _ in $(seq 100); do grep -q . "$work/orch.out" 2>/dev/null && break; sleep 0.1; done
orch=$(head -1 "$work/orch.out" | awk '{print $2}')
"$bin" --log warn gateway --rtmp-addr 127.0.0.1:19350 --http-addr 127.0.0.1:19351 --cli-addr 127.0.0.1:19352 \
  --orch-addr "$orch" 2>"$work/gw.log" &
gw_pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:19352/orchestrators | grep -q negate && break; sleep 0.2; done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
gw0=$(cpu $gw_pid); orch0=$(cpu $orch_pid)
ffmpeg -v error -re -f lavfi -i "testsrc2=size=$size:rate=30:duration=$secs" \
  -f lavfi -i "sine=frequency=440:duration=$secs" \
  -c:v libx264 -preset ultrafast -tune zerolatency -bf 0 -g 30 -pix_fmt yuv420p -c:a aac \
  -f flv "rtmp://127.0.0.1:19350/live/cam?pipeline=negate" &
ff=$!
sleep $((secs - 2))
status=$(curl -sf http://127.0.0.1:19351/live/video-to-video/cam/status)
metrics=$(curl -sf http://127.0.0.1:19352/metrics)
wait $ff || true
hz=$(getconf CLK_TCK)
gw1=$(cpu $gw_pid); orch1=$(cpu $orch_pid)
python3 - "$status" "$metrics" "$secs" "$hz" "$gw0" "$gw1" "$orch0" "$orch1" "$size" <<'PY'
import json, sys
status, metrics, secs, hz = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
gw0, gw1, o0, o1 = map(float, sys.argv[5:9])
def quantile(name, q):
    buckets = []
    for line in metrics.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), int(line.split()[-1])))
    total = buckets[-1][1] if buckets else 0
    for le, n in buckets:
        if total and n >= q * total:
            return le, total
    return None, total
g = status["gateway_status"]
lat = g.get("frame_latency") or {}
print(f"--- live AI, {sys.argv[9]} 30 fps, {secs:.0f} s, pipeline negate (local CPU runner) ---")
print(f"per-frame round trip over the last {lat.get('frames')} frames: p50 {lat.get('p50_ms', 0):.1f} ms  p99 {lat.get('p99_ms', 0):.1f} ms  max {lat.get('max_ms', 0):.1f} ms")
for name, what in [("sluice_live_input_handoff_seconds", "input AU cut → bytes handed to the POST"),
                   ("sluice_live_output_handoff_seconds", "output bytes received → in channel and HLS cutter")]:
    p50, n = quantile(name, 0.5); p99, _ = quantile(name, 0.99)
    print(f"{what}: p50 ≤ {p50*1e3:.3g} ms  p99 ≤ {p99*1e3:.3g} ms  ({n} samples, bucket bounds)")
print(f"job start → first output segment: {g.get('first_segment_delay_secs', 0):.3f} s")
print(f"CPU: gateway {(gw1-gw0)/hz/secs*100:.1f}% of a core, orchestrator with runner {(o1-o0)/hz/secs*100:.1f}%")
PY
