#!/usr/bin/env bash
# Ingest capacity, side by side: the same N real-time RTMP publishers (6 Mb/s 1080p H.264 +
# AAC, from one `rtmpload` process) against nginx-rtmp (one worker, `hls on`, HLS written
# to tmpfs) and then against Sluice (HLS in memory, no transcoding). Reports each server's
# CPU per stream over the steady part of the run, checks every stream's playlist, and
# prints how many times less CPU Sluice needs, and the publisher's own CPU. Exits non-zero if
# a publisher failed or a playlist check failed.
#
#   bench/compare_servers.sh [STREAMS] [SECONDS]      (defaults: 50 60)
#
# Installs nginx-light, libnginx-mod-rtmp and ffmpeg if missing (apt). Work files live in
# $WORK (default /tmp/sluice-compare); the 1080p clip is made once and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
STREAMS=${1:-50}
SECONDS_RUN=${2:-60}
# CPU is sampled from here to the end: after the playlist windows have filled (12 s of
# segments plus those kept for late readers), when both servers reuse segment memory.
WARMUP=${WARMUP:-25}
# Short trial runs (e.g. `5 20`): keep at least half the run as the measured window.
if [ $((WARMUP * 2)) -gt "$SECONDS_RUN" ]; then WARMUP=$((SECONDS_RUN / 2)); fi
WORK=${WORK:-/tmp/sluice-compare}
HLS_DIR=/dev/shm/sluice-compare-hls
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p "$WORK"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
missing=()
for p in nginx-light libnginx-mod-rtmp ffmpeg; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "Installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
module=$(ls /usr/lib/nginx/modules/ngx_rtmp_module.so 2>/dev/null || true)
if [ -z "$module" ]; then # Debian's modules-available/mod-rtmp.conf names it
  module=$(sed -n 's/^ *load_module *"\{0,1\}\([^";]*\).*/\1/p' /usr/share/nginx/modules-available/mod-rtmp.conf 2>/dev/null || true)
  case "$module" in /*) ;; ?*) module=/usr/share/nginx/$module ;; esac
  [ -f "$module" ] || module=""
fi
[ -n "$module" ] || { echo "ngx_rtmp_module.so not found" >&2; exit 1; }

say "Building sluice and rtmpload (release)"
cargo build --release -q -p engine -p bench --bin sluice --bin rtmpload
SLUICE=$TARGET/release/sluice
LOAD=$TARGET/release/rtmpload

CLIP=$WORK/clip1080.flv
if [ ! -s "$CLIP" ]; then
  say "Making a 10 s 1080p clip at about 6 Mb/s"
  # Temporal noise keeps the encoder honest: a clean test pattern compresses to nothing.
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=1920x1080:rate=25" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 10 -vf "noise=alls=12:allf=t" \
    -c:v libx264 -preset veryfast -b:v 6M -maxrate 6M -bufsize 12M -g 50 -keyint_min 50 -sc_threshold 0 \
    -pix_fmt yuv420p -c:a aac -b:a 128k -f flv "$CLIP"
fi
clip_kbps=$(ffprobe -v error -show_entries format=bit_rate -of csv=p=0 "$CLIP" | awk '{printf "%d", $1/1000}')
say "Clip: $CLIP, ${clip_kbps} kb/s"
# Measured (file size / duration), not the header's nominal rate.
if [ "$clip_kbps" -lt 5000 ] || [ "$clip_kbps" -gt 8000 ]; then
  echo "clip is ${clip_kbps} kb/s, not about 6 Mb/s: delete $CLIP to remake it" >&2
  exit 1
fi

pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# CPU seconds (user + system) of processes (all their threads), summed.
cpu_of() {
  local p
  for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null || true; done |
    awk -v t="$(getconf CLK_TCK)" '{ split($0, a, ") "); split(a[2], f, " "); s += f[12] + f[13] } END { printf "%.2f", s / t }'
}

# measure "PIDS" URL_PREFIX: runs the load, samples the server's CPU (all of its
# processes) after the warm-up and at the end. Sets m_cpu, m_window, m_connected (streams
# connected throughout), m_pub_cpu (publisher CPU, whole run) and m_load_ok.
measure() {
  local pid=$1 prefix=$2
  "$LOAD" --clip "$CLIP" --url-prefix "$prefix" --streams "$STREAMS" --seconds "$SECONDS_RUN" >"$WORK/load.out" 2>"$WORK/load.err" &
  local load=$!
  pids+=("$load")
  sleep "$WARMUP"
  local c0 t0 c1 t1
  # shellcheck disable=SC2086 # a list of PIDs
  c0=$(cpu_of $pid); t0=$(date +%s.%N)
  m_load_ok=1
  wait "$load" || m_load_ok=0
  # shellcheck disable=SC2086
  c1=$(cpu_of $pid); t1=$(date +%s.%N)
  cat "$WORK/load.out" >&2
  if [ "$m_load_ok" -eq 0 ]; then grep -v ' publishing$' "$WORK/load.err" >&2 || true; fi
  m_cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')
  m_window=$(awk -v s="$t0" -v e="$t1" 'BEGIN { printf "%.1f", e - s }')
  m_connected=$(sed -n 's/.*, \([0-9]*\) connected throughout.*/\1/p' "$WORK/load.out")
  m_pub_cpu=$(sed -n 's/.*publisher CPU \([0-9.]*\) s.*/\1/p' "$WORK/load.out")
  : "${m_connected:=0}" "${m_pub_cpu:=?}"
}

