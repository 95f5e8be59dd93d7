//! The cutter's rules on the publisher behaviours real encoders show: P-frames before the
//! first keyframe, timestamp jumps inside a GOP, a second publisher with a new resolution,
//! a sequence header with no frames, GOPs longer than the maximum segment duration, and
//! tracks that appear late. Each case is driven in media time only (no clock).

mod support;

use bytes::Bytes;
use media::{AacConfig, AccessUnit, MediaTime, Segment, Timescale, TrackInfo, TrackKind, TrackSet};
use segmenter::cutter::AUDIO_LEAD_TOLERANCE;
use segmenter::ts::demux::TsDemuxer;
use segmenter::{Segmenter, SegmenterConfig};
use support::{SPS, SPS_360, h264};

fn aac() -> AacConfig {
    AacConfig::from_audio_specific_config(&[0x12, 0x10]).unwrap()
}

fn av_tracks() -> TrackInfo {
    TrackInfo { video: Some(h264(SPS)), audio: Some(aac()) }
}

/// A video frame at `ms` (DTS = PTS), 25 fps.
fn video(ms: i64, key: bool) -> AccessUnit {
    let t = MediaTime::new(ms * 90, Timescale::MPEG);
    let v = vec![0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, if key { 0x65 } else { 0x41 }, 0x11, 0x22];
    AccessUnit { track: TrackKind::Video, pts: t, dts: t, keyframe: key, data: Bytes::from(v).into() }
}

fn audio(ticks: i64) -> AccessUnit {
    let t = MediaTime::new(ticks, Timescale::MPEG);
    let mut v = aac().adts_header(4).unwrap().to_vec();
    v.extend_from_slice(&[1, 2, 3, 4]);
    AccessUnit { track: TrackKind::Audio, pts: t, dts: t, keyframe: true, data: Bytes::from(v).into() }
}

/// An interleaved A/V stream over `[from_ms, to_ms)`: 25 fps video with a keyframe where
/// `key(ms)` says (video only from `video_from_ms`), AAC frames of 1024 samples at 44.1 kHz.
/// `published(ms)` maps each frame's time to the timestamp the publisher sends.
fn stream(
    from_ms: i64,
    to_ms: i64,
    video_from_ms: i64,
    key: impl Fn(i64) -> bool,
    published: impl Fn(i64) -> i64,
) -> Vec<AccessUnit> {
    let mut out: Vec<(i64, AccessUnit)> = vec![];
    let mut ms = from_ms;
    while ms < to_ms {
        if ms >= video_from_ms {
            out.push((ms * 90, video(published(ms), key(ms))));
        }
        ms += 40;
    }
    // 1024 samples at 44.1 kHz = 2089.8 ticks.
    let mut i = 0i64;
    loop {
        let ticks = from_ms * 90 + i * 90_000 * 1024 / 44_100;
        if ticks >= to_ms * 90 {
            break;
        }
        let ms = ticks / 90;
        out.push((ticks, audio(published(ms) * 90 + ticks % 90)));
        i += 1;
    }
    out.sort_by_key(|(t, au)| (*t, au.track == TrackKind::Audio));
    out.into_iter().map(|(_, au)| au).collect()
}

fn every_2s(ms: i64) -> bool {
    ms % 2000 == 0
}

struct Cut {
    seg: Segment,
    aus: Vec<AccessUnit>,
}

fn run(seg: &mut Segmenter, aus: &[AccessUnit]) -> Vec<Cut> {
    for au in aus {
        seg.handle_access_unit(au);
    }
    seg.flush();
    drain(seg)
}

fn drain(seg: &mut Segmenter) -> Vec<Cut> {
    std::iter::from_fn(|| seg.poll_segment())
        .map(|s| {
            let mut d = TsDemuxer::new();
            d.push(&s.data);
            d.flush();
            let aus = std::iter::from_fn(|| d.poll()).map(|r| r.expect("demuxes")).collect();
            Cut { seg: s, aus }
        })
        .collect()
}

