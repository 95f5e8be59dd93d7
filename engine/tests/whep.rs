//! WHEP playback: headless Chromium plays an RTMP-published stream (no B-frames) and a
//! WHIP-published one over WebRTC from the player page's `?webrtc` mode: frames decoded,
//! audio heard (WebAudio on the received track), the first frame within a second of the
//! request. Requests Sluice cannot serve are refused with the reason, over plain HTTP.
mod common;

use std::time::{Duration, Instant};

use common::*;

fn browsers_here() -> bool {
    if !have("node", "--version") || !have("ffmpeg", "-version") || !std::path::Path::new("/usr/bin/chromium").exists()
    {
        eprintln!("skipped: node, ffmpeg or chromium missing (scripts/setup.sh installs them)");
        return false;
    }
    true
}

/// Plays `id` over WHEP in headless Chromium for `secs`; what the page saw.
async fn whep_in_chromium(gw: &engine::gateway::Gateway, id: &str, secs: u32) -> serde_json::Value {
    whep_in_chromium_then(gw, id, secs, "delete").await
}

/// [`whep_in_chromium`], then `delete` (DELETE the session) or `leave` (close the
/// browser without it).
async fn whep_in_chromium_then(gw: &engine::gateway::Gateway, id: &str, secs: u32, then: &str) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = run(
        tokio::process::Command::new("node")
            .arg(root.join("web/test/whep.mjs"))
            .arg(format!("http://{}/player/{id}?webrtc", gw.http_addr))
            .arg(secs.to_string())
            .arg(then),
        "headless Chromium WHEP playback",
    )
    .await;
    let line = out.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no result from the browser:\n{out}"));
    serde_json::from_str(line).unwrap()
}

