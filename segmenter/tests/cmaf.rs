//! The CMAF cutter, read back with `mp4-atom`: init segments carry the configuration,
//! segments start at keyframes after the target, parts close after the part target,
//! decode times run on without gaps across chunks, `trun` sizes match the `mdat`, and an
//! audio track starts its segments where the video's start.

mod support;

use bytes::Bytes;
use media::{AacConfig, AccessUnit, MediaTime, Timescale, TrackKind};
use mp4_atom::{Any, Codec, Decode, Ftyp, Mdat, Moof, Moov, Styp, Traf, TrunEntry};
use segmenter::cmaf::{CmafConfig, CmafCutter, CmafEvent, TrackConfig, init_segment};
use support::{SPS, SPS_360, h264};

fn aac() -> AacConfig {
    AacConfig::from_audio_specific_config(&[0x11, 0x90]).unwrap() // AAC LC, 48 kHz, stereo
}

/// Frame `i` at 30 fps, a keyframe every `gop` frames: AUD, (SPS, PPS on keyframes), a
/// slice of `i`-dependent length.
fn video(i: i64, gop: i64) -> AccessUnit {
    let t = MediaTime::new(i * 3000, Timescale::MPEG);
    let key = i % gop == 0;
    let mut v = vec![0, 0, 0, 1, 9, 0xf0];
    if key {
        v.extend_from_slice(&[0, 0, 0, 1]);
        v.extend_from_slice(SPS);
        v.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xeb]);
    }
    v.extend_from_slice(&[0, 0, 1, if key { 0x65 } else { 0x41 }]);
    v.extend((0..(10 + i % 7)).map(|b| b as u8 | 0x80));
    AccessUnit { track: TrackKind::Video, pts: t, dts: t, keyframe: key, data: Bytes::from(v).into() }
}

/// AAC frame `i` (1024 samples at 48 kHz) with its ADTS header.
fn audio(i: i64) -> AccessUnit {
    let t = MediaTime::new(i * 1024, Timescale::new(48_000)).rescale(Timescale::MPEG);
    let mut v = aac().adts_header(5).unwrap().to_vec();
    v.extend_from_slice(&[1, 2, 3, 4, i as u8]);
    AccessUnit { track: TrackKind::Audio, pts: t, dts: t, keyframe: true, data: Bytes::from(v).into() }
}

fn drain(c: &mut CmafCutter) -> Vec<CmafEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// A part's boxes: an optional `styp`, then `moof` and `mdat`.
fn parse_part(data: &[u8]) -> (bool, Moof, Mdat) {
    let mut buf = std::io::Cursor::new(data);
    let mut styp = false;
    let mut moof = None;
    let mut mdat = None;
    while (buf.position() as usize) < data.len() {
        match Any::decode(&mut buf).expect("a box") {
            Any::Styp(_) => styp = true,
            Any::Moof(m) => moof = Some(m),
            Any::Mdat(m) => mdat = Some(m),
            other => panic!("unexpected box {other:?}"),
        }
    }
    (styp, moof.expect("moof"), mdat.expect("mdat"))
}

/// The samples of a `traf`'s first `trun`, with what they leave to the `tfhd`'s defaults
/// filled in from there.
fn trun_samples(traf: &Traf) -> Vec<TrunEntry> {
    let t = &traf.tfhd;
    traf.trun[0]
        .samples
        .iter()
        .map(|e| TrunEntry {
            duration: e.duration.or(t.default_sample_duration),
            size: e.size.or(t.default_sample_size),
            flags: e.flags.or(t.default_sample_flags),
            cts: e.cts.or(Some(0)),
        })
        .collect()
}