/// The segment's first video frame, which must be at its start time (give or take the
/// audio a timeline may start with). (A demuxer hands out audio first: an audio PES
/// completes at once, a video PES when the next begins.)
fn first_video(c: &Cut) -> &AccessUnit {
    let v = c.aus.iter().find(|a| a.track == TrackKind::Video).expect("segment has video");
    let lead = (v.pts - c.seg.start).ticks();
    assert!(
        (0..=AUDIO_LEAD_TOLERANCE.ticks()).contains(&lead),
        "segment {} starts with its first video frame",
        c.seg.seq
    );
    v
}

/// Every segment starts with a video keyframe (when it has video), and no audio in it
/// precedes that keyframe's time.
fn assert_keyframe_starts(cuts: &[Cut]) {
    for c in cuts {
        if !c.seg.tracks.video {
            continue;
        }
        let first = first_video(c);
        assert!(first.keyframe, "segment {} starts with {first:?}", c.seg.seq);
        assert!(c.seg.independent);
        let key_pts = first.pts.ticks() - AUDIO_LEAD_TOLERANCE.ticks();
        let early = c.aus.iter().filter(|a| a.track == TrackKind::Audio && a.pts.ticks() < key_pts).count();
        assert_eq!(early, 0, "segment {}: audio before its first keyframe", c.seg.seq);
    }
}

fn count(cuts: &[Cut], track: TrackKind) -> usize {
    cuts.iter().map(|c| c.aus.iter().filter(|a| a.track == track).count()).sum()
}

/// Input 2(b): AVC header and audio from 0 s, P-frames from 3 s, the first keyframe at 4 s.
/// Segment 0 starts at the keyframe with the audio aligned to it; the P-frames and the
/// earlier audio are dropped and counted.
#[test]
fn p_frames_before_the_first_keyframe_are_dropped_and_audio_aligned() {
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(av_tracks());
    let aus = stream(0, 12_000, 3000, |ms| ms >= 4000 && ms % 2000 == 0, |ms| ms);
    let cuts = run(&mut seg, &aus);
    assert_keyframe_starts(&cuts);
    assert_eq!(first_video(&cuts[0]).pts.ticks(), 4000 * 90);
    assert_eq!(cuts.len(), 4, "4 s to 12 s in 2 s segments");
    assert_eq!(seg.stats().dropped_before_keyframe, 25, "P-frames from 3 s to 4 s");
    let audio_before = aus
        .iter()
        .filter(|a| a.track == TrackKind::Audio && a.pts.ticks() < 4000 * 90 - AUDIO_LEAD_TOLERANCE.ticks())
        .count();
    assert_eq!(seg.stats().audio_dropped_before_keyframe, audio_before as u64);
    assert_eq!(
        count(&cuts, TrackKind::Audio),
        aus.iter().filter(|a| a.track == TrackKind::Audio).count() - audio_before
    );
    assert!(cuts.iter().all(|c| c.seg.tracks == TrackSet { video: true, audio: true }));
}

