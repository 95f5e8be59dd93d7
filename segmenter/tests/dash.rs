//! DASH MPD rendering: every MPD is parsed back with `dash-mpd-core` and checked field by
//! field; the timeline compression is checked by expanding it again (property test).
use dash_mpd_core as mpd;
use proptest::prelude::*;
use segmenter::dash::{
    AdaptationSet, ContentType, Period, Presentation, Representation, TimelineEntry, render, timeline,
};
use std::time::Duration;

const AST: f64 = 1_780_000_000.0;

fn entries(first: u64, start: u64, durations: &[u64]) -> Vec<TimelineEntry> {
    let mut t = start;
    durations
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let e = TimelineEntry { number: first + i as u64, start: t, duration: d };
            t += d;
            e
        })
        .collect()
}

fn video(timeline: Vec<TimelineEntry>, init: u32) -> Representation {
    Representation {
        id: "video".into(),
        bandwidth: 2_000_000,
        codecs: "avc1.64001f".into(),
        resolution: Some((1280, 720)),
        audio: None,
        timescale: 90_000,
        initialization: format!("s/ll/video-init{init}.mp4"),
        media: "s/ll/video-$Number$.m4s".into(),
        timeline,
    }
}

fn audio(timeline: Vec<TimelineEntry>) -> Representation {
    Representation {
        id: "audio".into(),
        bandwidth: 128_000,
        codecs: "mp4a.40.2".into(),
        resolution: None,
        audio: Some((48_000, 2)),
        timescale: 48_000,
        initialization: "s/ll/audio-init0.mp4".into(),
        media: "s/ll/audio-$Number$.m4s".into(),
        timeline,
    }
}

fn presentation(live: bool, periods: Vec<Period>) -> Presentation {
    Presentation {
        live,
        availability_start: AST,
        publish_time: AST + 30.0,
        update_period: 0.5,
        time_shift_buffer: 14.0,
        min_buffer: 2.0,
        target_latency: 3.5,
        utc_timing: Some("//example.test/utc".into()),
        periods,
    }
}

fn one_period() -> Period {
    Period {
        id: "0".into(),
        start: AST + 1.5,
        media_start: 10.0,
        sets: vec![
            AdaptationSet {
                content: ContentType::Video,
                representations: vec![video(entries(3, 900_000, &[180_000; 4]), 0)],
            },
            AdaptationSet {
                content: ContentType::Audio,
                representations: vec![audio(entries(3, 479_000, &[96_000; 4]))],
            },
        ],
    }
}

#[test]
fn a_live_mpd_parses_back_with_its_timing_and_templates() {
    let text = render(&presentation(true, vec![one_period()])).unwrap();
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MPD"));
    let m = mpd::parse(&text).unwrap();
    assert!(mpd::check_conformity(&m).is_empty(), "{:?}", mpd::check_conformity(&m));
    assert_eq!(m.mpdtype.as_deref(), Some("dynamic"));
    assert_eq!(m.availabilityStartTime.unwrap().timestamp(), AST as i64);
    assert_eq!(m.publishTime.unwrap().timestamp(), AST as i64 + 30);
    assert_eq!(m.minimumUpdatePeriod, Some(Duration::from_millis(500)));
    assert_eq!(m.timeShiftBufferDepth, Some(Duration::from_secs(14)));
    assert_eq!(m.maxSegmentDuration, Some(Duration::from_secs(2)));
    assert_eq!(m.mediaPresentationDuration, None);
    assert_eq!(m.ServiceDescription[0].Latency[0].target, Some(3500.0));
    assert_eq!(m.UTCTiming[0].value.as_deref(), Some("//example.test/utc"));
    assert_eq!(m.UTCTiming[0].schemeIdUri, "urn:mpeg:dash:utc:http-iso:2014");

    let p = &m.periods[0];
    assert_eq!(p.start, Some(Duration::from_millis(1500)));
    let v = &p.adaptations[0];
    assert_eq!((v.contentType.as_deref(), v.mimeType.as_deref()), (Some("video"), Some("video/mp4")));
    assert_eq!((v.segmentAlignment, v.startWithSAP), (Some(true), Some(1)));
    let vr = &v.representations[0];
    assert_eq!((vr.width, vr.height, vr.bandwidth), (Some(1280), Some(720), Some(2_000_000)));
    let t = vr.SegmentTemplate.as_ref().unwrap();
    assert_eq!(t.media.as_deref(), Some("s/ll/video-$Number$.m4s"));
    assert_eq!(t.initialization.as_deref(), Some("s/ll/video-init0.mp4"));
    assert_eq!((t.startNumber, t.timescale), (Some(3), Some(90_000)));
    // Period time 0 is media second 10 in every representation's own ticks.
    assert_eq!(t.presentationTimeOffset, Some(900_000));
    let s = &t.SegmentTimeline.as_ref().unwrap().segments;
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].t, s[0].d, s[0].r), (Some(900_000), 180_000, Some(3)));

    let ar = &p.adaptations[1].representations[0];
    assert_eq!(ar.audioSamplingRate.as_deref(), Some("48000"));
    assert_eq!(ar.AudioChannelConfiguration[0].value.as_deref(), Some("2"));
    assert_eq!(ar.SegmentTemplate.as_ref().unwrap().presentationTimeOffset, Some(480_000));
}

