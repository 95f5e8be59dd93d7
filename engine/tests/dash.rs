//! DASH end to end: ffmpeg publishes RTMP (2 s GOPs, AAC) and
//! - the MPD at `/stream/{id}.mpd` parses with `dash-mpd-core`, passes its conformity
//!   checks, and is dynamic with a `SegmentTimeline` whose segments are back to back and
//!   about two seconds long, a `UTCTiming` clock that answers, and a latency target;
//! - every segment the timeline lists fetches through the `SegmentTemplate`, and each
//!   track's init segment plus its segments decodes in ffmpeg;
//! - headless Chromium plays it with dash.js from the player page (`?dash`) for 60 s:
//!   playback advances, no stall longer than half a second, and the live latency dash.js
//!   measures is written out (target below 4 s at 2 s segments);
//! - over cleartext HTTP/2 (curl): the MPD, a blocked LL-HLS reload, and a segment
//!   streamed while written;
//! - once the publisher leaves, the MPD turns static with a duration.
mod common;

use common::*;
use dash_mpd_core as mpd;

/// The template's `$Number$` URLs of a representation's listed segments, with each
/// segment's length in seconds.
fn segments(rep: &mpd::Representation) -> (String, Vec<(String, f64)>) {
    let t = rep.SegmentTemplate.as_ref().expect("SegmentTemplate");
    let scale = t.timescale.unwrap() as f64;
    let mut n = t.startNumber.unwrap();
    let mut end: Option<u64> = None;
    let mut out = Vec::new();
    for s in &t.SegmentTimeline.as_ref().unwrap().segments {
        let start = s.t.or(end).expect("the first S has a start");
        assert!(end.is_none_or(|e| e == start), "segments back to back: {s:?}");
        for i in 0..=s.r.unwrap_or(0) as u64 {
            out.push((t.media.as_ref().unwrap().replace("$Number$", &n.to_string()), s.d as f64 / scale));
            n += 1;
            end = Some(start + (i + 1) * s.d);
        }
    }
    (t.initialization.clone().unwrap(), out)
}