/// Input 2(a): timestamps jump (forward 30 s, back 4 s) between two keyframes. Nothing is
/// dropped: the rest of the GOP continues the old timeline and the discontinuity comes at
/// the next keyframe, where the publisher's timestamps resume.
#[test]
fn jumps_inside_a_gop_are_bridged_to_the_next_keyframe() {
    for (jump_at, shift) in [(5000i64, 30_000i64), (9000, -4000)] {
        let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
        seg.handle_tracks(av_tracks());
        let aus = stream(0, 14_000, 0, every_2s, |ms| if ms >= jump_at { ms + shift } else { ms });
        let cuts = run(&mut seg, &aus);
        assert_keyframe_starts(&cuts);
        let disc: Vec<&Cut> = cuts.iter().filter(|c| c.seg.discontinuity).collect();
        assert_eq!(disc.len(), 1, "one discontinuity for a jump of {shift} ms");
        let key_after = (jump_at / 2000 + 1) * 2000;
        assert_eq!(first_video(disc[0]).pts.ticks(), (key_after + shift) * 90, "at the publisher's next keyframe");
        assert_eq!(count(&cuts, TrackKind::Video), 350, "every video frame kept");
        assert_eq!(count(&cuts, TrackKind::Audio), aus.iter().filter(|a| a.track == TrackKind::Audio).count());
        // The bridged frames continue the old timeline without a gap.
        let before = &cuts[cuts.iter().position(|c| c.seg.discontinuity).unwrap() - 1];
        let v: Vec<i64> = before.aus.iter().filter(|a| a.track == TrackKind::Video).map(|a| a.dts.ticks()).collect();
        assert!(v.windows(2).all(|w| w[1] - w[0] == 3600), "{v:?}");
        assert!(seg.stats().timestamp_jumps >= 1 && seg.stats().retimed > 0);
    }
}

/// A jump that lands on a keyframe breaks the timeline right there.
#[test]
fn a_jump_at_a_keyframe_breaks_there() {
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(av_tracks());
    let aus = stream(0, 10_000, 0, every_2s, |ms| if ms >= 4000 { ms + 60_000 } else { ms });
    let cuts = run(&mut seg, &aus);
    assert_keyframe_starts(&cuts);
    let disc: Vec<&Cut> = cuts.iter().filter(|c| c.seg.discontinuity).collect();
    assert_eq!(disc.len(), 1);
    assert_eq!(first_video(disc[0]).pts.ticks(), 64_000 * 90);
    assert_eq!(seg.stats().retimed, 0);
}

/// Input 3: a second publisher with another resolution sends audio before its first
/// keyframe: one discontinuity, and the next segment starts at that keyframe (no stub).
#[test]
fn a_new_publisher_with_a_new_resolution_gives_one_discontinuity() {
    for second_sps in [SPS, SPS_360] {
        let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
        seg.handle_tracks(av_tracks());
        for au in stream(0, 6000, 0, every_2s, |ms| ms) {
            seg.handle_access_unit(&au);
        }
        seg.mark_discontinuity();
        seg.handle_tracks(TrackInfo { video: Some(h264(second_sps)), audio: Some(aac()) });
        // The new publisher starts at 0 again; its first audio comes 60 ms before video.
        let mut second = stream(0, 6000, 0, every_2s, |ms| ms);
        let first_audio = second.iter().position(|a| a.track == TrackKind::Audio).unwrap();
        let a = second.remove(first_audio);
        second.insert(0, a);
        let cuts = run(&mut seg, &second);
        let all: Vec<&Cut> = cuts.iter().collect();
        assert_eq!(all.iter().filter(|c| c.seg.discontinuity).count(), 1);
        assert!(all.iter().all(|c| c.seg.duration.ticks() >= 2 * 90_000 - 3600), "no stub segment");
        assert_keyframe_starts(&cuts);
    }
}

/// Input 1: an AAC configuration with no audio frames ever: the segments declare video
/// only. When audio starts later, it comes in at the next keyframe with a discontinuity.
#[test]
fn tracks_are_declared_once_they_have_media() {
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(av_tracks());
    let video_only: Vec<AccessUnit> =
        stream(0, 8000, 0, every_2s, |ms| ms).into_iter().filter(|a| a.track == TrackKind::Video).collect();
    for au in &video_only {
        seg.handle_access_unit(au);
    }
    let cuts = drain(&mut seg);
    assert!(!cuts.is_empty());
    assert!(cuts.iter().all(|c| c.seg.tracks == TrackSet { video: true, audio: false }));
    // Audio from 8 s on: dropped until the keyframe at 10 s, then declared.
    let cuts = run(&mut seg, &stream(8000, 14_000, 8000, every_2s, |ms| ms));
    let with_audio: Vec<&Cut> = cuts.iter().filter(|c| c.seg.tracks.audio).collect();
    assert_eq!(first_video(with_audio[0]).pts.ticks(), 10_000 * 90);
    assert!(with_audio[0].seg.discontinuity);
    assert_eq!(cuts.iter().filter(|c| c.seg.discontinuity).count(), 1);
    assert_keyframe_starts(&cuts);
}

