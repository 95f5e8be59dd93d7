//! ffmpeg publishes over RTMP; the HLS output is fetched over HTTP and validated with
//! ffprobe: every segment decodes and starts with a keyframe, every source frame is there
//! with its original timestamps (so timestamps are continuous and A/V sync is kept), and
//! the durations add up to the published duration within one frame.

mod common;

use common::*;

async fn publish_and_check(file: &str, id: &str) -> StreamCheck {
    let gw = gateway().await;
    let src = testdata(file);
    ffmpeg_publish(&src, &rtmp_url(&gw, id), false).await;
    let check = fetch_and_check(&gw, id).await;
    assert_same_packets(&src, &check.packets).await;
    let (span, frame) = source_span(&src).await;
    assert!(
        (check.duration - span).abs() <= frame + 0.002,
        "EXTINF sum {} vs published {span} (frame {frame})",
        check.duration
    );
    gw.shutdown().await;
    check
}

#[tokio::test(flavor = "multi_thread")]
async fn bframes_clip() {
    let c = publish_and_check("clip.flv", "bframes").await;
    assert!(c.packets.iter().any(|p| p.video && (p.pts - p.dts).abs() > 0.001), "B-frames keep PTS != DTS");
    assert_eq!(c.playlist.segments.len(), 5, "10 s at 2 s GOPs");
    assert!(c.playlist.segments.iter().all(|s| !s.discontinuity));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_audio_irregular_keyframes() {
    let c = publish_and_check("noaudio_irregular.flv", "irregular").await;
    assert!(c.packets.iter().all(|p| p.video));
    // Keyframes at 0, 0.7, 2.9, 3.2, 6.5 s with a 2 s target: cuts at 2.9 and 6.5 only.
    let d: Vec<f64> = c.playlist.segments.iter().map(|s| s.duration as f64).collect();
    assert_eq!(d.len(), 3, "{d:?}");
    assert!((d[0] - 2.9).abs() < 0.02 && (d[1] - 3.6).abs() < 0.02 && (d[2] - 1.5).abs() < 0.02, "{d:?}");
    assert_eq!(c.playlist.target_duration, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn fps_59_94() {
    let c = publish_and_check("fps5994.flv", "fps5994").await;
    assert_eq!(c.packets.iter().filter(|p| p.video).count(), 240);
}

#[tokio::test(flavor = "multi_thread")]
async fn resolution_change_mid_stream() {
    let c = publish_and_check("reschange.flv", "reschange").await;
    let mut sizes = vec![];
    for s in &c.segments {
        sizes.push(probe_size(s).await);
    }
    assert_eq!(sizes.first(), Some(&(640, 360)), "{sizes:?}");
    assert_eq!(sizes.last(), Some(&(320, 180)), "{sizes:?}");
    // The switch starts a new segment flagged as a discontinuity.
    let switch = sizes.iter().position(|s| *s == (320, 180)).unwrap();
    assert!(c.playlist.segments[switch].discontinuity, "discontinuity at the new resolution");
    assert_eq!(c.playlist.segments.iter().filter(|s| s.discontinuity).count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn encoder_restart_continues_one_playlist() {
    let gw = gateway().await;
    let src = testdata("short.flv");
    ffmpeg_publish(&src, &rtmp_url(&gw, "restart"), false).await;
    ffmpeg_publish(&src, &rtmp_url(&gw, "restart"), false).await;
    let c = fetch_and_check(&gw, "restart").await;
    let disc: Vec<usize> =
        c.playlist.segments.iter().enumerate().filter(|(_, s)| s.discontinuity).map(|(i, _)| i).collect();
    assert_eq!(disc.len(), 1, "one discontinuity between the two sessions");
    assert_eq!(disc[0], c.playlist.segments.len() / 2, "halfway");
    let src_video = probe_packets(&src).await.iter().filter(|p| p.video).count();
    assert_eq!(c.packets.iter().filter(|p| p.video).count(), 2 * src_video, "both sessions complete");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_publishers() {
    let gw = gateway().await;
    // The 10 s clip in real time: long enough that all twenty overlap however slowly the
    // machine starts twenty ffmpeg processes.
    let src = testdata("clip.flv");
    let mut tasks = vec![];
    for i in 0..20 {
        let (url, src) = (rtmp_url(&gw, &format!("many{i}")), src.clone());
        tasks.push(tokio::spawn(async move { ffmpeg_publish(&src, &url, true).await }));
    }
    // All twenty are live at the same moment.
    let mut most = 0;
    for _ in 0..80 {
        let live = http_get(gw.cli_addr, "/streams").await.text();
        most = most.max(live.matches("\"live\": true").count());
        if most == 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(most, 20, "twenty streams live at once");
    for t in tasks {
        t.await.unwrap();
    }
    for i in 0..20 {
        let c = fetch_and_check(&gw, &format!("many{i}")).await;
        assert_same_packets(&src, &c.packets).await;
    }
    let metrics = http_get(gw.cli_addr, "/metrics").await.text();
    assert!(metrics.contains("sluice_publishes_total 20"), "{metrics}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn go_livepeer_url_forms_name_the_stream() {
    let gw = gateway().await;
    let src = testdata("short.flv");
    ffmpeg_publish(&src, &format!("rtmp://{}/bare", gw.rtmp_addr), false).await;
    ffmpeg_publish(&src, &format!("rtmp://{}/withkey/SECRETKEY", gw.rtmp_addr), false).await;
    for id in ["bare", "withkey"] {
        let c = fetch_and_check(&gw, id).await;
        assert_same_packets(&src, &c.packets).await;
    }
    let streams = http_get(gw.cli_addr, "/streams").await.text();
    assert!(!streams.contains("SECRETKEY"), "the key is not the id: {streams}");
    gw.shutdown().await;
}