# segments_in PLAYLIST_TEXT: how many .ts entries it lists (0 for none or no playlist).
segments_in() { grep -c '\.ts$' <<<"$1" || true; }

# --- nginx-rtmp -----------------------------------------------------------------------
say "nginx-rtmp: $STREAMS streams for $SECONDS_RUN s"
rm -rf "$HLS_DIR"; mkdir -p "$HLS_DIR"
cat >"$WORK/nginx.conf" <<EOF
load_module $module;
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
rtmp {
  server {
    listen 127.0.0.1:19350;
    chunk_size 4096;
    application live {
      live on;
      hls on;
      hls_path $HLS_DIR;
      hls_fragment 2s;
      hls_playlist_length 12s;
    }
  }
}
EOF
nginx -c "$WORK/nginx.conf" -p "$WORK" &
master=$!
pids+=("$master")
worker=""
for _ in $(seq 50); do
  worker=$(pgrep -P "$master" -f "worker process" || true)
  [ -n "$worker" ] && break
  sleep 0.1
done
[ -n "$worker" ] || { echo "nginx did not start:" >&2; cat "$WORK/nginx-error.log" >&2; exit 1; }
# The master and every child (the one worker does the work; a cache manager idles).
nginx_pids="$master $(pgrep -P "$master" | tr '\n' ' ')"
measure "$nginx_pids" "rtmp://127.0.0.1:19350/live/"
nginx_cpu=$m_cpu nginx_window=$m_window nginx_conn=$m_connected nginx_pub=$m_pub_cpu nginx_load_ok=$m_load_ok
# 2 s segments: a stream that ran the whole time has filled its window (6 for 12 s).
min_segments=$(( (SECONDS_RUN - 10) / 2 ))
[ "$min_segments" -gt 5 ] && min_segments=5
[ "$min_segments" -lt 1 ] && min_segments=1
nginx_ok=0
for i in $(seq 0 $((STREAMS - 1))); do
  n=$(segments_in "$(cat "$HLS_DIR/s$i.m3u8" 2>/dev/null || true)")
  if [ "$n" -ge "$min_segments" ]; then nginx_ok=$((nginx_ok + 1)); else echo "nginx-rtmp: s$i.m3u8 lists $n segments" >&2; fi
done
nginx_errors=$(grep -c '\[\(emerg\|alert\|crit\|error\)\]' "$WORK/nginx-error.log" || true)
kill "$master" 2>/dev/null || true
wait "$master" 2>/dev/null || true
rm -rf "$HLS_DIR"