/// Input 4: keyframes at 0, 2, 4, 14, 16, 18 s with a 2 s target. No segment rounds above
/// the target duration announced up front; the GOP of 10 s is cut at the maximum and the
/// segments cut inside it are marked not independent.
#[test]
fn long_gops_are_cut_at_the_maximum() {
    let cfg = SegmenterConfig::default();
    let announced = cfg.playlist_target_secs();
    assert_eq!(announced, 4);
    let mut seg = Segmenter::new(cfg, 0);
    seg.handle_tracks(av_tracks());
    let keys = [0, 2000, 4000, 14_000, 16_000, 18_000];
    let cuts = run(&mut seg, &stream(0, 20_000, 0, |ms| keys.contains(&ms), |ms| ms));
    for c in &cuts {
        assert!(c.seg.duration.as_secs_f64().round() as u64 <= announced, "{:?}", c.seg);
        let starts_key = first_video(c).keyframe;
        assert_eq!(c.seg.independent, starts_key, "{:?}", c.seg);
    }
    assert_eq!(cuts.iter().filter(|c| !c.seg.independent).count(), 2, "4-8-12 then 12-14 s");
    assert_eq!(seg.stats().forced_cuts, 2);
    assert_eq!(count(&cuts, TrackKind::Video), 500);
}

/// Video announced but never sent: after `video_wait` of audio the stream is audio-only,
/// and all its audio is kept from there on; if it ends sooner, its audio is still kept.
#[test]
fn announced_video_that_never_comes() {
    let audio_only = |to_ms| -> Vec<AccessUnit> {
        stream(0, to_ms, i64::MAX, every_2s, |ms| ms).into_iter().filter(|a| a.track == TrackKind::Audio).collect()
    };
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(av_tracks());
    let aus = audio_only(20_000);
    let cuts = run(&mut seg, &aus);
    assert!(cuts.iter().all(|c| c.seg.tracks == TrackSet { video: false, audio: true }));
    let kept = count(&cuts, TrackKind::Audio) as u64;
    assert_eq!(kept + seg.stats().audio_dropped_before_keyframe, aus.len() as u64);
    assert!(kept as f64 * 1024.0 / 44_100.0 >= 12.0, "only the first seconds are dropped");

    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(av_tracks());
    let aus = audio_only(3000);
    let cuts = run(&mut seg, &aus);
    assert_eq!(count(&cuts, TrackKind::Audio), aus.len());
}

/// A new AAC configuration mid-stream (48 kHz instead of 44.1 kHz) switches at the next
/// keyframe with a discontinuity, as a new SPS does.
#[test]
fn a_changed_audio_configuration_switches_at_the_next_keyframe() {
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(av_tracks());
    let aus = stream(0, 10_000, 0, every_2s, |ms| ms);
    for au in &aus[..aus.len() / 2] {
        seg.handle_access_unit(au);
    }
    let mut t = av_tracks();
    t.audio = Some(AacConfig::from_audio_specific_config(&[0x11, 0x90]).unwrap());
    seg.handle_tracks(t);
    let cuts = run(&mut seg, &aus[aus.len() / 2..]);
    let all: Vec<Cut> = cuts;
    assert_eq!(all.iter().filter(|c| c.seg.discontinuity).count(), 1);
    assert_keyframe_starts(&all);
}

