//! Publisher behaviours that real encoders show and media servers get wrong, each asserted
//! end to end over RTMP and HTTP: the FLV fixtures in `testdata/` (from `shared/inputs`,
//! sent tag for tag by Sluice's own publisher) and real ffmpeg where ffmpeg produces the
//! input. Every stream's segments are fetched over HTTP and decoded by ffmpeg.
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Publishes a fixture as fast as possible, tag for tag.
async fn publish_fixture(gw: &engine::Gateway, name: &str, id: &str) {
    let mut p = own_publisher(gw, id).await;
    for t in fixture_tags(name) {
        p.send_tag(t.tag_type, t.timestamp, &t.body).await.unwrap();
    }
    p.finish().await.unwrap();
}

/// A scratch file path for this test process.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sluice-inputs-{}-{name}", std::process::id()))
}

/// Makes a media file with ffmpeg's synthetic sources (`args` after the inputs).
async fn make(path: &Path, inputs: &[&str], args: &[&str]) {
    let mut c = tokio::process::Command::new("ffmpeg");
    c.args(["-hide_banner", "-loglevel", "error", "-y"]).args(inputs).args(args).arg(path);
    run(&mut c, "ffmpeg generate").await;
}

fn master_codecs(master: &str) -> Vec<String> {
    match m3u8_rs::parse_playlist_res(master.as_bytes()) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => {
            m.variants.iter().map(|v| v.codecs.clone().unwrap_or_default()).collect()
        }
        other => panic!("not a master playlist: {other:?}"),
    }
}

/// Input 1: what `ffmpeg -c copy` writes when relaying AAC from ADTS (an AAC sequence header
/// with no AudioSpecificConfig, then the real one): accepted, an audio-only stream of 3
/// segments, announced as audio only. Both the captured fixture and a live ffmpeg relay.
#[tokio::test(flavor = "multi_thread")]
async fn aac_relayed_from_adts_is_an_audio_only_stream() {
    let gw = gateway().await;
    publish_fixture(&gw, "aac-relay-ffmpeg.flv", "relayfile").await;
    let c = fetch_and_check(&gw, "relayfile").await;
    assert_eq!(c.playlist.segments.len(), 3, "6 s of audio in 2 s segments");
    assert!(c.packets.iter().all(|p| !p.video) && c.packets.len() > 250);
    let master = http_get(gw.http_addr, "/stream/relayfile.m3u8").await.text();
    assert_eq!(master_codecs(&master), vec!["mp4a.40.2"], "{master}");
    assert!(!master.contains("RESOLUTION"), "{master}");

    // The same through a real ffmpeg relay of a raw ADTS file, in real time.
    let aac = scratch("relay.aac");
    make(
        &aac,
        &["-f", "lavfi", "-i", "sine=frequency=500:sample_rate=44100:duration=6"],
        &["-c:a", "aac", "-b:a", "96k", "-f", "adts"],
    )
    .await;
    ffmpeg_publish(&aac, &rtmp_url(&gw, "relaylive"), true).await;
    let c = fetch_and_check(&gw, "relaylive").await;
    assert_eq!(c.playlist.segments.len(), 3);
    assert!((c.duration - 6.0).abs() < 0.1, "EXTINF total {}", c.duration);
    let m = http_get(gw.cli_addr, "/metrics").await.text();
    assert!(!m.contains("sluice_publishes_rejected_total 1"), "{m}");
    gw.shutdown().await;
}

/// Input 1: an A/V clip whose first AAC sequence header is empty: 6 good segments with
/// audio and video, as without the empty header.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_aac_configuration_first_is_waited_out() {
    let gw = gateway().await;
    publish_fixture(&gw, "empty-aac-config-first.flv", "emptyasc").await;
    let c = fetch_and_check(&gw, "emptyasc").await;
    assert_eq!(c.playlist.segments.len(), 6);
    assert_eq!(c.packets.iter().filter(|p| p.video).count(), 300, "12 s at 25 fps");
    let src = probe_packets(&testdata("empty-aac-config-first.flv")).await;
    let audio = |p: &[Packet]| p.iter().filter(|p| !p.video).count();
    assert_eq!(audio(&c.packets), audio(&src), "every audio frame");
    for seg in &c.segments {
        let p = probe_packets(seg).await;
        assert!(p.iter().any(|p| !p.video) && p.iter().any(|p| p.video), "{} has audio and video", seg.display());
    }
    let master = http_get(gw.http_addr, "/stream/emptyasc.m3u8").await.text();
    let codecs = master_codecs(&master);
    assert!(codecs[0].starts_with("avc1.") && codecs[0].ends_with(",mp4a.40.2"), "{master}");
    gw.shutdown().await;
}

