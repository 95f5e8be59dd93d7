//! Mux → demux round trips: every access unit comes back with its track, timestamps,
//! keyframe flag and bytes; the cutter's segments cover every access unit once.

use bytes::Bytes;
use media::{AacConfig, AccessUnit, H264Config, MediaTime, Payload, Timescale, TrackInfo, TrackKind};
use proptest::prelude::*;
use segmenter::SegmentDigest;
use segmenter::ts::demux::TsDemuxer;
use segmenter::ts::mux::{TsMuxer, TsTracks};
use segmenter::ts::{PACKET_SIZE, SYNC};
use segmenter::{Segmenter, SegmenterConfig};

/// Video payloads: AUD, then bytes with no zeros (so no start code can appear by chance),
/// split into a few fragments. A keyframe carries an IDR NAL header.
fn video_payload(body: &[u8], key: bool, cuts: &[usize]) -> Payload {
    let mut v = vec![0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, if key { 0x65 } else { 0x41 }];
    v.extend(body.iter().map(|b| b | 1));
    fragment(v, cuts)
}

fn fragment(v: Vec<u8>, cuts: &[usize]) -> Payload {
    let b = Bytes::from(v);
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (b.len() + 1)).collect();
    cuts.sort_unstable();
    let mut p = Payload::new();
    let mut last = 0;
    for c in cuts {
        p.push(b.slice(last..c));
        last = c;
    }
    p.push(b.slice(last..));
    p
}

fn aac() -> AacConfig {
    AacConfig::from_audio_specific_config(&[0x12, 0x10]).unwrap()
}

/// An AAC access unit at `ticks` (90 kHz) with an ADTS header and `len` payload bytes.
fn audio_frame(ticks: i64, len: usize) -> AccessUnit {
    let t = MediaTime::new(ticks, Timescale::MPEG);
    let mut v = aac().adts_header(len).unwrap().to_vec();
    v.resize(7 + len, 7);
    AccessUnit { track: TrackKind::Audio, pts: t, dts: t, keyframe: true, data: Bytes::from(v).into() }
}

#[derive(Debug, Clone)]
struct Spec {
    video: bool,
    dts_step: i64,
    cts: i64,
    key: bool,
    len: usize,
    cuts: Vec<usize>,
}

fn arb_units() -> impl Strategy<Value = Vec<Spec>> {
    proptest::collection::vec(
        (
            any::<bool>(),
            1i64..6000,
            0i64..9000,
            any::<bool>(),
            0usize..3000,
            proptest::collection::vec(any::<usize>(), 0..3),
        )
            .prop_map(|(video, dts_step, cts, key, len, cuts)| Spec { video, dts_step, cts, key, len, cuts }),
        1..60,
    )
}

fn build(specs: &[Spec], start: i64) -> Vec<AccessUnit> {
    let mut dts = [start, start];
    let mut out = vec![];
    for (i, s) in specs.iter().enumerate() {
        let t = s.video as usize;
        dts[t] += s.dts_step;
        let body: Vec<u8> = (0..s.len).map(|j| (i * 31 + j) as u8).collect();
        let (track, data, pts, key) = if s.video {
            (TrackKind::Video, video_payload(&body, s.key, &s.cuts), dts[t] + s.cts, s.key)
        } else {
            let cfg = aac();
            let mut v = cfg.adts_header(body.len()).unwrap().to_vec();
            v.extend_from_slice(&body);
            (TrackKind::Audio, fragment(v, &s.cuts), dts[t], true)
        };
        out.push(AccessUnit {
            track,
            pts: MediaTime::new(pts, Timescale::MPEG),
            dts: MediaTime::new(dts[t], Timescale::MPEG),
            keyframe: key,
            data,
        });
    }
    out
}

fn demux_all(ts: &[u8], step: usize) -> Vec<AccessUnit> {
    let mut d = TsDemuxer::new();
    let mut out = vec![];
    for piece in ts.chunks(step.max(1)) {
        d.push(piece);
        while let Some(r) = d.poll() {
            out.push(r.expect("muxer output demuxes cleanly"));
        }
    }
    d.flush();
    while let Some(r) = d.poll() {
        out.push(r.expect("muxer output demuxes cleanly"));
    }
    out
}

