//! GStreamer publishes, with its own RTMP stack (rtmp2sink) and with librtmp (rtmpsink,
//! the handshake and chunking OBS uses); the output is checked as for ffmpeg.

mod common;

use common::*;

/// Publishes short.flv through `sink` as stream `id` and checks the output fully.
async fn publish_and_check(gw: &engine::Gateway, sink: &str, id: &str) -> StreamCheck {
    let src = testdata("short.flv");
    gst_publish(&src, &rtmp_url(gw, id), sink).await;
    let c = fetch_and_check(gw, id).await;
    assert_same_packets(&src, &c.packets).await;
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn rtmp2sink_publishes_a_playable_stream() {
    let gw = gateway().await;
    let c = publish_and_check(&gw, "rtmp2sink", "gst").await;
    assert_eq!(c.playlist.segments.len(), 2, "4 s at 1 s GOPs and a 2 s target");
    // ffmpeg reads the master playlist as a player would.
    let out = run(
        tokio::process::Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(format!("http://{}/stream/gst.m3u8", gw.http_addr))
            .args(["-f", "null", "-"]),
        "ffmpeg HLS read",
    )
    .await;
    assert!(out.trim().is_empty(), "{out}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn librtmp_publishes_like_obs() {
    let gw = gateway().await;
    publish_and_check(&gw, "rtmpsink", "librtmp").await;
    gw.shutdown().await;
}
