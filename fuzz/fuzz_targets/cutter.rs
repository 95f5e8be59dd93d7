//! The segment cutter driven by arbitrary publisher behaviour: frames with any timestamp
//! steps (jumps back and forward, inside and at GOP boundaries), keyframes anywhere,
//! configurations that change or arrive late, tracks that appear, new publishers and
//! ends. Invariants: no panic; sequence numbers are consecutive; every segment demuxes
//! cleanly and holds exactly the access units the cutter counted; every segment marked
//! independent that carries video starts its video with a keyframe.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use media::{AacConfig, AccessUnit, H264Config, MediaTime, Timescale, TrackInfo, TrackKind};
use segmenter::ts::demux::TsDemuxer;
use segmenter::{Segmenter, SegmenterConfig};

#[derive(Arbitrary, Debug)]
enum Step {
    /// A video frame `step_ms` after the previous one (negative: back).
    Video { step_ms: i16, cts_ms: u8, key: bool },
    /// An audio frame.
    Audio { step_ms: i16 },
    /// A jump of whole seconds on the next frames' clock.
    Jump { secs: i8 },
    /// New track configuration: video (one of two SPS) and/or audio (one of two rates).
    Tracks { video: Option<bool>, audio: Option<bool> },
    /// A new publisher takes over.
    Publisher,
    /// The publisher ends.
    End,
}

#[path = "shared/sps.rs"]
mod sps;
use sps::{SPS_A, SPS_B};

fn video(ms: i64, cts: i64, key: bool) -> AccessUnit {
    let v = vec![0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, if key { 0x65 } else { 0x41 }, 0x11];
    AccessUnit {
        track: TrackKind::Video,
        dts: MediaTime::new(ms, Timescale::MILLIS),
        pts: MediaTime::new(ms + cts, Timescale::MILLIS),
        keyframe: key,
        data: Bytes::from(v).into(),
    }
}

fn audio(ms: i64, cfg: &AacConfig) -> AccessUnit {
    let mut v = cfg.adts_header(2).unwrap().to_vec();
    v.extend_from_slice(&[1, 2]);
    let t = MediaTime::new(ms, Timescale::MILLIS);
    AccessUnit { track: TrackKind::Audio, pts: t, dts: t, keyframe: true, data: Bytes::from(v).into() }
}

fuzz_target!(|steps: Vec<Step>| {
    let h264 = |sps: &'static [u8]| {
        H264Config::from_parameter_sets(vec![Bytes::from_static(sps)], vec![Bytes::from_static(&[0x68, 0xeb])], 4).ok()
    };
    let aac44 = AacConfig::from_audio_specific_config(&[0x12, 0x10]).unwrap();
    let aac48 = AacConfig::from_audio_specific_config(&[0x11, 0x90]).unwrap();
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    let mut tracks = TrackInfo { video: h264(SPS_A), audio: Some(aac44.clone()) };
    seg.handle_tracks(tracks.clone());
    let (mut v_ms, mut a_ms) = (0i64, 0i64);
    let mut segments = vec![];
    for step in steps {
        match step {
            Step::Video { step_ms, cts_ms, key } => {
                v_ms += step_ms as i64;
                seg.handle_access_unit(&video(v_ms, cts_ms as i64, key));
            }
            Step::Audio { step_ms } => {
                a_ms += step_ms as i64;
                let cfg = tracks.audio.clone().unwrap_or(aac44.clone());
                seg.handle_access_unit(&audio(a_ms, &cfg));
            }
            Step::Jump { secs } => {
                v_ms += secs as i64 * 1000;
                a_ms += secs as i64 * 1000;
            }
            Step::Tracks { video, audio } => {
                if let Some(v) = video {
                    tracks.video = h264(if v { SPS_A } else { SPS_B });
                }
                if let Some(a) = audio {
                    tracks.audio = Some(if a { aac44.clone() } else { aac48.clone() });
                }
                seg.handle_tracks(tracks.clone());
            }
            Step::Publisher => seg.mark_discontinuity(),
            Step::End => seg.flush(),
        }
        while let Some(s) = seg.poll_segment() {
            segments.push(s);
        }
    }
    seg.flush();
    while let Some(s) = seg.poll_segment() {
        segments.push(s);
    }
    let mut written = 0u64;
    for (i, s) in segments.iter().enumerate() {
        assert_eq!(s.seq, i as u64, "consecutive sequence numbers");
        let mut d = TsDemuxer::new();
        d.push(&s.data);
        d.flush();
        let aus: Vec<AccessUnit> = std::iter::from_fn(|| d.poll()).map(|r| r.expect("muxer output demuxes")).collect();
        written += aus.len() as u64;
        if s.independent && s.tracks.video {
            if let Some(first) = aus.iter().find(|a| a.track == TrackKind::Video) {
                assert!(first.keyframe, "independent segment {} starts with a non-keyframe", s.seq);
            }
        }
    }
    assert_eq!(written, seg.stats().access_units, "every counted access unit is in a segment");
});