/// A representation's init segment and listed segments, fetched through the template
/// and concatenated (each must answer 200).
async fn fetch_track(gw: &engine::Gateway, init: &str, list: &[(String, f64)]) -> Vec<u8> {
    let mut file = http_get(gw.http_addr, &format!("/stream/{init}")).await.body;
    for (uri, _) in list {
        let seg = http_get(gw.http_addr, &format!("/stream/{uri}")).await;
        assert_eq!(seg.status, 200, "{uri}");
        file.extend_from_slice(&seg.body);
    }
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dash_plays_in_dashjs_and_its_mpd_and_fragments_check_out() {
    let Some(gw) = player_gateway().await else { return };
    let mut ff = publish_test_pattern(&rtmp_url(&gw, "d"), 85);
    let text = poll_http(&gw, "/stream/d.mpd", 20, |t| t.matches("<S ").count() + t.matches(" r=").count() >= 3).await;

    // The MPD: parses, conforms, dynamic, with the timing a live player needs.
    let m = mpd::parse(&text).unwrap_or_else(|e| panic!("MPD parses: {e}\n{text}"));
    let problems = mpd::check_conformity(&m);
    assert!(problems.is_empty(), "conformity: {problems:?}\n{text}");
    assert_eq!(m.mpdtype.as_deref(), Some("dynamic"));
    let ast = m.availabilityStartTime.expect("availabilityStartTime");
    assert!(ast <= m.publishTime.unwrap());
    assert!(m.minimumUpdatePeriod.unwrap() <= std::time::Duration::from_secs(2));
    assert!(m.timeShiftBufferDepth.unwrap() >= std::time::Duration::from_secs(8));
    let target = m.ServiceDescription[0].Latency[0].target.unwrap();
    assert!((2000.0..4000.0).contains(&target), "latency target {target} ms");
    let utc = &m.UTCTiming[0];
    assert_eq!(utc.schemeIdUri, "urn:mpeg:dash:utc:http-iso:2014");
    let clock =
        http_get(gw.http_addr, utc.value.as_deref().unwrap().trim_start_matches(&format!("//{}", gw.http_addr)))
            .await
            .text();
    let now = chrono_like_parse(&clock);
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - wall).abs() < 2.0, "the UTCTiming clock tells the time: {clock}");

    let period = &m.periods[0];
    let kinds: Vec<_> = period.adaptations.iter().map(|a| a.contentType.clone().unwrap()).collect();
    assert_eq!(kinds, ["video", "audio"]);
    let video = &period.adaptations[0].representations[0];
    assert_eq!((video.width, video.height), (Some(640), Some(360)));
    assert!(video.codecs.as_deref().unwrap().starts_with("avc1."));
    let audio = &period.adaptations[1].representations[0];
    assert_eq!(audio.codecs.as_deref(), Some("mp4a.40.2"));
    assert_eq!(audio.audioSamplingRate.as_deref(), Some("48000"));

    // Every listed segment fetches through the template; init plus segments decodes.
    for rep in [video, audio] {
        let (init, list) = segments(rep);
        assert!(list.len() >= 2, "{text}");
        for (_, secs) in &list {
            assert!((1.5..=2.5).contains(secs), "segments about 2 s: {list:?}");
        }
        let file = fetch_track(&gw, &init, &list).await;
        let errors = ffmpeg_decode_errors(&format!("dash-{}", rep.id.as_deref().unwrap()), &file);
        assert!(errors.is_empty(), "{:?}: {errors}", rep.id);
    }

    // The same over cleartext HTTP/2 (curl with prior knowledge): the MPD, a blocked
    // LL-HLS reload, and a segment streamed while written, byte for byte the complete one.
    if have("curl", "--version") {
        let h2 = |path: String, out: std::path::PathBuf| {
            let url = format!("http://{}{path}", gw.http_addr);
            async move {
                let o = tokio::process::Command::new("curl")
                    .args(["-s", "--http2-prior-knowledge", "-w", "%{http_version} %{http_code}", "-o"])
                    .arg(&out)
                    .arg(&url)
                    .output()
                    .await
                    .unwrap();
                (String::from_utf8_lossy(&o.stdout).into_owned(), std::fs::read(&out).unwrap_or_default())
            }
        };
        let tmp = |n: &str| std::env::temp_dir().join(format!("sluice-h2-{n}-{}", std::process::id()));
        let (status, body) = h2("/stream/d.mpd".into(), tmp("mpd")).await;
        assert_eq!(status, "2 200");
        assert!(mpd::parse(&String::from_utf8_lossy(&body)).is_ok());
        let pl = http_get(gw.http_addr, "/stream/d/ll/video.m3u8").await.text();
        let (uri, msn, part) = preload_hint(&pl);
        let reload = format!("/stream/d/ll/video.m3u8?_HLS_msn={msn}&_HLS_part={part}");
        let next = format!("/stream/d/ll/video-{msn}.m4s");
        let ((s1, reloaded), (s2, streamed)) = tokio::join!(h2(reload, tmp("pl")), h2(next.clone(), tmp("seg")));
        assert_eq!((s1.as_str(), s2.as_str()), ("2 200", "2 200"));
        assert!(String::from_utf8_lossy(&reloaded).contains(&uri), "the reload waited for {uri}");
        assert_eq!(streamed, http_get(gw.http_addr, &next).await.body, "streamed over HTTP/2 = complete segment");
        for n in ["mpd", "pl", "seg"] {
            let _ = std::fs::remove_file(tmp(n));
        }
    }

    // dash.js, 60 s.
    let v = play_page_in_chromium(&gw, "d", "?dash", &["0", "60"]).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(640), Some(360)), "{v}");
    let stalls: Vec<f64> = v["stalls"].as_array().unwrap().iter().filter_map(|s| s.as_f64()).collect();
    let mut latency: Vec<f64> = v["latency"].as_array().unwrap().iter().filter_map(|s| s.as_f64()).collect();
    latency.sort_by(f64::total_cmp);
    assert!(latency.len() > 30, "{v}");
    let p50 = latency[latency.len() / 2];
    eprintln!(
        "DASH latency by dash.js over {} s: p50 {:.2} s, max {:.2} s; {} segments; stalls {:?}",
        latency.len(),
        p50,
        latency[latency.len() - 1],
        v["fragments"],
        stalls
    );
    assert!(stalls.iter().all(|ms| *ms <= 500.0), "no stall longer than half a second: {stalls:?} in {v}");
    assert!(p50 < 4.0, "latency p50 {p50:.2} s: {v}");

    // The end: a static MPD with a duration.
    let _ = ff.kill().await;
    let text = poll_http(&gw, "/stream/d.mpd", 20, |t| t.contains("type=\"static\"")).await;
    let m = mpd::parse(&text).unwrap();
    assert!(m.mediaPresentationDuration.unwrap() >= std::time::Duration::from_secs(4), "{text}");
    assert!(m.availabilityStartTime.is_none() && m.minimumUpdatePeriod.is_none(), "{text}");
    assert_eq!(http_get(gw.http_addr, "/stream/nope.mpd").await.status, 404);
}

