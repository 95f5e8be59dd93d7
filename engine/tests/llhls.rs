//! Low-Latency HLS end to end: ffmpeg publishes RTMP (2 s GOPs, AAC) and
//! - headless Chromium plays `/stream/{id}/ll.m3u8` with hls.js in low-latency mode for
//!   60 s from the player page (`?ll`): playback advances, parts are loaded, no stall is
//!   longer than a part, and the latency hls.js measures is written out;
//! - every playlist parses with m3u8-rs and keeps RFC 8216bis's part rules; ffmpeg
//!   decodes each track's init segment plus its segments; a preload-hinted part and a
//!   blocked reload are answered once they exist, as plain HTTP/1.1 requests;
//! - bad requests: `_HLS_msn` far ahead → 400, `_HLS_part` alone → 400; 1,000 blocked
//!   reloads at once are all answered and the server stays responsive.
mod common;

use std::time::{Duration, Instant};

use common::*;

fn tag_f64(text: &str, tag: &str, attr: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(tag))?;
    let v = line.split(&format!("{attr}=")).nth(1)?;
    v.split(',').next()?.trim_matches('"').parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_hls_plays_in_hlsjs_low_latency_mode_and_keeps_the_part_rules() {
    let Some(gw) = player_gateway().await else { return };
    let mut ff = publish_test_pattern(&rtmp_url(&gw, "ll"), 100);
    poll_http(&gw, "/stream/ll/ll/video.m3u8", 20, |t| t.contains("#EXTINF")).await;

    // The playlists: parse with m3u8-rs, parts within PART-TARGET, the open segment's
    // parts and hint at the end, reports for the other track.
    let master = http_get(gw.http_addr, "/stream/ll/ll.m3u8").await;
    assert_eq!(master.status, 200);
    let mv = m3u8_rs::parse_master_playlist_res(&master.body).expect("multivariant parses");
    assert_eq!(mv.variants[0].uri, "ll/video.m3u8");
    assert_eq!(mv.variants[0].audio.as_deref(), Some("audio"));
    assert!(mv.variants[0].codecs.as_deref().unwrap().contains("mp4a.40.2"));
    for track in ["video", "audio"] {
        let text = http_get(gw.http_addr, &format!("/stream/ll/ll/{track}.m3u8")).await.text();
        let pl = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("media playlist parses");
        let target = tag_f64(&text, "#EXT-X-PART-INF", "PART-TARGET").unwrap();
        let parts: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("#EXT-X-PART:"))
            .map(|l| tag_f64(l, "#EXT-X-PART", "DURATION").unwrap())
            .collect();
        assert!(!parts.is_empty(), "{text}");
        assert!(parts.iter().all(|d| *d <= target + 1e-6), "parts within PART-TARGET: {text}");
        assert!(tag_f64(&text, "#EXT-X-SERVER-CONTROL", "PART-HOLD-BACK").unwrap() >= 3.0 * target - 1e-6);
        for s in &pl.segments {
            assert!(s.duration.round() as u64 <= pl.target_duration, "EXTINF within the target: {text}");
        }
        let tail: Vec<&str> = text.lines().rev().take(2).collect();
        assert!(tail.iter().any(|l| l.starts_with("#EXT-X-PRELOAD-HINT:TYPE=PART")), "{text}");
        assert!(tail.iter().any(|l| l.starts_with("#EXT-X-RENDITION-REPORT")), "{text}");
        assert!(text.contains(&format!("#EXT-X-MAP:URI=\"{track}-init0.mp4\"")));
    }

    // A blocked reload for the hinted part, and the hinted part itself, as plain
    // HTTP/1.1 requests: both answered once the part exists.
    let text = http_get(gw.http_addr, "/stream/ll/ll/video.m3u8").await.text();
    let (uri, msn, part) = preload_hint(&text);
    let started = Instant::now();
    let (reload_path, hinted_path) =
        (format!("/stream/ll/ll/video.m3u8?_HLS_msn={msn}&_HLS_part={part}"), format!("/stream/ll/ll/{uri}"));
    let (reload, hinted) = tokio::join!(http_get(gw.http_addr, &reload_path), http_get(gw.http_addr, &hinted_path));
    assert_eq!((reload.status, hinted.status), (200, 200));
    assert!(reload.text().contains(&uri), "the reload lists the part it waited for");
    assert!(started.elapsed() < Duration::from_secs(2), "answered when the part came: {:?}", started.elapsed());
    assert!(hinted.body.len() > 100);
    // A part goes out as its header and its sample bytes (no copy), with its length.
    let length = hinted.header("content-length").map(|v| v.parse::<usize>());
    assert_eq!(length, Some(Ok(hinted.body.len())), "parts carry Content-Length");

    // The segment still being written, streamed part by part: the same bytes as the
    // complete segment read afterwards.
    let (_, msn_now, _) = preload_hint(&http_get(gw.http_addr, "/stream/ll/ll/video.m3u8").await.text());
    let open = http_get(gw.http_addr, &format!("/stream/ll/ll/video-{msn_now}.m4s")).await;
    assert_eq!(open.status, 200);
    let done = http_get(gw.http_addr, &format!("/stream/ll/ll/video-{msn_now}.m4s")).await;
    assert_eq!(open.body, done.body, "streamed while written = complete segment");
    assert!(&open.body[4..8] == b"styp" && open.body.len() > 10_000);
    assert_eq!(done.header("content-length").map(|v| v.parse::<usize>()), Some(Ok(done.body.len())));

    // Bad requests.
    let far = http_get(gw.http_addr, &format!("/stream/ll/ll/video.m3u8?_HLS_msn={}", msn + 10)).await;
    assert_eq!(far.status, 400);
    assert_eq!(http_get(gw.http_addr, "/stream/ll/ll/video.m3u8?_HLS_part=1").await.status, 400);
    assert_eq!(http_get(gw.http_addr, "/stream/ll/ll/video-9999.0.m4s").await.status, 404);
    assert_eq!(http_get(gw.http_addr, "/stream/nope/ll.m3u8").await.status, 404);

    // 1,000 blocked reloads at once (the next segment): all answered, and a plain request
    // meanwhile is not held up.
    let next = msn + 1;
    let addr = gw.http_addr;
    let waiters: Vec<_> = (0..1000)
        .map(|_| {
            tokio::spawn(
                async move { http_get(addr, &format!("/stream/ll/ll/audio.m3u8?_HLS_msn={next}")).await.status },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quick = Instant::now();
    assert_eq!(http_get(gw.http_addr, "/stream/ll/ll.m3u8").await.status, 200);
    assert!(quick.elapsed() < Duration::from_secs(1), "the server stays responsive: {:?}", quick.elapsed());
    let mut ok = 0;
    for w in waiters {
        if w.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 1000, "every blocked reload answered with the new segment");

    // hls.js in low-latency mode, 60 s.
    let v = play_page_in_chromium(&gw, "ll", "?ll", &["0", "60"]).await;
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["parts"].as_u64().unwrap() > 10, "hls.js loaded parts: {v}");
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(640), Some(360)), "{v}");
    let stalls: Vec<f64> = v["stalls"].as_array().unwrap().iter().filter_map(|s| s.as_f64()).collect();
    assert!(stalls.iter().all(|ms| *ms <= 334.0), "no stall longer than a part: {stalls:?} in {v}");
    let mut latency: Vec<f64> = v["latency"].as_array().unwrap().iter().filter_map(|s| s.as_f64()).collect();
    latency.sort_by(f64::total_cmp);
    assert!(latency.len() > 30, "{v}");
    let p50 = latency[latency.len() / 2];
    eprintln!(
        "LL-HLS latency by hls.js over {} s: p50 {:.2} s, max {:.2} s; {} parts; stalls {:?}",
        latency.len(),
        p50,
        latency[latency.len() - 1],
        v["parts"],
        stalls
    );
    assert!(p50 < 2.0, "latency p50 {p50:.2} s: {v}");

    // Every track's init segment plus its segments decodes in ffmpeg.
    for track in ["video", "audio"] {
        let text = http_get(gw.http_addr, &format!("/stream/ll/ll/{track}.m3u8")).await.text();
        let pl = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
        let mut file = http_get(gw.http_addr, &format!("/stream/ll/ll/{track}-init0.mp4")).await.body;
        for s in &pl.segments {
            let seg = http_get(gw.http_addr, &format!("/stream/ll/ll/{}", s.uri)).await;
            assert_eq!(seg.status, 200, "{}", s.uri);
            file.extend_from_slice(&seg.body);
        }
        let errors = ffmpeg_decode_errors(&format!("ll-{track}"), &file);
        assert!(errors.is_empty(), "{track}: {errors}");
    }
    let _ = ff.kill().await;
}
