//! Live video-to-video through the gateway, end to end: ffmpeg publishes 512x512 30 fps
//! RTMP with `?pipeline=negate` to a gateway whose orchestrator is a real `sluice
//! orchestrator` process (its GStreamer effect runner). The processed stream plays as HLS
//! at `/stream/{id}-out.m3u8` and as the gateway's trickle channel `{id}-out`; its frames
//! are the input's negative (mean luma, by ffmpeg's decoder) until `/update` switches the
//! effect; `/status` shows the runner's status and the gateway's. Bad requests get clear
//! refusals and leave the stream alone.
mod common;

use std::time::{Duration, Instant};

use common::*;
use sha2::Digest;
use tokio::io::AsyncWriteExt;
use transport::tls::CertPolicy;
use transport::trickle_client::{TrickleClient, TrickleSubscriber};

/// A dark 512x512 30 fps test picture (mean luma about 60: its negative is about 195),
/// 1 s GOPs without B-frames, AAC, published in real time.
fn publish(url: &str, secs: u32) -> tokio::process::Child {
    tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=512x512:rate=30:duration={secs},lutyuv=y=val*0.45"))
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:duration={secs}")])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0", "-g", "30"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", url])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg starts")
}

/// Mean luma of each video frame of a TS file, in order, by ffmpeg's decoder.
fn frame_luma(ts: &[u8]) -> Vec<f64> {
    let path = std::env::temp_dir().join(format!("sluice-live-ai-{}-{}.ts", std::process::id(), ts.len()));
    std::fs::write(&path, ts).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("movie={},signalstats", path.display()))
        .args(["-show_entries", "frame_tags=lavfi.signalstats.YAVG", "-of", "csv=p=0"])
        .output()
        .expect("ffprobe runs");
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