/// A stream that ends one frame after a cut ends with that frame in its last segment, not
/// with a one-frame stub: 6.02 s of 48 kHz AAC gives three segments.
#[test]
fn no_stub_segment_at_the_end() {
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(TrackInfo { video: None, audio: Some(aac()) });
    // 1024 samples at 48 kHz: 1920 ticks; 283 frames end at 6.04 s.
    let aus: Vec<AccessUnit> = (0..283).map(|i| audio(i * 1920)).collect();
    let cuts = run(&mut seg, &aus);
    assert_eq!(cuts.len(), 3, "{:?}", cuts.iter().map(|c| c.seg.duration).collect::<Vec<_>>());
    assert_eq!(count(&cuts, TrackKind::Audio), 283);
}

/// Found by the `cutter` fuzz target: a frame whose track the timeline's first segment
/// did not declare cuts that segment (audio 11 s ahead of the only keyframe), and a stream
/// that was audio-only until it ended gets video afterwards. Sequence numbers stay
/// consecutive, every counted access unit is in a segment, and a new set of tracks is a
/// discontinuity.
#[test]
fn undeclared_tracks_never_leave_empty_or_skipped_segments() {
    let check = |seg: &mut Segmenter, cuts: &[Cut]| {
        for (i, c) in cuts.iter().enumerate() {
            assert_eq!(c.seg.seq, i as u64);
            assert!(!c.aus.is_empty());
        }
        assert_eq!(cuts.iter().map(|c| c.aus.len() as u64).sum::<u64>(), seg.stats().access_units);
    };
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(av_tracks());
    let cuts = run(&mut seg, &[video(0, true), audio(11_263 * 90), video(0, false)]);
    check(&mut seg, &cuts);

    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(av_tracks());
    seg.handle_access_unit(&audio(-19_413 * 90));
    seg.flush();
    let cuts = run(&mut seg, &[video(2861, true), video(-8328, true)]);
    check(&mut seg, &cuts);
    assert!(cuts[1].seg.discontinuity && cuts[1].seg.tracks.video, "video after audio-only: a new timeline");
}

/// One row of the table below.
struct Case {
    name: &'static str,
    tracks: TrackInfo,
    aus: Vec<AccessUnit>,
    /// Expected (duration in ms, independent, discontinuity) of each segment; durations
    /// within one frame.
    segments: Vec<(i64, bool, bool)>,
}

fn video_only(from_ms: i64, to_ms: i64, key: impl Fn(i64) -> bool, published: impl Fn(i64) -> i64) -> Vec<AccessUnit> {
    (0..).map(|i| from_ms + 40 * i).take_while(|&ms| ms < to_ms).map(|ms| video(published(ms), key(ms))).collect()
}

