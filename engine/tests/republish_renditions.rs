//! Item: a rendition segment lost at the end. One clip is published, then a second on the
//! same key after the first ends (real ffmpeg in real time, a local orchestrator process
//! with two renditions). Every rendition must list every source segment, transcoded or
//! marked `EXT-X-GAP`, before its playlist ends: nothing is lost silently.
mod common;

use common::*;

async fn publish(url: &str, loops: u32, seconds: u32) {
    let mut c = tokio::process::Command::new("ffmpeg");
    c.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", &loops.to_string(), "-i"])
        .arg(testdata("clip.flv"))
        .args(["-t", &seconds.to_string(), "-c", "copy", "-f", "flv", url]);
    run(&mut c, "ffmpeg publish").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_segment_reaches_every_rendition_across_a_republish() {
    let orch = OrchestratorProcess::start(&[]).await;
    let uri = orch.uri.clone();
    let gw = gateway_with(|c| {
        c.orchestrators.orch_addr = uri;
        c.segmenting.playlist_window = 0;
    })
    .await;
    let url = rtmp_url(&gw, "again");
    publish(&url, 1, 20).await;
    wait_ended(&gw, "again").await;
    publish(&url, 1, 15).await;
    let source = wait_ended(&gw, "again").await;
    let seqs: Vec<u64> = (0..source.segments.len() as u64).map(|i| source.media_sequence + i).collect();
    assert!(seqs.len() >= 15, "35 s of media in about 2 s segments: {}", seqs.len());
    assert_eq!(source.segments.iter().filter(|s| s.discontinuity).count(), 1, "one discontinuity at the republish");
    for name in ["P240p30fps16x9", "P360p30fps16x9"] {
        let text = poll_http(&gw, &format!("/stream/again/{name}.m3u8"), 60, |p| p.contains("#EXT-X-ENDLIST")).await;
        let pl = media_playlist(text.as_bytes());
        let got: Vec<u64> = (0..pl.segments.len() as u64).map(|i| pl.media_sequence + i).collect();
        assert_eq!(got, seqs, "{name} lists every source segment:\n{text}");
        for (s, r) in source.segments.iter().zip(&pl.segments) {
            assert_eq!(s.discontinuity, r.discontinuity, "{name}: discontinuities line up");
            assert!((s.duration - r.duration).abs() < 0.001, "{name}: same durations");
        }
        let gaps = text.matches("#EXT-X-GAP").count();
        assert_eq!(gaps, 0, "{name}: a healthy local orchestrator transcodes everything:\n{text}");
    }
    gw.shutdown().await;
}