/// Input 2(a): timestamps jump forward 30 s, or back 4 s, between two keyframes. One
/// discontinuity, at the publisher's next keyframe; every segment starts with a keyframe
/// and decodes cleanly; no frame is dropped.
#[tokio::test(flavor = "multi_thread")]
async fn timestamp_jumps_inside_a_gop() {
    let gw = gateway().await;
    for (fixture, id) in [("ts-jump-forward-mid-gop.flv", "jumpfwd"), ("ts-jump-back-mid-gop.flv", "jumpback")] {
        publish_fixture(&gw, fixture, id).await;
        let c = fetch_and_check(&gw, id).await;
        assert_eq!(c.playlist.segments.iter().filter(|s| s.discontinuity).count(), 1, "{id}");
        assert!(c.playlist.independent_segments, "{id}: every segment is independent");
        let src = probe_packets(&testdata(fixture)).await;
        for video in [true, false] {
            let n = |p: &[Packet]| p.iter().filter(|p| p.video == video).count();
            assert_eq!(n(&c.packets), n(&src), "{id}: every {} frame kept", if video { "video" } else { "audio" });
        }
    }
    gw.shutdown().await;
}

/// Input 2(b): the AVC header at 0 s, audio from 0 s, P-frames from 3 s, the first keyframe
/// at 4 s. Segment 0 starts at that keyframe and its audio starts with it.
#[tokio::test(flavor = "multi_thread")]
async fn p_frames_before_the_first_keyframe() {
    let gw = gateway().await;
    publish_fixture(&gw, "pframes-before-first-keyframe.flv", "pframes").await;
    let c = fetch_and_check(&gw, "pframes").await;
    assert_eq!(c.playlist.segments.len(), 4, "4 s to 12 s");
    let first = probe_packets(&c.segments[0]).await;
    let v0 = first.iter().find(|p| p.video).unwrap();
    assert!(v0.key && (v0.dts - 4.0).abs() < 0.001, "segment 0 starts at the keyframe: {v0:?}");
    let a0 = first.iter().filter(|p| !p.video).map(|p| p.pts).fold(f64::INFINITY, f64::min);
    assert!(
        (v0.pts - 0.1..v0.pts + 0.03).contains(&a0),
        "audio starts with the keyframe (at most 0.1 s ahead), not seconds before: {a0} vs {}",
        v0.pts
    );
    // From the first kept audio (just ahead of the keyframe) to the end of the last frame
    // (PTS runs 80 ms ahead of DTS with B-frames).
    assert!((8.0..8.2).contains(&c.duration), "EXTINF total {}", c.duration);
    gw.shutdown().await;
}

/// Input 3: 640x360 on a key, then 480x270 on the same key (a sequential republish with
/// real ffmpeg): one discontinuity and no stub segment; the same with equal resolutions.
#[tokio::test(flavor = "multi_thread")]
async fn a_republish_with_another_resolution_has_one_discontinuity() {
    let gw = gateway().await;
    let clip = |size: &'static str, name: &'static str| async move {
        let path = scratch(name);
        let src = format!("testsrc2=size={size}:rate=25:duration=4");
        make(
            &path,
            &["-f", "lavfi", "-i", &src, "-f", "lavfi", "-i", "sine=sample_rate=44100:duration=4"],
            &["-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv"],
        )
        .await;
        path
    };
    let big = clip("640x360", "big.flv").await;
    let small = clip("480x270", "small.flv").await;
    for (id, second) in [("resize", &small), ("same", &big)] {
        let url = rtmp_url(&gw, id);
        ffmpeg_publish(&big, &url, false).await;
        wait_ended(&gw, id).await;
        ffmpeg_publish(second, &url, false).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let c = fetch_and_check(&gw, id).await;
        let segs = &c.playlist.segments;
        assert_eq!(segs.iter().filter(|s| s.discontinuity).count(), 1, "{id}: {segs:?}");
        assert!(segs.iter().all(|s| s.duration >= 1.9), "{id}: no stub segment: {segs:?}");
        let at = segs.iter().position(|s| s.discontinuity).unwrap();
        let want = if id == "resize" { (480, 270) } else { (640, 360) };
        assert_eq!(probe_size(&c.segments[at]).await, want, "{id}");
        assert_eq!(c.segments.len(), 4, "{id}: 2 + 2 segments");
    }
    gw.shutdown().await;
}