/// The cutter's rules as a table of synthetic streams (2 s target, 4 s maximum): video
/// only, audio only, a GOP above the maximum, timestamp jumps forward and back at a
/// keyframe and inside a GOP, and a gap between the maximum and the jump threshold.
/// Every row also checks that nothing is lost and no segment exceeds the maximum.
#[test]
fn cutting_rules_table() {
    let v = TrackInfo { video: Some(h264(SPS)), audio: None };
    let a = TrackInfo { video: None, audio: Some(aac()) };
    let cases = vec![
        Case {
            name: "video only, 2 s GOP",
            tracks: v.clone(),
            aus: video_only(0, 10_000, every_2s, |ms| ms),
            segments: vec![(2000, true, false); 5],
        },
        Case {
            name: "audio only",
            tracks: a.clone(),
            aus: stream(0, 10_000, i64::MAX, |_| false, |ms| ms),
            segments: vec![
                (2020, true, false),
                (2020, true, false),
                (2020, true, false),
                (2020, true, false),
                (1920, true, false),
            ],
        },
        Case {
            name: "6 s GOP: cut at the 4 s maximum, the rest not independent",
            tracks: v.clone(),
            aus: video_only(0, 12_000, |ms| ms % 6000 == 0, |ms| ms),
            segments: vec![(4000, true, false), (2000, false, false), (4000, true, false), (2000, false, false)],
        },
        Case {
            name: "jump 30 s forward at a keyframe",
            tracks: v.clone(),
            aus: video_only(0, 8000, every_2s, |ms| if ms >= 4000 { ms + 30_000 } else { ms }),
            segments: vec![(2000, true, false), (2000, true, false), (2000, true, true), (2000, true, false)],
        },
        Case {
            name: "jump 30 s back at a keyframe",
            tracks: v.clone(),
            aus: video_only(0, 8000, every_2s, |ms| if ms >= 4000 { ms + 30_000 } else { ms + 60_000 }),
            segments: vec![(2000, true, false), (2000, true, false), (2000, true, true), (2000, true, false)],
        },
        Case {
            name: "jump 30 s forward inside a GOP: bridged to the next keyframe",
            tracks: v.clone(),
            aus: video_only(0, 8000, every_2s, |ms| if ms >= 5000 { ms + 30_000 } else { ms }),
            segments: vec![(2000, true, false), (2000, true, false), (2000, true, false), (2000, true, true)],
        },
        Case {
            name: "6 s gap at a keyframe (above the maximum, below 10 s)",
            tracks: v.clone(),
            aus: video_only(0, 8000, every_2s, |ms| if ms >= 4000 { ms + 6000 } else { ms }),
            segments: vec![(2000, true, false), (2000, true, false), (2000, true, true), (2000, true, false)],
        },
    ];
    for case in cases {
        let mut seg = Segmenter::new(SegmenterConfig::with_target(MediaTime::new(2 * 90_000, Timescale::MPEG)), 0);
        seg.handle_tracks(case.tracks.clone());
        let cuts = run(&mut seg, &case.aus);
        let got: Vec<(i64, bool, bool)> = cuts
            .iter()
            .map(|c| ((c.seg.duration.as_secs_f64() * 1000.0).round() as i64, c.seg.independent, c.seg.discontinuity))
            .collect();
        let max = seg.config().max_duration.as_secs_f64() * 1000.0;
        for (ms, _, _) in &got {
            assert!(*ms as f64 <= max + 1.0, "{}: a {ms} ms segment is above the maximum", case.name);
        }
        assert_eq!(got.len(), case.segments.len(), "{}: {got:?}", case.name);
        for (g, want) in got.iter().zip(&case.segments) {
            assert!(
                (g.0 - want.0).abs() <= 40 && g.1 == want.1 && g.2 == want.2,
                "{}: {got:?}, want {:?}",
                case.name,
                case.segments
            );
        }
        let aus_in = case.aus.len();
        let aus_out = count(&cuts, TrackKind::Video) + count(&cuts, TrackKind::Audio);
        assert_eq!(aus_out, aus_in, "{}: access units lost", case.name);
    }
}

/// Announced video that never comes: once the wait runs out, the held audio is cut by the
/// usual rules (not written as one long segment), nothing is dropped, and a later timeline
/// (here after a timestamp jump) does not wait for the video again.
#[test]
fn audio_only_with_announced_video_is_cut_normally_on_every_timeline() {
    let audio = |from, to, shift: i64| -> Vec<AccessUnit> {
        stream(from, to, i64::MAX, every_2s, move |ms| ms + shift)
            .into_iter()
            .filter(|a| a.track == TrackKind::Audio)
            .collect()
    };
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(av_tracks());
    let mut aus = audio(0, 14_000, 0);
    aus.extend(audio(14_000, 24_000, 60_000)); // a 60 s jump at 14 s
    let cuts = run(&mut seg, &aus);
    let max = seg.config().max_duration.as_secs_f64();
    for c in &cuts {
        assert!(c.seg.duration.as_secs_f64() <= max + 0.001, "a {:.2} s segment", c.seg.duration.as_secs_f64());
        assert!(!c.seg.tracks.video);
    }
    assert_eq!(count(&cuts, TrackKind::Audio), aus.len(), "nothing dropped");
    assert_eq!(cuts.iter().filter(|c| c.seg.discontinuity).count(), 1, "one break, at the jump");
    // After the jump the segments follow at once: about five 2 s segments for its 10 s.
    let after = cuts.iter().skip_while(|c| !c.seg.discontinuity).count();
    assert!((4..=6).contains(&after), "{after} segments after the jump");
}

