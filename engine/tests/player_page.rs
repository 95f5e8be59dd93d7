//! The player page plays a live stream in headless Chromium with hls.js (served by the
//! gateway itself), while Sluice's publisher sends the demo clip in real time.

mod common;

use bytes::Bytes;
use common::*;
use engine::publish::{PublishOptions, publish_tags, read_flv};
use ingest::publisher::RtmpUrl;

#[tokio::test(flavor = "multi_thread")]
async fn hls_js_plays_the_player_page() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let web_dir = root.join(engine::DEFAULT_WEB_DIR);
    assert!(web_dir.join("hls.js/dist/hls.min.js").exists(), "hls.js missing: run scripts/setup.sh");
    let gw = gateway_with(|c| {
        c.listen.web_dir = Some(web_dir.clone());
        c.segmenting.playlist_window = 6;
    })
    .await;
    let tags = read_flv(Bytes::from_static(engine::DEMO_CLIP)).unwrap();
    let url = RtmpUrl::parse(&rtmp_url(&gw, "browser")).unwrap();
    let publisher = tokio::spawn(async move {
        publish_tags(&tags, &url, &PublishOptions { realtime: true, loops: Some(3) }).await.unwrap();
    });
    let js = http_get(gw.http_addr, "/player/hls.min.js").await;
    assert_eq!(js.status, 200, "the gateway serves hls.js itself");
    let v = play_in_chromium(&gw, "browser", &[]).await;
    assert_eq!(v["hlsjs"], true, "{v}");
    assert!(v["fragments"].as_u64().unwrap() >= 3, "{v}");
    assert!(v["currentTime"].as_f64().unwrap() > 2.0, "{v}");
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(1280), Some(720)), "{v}");
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(0), "{v}");
    publisher.abort();
    gw.shutdown().await;
}

/// With a local orchestrator (GStreamer on CPU) the player offers the source and two
/// renditions, and plays both the lowest and the highest when asked.
#[tokio::test(flavor = "multi_thread")]
async fn hls_js_plays_every_rendition_of_an_abr_stream() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let web_dir = root.join(engine::DEFAULT_WEB_DIR);
    let orch = OrchestratorProcess::start(&[]).await;
    let uri = orch.uri.clone();
    let gw = gateway_with(|c| {
        c.listen.web_dir = Some(web_dir.clone());
        c.segmenting.playlist_window = 6;
        c.orchestrators.orch_addr = uri;
    })
    .await;
    let tags = read_flv(Bytes::from_static(engine::DEMO_CLIP)).unwrap();
    let url = RtmpUrl::parse(&rtmp_url(&gw, "abr")).unwrap();
    let publisher = tokio::spawn(async move {
        publish_tags(&tags, &url, &PublishOptions { realtime: true, loops: Some(6) }).await.unwrap();
    });
    let v = play_in_chromium(&gw, "abr", &["3"]).await;
    let heights: Vec<u64> = v["levels"].as_array().unwrap().iter().map(|l| l["height"].as_u64().unwrap()).collect();
    let mut sorted = heights.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![240, 360, 720], "P240p + P360p under the 720p source: {v}");
    // No rung above the source in bitrate either: the player never climbs to something
    // worse than the source.
    let level = |h: u64| v["levels"].as_array().unwrap().iter().find(|l| l["height"] == h).unwrap()["bitrate"].as_u64();
    let source = level(720).unwrap();
    for h in [240, 360] {
        assert!(level(h).unwrap() < source, "{h}p at {:?} b/s under the source's {source}: {v}", level(h));
    }
    assert!(v["levelsPlayed"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(0), "{v}");
    publisher.abort();
    gw.shutdown().await;
}
