//! WHIP ingest: headless Chromium publishes its fake camera and microphone from Sluice's
//! `/publish/{id}` page, and the stream's HLS passes the checks an RTMP stream passes;
//! offers Sluice cannot take are refused with the reason, over plain HTTP.
mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_with_whip() {
    if !have("node", "--version") || !have("ffprobe", "-version") || !std::path::Path::new("/usr/bin/chromium").exists()
    {
        eprintln!("skipped: node, ffprobe or chromium missing (scripts/setup.sh installs them)");
        return;
    }
    let gw = gateway().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = run(
        tokio::process::Command::new("node")
            .arg(root.join("web/test/publish.mjs"))
            .arg(format!("http://localhost:{}/publish/cam?auto", gw.http_addr.port()))
            .arg("30"),
        "headless Chromium publishing",
    )
    .await;
    let line = out.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no result from the browser:\n{out}"));
    let page: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(page["state"], "live", "{page}");
    assert_eq!(page["connection"], "connected", "{page}");
    assert!(page["bytesSent"].as_u64().unwrap() > 100_000, "{page}");
    // The page sent DELETE: the stream ends like an RTMP publisher's.
    let check = fetch_and_check(&gw, "cam").await;
    assert!(check.packets.iter().any(|p| !p.video), "AAC audio in the segments");
    assert!((25.0..=35.0).contains(&check.duration), "30 s published, {:.1} s in the playlist", check.duration);
    let n = check.playlist.segments.len();
    assert!(n >= 12, "keyframes asked every 2 s: {n} segments");
    for s in &check.playlist.segments[..n - 1] {
        assert!(s.duration < 3.0, "a segment of {} s: keyframes were not asked for", s.duration);
    }
    gw.shutdown().await;
}

const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
a=fingerprint:sha-256 12:34:56\r\na=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_sluice_cannot_take_are_refused_with_the_reason() {
    let gw = gateway().await;
    let addr = gw.http_addr;
    let post = |ct: &'static str, body: &'static str| async move {
        http_request(addr, "POST", "/live/cam/whip", &[("Content-Type", ct)], body.as_bytes()).await
    };
    let r = post("text/plain", OFFER).await;
    assert_eq!(r.status, 415, "{}", r.text());
    let r = post("application/sdp", "this is not SDP").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().starts_with("malformed SDP offer"), "{}", r.text());
    let r = post("application/sdp", OFFER).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.text(), "no supported video codec: offered VP8; Sluice takes H.264 (packetization-mode=1)\n");
    let r = http_request(addr, "DELETE", "/live/cam/whip/0123", &[], b"").await;
    assert_eq!(r.status, 404);
    let frag = "a=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n";
    let r = http_request(
        addr,
        "PATCH",
        "/live/cam/whip/0123",
        &[("Content-Type", "application/trickle-ice-sdpfrag"), ("If-Match", "\"x\"")],
        frag.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = http_request(addr, "OPTIONS", "/live/cam/whip", &[("Origin", "http://elsewhere")], b"").await;
    assert_eq!((r.status, r.header("accept-post")), (204, Some("application/sdp")));
    assert!(r.header("access-control-allow-methods").unwrap().contains("POST"));
    assert!(r.header("access-control-expose-headers").unwrap().contains("Location"));
    // Nothing was published.
    assert_eq!(http_get(addr, "/stream/cam.m3u8").await.status, 404);
    gw.shutdown().await;

    // With API keys on, publishing needs one.
    let keys = std::env::temp_dir().join(format!("sluice-whip-keys-{}.toml", std::process::id()));
    let hash = engine::ai::keys::hash_key("pub-key");
    std::fs::write(&keys, format!("[[key]]\nname = \"cam\"\nsha256 = \"{hash}\"\n")).unwrap();
    let gw = gateway_with(|c| c.auth.api_keys = Some(keys.clone())).await;
    let addr = gw.http_addr;
    let r =
        http_request(addr, "POST", "/live/cam/whip", &[("Content-Type", "application/sdp")], OFFER.as_bytes()).await;
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Bearer")), "{}", r.text());
    let auth = [("Content-Type", "application/sdp"), ("Authorization", "Bearer pub-key")];
    let r = http_request(addr, "POST", "/live/cam/whip", &auth, OFFER.as_bytes()).await;
    assert_eq!(r.status, 422, "the key admits it; the VP8 offer is then refused: {}", r.text());
    gw.shutdown().await;
    let _ = std::fs::remove_file(&keys);
}
