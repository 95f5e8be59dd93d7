//! Transcoding end to end: ffmpeg publishes RTMP, the gateway sends segments to a local
//! orchestrator running as a separate `sluice orchestrator` process (GStreamer on CPU),
//! and players read ABR HLS. Also paid sessions, failure handling and the wire fixtures.
mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tokio::process::Command;

const PROFILES: [(&str, u32, u32); 2] = [("P240p30fps16x9", 426, 240), ("P360p30fps16x9", 640, 360)];
/// One frame of the 30 fps clip, plus rounding.
const ONE_FRAME: f64 = 1.0 / 30.0 + 0.002;

fn variants(master: &str) -> Vec<m3u8_rs::VariantStream> {
    match m3u8_rs::parse_playlist_res(master.as_bytes()) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => m.variants,
        other => panic!("not a master playlist: {other:?}\n{master}"),
    }
}

async fn save(gw: &engine::Gateway, path: &str, to: &Path) {
    let r = http_get(gw.http_addr, path).await;
    assert_eq!(r.status, 200, "{path}");
    std::fs::write(to, &r.body).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abr_hls_through_a_local_orchestrator_process() {
    let orch = OrchestratorProcess::start(&[]).await;
    assert!(orch.uri.starts_with("https://"), "TLS by default: {}", orch.uri);
    let uri = orch.uri.clone();
    let gw = gateway_with(|c| c.orchestrators.orch_addr = uri).await;
    let url = rtmp_url(&gw, "abr");
    // 8 × 10 s of the clip in real time: enough for 60 s of playback after the start-up.
    let mut publisher = ffmpeg_publish_looped(&testdata("clip.flv"), &url, 7);

    // The master lists the source and both renditions once each has a segment.
    let master = poll_http(&gw, "/stream/abr.m3u8", 30, |m| m.matches("#EXT-X-STREAM-INF").count() == 3).await;
    let vs = variants(&master);
    assert_eq!(vs[0].uri, "abr/source.m3u8");
    for ((name, w, h), v) in PROFILES.iter().zip(&vs[1..]) {
        assert_eq!(v.uri, format!("abr/{name}.m3u8"));
        let res = v.resolution.expect("RESOLUTION");
        assert_eq!((res.width, res.height), (*w as u64, *h as u64));
        let codecs = v.codecs.as_deref().expect("CODECS");
        assert!(codecs.starts_with("avc1.") && codecs.ends_with(",mp4a.40.2"), "{codecs}");
        assert!(v.bandwidth > 50_000, "measured BANDWIDTH {}", v.bandwidth);
    }

    // Play the master for 60 s with ffmpeg: decode everything it offers, no errors.
    let play = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-nostdin", "-i"])
        .arg(format!("http://{}/stream/abr.m3u8", gw.http_addr))
        .args(["-t", "60", "-map", "0", "-enc_time_base", "1:90000", "-f", "null", "-progress", "pipe:1", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out =
        tokio::time::timeout(Duration::from_secs(120), play.wait_with_output()).await.expect("playback ends").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg playback failed: {stderr}");
    assert!(stderr.trim().is_empty(), "ffmpeg playback reported errors:\n{stderr}");
    let progress = String::from_utf8_lossy(&out.stdout);
    let played_us: u64 = progress
        .lines()
        .filter_map(|l| l.strip_prefix("out_time_us="))
        .filter_map(|v| v.trim().parse().ok())
        .max()
        .expect("ffmpeg progress");
    assert!(played_us >= 59_000_000, "played only {} s", played_us as f64 / 1e6);

    assert!(publisher.wait().await.unwrap().success());
    // Renditions end once the transcoder has caught up.
    for (name, ..) in PROFILES {
        poll_http(&gw, &format!("/stream/abr/{name}.m3u8"), 30, |p| p.contains("#EXT-X-ENDLIST")).await;
    }
    let source = wait_ended(&gw, "abr").await;
    assert!(source.segments.len() >= 38, "{} source segments", source.segments.len());
    let dir = std::env::temp_dir().join(format!("sluice-abr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, w, h) in PROFILES {
        let pl = media_playlist(&http_get(gw.http_addr, &format!("/stream/abr/{name}.m3u8")).await.body);
        assert_eq!(pl.segments.len(), source.segments.len(), "{name}: a rendition for every source segment");
        for (rs, ss) in pl.segments.iter().zip(&source.segments) {
            assert!(rs.unknown_tags.is_empty(), "{name} {}: no gaps expected", rs.uri);
            let seq = rs.uri.rsplit('/').next().unwrap();
            assert_eq!(ss.uri, format!("source/{seq}"));
            let (rf, sf) = (dir.join(format!("{name}-{seq}")), dir.join(format!("source-{seq}")));
            save(&gw, &format!("/stream/abr/{}", rs.uri), &rf).await;
            save(&gw, &format!("/stream/abr/{}", ss.uri), &sf).await;
            assert_eq!(probe_size(&rf).await, (w, h), "{name} {seq}");
            assert_eq!(probe_codec(&rf).await, "h264", "{name} {seq}");
            let (rd, sd) = (probe_duration(&rf).await, probe_duration(&sf).await);
            assert!((rd - sd).abs() <= ONE_FRAME, "{name} {seq}: {rd} s vs source {sd} s");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    // Control API and metrics saw it too.
    let detail = http_get(gw.cli_addr, "/streams/abr").await;
    let st: serde_json::Value = serde_json::from_slice(&detail.body).unwrap();
    assert_eq!(st["transcode"]["failed"].as_u64(), Some(0), "{st}");
    assert_eq!(st["transcode"]["transcoded"].as_u64(), Some(source.segments.len() as u64));
    assert_eq!(st["transcode"]["sessions"][0]["orchestrator"].as_str(), Some(orch.uri.as_str()));
    let metrics = http_get(gw.cli_addr, "/metrics").await.text();
    let n = source.segments.len();
    for (name, value) in [
        ("sluice_transcode_seconds_count", n),
        ("sluice_orchestrator_successes_total", n),
        ("sluice_orchestrator_usable", 1),
    ] {
        let line = format!("{name}{{orchestrator=\"{}\"}} {value}\n", orch.uri);
        assert!(metrics.contains(&line), "missing {line:?} in\n{metrics}");
    }
    let o = orch.status().await;
    assert_eq!(o["segments_transcoded"].as_u64(), Some(source.segments.len() as u64));
    // The session is ended at stream end (EndTranscodingSession), right after the last
    // rendition is in.
    let mut ended = 0;
    for _ in 0..50 {
        ended = orch.status().await["sessions_ended"].as_u64().unwrap_or(0);
        if ended >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ended, 1, "one EndTranscodingSession for the one session");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_transcodes_are_gaps_served_from_source_and_renditions_recover() {
    // A port with nothing behind it yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let a = addr.clone();
    let gw = gateway_with(|c| c.orchestrators.orch_addr = a).await;
    let url = rtmp_url(&gw, "gap");
    let mut publisher = ffmpeg_publish_looped(&testdata("clip.flv"), &url, 3);
    let name = PROFILES[0].0;
    let gaps = poll_http(&gw, &format!("/stream/gap/{name}.m3u8"), 30, |p| p.matches("#EXT-X-GAP").count() >= 3).await;
    // Every listed gap is still fetchable (the source segment of that span).
    for line in gaps.lines().filter(|l| l.ends_with(".ts")) {
        let r = http_get(gw.http_addr, &format!("/stream/gap/{line}")).await;
        assert_eq!(r.status, 200, "{line} must not 404");
    }
    let master = http_get(gw.http_addr, "/stream/gap.m3u8").await.text();
    assert_eq!(variants(&master).len(), 1, "no rendition has media yet: only the source is offered\n{master}");

    // The orchestrator comes up: renditions fill in and join the master.
    let orch = OrchestratorProcess::start_on(&addr, &[]).await;
    let master = poll_http(&gw, "/stream/gap.m3u8", 30, |m| m.matches("#EXT-X-STREAM-INF").count() == 3).await;
    assert_eq!(variants(&master).len(), 3);
    let st: serde_json::Value = serde_json::from_slice(&http_get(gw.cli_addr, "/streams/gap").await.body).unwrap();
    assert!(st["transcode"]["failed"].as_u64().unwrap() >= 3);
    assert!(st["renditions"][1]["in_master"].as_bool().unwrap());
    // The rendition has joined the LL-HLS output too; then the orchestrator goes away
    // again: the rendition's LL-HLS playlist lists the missing spans as gaps, as the TS
    // one does, and its file numbers run on without them.
    let ll = format!("/stream/gap/ll/{name}.m3u8");
    poll_http(&gw, &ll, 30, |p| p.contains(".m4s\n")).await;
    drop(orch);
    let ll_gaps = poll_http(&gw, &ll, 30, |p| p.contains("#EXT-X-GAP")).await;
    let parsed = media_playlist(ll_gaps.as_bytes());
    let gap = parsed.segments.iter().position(|s| s.unknown_tags.iter().any(|t| t.tag == "X-GAP")).unwrap();
    assert!(gap > 0 && parsed.segments[gap].uri.contains("-gap"), "{ll_gaps}");
    assert_eq!(http_get(gw.http_addr, &format!("/stream/gap/ll/{}", parsed.segments[gap].uri)).await.status, 404);
    let real = &parsed.segments[gap - 1].uri;
    assert_eq!(http_get(gw.http_addr, &format!("/stream/gap/ll/{real}")).await.status, 200, "{ll_gaps}");

    assert!(publisher.wait().await.unwrap().success());
    let pl = poll_http(&gw, &format!("/stream/gap/{name}.m3u8"), 30, |p| p.contains("#EXT-X-ENDLIST")).await;
    let pl = media_playlist(pl.as_bytes());
    let first_ok = pl.segments.iter().position(|s| s.unknown_tags.is_empty()).expect("recovered");
    assert!(first_ok >= 3);
    gw.shutdown().await;
}
