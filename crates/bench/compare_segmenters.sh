#!/usr/bin/env bash
# Segments the same 1080p FLV clip with Sluice (`sluice segment`), ffmpeg (`-c copy -f hls`)
# and GStreamer (`splitmuxsink muxer=mpegtsmux`), each pinned to one core, in one run, and
# prints input throughput and the ratio to ffmpeg. Outputs go to tmpfs so the disk is not
# what is measured. The clip is generated on first use (not committed).
#   crates/bench/compare_segmenters.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
work=${SLUICE_BENCH_DIR:-/dev/shm/sluice-bench}
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$work"
clip="$work/clip1080.flv"
if [ ! -s "$clip" ]; then
  echo "generating $clip (60 s, 1920x1080 30 fps, H.264 ~8 Mbit/s, AAC)..." >&2
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1920x1080:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 60 \
    -c:v libx264 -preset ultrafast -g 60 -sc_threshold 0 -b:v 8M -maxrate 8M -bufsize 8M -pix_fmt yuv420p \
    -c:a aac -b:a 128k -f flv "$clip"
fi
cargo build --release --locked -q -p engine
sluice="$target/release/sluice"
bytes=$(stat -c %s "$clip")

# Best (lowest) wall time of $runs runs of a command, in seconds.
best() {
  local best_t=999999 s e
  for _ in $(seq "$runs"); do
    rm -rf "$work/out" && mkdir -p "$work/out"
    s=$(date +%s.%N)
    taskset -c 0 "$@" >/dev/null 2>&1
    e=$(date +%s.%N)
    best_t=$(awk -v s="$s" -v e="$e" -v b="$best_t" 'BEGIN { t = e - s; print (t < b ? t : b) }')
  done
  echo "$best_t"
}

t_sluice=$(best "$sluice" segment "$clip" --out "$work/out" --segment-duration 2)
n_sluice=$(ls "$work/out"/*.ts | wc -l)
t_ffmpeg=$(best ffmpeg -hide_banner -loglevel error -y -i "$clip" -c copy -f hls -hls_time 2 -hls_list_size 0 \
  -hls_segment_filename "$work/out/%d.ts" "$work/out/index.m3u8")
n_ffmpeg=$(ls "$work/out"/*.ts | wc -l)
t_gst=$(best gst-launch-1.0 -q filesrc location="$clip" ! flvdemux name=d \
  d.video ! queue ! h264parse ! splitmuxsink name=s muxer=mpegtsmux max-size-time=2000000000 location="$work/out/%05d.ts" \
  d.audio ! queue ! aacparse ! s.audio_0)
n_gst=$(ls "$work/out"/*.ts | wc -l)

mbps() { awk -v b="$bytes" -v t="$1" 'BEGIN { printf "%.0f", b / t / 1e6 }'; }
ratio() { awk -v f="$t_ffmpeg" -v t="$1" 'BEGIN { printf "%.2f", f / t }'; }
printf '%s\n' "input: $clip, $bytes bytes, best of $runs runs, one core each"
printf '%-10s %10s %12s %10s %14s\n' tool seconds "MB/s in" segments "x ffmpeg"
printf '%-10s %10.4f %12s %10s %14s\n' sluice "$t_sluice" "$(mbps "$t_sluice")" "$n_sluice" "$(ratio "$t_sluice")"
printf '%-10s %10.4f %12s %10s %14s\n' ffmpeg "$t_ffmpeg" "$(mbps "$t_ffmpeg")" "$n_ffmpeg" "1.00"
printf '%-10s %10.4f %12s %10s %14s\n' gstreamer "$t_gst" "$(mbps "$t_gst")" "$n_gst" "$(ratio "$t_gst")"