#[test]
fn a_static_mpd_has_a_duration_and_starts_at_its_first_period() {
    let text = render(&presentation(false, vec![one_period()])).unwrap();
    let m = mpd::parse(&text).unwrap();
    assert_eq!(m.mpdtype.as_deref(), Some("static"));
    assert_eq!((m.availabilityStartTime, m.minimumUpdatePeriod, m.timeShiftBufferDepth), (None, None, None));
    assert!(m.UTCTiming.is_empty() && m.ServiceDescription.is_empty());
    assert_eq!(m.periods[0].start, Some(Duration::ZERO));
    // Four 2 s video segments from media second 10.
    assert_eq!(m.mediaPresentationDuration, Some(Duration::from_secs(8)));
}

#[test]
fn a_new_publisher_is_a_new_period_with_its_own_init_segment() {
    let mut second = one_period();
    second.id = "1".into();
    second.start = AST + 40.0;
    second.media_start = 0.0;
    second.sets[0].representations = vec![video(entries(20, 0, &[180_000, 175_500]), 1)];
    let text = render(&presentation(true, vec![one_period(), second])).unwrap();
    let m = mpd::parse(&text).unwrap();
    let ids: Vec<_> = m.periods.iter().map(|p| p.id.clone().unwrap()).collect();
    assert_eq!(ids, ["0", "1"]);
    assert_eq!(m.periods[1].start, Some(Duration::from_secs(40)));
    let t = m.periods[1].adaptations[0].representations[0].SegmentTemplate.as_ref().unwrap();
    assert_eq!(t.initialization.as_deref(), Some("s/ll/video-init1.mp4"));
    assert_eq!((t.startNumber, t.presentationTimeOffset), (Some(20), Some(0)));
    let s = &t.SegmentTimeline.as_ref().unwrap().segments;
    assert_eq!(
        s.iter().map(|s| (s.t, s.d, s.r)).collect::<Vec<_>>(),
        [(Some(0), 180_000, None), (None, 175_500, None)]
    );
}

#[test]
fn a_gap_in_the_timeline_restates_the_start() {
    let mut e = entries(0, 1000, &[10, 10]);
    e.push(TimelineEntry { number: 2, start: 1040, duration: 10 });
    let s = timeline(&e);
    assert_eq!(
        s.iter().map(|s| (s.t, s.d, s.r)).collect::<Vec<_>>(),
        [(Some(1000), 10, Some(1)), (Some(1040), 10, None)]
    );
    assert!(timeline(&[]).is_empty());
}

/// Expands `S` elements back into (start, duration) pairs.
fn expand(s: &[mpd::S]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut next = 0;
    for e in s {
        let mut t = e.t.unwrap_or(next);
        for _ in 0..=e.r.unwrap_or(0) {
            out.push((t, e.d));
            t += e.d;
        }
        next = t;
    }
    out
}

proptest! {
    #[test]
    fn the_timeline_expands_back_to_its_segments(
        start in 0u64..1 << 40,
        segs in prop::collection::vec((1u64..5, 0u64..3), 0..40),
    ) {
        // Durations from a small set (so runs repeat) and the odd gap.
        let mut t = start;
        let e: Vec<TimelineEntry> = segs
            .iter()
            .enumerate()
            .map(|(i, &(d, gap))| {
                t += if gap == 0 { 7 } else { 0 };
                let entry = TimelineEntry { number: i as u64, start: t, duration: d * 1000 };
                t += d * 1000;
                entry
            })
            .collect();
        let s = timeline(&e);
        prop_assert_eq!(expand(&s), e.iter().map(|e| (e.start, e.duration)).collect::<Vec<_>>());
        // No two neighbours that could have been one run.
        for w in s.windows(2) {
            prop_assert!(w[1].t.is_some() || w[0].d != w[1].d);
        }
    }
}