fn same(a: &AccessUnit, b: &AccessUnit) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.track, b.track);
    prop_assert_eq!(a.pts.rescale(Timescale::MPEG).ticks(), b.pts.rescale(Timescale::MPEG).ticks());
    prop_assert_eq!(a.dts.rescale(Timescale::MPEG).ticks(), b.dts.rescale(Timescale::MPEG).ticks());
    prop_assert_eq!(a.keyframe, b.keyframe);
    prop_assert_eq!(a.data.to_contiguous(), b.data.to_contiguous());
    Ok(())
}

/// A streaming digest for tests: SipHash over the bytes, whatever the chunking.
#[derive(Default)]
struct Sip(std::collections::hash_map::DefaultHasher);

impl SegmentDigest for Sip {
    fn update(&mut self, bytes: &[u8]) {
        std::hash::Hasher::write(&mut self.0, bytes);
    }
    fn finish_reset(&mut self) -> [u8; 32] {
        let h = std::hash::Hasher::finish(&self.0);
        self.0 = Default::default();
        let mut out = [0; 32];
        out[..8].copy_from_slice(&h.to_le_bytes());
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn mux_demux_preserves_every_access_unit(specs in arb_units(), step in 1usize..1000, start in 0i64..(1 << 33)) {
        let aus = build(&specs, start);
        let mut mux = TsMuxer::new(TsTracks { video: true, audio: true });
        let mut ts = bytes::BytesMut::new();
        mux.write_tables(&mut ts);
        for au in &aus {
            prop_assert!(mux.write_access_unit(au, &mut ts));
        }
        prop_assert_eq!(ts.len() % PACKET_SIZE, 0);
        prop_assert!(ts.chunks(PACKET_SIZE).all(|p| p[0] == SYNC));
        let got = demux_all(&ts, step);
        // The demuxer emits a PES when the next one on its PID starts, so compare per track.
        for kind in [TrackKind::Video, TrackKind::Audio] {
            let want: Vec<_> = aus.iter().filter(|a| a.track == kind).collect();
            let have: Vec<_> = got.iter().filter(|a| a.track == kind).collect();
            prop_assert_eq!(want.len(), have.len());
            for (w, h) in want.iter().zip(have) {
                // The demuxer unwraps 33-bit timestamps relative to the first one it sees.
                let w = AccessUnit {
                    pts: MediaTime::new(w.pts.ticks() & ((1 << 33) - 1), Timescale::MPEG),
                    dts: MediaTime::new(w.dts.ticks() & ((1 << 33) - 1), Timescale::MPEG),
                    ..(*w).clone()
                };
                let unwrap = |t: MediaTime, r: MediaTime| {
                    let d = (t.ticks() - r.ticks()).rem_euclid(1 << 33);
                    MediaTime::new(r.ticks() + if d > (1 << 32) { d - (1 << 33) } else { d }, Timescale::MPEG)
                };
                let h = AccessUnit { pts: unwrap(h.pts, w.pts), dts: unwrap(h.dts, w.dts), ..h.clone() };
                same(&w, &h)?;
            }
        }
    }

    #[test]
    fn cutter_segments_hold_every_access_unit(specs in arb_units()) {
        let aus = build(&specs, 0);
        let mut seg = Segmenter::new(SegmenterConfig::default(), 0).with_digest(Box::new(Sip::default()));
        seg.handle_tracks(TrackInfo { video: None, audio: Some(aac()) });
        // Audio only, so nothing is dropped waiting for a keyframe.
        let audio: Vec<_> = aus.into_iter().filter(|a| a.track == TrackKind::Audio).collect();
        for au in &audio {
            seg.handle_access_unit(au);
        }
        seg.flush();
        let mut all = vec![];
        let mut seqs = vec![];
        while let Some(s) = seg.poll_segment() {
            seqs.push(s.seq);
            prop_assert!(s.duration.ticks() > 0);
            // The digest fed while writing covers exactly the segment's bytes.
            let mut whole = Sip::default();
            whole.update(&s.data);
            prop_assert_eq!(s.digest, Some(whole.finish_reset()));
            all.extend(demux_all(&s.data, 4096));
        }
        prop_assert_eq!(seqs.clone(), (0..seqs.len() as u64).collect::<Vec<_>>(), "consecutive sequence numbers");
        prop_assert_eq!(all.len(), audio.len());
        for (w, h) in audio.iter().zip(&all) {
            same(w, h)?;
        }
    }
}

#[test]
fn video_segments_start_with_keyframes_and_cut_on_target() {
    let sps = Bytes::from_static(&[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x6a, 0x02, 0x02, 0x02, 0x80, 0x00, 0x00,
        0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18, 0xcb,
    ]);
    let cfg = H264Config::from_parameter_sets(vec![sps], vec![Bytes::from_static(&[0x68, 0xeb])], 4).unwrap();
    let mut seg = Segmenter::new(SegmenterConfig::default(), 10);
    seg.handle_tracks(TrackInfo { video: Some(cfg), audio: None });
    // 30 fps, keyframe every 45 frames (1.5 s): cuts land at 3 s, 6 s, ...; a leading
    // non-keyframe is dropped.
    for i in 0..300i64 {
        let key = i % 45 == 1;
        let t = MediaTime::new(i * 3000, Timescale::MPEG);
        seg.handle_access_unit(&AccessUnit {
            track: TrackKind::Video,
            pts: t,
            dts: t,
            keyframe: key,
            data: video_payload(&[1, 2, 3], key, &[]),
        });
    }
    seg.flush();
    let segs: Vec<_> = std::iter::from_fn(|| seg.poll_segment()).collect();
    assert_eq!(segs.first().map(|s| s.seq), Some(10));
    let total: i64 = segs.iter().map(|s| s.duration.ticks()).sum();
    assert_eq!(total, 299 * 3000, "durations cover frame 1 to the end of frame 299");
    for s in &segs[..segs.len() - 1] {
        assert_eq!(s.duration.ticks(), 270_000, "two GOPs of 1.5 s");
    }
    for s in &segs {
        let aus = demux_all(&s.data, 188);
        assert!(aus[0].keyframe, "segment {} starts with a keyframe", s.seq);
    }
    assert_eq!(seg.stats().dropped_before_keyframe, 1);
}

#[test]
fn backward_jump_starts_a_discontinuous_segment() {
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(TrackInfo { video: None, audio: Some(aac()) });
    let mut push = |ticks: i64| seg.handle_access_unit(&audio_frame(ticks, 4));
    for i in 0..100 {
        push(1_000_000 + i * 1920);
    }
    for i in 0..100 {
        push(i * 1920);
    }
    seg.flush();
    let segs: Vec<_> = std::iter::from_fn(|| seg.poll_segment()).collect();
    let disc: Vec<_> = segs.iter().filter(|s| s.discontinuity).collect();
    assert_eq!(disc.len(), 1);
    assert_eq!(disc[0].start.ticks(), 0);
    assert!(segs.iter().all(|s| s.duration.ticks() <= 2 * 90_000 + 1920));
    assert_eq!(seg.stats().timestamp_jumps, 1);
}

#[test]
fn recycled_buffers_are_reused() {
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    seg.handle_tracks(TrackInfo { video: None, audio: Some(aac()) });
    let mut ptrs = vec![];
    // Small segments are first carved one after another out of the initial 1 MiB buffer;
    // run well past it (200 s of audio, ~100 segments).
    for i in 0..10_000i64 {
        seg.handle_access_unit(&audio_frame(i * 1920, 300));
        while let Some(s) = seg.poll_segment() {
            ptrs.push(s.data.as_ptr() as usize);
            seg.recycle(s.data);
        }
    }
    assert!(ptrs.len() >= 3);
    // With every segment handed back, a buffer comes round again instead of a fresh one.
    let distinct: std::collections::HashSet<_> = ptrs.iter().collect();
    assert!(distinct.len() < ptrs.len(), "no buffer was reused: {ptrs:x?}");
}
