//! Stream lifecycle: takeover by a new publisher, removal after the grace period, and
//! graceful shutdown.

mod common;

use std::time::Duration;

use common::*;
use ingest::publisher::RtmpPublisher;

async fn send_all(p: &mut RtmpPublisher, tags: &[ingest::flv::FlvTag], offset: u32) -> Result<(), String> {
    for t in tags {
        p.send_tag(t.tag_type, t.timestamp + offset, &t.body).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn second_publisher_takes_over_a_live_stream() {
    let gw = gateway().await;
    let tags = fixture_tags("short.flv");
    let mut first = own_publisher(&gw, "takeover").await;
    send_all(&mut first, &tags, 0).await.unwrap();
    // Take over a stream that is live with data: wait until the gateway has cut a segment
    // from the first publisher (which stays connected, no unpublish).
    wait_for_segment(&gw, "takeover").await;
    let mut second = own_publisher(&gw, "takeover").await;
    send_all(&mut second, &tags, 0).await.unwrap();
    // The first one has been told to go: its writes fail within a moment.
    let mut kicked = false;
    for _ in 0..100 {
        if first.send_tag(9, 5000, &tags.last().unwrap().body).await.is_err() {
            kicked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(kicked, "the replaced publisher was not disconnected");
    second.finish().await.unwrap();
    let c = fetch_and_check(&gw, "takeover").await;
    let disc: Vec<usize> =
        c.playlist.segments.iter().enumerate().filter(|(_, s)| s.discontinuity).map(|(i, _)| i).collect();
    assert_eq!(disc.len(), 1);
    // What the gateway had received from the first publisher is kept, with no holes (frames
    // still inside the replaced connection when it was told to go are that publisher's
    // loss); the second session is complete.
    let video_pts = |packets: &[Packet]| {
        let mut v: Vec<f64> = packets.iter().filter(|p| p.video).map(|p| p.pts).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let src = video_pts(&probe_packets(&testdata("short.flv")).await);
    let (mut before, mut after) = (vec![], vec![]);
    for (i, seg) in c.segments.iter().enumerate() {
        let p = probe_packets(seg).await;
        if i < disc[0] { before.extend(p) } else { after.extend(p) }
    }
    let (before, after) = (video_pts(&before), video_pts(&after));
    assert_eq!(after, src, "the second session is complete");
    assert!(before.len() >= 60 && before.len() <= src.len(), "at least the first 2 s segment: {}", before.len());
    assert_eq!(before, src[..before.len()].to_vec(), "the first session is an unbroken prefix");
    let s = http_get(gw.cli_addr, "/streams/takeover").await.text();
    assert!(s.contains("\"publishers\": 2"), "{s}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ended_stream_is_removed_after_grace() {
    let gw = gateway_with(|c| c.segmenting.stream_grace = 0.5).await;
    ffmpeg_publish(&testdata("short.flv"), &rtmp_url(&gw, "brief"), false).await;
    wait_ended(&gw, "brief").await;
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if http_get(gw.http_addr, "/stream/brief.m3u8").await.status == 404 {
            gone = true;
            break;
        }
    }
    assert!(gone, "stream still served after its grace period");
    assert_eq!(http_get(gw.cli_addr, "/streams").await.text().trim(), "[]");
    assert!(http_get(gw.cli_addr, "/metrics").await.text().contains("sluice_streams_active 0"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_ends_live_streams() {
    let gw = gateway().await;
    let tags = fixture_tags("short.flv");
    let mut p = own_publisher(&gw, "live").await;
    send_all(&mut p, &tags, 0).await.unwrap();
    // Let the gateway take in what was sent before shutting down under the publisher.
    wait_for_segment(&gw, "live").await;
    let registry = gw.registry().clone();
    gw.shutdown().await;
    let out = registry.output("live").expect("stream still registered");
    let o = out.read().unwrap();
    assert!(o.is_ended(), "playlist ended on shutdown");
    let pl = String::from_utf8(o.media("source").unwrap().to_vec()).unwrap();
    assert!(pl.contains("#EXT-X-ENDLIST"), "{pl}");
    assert_eq!(pl.matches("#EXTINF").count(), 2, "the last segment was flushed:\n{pl}");
}

/// Shutdown stops every task the gateway owns, discovery included (it used to run on
/// after the gateway was gone).
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_discovery_and_every_listener() {
    // An orchestrator address nothing answers at, and a webhook that fails: discovery and
    // the webhook reader are busy retrying when the gateway stops.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gw = gateway_with(|c| {
        c.orchestrators.orch_addr = format!("http://{dead}");
        c.orchestrators.orch_webhook_url = Some(format!("http://{dead}/orchestrators"));
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let report = gw.shutdown().await;
    assert_eq!(
        report.tasks, 6,
        "RTMP, HTTP and control listeners, the trickle sweep, discovery and the AI result expiry"
    );
    assert_eq!(report.aborted, 0, "every task stopped by itself");
    assert!(started.elapsed() < Duration::from_secs(3), "shutdown took {:?}", started.elapsed());
    let plain = gateway().await.shutdown().await;
    assert_eq!(plain, engine::gateway::ShutdownReport { tasks: 4, aborted: 0 }, "no discovery without orchestrators");
}