#[test]
fn shared_sample_fields_are_written_once() {
    let mut c = CmafCutter::new(TrackKind::Audio, CmafConfig::default(), 0);
    c.handle_config(TrackConfig::Audio(aac()));
    for i in 0..100 {
        c.handle_access_unit(&audio(i));
    }
    c.flush();
    let part = drain(&mut c)
        .into_iter()
        .find_map(|e| if let CmafEvent::Part { data, .. } = e { Some(data) } else { None })
        .unwrap();
    let (_, moof, _) = parse_part(&part.to_contiguous());
    let traf = &moof.traf[0];
    // Audio frames: one duration and one set of flags for all, in the tfhd.
    assert_eq!((traf.tfhd.default_sample_duration, traf.tfhd.default_sample_flags), (Some(1024), Some(0x0200_0000)));
    let raw: Vec<TrunEntry> = traf.trun[0].samples.iter().collect();
    assert!(raw.iter().all(|e| e.duration.is_none() && e.flags.is_none() && e.cts.is_none() && e.size.is_some()));
}

#[test]
fn init_segments_describe_the_track() {
    let v = TrackConfig::Video(h264(SPS));
    let init = init_segment(&v).unwrap();
    let mut buf = std::io::Cursor::new(init.as_ref());
    let ftyp = Ftyp::decode(&mut buf).unwrap();
    assert_eq!(ftyp.major_brand, b"cmf2".into());
    let moov = Moov::decode(&mut buf).unwrap();
    assert_eq!(moov.trak.len(), 1);
    assert!(moov.mvex.is_some(), "fragmented");
    assert_eq!(moov.trak[0].mdia.mdhd.timescale, 90_000);
    match &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] {
        Codec::Avc1(a) => {
            assert_eq!((a.visual.width, a.visual.height), (1280, 720));
            assert_eq!(a.avcc.sequence_parameter_sets, vec![SPS.to_vec()]);
            assert_eq!(a.avcc.length_size, 4);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(v.codecs(), "avc1.64001f");

    let a = TrackConfig::Audio(aac());
    let mut buf = std::io::Cursor::new(init_segment(&a).unwrap());
    Ftyp::decode(&mut buf).unwrap();
    let moov = Moov::decode(&mut buf).unwrap();
    assert_eq!(moov.trak[0].mdia.mdhd.timescale, 48_000);
    match &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] {
        Codec::Mp4a(m) => {
            let d = m.esds.es_desc.dec_config.dec_specific.as_ref().unwrap();
            assert_eq!((d.profile, d.freq_index, d.chan_conf), (2, 3, 2));
            assert_eq!(m.audio.channel_count, 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.codecs(), "mp4a.40.2");
}

#[test]
fn video_segments_start_at_keyframes_and_parts_close_after_the_target() {
    let mut c = CmafCutter::new(TrackKind::Video, CmafConfig::default(), 0);
    c.handle_config(TrackConfig::Video(h264(SPS)));
    // 7 s at 30 fps, a keyframe each second: segments of 2 s.
    for i in 0..210 {
        c.handle_access_unit(&video(i, 30));
    }
    c.flush();
    let events = drain(&mut c);
    assert!(matches!(events[0], CmafEvent::Init { .. }));
    let mut next_dts = 0u64;
    let mut samples = 0;
    let mut ends = Vec::new();
    for e in &events[1..] {
        match e {
            CmafEvent::Part { msn, part, independent, duration, data, .. } => {
                let (styp, moof, mdat) = parse_part(&data.to_contiguous());
                assert_eq!(styp, *part == 0, "segment {msn} part {part}: styp opens a segment");
                let traf = &moof.traf[0];
                assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, next_dts, "no gap before {msn}.{part}");
                let entries = trun_samples(traf);
                let total: u64 = entries.iter().map(|e| e.duration.unwrap() as u64).sum();
                let size: u32 = entries.iter().map(|e| e.size.unwrap()).sum();
                assert_eq!(size as usize, mdat.data.len(), "trun sizes cover the mdat");
                assert_eq!(*independent, entries[0].flags == Some(0x0200_0000));
                assert!(*duration <= 0.5 + 1e-9, "part {msn}.{part} is {duration} s");
                // The first sample of a segment is a keyframe; samples are NAL-length framed
                // without AUD/SPS/PPS.
                let first_nal = mdat.data[4] & 0x1f;
                if *part == 0 {
                    assert!(*independent && first_nal == 5, "segment {msn} starts at an IDR");
                }
                assert!(mdat.data.len() > 4);
                next_dts += total;
                samples += entries.len();
            }
            CmafEvent::SegmentEnd { msn, start, duration, timescale, presented } => {
                assert_eq!(*timescale, 90_000);
                assert!(presented >= start, "presented at or after its decode start");
                ends.push((*msn, *start, *duration));
            }
            CmafEvent::Init { .. } => panic!("one configuration"),
            CmafEvent::SegmentStart { at } => assert_eq!(at.ticks() % 90_000, 0, "keyframes each second"),
            CmafEvent::PartStart { .. } => {}
        }
    }
    assert_eq!(samples, 210, "every frame once");
    assert_eq!(ends.iter().map(|e| e.0).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(ends[0], (0, 0, 180_000));
    assert_eq!(ends[1], (1, 180_000, 180_000));
    assert_eq!(ends[3].1, 540_000);
}

#[test]
fn a_new_configuration_is_a_new_init_after_the_open_segment() {
    let mut c = CmafCutter::new(TrackKind::Video, CmafConfig::default(), 5);
    c.handle_config(TrackConfig::Video(h264(SPS)));
    for i in 0..45 {
        c.handle_access_unit(&video(i, 30));
    }
    c.handle_config(TrackConfig::Video(h264(SPS_360)));
    c.handle_config(TrackConfig::Video(h264(SPS_360))); // the same again: nothing
    for i in 45..90 {
        c.handle_access_unit(&video(i, 45));
    }
    c.flush();
    let kinds: Vec<String> = drain(&mut c)
        .iter()
        .filter_map(|e| match e {
            CmafEvent::Init { config, .. } => Some(format!("init {}", config.codecs())),
            CmafEvent::SegmentEnd { msn, .. } => Some(format!("end {msn}")),
            CmafEvent::Part { .. } | CmafEvent::SegmentStart { .. } | CmafEvent::PartStart { .. } => None,
        })
        .collect();
    assert_eq!(kinds, ["init avc1.64001f", "end 5", "init avc1.42c01e", "end 6"]);
}

#[test]
fn audio_follows_the_video_segment_starts() {
    let cfg = CmafConfig::default();
    let mut v = CmafCutter::new(TrackKind::Video, cfg, 0);
    let mut a = CmafCutter::new(TrackKind::Audio, cfg, 0);
    v.handle_config(TrackConfig::Video(h264(SPS)));
    a.handle_config(TrackConfig::Audio(aac()));
    a.follow_video(true);
    // 5 s of both, interleaved by time; keyframes every 1.5 s: segments at 0, 3 s.
    let mut units: Vec<AccessUnit> = (0..150).map(|i| video(i, 45)).chain((0..234).map(audio)).collect();
    units.sort_by_key(|u| (u.dts.rescale(Timescale::MPEG).ticks(), u.track == TrackKind::Audio));
    let mut video_starts = Vec::new();
    for u in &units {
        v.handle_access_unit(u);
        a.handle_access_unit(u);
        for e in drain(&mut v) {
            match &e {
                CmafEvent::SegmentStart { at } => a.cut_at(*at),
                CmafEvent::Part { part: 0, data, .. } => {
                    let (_, moof, _) = parse_part(&data.to_contiguous());
                    video_starts.push(moof.traf[0].tfdt.as_ref().unwrap().base_media_decode_time);
                }
                _ => {}
            }
        }
    }
    v.flush();
    a.flush();
    let audio_ends: Vec<(u64, u64)> = drain(&mut a)
        .iter()
        .filter_map(|e| match e {
            CmafEvent::SegmentEnd { start, duration, timescale, .. } => {
                assert_eq!(*timescale, 48_000);
                Some((*start, *duration))
            }
            _ => None,
        })
        .collect();
    assert_eq!(video_starts, [0, 270_000]);
    assert_eq!(audio_ends.len(), 2, "{audio_ends:?}");
    // The second audio segment starts at the first frame at or after 3 s.
    let second = audio_ends[1].0 as f64 / 48_000.0;
    assert!((3.0..3.0 + 1024.0 / 48_000.0).contains(&second), "{second}");
    assert_eq!(audio_ends[0].0 + audio_ends[0].1, audio_ends[1].0, "no gap");
}

#[test]
fn a_segment_has_one_styp_and_parses_whole() {
    let mut c = CmafCutter::new(TrackKind::Video, CmafConfig::default(), 0);
    c.handle_config(TrackConfig::Video(h264(SPS)));
    for i in 0..90 {
        c.handle_access_unit(&video(i, 30));
    }
    c.flush();
    let mut segment = Vec::new();
    for e in drain(&mut c) {
        match e {
            CmafEvent::Part { msn: 0, data, .. } => segment.extend_from_slice(&data.to_contiguous()),
            CmafEvent::SegmentEnd { msn: 0, .. } => break,
            _ => {}
        }
    }
    let mut buf = std::io::Cursor::new(segment.as_slice());
    assert!(Styp::decode(&mut buf).is_ok());
    let mut moofs = 0;
    while (buf.position() as usize) < segment.len() {
        match Any::decode(&mut buf).unwrap() {
            Any::Moof(_) => moofs += 1,
            Any::Mdat(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(moofs, 4, "2 s in 0.5 s parts");
}

#[test]
fn with_a_clock_each_segment_opens_with_a_producer_reference_time() {
    let mut c = CmafCutter::new(TrackKind::Video, CmafConfig::default(), 0);
    c.handle_config(TrackConfig::Video(h264(SPS)));
    // Media second 0 arrived at Unix 1_780_000_000.25.
    let unix = 1_780_000_000.25;
    c.set_clock(MediaTime::new(0, Timescale::MPEG), unix);
    for i in 0..130 {
        c.handle_access_unit(&video(i, 60));
    }
    c.flush();
    let mut seen = 0;
    for e in drain(&mut c) {
        let CmafEvent::Part { msn, part, start, data, .. } = e else { continue };
        let data = data.to_contiguous();
        let mut buf = std::io::Cursor::new(&data[..]);
        let mut boxes = Vec::new();
        while (buf.position() as usize) < data.len() {
            boxes.push(Any::decode(&mut buf).expect("a box"));
        }
        let prft = boxes.iter().find_map(|b| if let Any::Prft(p) = b { Some(p.clone()) } else { None });
        if part > 0 {
            assert!(prft.is_none(), "only a segment's first chunk has one");
            continue;
        }
        assert!(
            matches!(boxes[0], Any::Styp(_)) && matches!(boxes[1], Any::Prft(_)),
            "styp, prft, moof, mdat: {boxes:?}"
        );
        let p = prft.unwrap();
        assert_eq!(p.reference_track_id, 1);
        assert_eq!(p.media_time, (start * 90_000.0).round() as u64, "segment {msn}");
        // NTP: seconds since 1900 in the high 32 bits, the fraction in the low ones.
        let ntp = (p.ntp_timestamp >> 32) as f64 + (p.ntp_timestamp & 0xffff_ffff) as f64 / 4_294_967_296.0;
        assert!((ntp - 2_208_988_800.0 - (unix + start)).abs() < 1e-3, "segment {msn}: {ntp}");
        seen += 1;
    }
    assert_eq!(seen, 3, "one per segment (2 s each of 130 frames)");
}

/// The same access units, whole or cut into fragments anywhere (start codes and ADTS
/// headers split included), give byte-identical parts: the fragment-walking sample
/// reader is exact.
mod fragmented {
    use super::*;
    use proptest::prelude::*;

    fn split(au: &AccessUnit, cuts: &[usize]) -> AccessUnit {
        let whole = au.data.to_contiguous();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (whole.len() + 1)).collect();
        cuts.sort_unstable();
        let mut p = media::Payload::new();
        let mut last = 0;
        for c in cuts {
            p.push(whole.slice(last..c));
            last = c;
        }
        p.push(whole.slice(last..));
        AccessUnit { data: p, ..au.clone() }
    }

    fn parts(units: &[AccessUnit], kind: TrackKind, config: TrackConfig) -> Vec<Bytes> {
        let mut c = CmafCutter::new(kind, CmafConfig::default(), 0);
        c.handle_config(config);
        for u in units {
            c.handle_access_unit(u);
        }
        c.flush();
        drain(&mut c)
            .into_iter()
            .filter_map(|e| match e {
                CmafEvent::Part { data, .. } => Some(data.to_contiguous()),
                _ => None,
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn fragment_boundaries_do_not_matter(cuts in proptest::collection::vec(0usize..64, 0..6)) {
            let video_units: Vec<AccessUnit> = (0..40).map(|i| video(i, 30)).collect();
            let split_video: Vec<AccessUnit> = video_units.iter().map(|u| split(u, &cuts)).collect();
            let v = TrackConfig::Video(h264(SPS));
            prop_assert_eq!(parts(&video_units, TrackKind::Video, v.clone()), parts(&split_video, TrackKind::Video, v));
            let audio_units: Vec<AccessUnit> = (0..60).map(audio).collect();
            let split_audio: Vec<AccessUnit> = audio_units.iter().map(|u| split(u, &cuts)).collect();
            let a = TrackConfig::Audio(aac());
            prop_assert_eq!(parts(&audio_units, TrackKind::Audio, a.clone()), parts(&split_audio, TrackKind::Audio, a));
        }
    }
}

/// Samples of any size, spread over the cutter's buffers however they fall (one larger
/// than a buffer, many small ones sharing one), come out whole, in order, each in the
/// `mdat` of its own part: the bytes of a `trun` entry are that sample's. So across a
/// configuration change with a sample pending, an end at a known time, and audio units
/// of several ADTS frames, or with bytes after them that are no frame, cut where the
/// video cuts.
mod sample_bytes {
    use super::*;
    use proptest::prelude::*;

    /// A video frame `i` whose slice NAL unit (header included) is `len` bytes derived
    /// from `i`.
    fn frame(i: i64, key: bool, len: usize) -> (AccessUnit, Vec<u8>) {
        let t = MediaTime::new(i * 3000, Timescale::MPEG);
        let mut nal = vec![if key { 0x65 } else { 0x41 }];
        nal.extend((1..len.max(1)).map(|k| (k as i64 * 7 + i) as u8 | 1));
        let mut p = media::Payload::new();
        p.push_start_code();
        p.push(Bytes::from_static(&[9, 0xf0]));
        p.push_start_code();
        p.push(Bytes::from(nal.clone()));
        let mut sample = (nal.len() as u32).to_be_bytes().to_vec();
        sample.extend_from_slice(&nal);
        (AccessUnit { track: TrackKind::Video, pts: t, dts: t, keyframe: key, data: p }, sample)
    }

    /// An audio unit at AAC frame `i` of ADTS frames of `lens` payload bytes, then
    /// `garbage` bytes that are no ADTS frame; and the frames' payloads (the samples).
    fn audio_unit(i: i64, lens: &[usize], garbage: usize) -> (AccessUnit, Vec<Vec<u8>>) {
        let t = MediaTime::new(i * 1024, Timescale::new(48_000)).rescale(Timescale::MPEG);
        let mut p = media::Payload::new();
        let mut samples = Vec::new();
        for (k, &len) in lens.iter().enumerate() {
            let frame: Vec<u8> = (0..len).map(|b| (b + k * 31) as u8 ^ i as u8).collect();
            p.push(aac().adts_header_bytes(len).unwrap());
            p.push(Bytes::from(frame.clone()));
            samples.push(frame);
        }
        p.push(Bytes::from(vec![0u8; garbage]));
        (AccessUnit { track: TrackKind::Audio, pts: t, dts: t, keyframe: true, data: p }, samples)
    }

    /// The samples of the parts among `events`, each as its bytes.
    fn samples_in(events: Vec<CmafEvent>, out: &mut Vec<Vec<u8>>) -> Result<(), TestCaseError> {
        for e in events {
            let CmafEvent::Part { data, .. } = e else { continue };
            let (_, moof, mdat) = parse_part(&data.to_contiguous());
            let mut at = 0;
            for entry in trun_samples(&moof.traf[0]) {
                let n = entry.size.unwrap() as usize;
                out.push(mdat.data[at..at + n].to_vec());
                at += n;
            }
            prop_assert_eq!(at, mdat.data.len());
        }
        Ok(())
    }

    #[derive(Debug, Clone)]
    enum Step {
        Video { len: usize, key: bool },
        Audio { lens: Vec<usize>, garbage: usize },
        Reconfigure,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0usize..150_000, any::<bool>()).prop_map(|(len, key)| Step::Video { len, key }),
            6 => (proptest::collection::vec(0usize..3000, 1..4), prop_oneof![3 => Just(0usize), 1 => 1usize..20])
                .prop_map(|(lens, garbage)| Step::Audio { lens, garbage }),
            1 => Just(Step::Reconfigure),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn each_sample_is_in_its_part(steps in proptest::collection::vec(step(), 1..80), end_at_known_time: bool) {
            let cfg = CmafConfig::default();
            let (mut v, mut a) = (CmafCutter::new(TrackKind::Video, cfg, 0), CmafCutter::new(TrackKind::Audio, cfg, 0));
            let configs = [h264(SPS), { let mut c = h264(SPS); c.level += 1; c }];
            let mut current = 0;
            v.handle_config(TrackConfig::Video(configs[0].clone()));
            a.handle_config(TrackConfig::Audio(aac()));
            a.follow_video(true);
            let (mut want_video, mut want_audio) = (Vec::new(), Vec::new());
            let (mut got_video, mut got_audio) = (Vec::new(), Vec::new());
            let (mut frames, mut aac_frames) = (0i64, 0i64);
            for s in &steps {
                match s {
                    Step::Video { len, key } => {
                        let (au, sample) = frame(frames, *key || frames == 0, *len);
                        v.handle_access_unit(&au);
                        want_video.push(sample);
                        frames += 1;
                    }
                    Step::Audio { lens, garbage } => {
                        let (au, samples) = audio_unit(aac_frames, lens, *garbage);
                        a.handle_access_unit(&au);
                        aac_frames += lens.len() as i64;
                        want_audio.extend(samples);
                    }
                    Step::Reconfigure => {
                        current = 1 - current;
                        v.handle_config(TrackConfig::Video(configs[current].clone()));
                    }
                }
                let events: Vec<CmafEvent> = std::iter::from_fn(|| v.poll_event()).collect();
                for e in &events {
                    a.follow_event(e);
                }
                samples_in(events, &mut got_video)?;
                samples_in(drain(&mut a), &mut got_audio)?;
            }
            if end_at_known_time {
                v.flush_until(Some(MediaTime::new((frames + 1) * 3000, Timescale::MPEG)));
                a.flush_until(Some(MediaTime::new((aac_frames + 1) * 1024, Timescale::new(48_000))));
            } else {
                v.flush();
                a.flush();
            }
            samples_in(drain(&mut v), &mut got_video)?;
            samples_in(drain(&mut a), &mut got_audio)?;
            prop_assert_eq!(got_video, want_video);
            prop_assert_eq!(got_audio, want_audio);
        }
    }
}
