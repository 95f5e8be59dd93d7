#!/usr/bin/env bash
# Segments the same 1080p FLV clip with Sluice (`sluice segment`), ffmpeg (`-c copy -f hls`)
# and GStreamer (`splitmuxsink muxer=mpegtsmux`), each pinned to one core, in one run, and
# prints wall time, input throughput, user and system CPU time, and ratios to ffmpeg.
# Outputs go to tmpfs so the disk is not what is measured. The clip is generated on first
# use (not committed).
#   bench/compare_segmenters.sh [RUNS]      (SLUICE_BENCH_CPU picks the core, default 0)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
work=${SLUICE_BENCH_DIR:-/dev/shm/sluice-bench}
target=${CARGO_TARGET_DIR:-target}
cpu=${SLUICE_BENCH_CPU:-0}
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

# Runs a command $runs times on one core; prints "wall user sys" (seconds) of the run with
# the lowest wall time.
best() {
  local best="999999 0 0" r
  for _ in $(seq "$runs"); do
    rm -rf "$work/out" && mkdir -p "$work/out"
    r=$( { TIMEFORMAT='%R %U %S'; time taskset -c "$cpu" "$@" >/dev/null 2>&1; } 2>&1 )
    best=$(awk -v r="$r" -v b="$best" 'BEGIN { split(r, x, " "); split(b, y, " "); print (x[1] + 0 < y[1] + 0 ? r : b) }')
  done
  echo "$best"
}
count() { find "$work/out" -name '*.ts' | wc -l; }

t_sluice=$(best "$sluice" segment "$clip" --out "$work/out" --segment-duration 2); n_sluice=$(count)
t_ffmpeg=$(best ffmpeg -hide_banner -loglevel error -y -i "$clip" -c copy -f hls -hls_time 2 -hls_list_size 0 \
  -hls_segment_filename "$work/out/%d.ts" "$work/out/index.m3u8"); n_ffmpeg=$(count)
t_gst=$(best gst-launch-1.0 -q filesrc location="$clip" ! flvdemux name=d \
  d.video ! queue ! h264parse ! splitmuxsink name=s muxer=mpegtsmux max-size-time=2000000000 location="$work/out/%05d.ts" \
  d.audio ! queue ! aacparse ! s.audio_0); n_gst=$(count)

row() { # name "wall user sys" segments
  awk -v n="$1" -v t="$2" -v f="$t_ffmpeg" -v seg="$3" -v b="$bytes" 'BEGIN {
    split(t, x, " "); split(f, y, " ");
    printf "%-10s %8.3f %9.0f %8.3f %8.3f %9d %10.2f %10.1f %10.2f\n",
      n, x[1], b / x[1] / 1e6, x[2], x[3], seg, y[1] / x[1], (x[2] > 0 ? y[2] / x[2] : 0), (y[2] + y[3]) / (x[2] + x[3]) }'
}
echo "input: $clip, $bytes bytes; best wall time of $runs runs; every tool on core $cpu"
printf '%-10s %8s %9s %8s %8s %9s %10s %10s %10s\n' tool "wall s" "MB/s in" "user s" "sys s" segments "wall x ff" "user x ff" "cpu x ff"
row sluice "$t_sluice" "$n_sluice"
row ffmpeg "$t_ffmpeg" "$n_ffmpeg"
row gstreamer "$t_gst" "$n_gst"