/// An encoder that sends its AAC header and some audio before the AVC header: the
/// timeline still opens at the first video keyframe with aligned audio, in one segment
/// sequence with no audio-only stub and no discontinuity.
#[test]
fn audio_before_the_video_configuration_does_not_make_a_stub() {
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(TrackInfo { video: None, audio: Some(aac()) });
    let aus = stream(0, 8320, 320, |ms| (ms - 320) % 2000 == 0, |ms| ms);
    let mut announced = false;
    for au in &aus {
        if au.track == TrackKind::Video && !announced {
            seg.handle_tracks(av_tracks());
            announced = true;
        }
        seg.handle_access_unit(au);
    }
    seg.flush();
    let cuts = drain(&mut seg);
    assert!(!cuts.is_empty(), "{:?}", seg.stats());
    assert_eq!(cuts[0].seg.seq, 0, "numbering starts at 0");
    assert!(cuts.iter().all(|c| c.seg.tracks.video && c.seg.tracks.audio), "no audio-only segment");
    assert!(cuts.iter().all(|c| !c.seg.discontinuity), "no discontinuity");
    assert_keyframe_starts(&cuts);
    assert_eq!(count(&cuts, TrackKind::Video), aus.iter().filter(|a| a.track == TrackKind::Video).count());
    // Audio from the keyframe's time on (less the lead tolerance) is kept; the rest counted.
    let kept = count(&cuts, TrackKind::Audio) as u64;
    let audio_in = aus.iter().filter(|a| a.track == TrackKind::Audio).count() as u64;
    assert_eq!(kept + seg.stats().audio_dropped_before_keyframe, audio_in);
    assert!(seg.stats().audio_dropped_before_keyframe <= 10, "only the audio before the first picture");
}

/// The video configuration arrives just after audio alone reached a cut (a WebRTC
/// publisher whose video starts late): the cut still waiting for the next unit goes back
/// with the held audio, the timeline opens at the first keyframe, and the unit count
/// matches what was written (it once went below zero).
#[test]
fn video_announced_when_audio_alone_has_reached_a_cut() {
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(TrackInfo { video: None, audio: Some(aac()) });
    let aus = stream(0, 8000, 2200, |ms| (ms - 2200) % 2000 == 0, |ms| ms);
    let mut announced = false;
    for au in &aus {
        seg.handle_access_unit(au);
        if !announced && au.pts.rescale(Timescale::MPEG).ticks() >= 2000 * 90 {
            seg.handle_tracks(av_tracks());
            announced = true;
        }
    }
    seg.flush();
    let cuts = drain(&mut seg);
    assert!(cuts.iter().all(|c| c.seg.tracks.video && c.seg.tracks.audio), "no audio-only segment");
    assert_keyframe_starts(&cuts);
    let written = cuts.iter().map(|c| c.aus.len() as u64).sum::<u64>();
    assert_eq!(seg.stats().access_units, written);
}