/// Transcoded renditions join the DASH video adaptation set and the LL-HLS multivariant
/// playlist as their first segment arrives from the orchestrator (a `sluice
/// orchestrator` process transcoding with GStreamer); their segments follow the source's
/// timeline and decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcoded_renditions_join_the_mpd_and_the_ll_hls_playlists() {
    if !have("ffmpeg", "-version") {
        eprintln!("skipped: ffmpeg missing (scripts/setup.sh installs it)");
        return;
    }
    let orch = OrchestratorProcess::start(&[]).await;
    let uri = orch.uri.clone();
    let gw = gateway_with(|c| c.orchestrators.orch_addr = uri).await;
    let mut publisher = ffmpeg_publish_looped(&testdata("clip.flv"), &rtmp_url(&gw, "abr"), 1);
    let ready = |t: &str| {
        mpd::parse(t).is_ok_and(|m| {
            m.periods.first().and_then(|p| p.adaptations.first()).is_some_and(|a| {
                a.representations.len() == 3 && a.representations.iter().all(|r| segments(r).1.len() >= 3)
            })
        })
    };
    let text = poll_http(&gw, "/stream/abr.mpd", 40, ready).await;
    let m = mpd::parse(&text).unwrap();
    let reps = &m.periods[0].adaptations[0].representations;
    let ids: Vec<_> = reps.iter().map(|r| r.id.clone().unwrap()).collect();
    assert_eq!(ids, ["video", "P240p30fps16x9", "P360p30fps16x9"], "{text}");
    assert_eq!(
        (reps[1].width, reps[1].height, reps[2].width, reps[2].height),
        (Some(426), Some(240), Some(640), Some(360))
    );
    // The source's segment starts (seconds on the period's timeline).
    let starts = |r: &mpd::Representation| -> Vec<f64> {
        let t = r.SegmentTemplate.as_ref().unwrap();
        let (scale, pto) = (t.timescale.unwrap() as f64, t.presentationTimeOffset.unwrap() as f64);
        let mut at = 0;
        let mut out = Vec::new();
        for s in &t.SegmentTimeline.as_ref().unwrap().segments {
            at = s.t.unwrap_or(at);
            for _ in 0..=s.r.unwrap_or(0) {
                out.push((at as f64 - pto) / scale);
                at += s.d;
            }
        }
        out
    };
    let source = starts(&reps[0]);
    for r in &reps[1..] {
        for t in starts(r) {
            assert!(
                source.iter().any(|s| (s - t).abs() < 0.05),
                "{:?} segment at {t:.3} s lines up with the source's {source:?}",
                r.id
            );
        }
        let (init, list) = segments(r);
        let file = fetch_track(&gw, &init, &list).await;
        let path =
            std::env::temp_dir().join(format!("sluice-dash-{}-{}.mp4", r.id.as_deref().unwrap(), std::process::id()));
        std::fs::write(&path, &file).unwrap();
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=width,height,nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let shown = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let (w, h) = (r.width.unwrap(), r.height.unwrap());
        assert!(out.status.success() && out.stderr.is_empty(), "{:?}: {}", r.id, String::from_utf8_lossy(&out.stderr));
        let frames: u64 = shown.rsplit(',').next().unwrap().parse().unwrap();
        assert!(shown.starts_with(&format!("{w},{h},")) && frames >= 50 * list.len() as u64, "{:?}: {shown}", r.id);
    }
    let master = http_get(gw.http_addr, "/stream/abr/ll.m3u8").await.text();
    let mv = m3u8_rs::parse_master_playlist_res(master.as_bytes()).unwrap();
    let uris: Vec<_> = mv.variants.iter().map(|v| v.uri.clone()).collect();
    assert_eq!(uris, ["ll/video.m3u8", "ll/P240p30fps16x9.m3u8", "ll/P360p30fps16x9.m3u8"], "{master}");
    let pl = http_get(gw.http_addr, "/stream/abr/ll/P240p30fps16x9.m3u8").await.text();
    assert!(pl.contains("#EXT-X-MAP:URI=\"P240p30fps16x9-init0.mp4\"") && pl.contains("#EXTINF"), "{pl}");
    let _ = publisher.kill().await;
}

/// `2026-12-06T01:02:03.456Z` as Unix seconds.
fn chrono_like_parse(s: &str) -> f64 {
    let dt: mpd::XsDatetime = s.trim().parse().unwrap_or_else(|e| panic!("an RFC 3339 time: {s:?}: {e}"));
    dt.timestamp_millis() as f64 / 1000.0
}
