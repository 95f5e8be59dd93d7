//! Sessions opened and abandoned: 1,100 WHIP offers and 550 WHEP offers whose peers
//! never connect. Each is answered (201) while the table has room and
//! refused with 503 and Retry-After when it is full; each answered one ends on the
//! connect timeout. Afterwards the GStreamer pipelines (from `/metrics`) and the process's
//! file descriptors are back where they were, and memory stays flat once the first wave
//! of a hundred sessions at once has set the allocator's high-water mark.
mod common;

use std::time::{Duration, Instant};

use common::*;

const FINGERPRINT: &str = "a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n";

/// An offer with H.264 and Opus sections whose direction is `dir` (`sendonly` for WHIP,
/// `recvonly` for WHEP), from an ICE agent that never answers.
fn offer(dir: &str) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
{FINGERPRINT}a=setup:actpass\r\na=mid:0\r\na={dir}\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
{FINGERPRINT}a=setup:actpass\r\na=mid:1\r\na={dir}\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
    )
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A gauge's value from the control API's metrics.
async fn metric(gw: &engine::gateway::Gateway, line: &str) -> u64 {
    let m = http_get(gw.cli_addr, "/metrics").await.text();
    m.lines()
        .find_map(|l| l.strip_prefix(line).map(|v| v.trim().parse().unwrap_or(u64::MAX)))
        .unwrap_or_else(|| panic!("{line} not in the metrics:\n{m}"))
}

/// Waits until the sessions of `kind` and the pipelines are back to `pipelines`.
async fn wait_clean(gw: &engine::gateway::Gateway, kind: &str, pipelines: u64) {
    let sessions = format!("sluice_webrtc_sessions{{kind=\"{kind}\"}}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, p) = (metric(gw, &sessions).await, metric(gw, "sluice_webrtc_pipelines").await);
        if s == 0 && p == pipelines {
            return;
        }
        assert!(Instant::now() < deadline, "{kind}: {s} sessions and {p} pipelines left (expected {pipelines})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// POSTs `n` offers to `path` at once (`{i}` in it numbered); the statuses.
async fn offers(addr: std::net::SocketAddr, path: &str, body: &str, n: usize) -> Vec<u16> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (path, body) = (path.replace("{i}", &i.to_string()), body.to_owned());
        set.spawn(async move {
            http_request(addr, "POST", &path, &[("Content-Type", "application/sdp")], body.as_bytes()).await
        });
    }
    let mut statuses = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        let r = r.unwrap();
        if r.status == 503 {
            assert!(r.header("retry-after").is_some(), "a full table says when to retry: {}", r.text());
        }
        statuses.push(r.status);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_sessions_are_refused_when_full_and_cleaned_up_on_timeout() {
    if !have("gst-inspect-1.0", "webrtcbin") || !have("ffmpeg", "-version") {
        eprintln!("skipped: GStreamer webrtcbin or ffmpeg missing (scripts/setup.sh installs them)");
        return;
    }
    let gw = gateway_with(|c| {
        c.webrtc.webrtc_session_timeout = 3.0;
        c.webrtc.webrtc_max_publishers = 100;
        c.webrtc.webrtc_max_viewers = 100;
    })
    .await;
    let addr = gw.http_addr;
    let _source = publish_test_pattern(&rtmp_url(&gw, "plain"), 180);
    poll_http(&gw, "/stream/plain/source.m3u8", 30, |t| t.contains("#EXTINF")).await;
    // One of each first, so what GStreamer sets up once (plugins, the certificate, thread
    // pools) is in the baseline.
    let whip = offer("sendonly");
    let whep = offer("recvonly");
    assert_eq!(offers(addr, "/live/warm/whip", &whip, 1).await, [201]);
    assert_eq!(offers(addr, "/live/plain/whep", &whep, 1).await, [201]);
    wait_clean(&gw, "whip", 0).await;
    wait_clean(&gw, "whep", 0).await;
    let (fds, rss) = (open_fds(), rss_kib());
    let t0 = Instant::now();

    // A thousand WHIP sessions in ten waves of 110 offers, each to its own stream (a
    // stream takes one publisher): 100 answered, 10 refused.
    let (mut answered, mut refused) = (0, 0);
    let mut rss_waves = Vec::new();
    for wave in 0..10 {
        let statuses = offers(addr, &format!("/live/abandoned{wave}-{{i}}/whip"), &whip, 110).await;
        answered += statuses.iter().filter(|s| **s == 201).count();
        refused += statuses.iter().filter(|s| **s == 503).count();
        assert!(statuses.iter().all(|s| *s == 201 || *s == 503), "wave {wave}: {statuses:?}");
        wait_clean(&gw, "whip", 0).await;
        rss_waves.push(rss_kib() / 1024);
    }
    // 100 at once, the rest refused until the timeout (a few more under load: an answer
    // that took longer than the timeout is refused too).
    assert_eq!(answered + refused, 1100);
    assert!((950..=1000).contains(&answered), "{answered} answered, {refused} refused");
    // Five hundred WHEP viewers of one stream in five waves.
    let mut viewers = 0;
    let mut rss_viewer_waves = Vec::new();
    for _ in 0..5 {
        let statuses = offers(addr, "/live/plain/whep", &whep, 110).await;
        viewers += statuses.iter().filter(|s| **s == 201).count();
        assert!(statuses.iter().all(|s| *s == 201 || *s == 503), "{statuses:?}");
        assert!(statuses.iter().filter(|s| **s == 503).count() >= 10, "the viewer limit: {statuses:?}");
        wait_clean(&gw, "whep", 0).await;
        rss_viewer_waves.push(rss_kib() / 1024);
    }
    assert!((475..=500).contains(&viewers), "{viewers} viewers answered");
    // Teardown finishes on GStreamer's threads (an ICE agent closes its sockets when it
    // is finalised, after its pipeline has stopped): give it a moment.
    let deadline = Instant::now() + Duration::from_secs(15);
    while open_fds() > fds + 16 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (fds_after, rss_after) = (open_fds(), rss_kib());
    eprintln!(
        "{answered} WHIP and {viewers} WHEP sessions abandoned in {:.0} s: pipelines back to 0; fds {fds} -> {fds_after}; \
RSS {} -> {} MiB (after each WHIP wave: {rss_waves:?}; \
after each WHEP wave: {rss_viewer_waves:?})",
        t0.elapsed().as_secs_f64(),
        rss / 1024,
        rss_after / 1024
    );
    assert!(fds_after <= fds + 16, "file descriptors leaked: {fds} before, {fds_after} after");
    // The first wave of a hundred sessions at once sets the allocator's high-water mark;
    // after it, memory must stay flat (a leak of 50 KiB a session would add 5 MiB a wave).
    // (A leaked pipeline holds its threads, sockets and buffers: the pipeline and fd
    // counts above catch it; this catches smaller leaks, above the allocator's drift.)
    let growth = rss_waves[9] - rss_waves[1];
    assert!(growth < 40, "memory grew {growth} MiB over 800 WHIP sessions after the first wave: {rss_waves:?}");
    let growth = rss_viewer_waves[4] - rss_viewer_waves[1];
    assert!(growth < 60, "memory grew {growth} MiB over 300 WHEP sessions after the first wave: {rss_viewer_waves:?}");
    assert!(metric(&gw, "sluice_webrtc_refused_total{kind=\"whip\"}").await >= 100);
    gw.shutdown().await;
}
