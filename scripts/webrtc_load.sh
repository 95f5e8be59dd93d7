#!/usr/bin/env bash
# WHIP load: N concurrent WebRTC publishers into one gateway on loopback, and what each
# costs the gateway (CPU and memory), for N in $SESSIONS (default "10 25 50").
#
# The publishers are `sluice whip-publish --sessions N`: one x264 encoding of a test
# pattern (720p30, 2.5 Mb/s, 2 s GOP, no B-frames) and one Opus tone, sent by N
# webrtcbin sessions, each its own WHIP session and stream. They run on the same two
# cores as the gateway, so the numbers are what the gateway gets of a shared machine.
# Session i publishes stream load{i}. For each N the script waits for every session to
# connect, then samples the gateway's
# CPU time (/proc/PID/stat) and RSS over WINDOW seconds (default 20) and checks that
# every stream is live and cutting segments.
#
#   scripts/webrtc_load.sh            # release build, N = 10 25 50, then WHEP viewers
#   SESSIONS="50 75" VIEWERS="" scripts/webrtc_load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
cargo build -q --release -p engine --bin sluice
BIN="$CARGO_TARGET_DIR/release/sluice"
SESSIONS="${SESSIONS-10 25 50}"
WINDOW="${WINDOW:-20}"
HTTP=127.0.0.1:19480
CLI=127.0.0.1:19490
TICKS=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }
metric() { curl -s "http://$CLI/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
# Source segments cut so far over all streams (each stream's own count, not its renditions').
segments() { curl -s "http://$CLI/streams" | grep -E '^    "segments": [0-9]+' | awk '{s += $2} END {print s + 0}'; }

printf '%-9s %-10s %-12s %-14s %-12s %-10s %s\n' sessions connected "gateway CPU" "CPU/session" "RSS MiB" "MiB/sess" "streams cutting"
for n in $SESSIONS; do
  log=$(mktemp)
  "$BIN" gateway --rtmp-addr 127.0.0.1:0 --http-addr "$HTTP" --cli-addr "$CLI" \
    --webrtc-max-publishers $((n + 10)) --max-streams $((n + 10)) --log warn >"$log" 2>&1 &
  gw=$!
  for _ in $(seq 50); do curl -sf "http://$CLI/metrics" >/dev/null && break; sleep 0.2; done
  rss0=$(rss_mib "$gw")
  "$BIN" whip-publish "http://$HTTP/live/load{n}/whip" --sessions "$n" --size 1280x720 --fps 30 --kbps 2500 \
    --seconds $((WINDOW + 25)) --log warn >"$log.pub" 2>&1 &
  pub=$!
  # Every session connected and cutting: wait up to 60 s.
  for _ in $(seq 120); do
    [ "$(metric 'sluice_webrtc_sessions{kind="whip"}')" = "$n" ] && break
    sleep 0.5
  done
  sleep 8
  t0=$(cpu_ticks "$gw"); s0=$(segments)
  sleep "$WINDOW"
  t1=$(cpu_ticks "$gw"); s1=$(segments)
  rss=$(rss_mib "$gw")
  connected=$(metric 'sluice_webrtc_sessions{kind="whip"}')
  live=$(curl -s "http://$CLI/streams" | grep -c '"live": true' || true)
  cpu=$(awk -v a="$t0" -v b="$t1" -v t="$TICKS" -v w="$WINDOW" 'BEGIN {printf "%.0f%%", 100 * (b - a) / t / w}')
  per=$(awk -v a="$t0" -v b="$t1" -v t="$TICKS" -v w="$WINDOW" -v n="$n" 'BEGIN {printf "%.1f%%", 100 * (b - a) / t / w / n}')
  mem=$(awk -v a="$rss0" -v b="$rss" -v n="$n" 'BEGIN {printf "%.1f", (b - a) / n}')
  printf '%-9s %-10s %-12s %-14s %-12s %-10s %s of %s live, %s\n' "$n" "$connected" "$cpu" "$per" "$rss" "$mem" "$live" "$n" "$((s1 - s0)) segments in ${WINDOW} s"
  kill "$pub" 2>/dev/null || true
  wait "$pub" 2>/dev/null || true
  kill "$gw" 2>/dev/null || true
  wait "$gw" 2>/dev/null || true
  rm -f "$log" "$log.pub"
done

# WHEP: one RTMP stream (720p30, x264 without B-frames, AAC) and V headless Chromium
# viewers over WHEP; the gateway's CPU and memory over the window, for V in $VIEWERS
# (default "0 1 2"; Chromium decoding 720p shares the two cores).
VIEWERS="${VIEWERS-0 1 2}"
echo
printf '%-8s %-12s %-12s %s\n' viewers "gateway CPU" "RSS MiB" "frames decoded per viewer"
for v in $VIEWERS; do
  log=$(mktemp)
  "$BIN" gateway --rtmp-addr 127.0.0.1:19485 --http-addr "$HTTP" --cli-addr "$CLI" --log warn >"$log" 2>&1 &
  gw=$!
  for _ in $(seq 50); do curl -sf "http://$CLI/metrics" >/dev/null && break; sleep 0.2; done
  ffmpeg -v error -re -f lavfi -i "testsrc2=size=1280x720:rate=30:duration=$((WINDOW + 30))" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$((WINDOW + 30))" \
    -c:v libx264 -preset ultrafast -tune zerolatency -bf 0 -g 60 -b:v 2500k -pix_fmt yuv420p -c:a aac \
    -f flv rtmp://127.0.0.1:19485/live/pat >/dev/null 2>&1 &
  ff=$!
  sleep 6
  pids=()
  for i in $(seq "$v"); do
    node web/test/whep.mjs "http://$HTTP/player/pat?webrtc" $((WINDOW + 6)) >"$log.v$i" 2>&1 &
    pids+=($!)
  done
  sleep 6
  t0=$(cpu_ticks "$gw")
  sleep "$WINDOW"
  t1=$(cpu_ticks "$gw")
  rss=$(rss_mib "$gw")
  for p in ${pids[@]+"${pids[@]}"}; do wait "$p" || true; done
  frames=$( (cat "$log".v* 2>/dev/null || true) | (grep -o '"framesDecoded":[0-9]*' || true) | cut -d: -f2 | tr '\n' ' ')
  cpu=$(awk -v a="$t0" -v b="$t1" -v t="$TICKS" -v w="$WINDOW" 'BEGIN {printf "%.0f%%", 100 * (b - a) / t / w}')
  printf '%-8s %-12s %-12s %s\n' "$v" "$cpu" "$rss" "${frames:--}"
  kill "$ff" "$gw" 2>/dev/null || true
  wait "$ff" "$gw" 2>/dev/null || true
  rm -f "$log" "$log".v*
done
