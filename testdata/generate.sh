#!/usr/bin/env bash
# Regenerates the committed test fixtures from ffmpeg's synthetic sources (testsrc2, sine).
# Everything here is generated, so it carries no third-party licence. Run from anywhere:
#   testdata/generate.sh
set -euo pipefail
cd "$(dirname "$0")"
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }
# Bitrates are low on purpose: the fixtures are for correctness, not picture quality.
X264="-c:v libx264 -preset veryfast -tune zerolatency -pix_fmt yuv420p"
AAC="-c:a aac -b:a 64k"

# clip.flv: the demo clip and the main test input. 10 s, 640x360 at 30 fps, High profile
# with B-frames (as OBS sends), a keyframe every 2 s, AAC stereo 44.1 kHz.
ff -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=44100 \
   -t 10 $X264 -profile:v high -bf 2 -tune film -g 60 -keyint_min 60 -sc_threshold 0 -b:v 350k \
   $AAC -ac 2 -f flv clip.flv

# demo720.flv: the demo clip (embedded in the binary). 10 s, 1280x720 at 30 fps, High
# profile with B-frames, a keyframe every 2 s, about 1.5 Mb/s, AAC stereo: a source above
# the default ladder, so the demo offers a real one (240p and 360p under a 720p source).
ff -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=44100 \
   -t 10 $X264 -profile:v high -bf 2 -tune film -g 60 -keyint_min 60 -sc_threshold 0 -b:v 1500k \
   -maxrate 1500k -bufsize 3000k $AAC -ac 2 -f flv demo720.flv

# short.flv: 4 s, 320x180 at 30 fps, no B-frames, keyframe every second, AAC mono.
# Small enough to publish twenty times at once.
ff -f lavfi -i testsrc2=size=320x180:rate=30 -f lavfi -i sine=frequency=660:sample_rate=44100 \
   -t 4 $X264 -profile:v baseline -g 30 -keyint_min 30 -sc_threshold 0 -b:v 150k $AAC -ac 1 -f flv short.flv

# noaudio_irregular.flv: video only, keyframes at irregular times (0, 0.7, 2.9, 3.2, 6.5 s).
ff -f lavfi -i testsrc2=size=320x240:rate=30 -t 8 $X264 -profile:v main -g 1000 -sc_threshold 0 \
   -force_key_frames 0,0.7,2.9,3.2,6.5 -b:v 150k -f flv noaudio_irregular.flv

# fps5994.flv: 59.94 fps (60000/1001), 4 s, AAC 48 kHz.
ff -f lavfi -i testsrc2=size=426x240:rate=60000/1001 -f lavfi -i sine=frequency=330:sample_rate=48000 \
   -t 4 $X264 -profile:v main -g 120 -sc_threshold 0 -b:v 200k $AAC -ac 2 -f flv fps5994.flv

# reschange.flv: 3 s at 640x360 then 3 s at 320x180 in one stream. The second half's
# SPS/PPS travel in band (x264 repeats headers when writing MPEG-TS), as when an encoder
# changes resolution mid-stream.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ff -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=44100 \
   -t 3 $X264 -profile:v main -g 30 -sc_threshold 0 -b:v 200k $AAC -ac 2 -f mpegts "$tmp/a.ts"
ff -f lavfi -i testsrc2=size=320x180:rate=30 -f lavfi -i sine=frequency=880:sample_rate=44100 \
   -t 3 $X264 -profile:v main -g 30 -sc_threshold 0 -b:v 120k $AAC -ac 2 -f mpegts "$tmp/b.ts"
printf "file '%s'\nfile '%s'\n" "$tmp/a.ts" "$tmp/b.ts" > "$tmp/list.txt"
ff -f concat -safe 0 -i "$tmp/list.txt" -c copy -f flv reschange.flv

ls -l ./*.flv