# --- Sluice ---------------------------------------------------------------------------
say "Sluice: $STREAMS streams for $SECONDS_RUN s"
"$SLUICE" --log warn gateway --rtmp-addr 127.0.0.1:19351 --http-addr 127.0.0.1:19352 --cli-addr 127.0.0.1:19353 \
  --max-streams $((STREAMS + 10)) >"$WORK/sluice.log" 2>&1 &
sluice=$!
pids+=("$sluice")
up=""
for _ in $(seq 50); do
  curl -sf http://127.0.0.1:19353/healthz >/dev/null && { up=1; break; }
  sleep 0.1
done
[ -n "$up" ] || { echo "sluice did not start:" >&2; cat "$WORK/sluice.log" >&2; exit 1; }
measure "$sluice" "rtmp://127.0.0.1:19351/live/"
sluice_cpu=$m_cpu sluice_window=$m_window sluice_conn=$m_connected sluice_pub=$m_pub_cpu sluice_load_ok=$m_load_ok
sluice_ok=0
for i in $(seq 0 $((STREAMS - 1))); do
  n=$(segments_in "$(curl -sf "http://127.0.0.1:19352/stream/s$i/source.m3u8" || true)")
  if [ "$n" -ge "$min_segments" ]; then sluice_ok=$((sluice_ok + 1)); else echo "Sluice: s$i/source.m3u8 lists $n segments" >&2; fi
done
sluice_errors=$(grep -ci 'error' "$WORK/sluice.log" || true)
kill "$sluice" 2>/dev/null || true
wait "$sluice" 2>/dev/null || true

# --- Report -----------------------------------------------------------------------------
per_min() { awk -v c="$1" -v w="$2" -v n="$STREAMS" 'BEGIN { printf "%.3f", c / (w / 60) / n }'; }
nginx_per=$(per_min "$nginx_cpu" "$nginx_window")
sluice_per=$(per_min "$sluice_cpu" "$sluice_window")
ratio=$(awk -v a="$nginx_per" -v b="$sluice_per" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
printf '\n| server | streams | publishers connected | window s | CPU s | CPU s per stream-minute | playlists OK | publisher CPU s (whole run) |\n'
printf '|---|---|---|---|---|---|---|---|\n'
printf '| nginx-rtmp (1 worker, HLS on tmpfs) | %s | %s/%s | %s | %s | %s | %s/%s | %s |\n' \
  "$STREAMS" "$nginx_conn" "$STREAMS" "$nginx_window" "$nginx_cpu" "$nginx_per" "$nginx_ok" "$STREAMS" "$nginx_pub"
printf '| Sluice (HLS in memory) | %s | %s/%s | %s | %s | %s | %s/%s | %s |\n' \
  "$STREAMS" "$sluice_conn" "$STREAMS" "$sluice_window" "$sluice_cpu" "$sluice_per" "$sluice_ok" "$STREAMS" "$sluice_pub"
printf '\nnginx-rtmp / Sluice CPU per stream-minute: %s (Sluice uses %sx less CPU per stream). Clip %s kb/s; CPU sampled from %s s in to the end.\n' \
  "$ratio" "$ratio" "$clip_kbps" "$WARMUP"
printf 'Server log lines: nginx-rtmp %s error-level (%s), Sluice %s mentioning "error" (%s).\n' \
  "$nginx_errors" "$WORK/nginx-error.log" "$sluice_errors" "$WORK/sluice.log"
status=0
if [ "$nginx_load_ok" -ne 1 ] || [ "$sluice_load_ok" -ne 1 ]; then
  echo "some publishers failed (see above)" >&2
  status=1
fi
if [ "$nginx_ok" -ne "$STREAMS" ] || [ "$sluice_ok" -ne "$STREAMS" ]; then
  echo "some playlists are missing segments" >&2
  status=1
fi
exit "$status"