async fn post(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> HttpResponse {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut s, &mut raw).await.unwrap();
    parse_http(&raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_with_pipeline_plays_processed_hls_and_trickle_and_updates_live() {
    if !have("ffmpeg", "-version") || !have("gst-inspect-1.0", "--version") {
        eprintln!("skipped: ffmpeg or GStreamer missing (scripts/setup.sh installs them)");
        return;
    }
    let orch = OrchestratorProcess::start(&["--transcoder", "echo"]).await;
    let gw = gateway_with(|c| c.orchestrators.orch_addr = orch.uri.clone()).await;
    // Discovery has to have seen the orchestrator's live models.
    poll_until(20, || async {
        let s = http_get(gw.cli_addr, "/orchestrators").await.text();
        s.contains("negate")
    })
    .await;

    // Bad requests first: they must not disturb anything.
    let bad = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10:duration=1", "-c:v", "libx264"])
        .args(["-f", "flv", &format!("{}?pipeline=negate&params=%7Bbad", rtmp_url(&gw, "bad"))])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success(), "a publish with malformed params is refused");
    assert_eq!(post(gw.http_addr, "/live/video-to-video/nope/update", b"{}").await.status, 404);

    let started = Instant::now();
    let mut ff = publish(&format!("{}?pipeline=negate", rtmp_url(&gw, "cam")), 14);
    // The official Python SDK's trickle subscriber follows the processed channel too.
    let sdk = python().exists().then(|| {
        tokio::process::Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/trickle_sdk.py"))
            .args(["subscribe", &format!("http://{}/ai/trickle/cam-out", gw.http_addr), "-2"])
            .kill_on_drop(true)
            .output()
    });
    // The gateway's own trickle channel of the processed stream, read from the start.
    let sub_url = format!("http://{}/ai/trickle/cam-out", gw.http_addr);
    let trickle = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut segs = Vec::new();
        while Instant::now() < deadline {
            let mut sub = TrickleSubscriber::new(TrickleClient::new(CertPolicy::AcceptAny), &sub_url, -2);
            while let Ok(Some(mut s)) = sub.next_segment().await {
                let mut body = Vec::new();
                while let Ok(Some(c)) = s.chunk().await {
                    body.extend_from_slice(&c);
                }
                segs.push((s.seq, body));
                if segs.len() >= 3 {
                    return segs;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        segs
    });
    // The first processed segment in the HLS playlist.
    let first = poll_http(&gw, "/stream/cam-out/source.m3u8", 20, |t| t.contains(".ts")).await;
    let first_at = started.elapsed();
    assert!(first.contains("#EXTINF"), "{first}");
    let segs = trickle.await.unwrap();
    assert!(segs.len() >= 3, "the gateway's {}-out trickle channel carried {} segments", "cam", segs.len());
    assert!(segs.iter().all(|(_, b)| b.first() == Some(&0x47)), "MPEG-TS segments");
    let ours: std::collections::HashMap<u64, String> = segs
        .iter()
        .map(|(seq, b)| (*seq, sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()))
        .collect();

    // The processed output is CMAF too: its MPD and LL-HLS playlist list its segments.
    let out_mpd = poll_http(&gw, "/stream/cam-out.mpd", 20, |t| t.contains("<S ")).await;
    let m = dash_mpd_core::parse(&out_mpd).unwrap_or_else(|e| panic!("{e}: {out_mpd}"));
    assert_eq!(m.periods[0].adaptations[0].contentType.as_deref(), Some("video"), "{out_mpd}");
    assert!(poll_http(&gw, "/stream/cam-out/ll/video.m3u8", 10, |t| t.contains("#EXT-X-PART:")).await.contains(".m4s"));

    // Let it run negated, then switch the effect off live.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(post(gw.http_addr, "/live/video-to-video/cam/update", b"not json").await.status, 400);
    assert_eq!(post(gw.http_addr, "/live/video-to-video/cam/update", &vec![b' '; 70_000]).await.status, 413);
    let switch = post(gw.http_addr, "/live/video-to-video/cam/update", br#"{"effect":"noop"}"#).await;
    assert_eq!(switch.status, 200, "{}", switch.text());
    let switched_at = Instant::now();
    let status = poll_http(&gw, "/live/video-to-video/cam/status", 10, |t| t.contains("\"state\":\"ONLINE\"")).await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["gateway_status"]["state"], "running");
    assert_eq!(status["pipeline"], "negate");
    assert!(status["gateway_status"]["first_segment_delay_secs"].as_f64().is_some());
    let lat = &status["gateway_status"]["frame_latency"];
    assert!(lat["frames"].as_u64().unwrap_or(0) > 100, "round trips measured: {lat}");
    eprintln!("per-frame round trip: {lat}");
    let metrics = http_get(gw.cli_addr, "/metrics").await.text();
    for name in [
        "sluice_live_frame_round_trip_seconds_count",
        "sluice_live_input_handoff_seconds_count",
        "sluice_live_streams_total 1",
    ] {
        assert!(metrics.contains(name), "{name} in /metrics");
    }
    let _ = ff.wait().await;
    let pl = wait_ended(&gw, "cam-out").await;
    if let Some(sdk) = sdk {
        // The SDK read the same segments, byte for byte, until the channel ended.
        let out = tokio::time::timeout(Duration::from_secs(20), sdk).await.expect("SDK subscriber ends").unwrap();
        let lines: Vec<serde_json::Value> =
            String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert!(lines.len() >= 5, "the SDK read {} segments", lines.len());
        let mut compared = 0;
        for l in &lines {
            if let Some(sha) = ours.get(&l["seq"].as_u64().unwrap()) {
                assert_eq!(l["sha256"].as_str().unwrap(), sha, "segment {} byte-equal", l["seq"]);
                compared += 1;
            }
        }
        assert!(compared >= 1, "segments read by both");
    }

    // Every segment decodes; frames before the switch are negatives of a dark picture,
    // the last ones (well after it) are the dark picture itself.
    let mut luma = Vec::new();
    for seg in &pl.segments {
        let r = http_get(gw.http_addr, &format!("/stream/cam-out/{}", seg.uri)).await;
        assert_eq!(r.status, 200);
        let l = frame_luma(&r.body);
        assert!(!l.is_empty(), "segment {} decodes", seg.uri);
        luma.push(l);
    }
    let all: Vec<f64> = luma.iter().flatten().copied().collect();
    assert!(all.len() >= 300, "{} processed frames of 420", all.len());
    let negated = all.iter().filter(|&&y| y > 150.0).count();
    let plain = all.iter().filter(|&&y| y < 100.0).count();
    assert_eq!(negated + plain, all.len(), "every frame is one or the other");
    assert!(negated >= 150 && plain >= 60, "{negated} negated, {plain} plain");
    // Frames are in order: all negated ones first, then the plain ones.
    let first_plain = all.iter().position(|&y| y < 100.0).unwrap();
    assert!(all[first_plain..].iter().all(|&y| y < 100.0), "the switch is one-way");
    eprintln!(
        "first processed segment in the playlist {:.2} s after publish; switched within the stream; {} frames",
        first_at.as_secs_f64(),
        all.len()
    );
    let _ = switched_at;
    drop(orch);
}

async fn poll_until<F, Fut>(secs: u64, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "condition not met within {secs} s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_orchestrator_is_swapped_and_output_resumes_within_3_s() {
    if !have("ffmpeg", "-version") || !have("gst-inspect-1.0", "--version") {
        eprintln!("skipped: ffmpeg or GStreamer missing (scripts/setup.sh installs them)");
        return;
    }
    let mut a = OrchestratorProcess::start(&["--transcoder", "echo"]).await;
    let mut b = OrchestratorProcess::start(&["--transcoder", "echo"]).await;
    let addrs = format!("{},{}", a.uri, b.uri);
    let gw = gateway_with(|c| c.orchestrators.orch_addr = addrs).await;
    poll_until(20, || async {
        let s = http_get(gw.cli_addr, "/orchestrators").await.text();
        s.matches("negate").count() >= 2
    })
    .await;
    let mut ff = publish(&format!("{}?pipeline=negate", rtmp_url(&gw, "cam")), 16);
    let status = |gw_addr| async move {
        let r = http_get(gw_addr, "/live/video-to-video/cam/status").await;
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap_or_default()
    };
    // Running, with output flowing.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let s = status(gw.http_addr).await;
        if s["gateway_status"]["output_segments"].as_u64().unwrap_or(0) >= 3 {
            break s;
        }
        assert!(Instant::now() < deadline, "no output: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let running_on = first["gateway_status"]["orchestrator"].as_str().unwrap().to_owned();
    let victim = if running_on == a.uri { &mut a } else { &mut b };
    victim.child.kill().await.unwrap();
    let killed = Instant::now();
    let before = status(gw.http_addr).await["gateway_status"]["output_segments"].as_u64().unwrap();
    // Output resumes on the other orchestrator.
    let resumed = loop {
        let s = status(gw.http_addr).await;
        let g = &s["gateway_status"];
        if g["orchestrator"].as_str() != Some(running_on.as_str())
            && g["state"] == "running"
            && g["output_segments"].as_u64().unwrap_or(0) > before
        {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(15), "output did not resume: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let s = status(gw.http_addr).await;
    assert_eq!(s["gateway_status"]["swaps"], 1, "{s}");
    eprintln!("orchestrator killed → processed output from the other one after {:.2} s", resumed.as_secs_f64());
    assert!(resumed < Duration::from_secs(3), "output resumed after {resumed:?}");
    let _ = ff.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pipelines_end_with_a_reason_and_a_returning_publisher_restarts_the_job() {
    if !have("ffmpeg", "-version") || !have("gst-inspect-1.0", "--version") {
        eprintln!("skipped: ffmpeg or GStreamer missing (scripts/setup.sh installs them)");
        return;
    }
    let orch = OrchestratorProcess::start(&["--transcoder", "echo"]).await;
    // Two streams at most: the live streams' processed outputs do not count.
    let gw = gateway_with(|c| {
        c.orchestrators.orch_addr = orch.uri.clone();
        c.listen.max_streams = 2;
    })
    .await;
    poll_until(20, || async { http_get(gw.cli_addr, "/orchestrators").await.text().contains("negate") }).await;
    let status = |id: &'static str| {
        let addr = gw.http_addr;
        async move {
            let r = http_get(addr, &format!("/live/video-to-video/{id}/status")).await;
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap_or_default()
        }
    };

    // No orchestrator serves this model: the stream's AI side ends with the reason and
    // the publisher is disconnected, long before its input would have ended.
    let started = Instant::now();
    let mut ff = publish(&format!("{}?pipeline=sd-turbo", rtmp_url(&gw, "nope")), 20);
    let exit = tokio::time::timeout(Duration::from_secs(10), ff.wait()).await.expect("publisher disconnected");
    assert!(!exit.unwrap().success(), "ffmpeg sees its connection closed");
    assert!(started.elapsed() < Duration::from_secs(10));
    let s = status("nope").await;
    assert_eq!(s["gateway_status"]["state"], "ended", "{s}");
    assert!(s["gateway_status"]["error"].as_str().unwrap().contains("no orchestrator"), "{s}");

    // A publisher that leaves and comes back within the grace period gets a new job.
    let mut first = publish(&format!("{}?pipeline=negate", rtmp_url(&gw, "cam")), 3);
    let _ = first.wait().await;
    poll_until(10, || async { status("cam").await["gateway_status"]["state"] == "ended" }).await;
    let before = status("cam").await["gateway_status"]["output_segments"].as_u64().unwrap();
    assert!(before >= 1, "the first session produced output");
    let mut second = publish(&format!("{}?pipeline=negate", rtmp_url(&gw, "cam")), 3);
    poll_until(10, || async {
        let s = status("cam").await;
        s["gateway_status"]["state"] == "running" && s["gateway_status"]["output_segments"].as_u64() > Some(before)
    })
    .await;
    let _ = second.wait().await;
    let pl = wait_ended(&gw, "cam-out").await;
    assert!(pl.segments.iter().any(|s| s.discontinuity), "the second session continues the playlist after a break");
    drop(orch);
}

/// A priced orchestrator is paid for a live stream: with the gateway's own key, and with
/// a remote signer (`sluice signer`) holding the key instead. Either way the start carries
/// the first payment, the 5 s cycles pay for the time since, and the orchestrator counts
/// the tickets and refuses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_live_streams_with_the_gateways_key_and_with_a_remote_signer() {
    if !have("ffmpeg", "-version") || !have("gst-inspect-1.0", "--version") {
        eprintln!("skipped: ffmpeg or GStreamer missing (scripts/setup.sh installs them)");
        return;
    }
    let orch_key = key_file("live-paid-orch", &format!("{:064x}", 991));
    let (signer_url, _signer) = start_signer("live-paid-signer", &format!("{:064x}", 992)).await;
    for remote in [false, true] {
        let orch =
            OrchestratorProcess::start_paid(&orch_key, &["--transcoder", "echo", "--price-per-unit", "100"]).await;
        let gw_key = key_file("live-paid-gw", &format!("{:064x}", 993));
        let uri = orch.uri.clone();
        let url = signer_url.clone();
        let gw = gateway_with(move |c| {
            c.orchestrators.orch_addr = uri;
            if remote {
                c.payment.remote_signer_url = Some(url);
            } else {
                c.payment.network = "arbitrum-one-mainnet".into();
                c.payment.eth_key_file = Some(gw_key);
            }
        })
        .await;
        poll_until(20, || async { http_get(gw.cli_addr, "/orchestrators").await.text().contains("negate") }).await;
        let mut ff = publish(&format!("{}?pipeline=negate", rtmp_url(&gw, "paid")), 12);
        let _ = ff.wait().await;
        let pl = wait_ended(&gw, "paid-out").await;
        assert!(pl.segments.len() >= 8, "remote {remote}: {} processed segments", pl.segments.len());
        let st = orch.status().await;
        assert!(st["tickets_received"].as_u64().unwrap() >= 2, "remote {remote}: start and cycles paid: {st}");
        assert!(st["live_payments"].as_u64().unwrap() >= 1, "remote {remote}: {st}");
        assert_eq!(st["rejected"], serde_json::json!({}), "remote {remote}: nothing refused: {st}");
        let m = http_get(gw.cli_addr, "/metrics").await.text();
        assert!(m.contains("sluice_live_payment_failures_total 0"), "remote {remote}");
        drop(orch);
    }
}

/// The processed stream plays in headless Chromium with hls.js from the gateway's own
/// player page, while the RTMP publish runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processed_stream_plays_in_chromium() {
    if !have("ffmpeg", "-version") || !have("gst-inspect-1.0", "--version") || !have("node", "--version") {
        eprintln!("skipped: ffmpeg, GStreamer or node missing (scripts/setup.sh installs them)");
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let web_dir = root.join(engine::DEFAULT_WEB_DIR);
    let orch = OrchestratorProcess::start(&["--transcoder", "echo"]).await;
    let uri = orch.uri.clone();
    let gw = gateway_with(move |c| {
        c.orchestrators.orch_addr = uri;
        c.listen.web_dir = Some(web_dir);
        c.segmenting.playlist_window = 6;
    })
    .await;
    poll_until(20, || async { http_get(gw.cli_addr, "/orchestrators").await.text().contains("negate") }).await;
    let mut ff = publish(&format!("{}?pipeline=negate", rtmp_url(&gw, "cam")), 40);
    poll_http(&gw, "/stream/cam-out/source.m3u8", 20, |t| t.matches(".ts").count() >= 2).await;
    let v = play_in_chromium(&gw, "cam-out", &[]).await;
    assert_eq!(v["hlsjs"], true, "{v}");
    assert!(v["fragments"].as_u64().unwrap() >= 3, "{v}");
    assert!(v["currentTime"].as_f64().unwrap() > 2.0, "{v}");
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(512), Some(512)), "{v}");
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(0), "{v}");
    let _ = ff.kill().await;
    drop(orch);
}

/// A runner that dies says so (a last `ERROR` status event, shown in `/status`), its job
/// ends, and the stream carries on with another orchestrator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_runner_reports_and_the_stream_moves_on() {
    if !have("ffmpeg", "-version") || !have("gst-inspect-1.0", "--version") {
        eprintln!("skipped: ffmpeg or GStreamer missing (scripts/setup.sh installs them)");
        return;
    }
    let a = OrchestratorProcess::start(&["--transcoder", "echo", "--allow-faults"]).await;
    let b = OrchestratorProcess::start(&["--transcoder", "echo", "--allow-faults"]).await;
    let addrs = format!("{},{}", a.uri, b.uri);
    let gw = gateway_with(|c| c.orchestrators.orch_addr = addrs).await;
    poll_until(20, || async { http_get(gw.cli_addr, "/orchestrators").await.text().matches("negate").count() >= 2 })
        .await;
    let mut ff = publish(&format!("{}?pipeline=negate", rtmp_url(&gw, "cam")), 20);
    let status = || async {
        let r = http_get(gw.http_addr, "/live/video-to-video/cam/status").await;
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap_or_default()
    };
    poll_until(20, || async { status().await["gateway_status"]["output_segments"].as_u64().unwrap_or(0) >= 2 }).await;
    let s = status().await;
    let running_on = s["gateway_status"]["orchestrator"].as_str().unwrap().to_owned();
    let victim = if running_on == a.uri { &a } else { &b };
    victim.fault(r#"{"mode":"runner_crash"}"#).await;
    let before = s["gateway_status"]["output_segments"].as_u64().unwrap();
    poll_until(15, || async {
        let g = status().await["gateway_status"].clone();
        g["orchestrator"].as_str() != Some(running_on.as_str())
            && g["state"] == "running"
            && g["output_segments"].as_u64().unwrap_or(0) > before + 1
    })
    .await;
    let s = status().await;
    let why = s["gateway_status"]["runner_error"].as_str().unwrap_or_default();
    assert!(why.contains("crashed"), "the runner's last word is in /status: {s}");
    assert_eq!(s["gateway_status"]["swaps"], 1, "{s}");
    let _ = ff.kill().await;
}

/// A runner whose output has no AAC (asked with `{"audio": "drop"}`; ai-runner's Opus looks
/// the same to the gateway): the processed HLS carries the input's AAC instead, in time
/// with the processed video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_without_aac_carries_the_inputs_audio() {
    if !have("ffmpeg", "-version") || !have("gst-inspect-1.0", "--version") {
        eprintln!("skipped: ffmpeg or GStreamer missing (scripts/setup.sh installs them)");
        return;
    }
    let orch = OrchestratorProcess::start(&["--transcoder", "echo"]).await;
    let gw = gateway_with(|c| c.orchestrators.orch_addr = orch.uri.clone()).await;
    poll_until(20, || async { http_get(gw.cli_addr, "/orchestrators").await.text().contains("negate") }).await;
    let params = "%7B%22audio%22%3A%22drop%22%7D";
    let mut ff = publish(&format!("{}?pipeline=negate&params={params}", rtmp_url(&gw, "mute")), 8);
    // The runner's own output has video only: a segment on the gateway's channel.
    poll_until(15, || async {
        let r = http_get(gw.http_addr, "/live/video-to-video/mute/status").await;
        let s: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        s["gateway_status"]["output_segments"].as_u64() >= Some(1)
    })
    .await;
    let client = TrickleClient::new(CertPolicy::AcceptAny);
    let mut sub = TrickleSubscriber::new(client, &format!("http://{}/ai/trickle/mute-out", gw.http_addr), -1);
    let mut runner_ts = Vec::new();
    if let Ok(Ok(Some(mut seg))) = tokio::time::timeout(Duration::from_secs(15), sub.next_segment()).await {
        while let Ok(Some(c)) = seg.chunk().await {
            runner_ts.extend_from_slice(&c);
        }
    }
    let runner_file = std::env::temp_dir().join(format!("sluice-mute-runner-{}.ts", std::process::id()));
    std::fs::write(&runner_file, &runner_ts).unwrap();
    let runner_packets = probe_packets(&runner_file).await;
    let _ = std::fs::remove_file(&runner_file);
    assert!(!runner_packets.is_empty() && runner_packets.iter().all(|p| p.video), "the runner sent video only");
    let _ = ff.wait().await;
    let pl = wait_ended(&gw, "mute-out").await;
    let mut ts = Vec::new();
    for seg in &pl.segments {
        ts.extend_from_slice(&http_get(gw.http_addr, &format!("/stream/mute-out/{}", seg.uri)).await.body);
    }
    let file = std::env::temp_dir().join(format!("sluice-mute-hls-{}.ts", std::process::id()));
    std::fs::write(&file, &ts).unwrap();
    let packets = probe_packets(&file).await;
    let codecs = run(
        tokio::process::Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0"])
            .arg(&file),
        "ffprobe streams",
    )
    .await;
    let _ = std::fs::remove_file(&file);
    assert!(codecs.contains("aac") && codecs.contains("h264"), "{codecs}");
    let span = |video: bool| {
        let t: Vec<f64> = packets.iter().filter(|p| p.video == video).map(|p| p.pts).collect();
        (t.iter().cloned().fold(f64::INFINITY, f64::min), t.iter().cloned().fold(f64::NEG_INFINITY, f64::max), t.len())
    };
    let (v0, v1, nv) = span(true);
    let (a0, a1, na) = span(false);
    assert!(nv > 100 && na > 100, "{nv} video, {na} audio packets");
    assert!((a0 - v0).abs() < 0.3 && (a1 - v1).abs() < 0.5, "audio {a0}..{a1} against video {v0}..{v1}");
    drop(orch);
}