/// Streaming mode hands out the same bytes as whole-segment mode, in order, segment by
/// segment, access unit by access unit as they are written (before the segment closes),
/// each ended by its metadata; a timeline's first segment too (its tracks are declared
/// as announced). A second publisher's timeline streams the same way.
#[test]
fn streaming_mode_hands_out_the_same_bytes_as_they_are_written() {
    use segmenter::Piece;
    let first = stream(0, 6000, 0, every_2s, |ms| ms);
    let second = stream(0, 4000, 0, every_2s, |ms| ms);
    let feed = |seg: &mut Segmenter, out: &mut Vec<(usize, Piece)>| {
        seg.handle_tracks(av_tracks());
        for (i, au) in first.iter().enumerate() {
            seg.handle_access_unit(au);
            out.extend(std::iter::from_fn(|| seg.poll_piece()).map(|p| (i, p)));
        }
        seg.mark_discontinuity();
        for (i, au) in second.iter().enumerate() {
            seg.handle_access_unit(au);
            out.extend(std::iter::from_fn(|| seg.poll_piece()).map(|p| (first.len() + i, p)));
        }
        seg.flush();
        out.extend(std::iter::from_fn(|| seg.poll_piece()).map(|p| (usize::MAX, p)));
    };
    let mut whole = Segmenter::new(SegmenterConfig::default(), 0);
    whole.handle_tracks(av_tracks());
    let mut expected = run(&mut whole, &first);
    whole.mark_discontinuity();
    expected.extend(run(&mut whole, &second));
    let mut streaming = Segmenter::new(SegmenterConfig::default(), 0).streaming();
    let mut pieces = Vec::new();
    feed(&mut streaming, &mut pieces);
    assert!(streaming.poll_segment().is_none(), "streaming mode hands out pieces only");

    let mut ends = Vec::new();
    let mut bytes: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
    let mut pieces_of: std::collections::BTreeMap<u64, usize> = Default::default();
    let mut first_byte_at: std::collections::BTreeMap<u64, usize> = Default::default();
    for (at, p) in &pieces {
        match p {
            Piece::Bytes { seq, data } => {
                assert!(!ends.iter().any(|e: &Segment| e.seq == *seq), "no bytes of segment {seq} after its end");
                bytes.entry(*seq).or_default().extend_from_slice(data);
                *pieces_of.entry(*seq).or_default() += 1;
                first_byte_at.entry(*seq).or_insert(*at);
            }
            Piece::End(s) => {
                assert!(s.data.is_empty());
                ends.push(s.clone());
            }
        }
    }
    assert_eq!(ends.len(), expected.len());
    for (e, x) in ends.iter().zip(&expected) {
        assert_eq!(
            (e.seq, e.start, e.duration, e.discontinuity),
            (x.seg.seq, x.seg.start, x.seg.duration, x.seg.discontinuity)
        );
        assert_eq!(bytes[&e.seq], x.seg.data.to_vec(), "segment {} byte for byte", e.seq);
    }
    // Every segment streams: many pieces, the first as soon as it opens (the first
    // timeline's at the first access unit, the second's at the new publisher's first).
    for seq in 0u64..5 {
        assert!(pieces_of[&seq] > 50, "segment {seq} streamed in {} pieces", pieces_of[&seq]);
    }
    assert_eq!(first_byte_at[&0], 0);
    assert!(first_byte_at[&3] <= first.len() + 1, "the second timeline streams from its start");
    assert!(first_byte_at[&2] < first_byte_at[&3] - 40, "segment 2 began streaming as soon as it opened");
}

/// Streaming, with audio announced but never sent: the first segment still streams at
/// once, declaring the announced audio track (empty); whole-segment mode declares video
/// only.
#[test]
fn streaming_declares_the_announced_tracks_up_front() {
    use segmenter::Piece;
    let video_only: Vec<AccessUnit> =
        stream(0, 4000, 0, every_2s, |ms| ms).into_iter().filter(|a| a.track == TrackKind::Video).collect();
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0).streaming();
    seg.handle_tracks(av_tracks());
    seg.handle_access_unit(&video_only[0]);
    let Some(Piece::Bytes { seq: 0, data }) = seg.poll_piece() else { panic!("the first segment streams at once") };
    let mut d = TsDemuxer::new();
    d.push(&data);
    let t = d.tracks();
    assert!(t.video && t.audio, "announced audio declared");
    let mut whole = Segmenter::new(SegmenterConfig::default(), 0);
    whole.handle_tracks(av_tracks());
    let cuts = run(&mut whole, &video_only);
    assert_eq!(cuts[0].seg.tracks, TrackSet { video: true, audio: false });
}