fn assert_played(page: &serde_json::Value, secs: f64) {
    assert_eq!(page["state"], "playing", "{page}");
    assert_eq!(page["connection"], "connected", "{page}");
    let frames = page["framesDecoded"].as_f64().unwrap();
    assert!(frames >= 20.0 * secs, "about 30 frames a second decoded: {page}");
    let first = page["firstFrameMs"].as_f64().unwrap_or(f64::MAX);
    assert!(first < 1000.0, "first frame {first} ms after the request: {page}");
    // ffmpeg's sine is about -21 dBFS (RMS 0.09); Chromium's fake microphone beeps now
    // and then (0.02-0.3 measured over a few seconds); silence would be 0.
    let rms = page["audioRms"].as_f64().unwrap_or(0.0);
    assert!(rms > 0.005, "audio heard through WebRTC: {page}");
    assert!(page["audioPackets"].as_f64().unwrap() > 30.0 * secs, "Opus packets received: {page}");
    assert_eq!(page["deleteStatus"], 200, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_rtmp_and_whip_streams_over_whep() {
    if !browsers_here() {
        return;
    }
    let Some(gw) = player_gateway().await else { return };
    // RTMP: x264 ultrafast (no B-frames), AAC, keyframes 5 s apart: a first frame within
    // a second needs the cached GOP, not the next keyframe.
    let ff = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=40"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=40"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "150", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-f", "flv"])
        .arg(rtmp_url(&gw, "pat"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    poll_http(&gw, "/stream/pat/source.m3u8", 30, |t| t.contains("#EXTINF")).await;
    let page = whep_in_chromium(&gw, "pat", 6).await;
    assert_played(&page, 6.0);
    assert_eq!((page["width"].as_u64(), page["height"].as_u64()), (Some(640), Some(360)), "{page}");

    // A viewer that goes without DELETE (the browser closed): its RTCP stops, and the
    // session ends.
    let page = whep_in_chromium_then(&gw, "pat", 3, "leave").await;
    assert!(page["framesDecoded"].as_u64().unwrap() > 30, "{page}");
    let t0 = Instant::now();
    loop {
        let m = http_get(gw.cli_addr, "/metrics").await.text();
        if m.contains("sluice_webrtc_sessions{kind=\"whep\"} 0") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(45), "the vanished viewer's session is still there:\n{m}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("a viewer gone without DELETE ended after {:.1} s", t0.elapsed().as_secs_f64());
    drop(ff);
    // WHIP in, WHEP out: one Chromium publishes its fake camera, another plays it.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut publisher = tokio::process::Command::new("node")
        .arg(root.join("web/test/publish.mjs"))
        .arg(format!("http://localhost:{}/publish/cam?auto", gw.http_addr.port()))
        .arg("20")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    poll_http(&gw, "/stream/cam.m3u8", 30, |_| true).await;
    let page = whep_in_chromium(&gw, "cam", 6).await;
    assert_played(&page, 6.0);
    let done = tokio::time::timeout(Duration::from_secs(60), publisher.wait()).await.unwrap().unwrap();
    assert!(done.success(), "the WHIP publisher ran to the end");
    gw.shutdown().await;
}

const RECV_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n\
a=setup:actpass\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n\
a=setup:actpass\r\na=mid:1\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_requests_sluice_cannot_serve_are_refused_with_the_reason() {
    if !have("ffmpeg", "-version") {
        eprintln!("skipped: ffmpeg missing (scripts/setup.sh installs it)");
        return;
    }
    // This machine's first IPv4 address (ICE agents leave loopback out when there are
    // others): host candidates are to be offered on it alone.
    let host: Option<std::net::IpAddr> = std::process::Command::new("hostname").arg("-I").output().ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .find_map(|a| a.parse().ok().filter(std::net::IpAddr::is_ipv4))
    });
    let gw = gateway_with(|c| {
        c.webrtc.webrtc_max_viewers = 1;
        c.webrtc.webrtc_host_addresses = host.into_iter().collect();
        c.webrtc.webrtc_ice_servers =
            vec!["stun:stun.example.net:3478".into(), "turn:user:secret@relay.example.net?transport=udp".into()];
    })
    .await;
    let addr = gw.http_addr;
    let sdp = [("Content-Type", "application/sdp")];
    // No such stream: a short wait, then 404 with the reason.
    let t0 = Instant::now();
    let r = http_request(addr, "POST", "/live/nobody/whep", &sdp, RECV_OFFER.as_bytes()).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("stream nobody has no media to play"), "{}", r.text());
    assert!(t0.elapsed() >= Duration::from_millis(1500), "waited for media first");
    let r = http_request(addr, "POST", "/live/nobody/whep", &[("Content-Type", "text/plain")], b"x").await;
    assert_eq!(r.status, 415);
    let r = http_request(addr, "POST", "/live/nobody/whep", &sdp, b"not SDP").await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = http_request(addr, "DELETE", "/live/nobody/whep/0123", &[], b"").await;
    assert_eq!(r.status, 404);
    // Discovery: a preflight (which carries no key) is told the STUN server only.
    let r = http_request(addr, "OPTIONS", "/live/any/whep", &[("Origin", "http://elsewhere")], b"").await;
    assert_eq!(r.status, 204);
    let links = |r: &HttpResponse| -> Vec<String> {
        r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("link")).map(|(_, v)| v.clone()).collect()
    };
    assert_eq!(links(&r), ["<stun:stun.example.net:3478>; rel=\"ice-server\""]);

    // A stream with B-frames (x264's default) cannot go out as it is: 422.
    let _bf = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=20"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "30", "-pix_fmt", "yuv420p", "-f", "flv"])
        .arg(rtmp_url(&gw, "bframes"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _ok = publish_test_pattern(&rtmp_url(&gw, "plain"), 20);
    poll_http(&gw, "/stream/bframes/source.m3u8", 30, |t| t.contains("#EXTINF")).await;
    poll_http(&gw, "/stream/plain/source.m3u8", 30, |t| t.contains("#EXTINF")).await;
    let r = http_request(addr, "POST", "/live/bframes/whep", &sdp, RECV_OFFER.as_bytes()).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("B-frames"), "{}", r.text());
    // A publisher's offer sent to WHEP: the sections must receive.
    let send = RECV_OFFER.replace("a=recvonly", "a=sendonly");
    let r = http_request(addr, "POST", "/live/plain/whep", &sdp, send.as_bytes()).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("a WHEP viewer receives"), "{}", r.text());
    // A viewer that never connects holds its slot (the limit is 1) until DELETE.
    let r = http_request(addr, "POST", "/live/plain/whep", &sdp, RECV_OFFER.as_bytes()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    let answer = r.text();
    assert!(
        answer.contains("a=sendonly") && answer.contains("H264/90000") && answer.contains("a=candidate:"),
        "{answer}"
    );
    let location = r.header("location").unwrap().to_owned();
    assert!(location.starts_with("/live/plain/whep/"), "{location}");
    // The answer carries every ICE server (RFC 9725 §4.6), the TURN credentials too.
    assert_eq!(
        links(&r),
        [
            "<stun:stun.example.net:3478>; rel=\"ice-server\"".to_owned(),
            "<turn:relay.example.net?transport=udp>; rel=\"ice-server\"; username=\"user\"; credential=\"secret\"; \
credential-type=\"password\""
                .to_owned()
        ]
    );
    let r2 = http_request(addr, "POST", "/live/plain/whep", &sdp, RECV_OFFER.as_bytes()).await;
    assert_eq!(r2.status, 503, "{}", r2.text());
    assert!(r2.text().contains("already has 1 sessions"), "{}", r2.text());
    let r = http_request(addr, "DELETE", &location, &[], b"").await;
    assert_eq!(r.status, 200);
    let r = http_request(addr, "POST", "/live/plain/whep", &sdp, RECV_OFFER.as_bytes()).await;
    assert_eq!(r.status, 201, "the slot is free again: {}", r.text());
    gw.shutdown().await;
}