/// Input 4: keyframes at 0, 2, 4, 14, 16, 18 s with a 2 s target. The target duration is
/// announced up front and never changes; the 10 s GOP is cut at the maximum, and while
/// such a segment is listed the playlist does not claim independent segments. Played
/// through, the stream decodes cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn the_target_duration_never_changes() {
    let gw = gateway_with(|c| c.segmenting.playlist_window = 0).await;
    let src = scratch("longgop.flv");
    make(
        &src,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=20",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=44100:duration=20",
        ],
        &[
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "1000",
            "-sc_threshold",
            "0",
            "-force_key_frames",
            "0,2,4,14,16,18",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-f",
            "flv",
        ],
    )
    .await;
    let url = rtmp_url(&gw, "longgop");
    let publisher = tokio::spawn(async move { ffmpeg_publish(&src, &url, true).await });
    let mut targets = std::collections::BTreeSet::new();
    let mut ended = None;
    for _ in 0..300 {
        let r = http_get(gw.http_addr, "/stream/longgop/source.m3u8").await;
        if r.status == 200 {
            let pl = media_playlist(&r.body);
            targets.insert(pl.target_duration);
            for s in &pl.segments {
                assert!((s.duration.round() as u64) <= pl.target_duration, "{s:?} above {}", pl.target_duration);
            }
            if pl.end_list {
                ended = Some(pl);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publisher.await.unwrap();
    let pl = ended.expect("stream ended");
    assert_eq!(targets.into_iter().collect::<Vec<_>>(), vec![4], "EXT-X-TARGETDURATION fixed at 4");
    assert!(!pl.independent_segments, "segments cut inside the 10 s GOP are listed");
    // Played through from the start, everything decodes.
    let mut whole = vec![];
    for s in &pl.segments {
        whole.extend(http_get(gw.http_addr, &format!("/stream/longgop/{}", s.uri)).await.body);
    }
    let all = scratch("longgop.ts");
    std::fs::write(&all, whole).unwrap();
    assert_decodes(&all).await;
    assert_eq!(probe_packets(&all).await.iter().filter(|p| p.video).count(), 500);
    gw.shutdown().await;
}

/// Input 5: Set Chunk Size 2^27 (the deepch/vdk library) and 2^31-1, the spec's maximum:
/// the publisher stays and its stream comes out whole.
#[tokio::test(flavor = "multi_thread")]
async fn every_legal_chunk_size_is_accepted() {
    let gw = gateway().await;
    for (id, size) in [("chunk27", 134_217_728u32), ("chunk31", 2_147_483_647)] {
        let mut p = own_publisher(&gw, id).await;
        p.set_chunk_size(size).await.unwrap();
        for t in fixture_tags("short.flv") {
            p.send_tag(t.tag_type, t.timestamp, &t.body).await.unwrap();
        }
        p.finish().await.unwrap();
        let c = fetch_and_check(&gw, id).await;
        assert_same_packets(&testdata("short.flv"), &c.packets).await;
    }
    gw.shutdown().await;
}

/// Sends a raw HTTP/1.1 request and returns the status line, headers and body.
async fn raw(addr: std::net::SocketAddr, request: &str) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.replace('\n', "\r\n").as_bytes()).await.unwrap();
    let mut out = vec![];
    s.read_to_end(&mut out).await.unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("header end");
    let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, out[split + 4..].to_vec())
}

/// Input 6: a browser's CORS preflight for a ranged read, and byte ranges, as players and
/// CDNs send them (plain HTTP, no client library).
#[tokio::test(flavor = "multi_thread")]
async fn preflights_and_byte_ranges() {
    let gw = gateway().await;
    publish_fixture(&gw, "short.flv", "ranges").await;
    wait_ended(&gw, "ranges").await;
    let addr = gw.http_addr;
    for path in ["/stream/ranges.m3u8", "/stream/ranges/source.m3u8", "/stream/ranges/source/0.ts"] {
        let (status, head, body) = raw(
            addr,
            &format!(
                "OPTIONS {path} HTTP/1.1\nHost: x\nOrigin: https://player.example\nAccess-Control-Request-Method: \
                 GET\nAccess-Control-Request-Headers: range\nConnection: close\n\n"
            ),
        )
        .await;
        assert_eq!(status, 204, "{path}: {head}");
        assert!(head.contains("access-control-allow-origin: *"), "{head}");
        assert!(head.contains("access-control-allow-methods: get, head, options"), "{head}");
        assert!(head.contains("access-control-allow-headers: range"), "{head}");
        assert!(body.is_empty());
    }
    let whole = http_get(addr, "/stream/ranges/source/0.ts").await.body;
    let len = whole.len();
    let get = |range: String| {
        format!("GET /stream/ranges/source/0.ts HTTP/1.1\nHost: x\nRange: {range}\nConnection: close\n\n")
    };
    let (status, head, body) = raw(addr, &get("bytes=0-187".into())).await;
    assert_eq!(status, 206, "{head}");
    assert!(head.contains(&format!("content-range: bytes 0-187/{len}")), "{head}");
    assert_eq!(body, whole[..188]);
    let (status, _, body) = raw(addr, &get("bytes=-188".into())).await;
    assert_eq!((status, body.as_slice()), (206, &whole[len - 188..]));
    let (status, head, body) = raw(addr, &get(format!("bytes={len}-"))).await;
    assert_eq!(status, 416, "{head}");
    assert!(head.contains(&format!("content-range: bytes */{len}")), "{head}");
    assert!(body.is_empty());
    let (status, head, body) = raw(addr, &get("bytes=0-1,5-9".into())).await;
    assert_eq!((status, body.len()), (200, len), "several ranges: the whole body. {head}");
    assert!(head.contains("accept-ranges: bytes"));
    let (status, head, body) =
        raw(addr, "HEAD /stream/ranges/source/0.ts HTTP/1.1\nHost: x\nConnection: close\n\n").await;
    assert_eq!(status, 200);
    assert!(head.contains(&format!("content-length: {len}")) && body.is_empty(), "{head}");
    gw.shutdown().await;
}
