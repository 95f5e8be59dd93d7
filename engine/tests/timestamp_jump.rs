//! One connection whose timestamps jump backwards mid-stream (ffmpeg smooths such jumps
//! away, so Sluice's own publisher drives it): the playlist continues with a discontinuity,
//! no segment spans the jump, nothing is lost.

mod common;

use common::*;
use ingest::flv::TAG_VIDEO;

#[tokio::test(flavor = "multi_thread")]
async fn backward_jump_becomes_a_discontinuity() {
    let gw = gateway().await;
    let src = testdata("short.flv");
    let tags = fixture_tags("short.flv");
    // Split at the keyframe nearest the middle: before it timestamps are 100 s ahead.
    let is_key =
        |t: &ingest::flv::FlvTag| t.tag_type == TAG_VIDEO && t.body.len() > 1 && t.body[0] >> 4 == 1 && t.body[1] == 1;
    let split = (tags.len() / 2..tags.len()).find(|&i| is_key(&tags[i])).expect("a keyframe in the second half");
    let mut p = own_publisher(&gw, "jump").await;
    for (i, t) in tags.iter().enumerate() {
        let ts = if i < split { t.timestamp + 100_000 } else { t.timestamp };
        p.send_tag(t.tag_type, ts, &t.body).await.unwrap();
    }
    p.finish().await.unwrap();

    let c = fetch_and_check(&gw, "jump").await;
    let disc = c.playlist.segments.iter().filter(|s| s.discontinuity).count();
    assert_eq!(disc, 1, "exactly one discontinuity");
    let longest = c.playlist.segments.iter().map(|s| s.duration).fold(0.0, f32::max);
    assert!(longest <= 2.1, "no segment spans the jump (longest {longest})");
    let src_packets = probe_packets(&src).await;
    for video in [true, false] {
        assert_eq!(
            c.packets.iter().filter(|p| p.video == video).count(),
            src_packets.iter().filter(|p| p.video == video).count(),
            "every {} frame present",
            if video { "video" } else { "audio" }
        );
    }
    let m = http_get(gw.cli_addr, "/metrics").await.text();
    assert!(m.contains("sluice_discontinuities_total 1"), "{m}");
    gw.shutdown().await;
}
