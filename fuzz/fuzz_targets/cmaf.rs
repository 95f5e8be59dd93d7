//! The CMAF cutters (a video track and an audio track following it) driven by arbitrary
//! publisher behaviour and arbitrary payload bytes: timestamps that step back and jump,
//! keyframes anywhere, NAL units and ADTS headers that lie about their lengths, new
//! configurations, ends. Invariants: no panic; every part decodes as `[styp] moof mdat`
//! with `mp4-atom`, its `trun` sizes add up to the `mdat`, and no part is longer than the
//! part target unless one sample alone is.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use media::{AacConfig, AccessUnit, H264Config, MediaTime, Payload, Timescale, TrackKind};
use mp4_atom::{Any, Decode};
use segmenter::cmaf::{CmafConfig, CmafCutter, CmafEvent, TrackConfig};

#[derive(Arbitrary, Debug)]
enum Step {
    /// A video frame `step_ms` after the previous one, with these payload bytes after an
    /// AUD (start codes and NAL headers included, or not); `framed`: as NAL units between
    /// start code markers (split at each 0xFF byte), as FLV and WebRTC ingest write them.
    Video { step_ms: i16, cts_ms: u8, key: bool, framed: bool, payload: Vec<u8> },
    /// An audio unit with these bytes after a valid ADTS header, or these bytes alone.
    Audio { step_ms: i16, header: bool, payload: Vec<u8> },
    /// The other video configuration.
    Reconfigure,
    /// The stream ends (both cutters flush).
    Flush,
}

#[path = "shared/sps.rs"]
mod sps;
use sps::{SPS_A, SPS_B};

fn check(c: &mut CmafCutter, other: Option<&mut CmafCutter>, target_secs: f64) {
    let mut other = other;
    while let Some(e) = c.poll_event() {
        match e {
            CmafEvent::Part { data, duration, .. } => {
                let data = data.to_contiguous();
                let mut buf = std::io::Cursor::new(data.as_ref());
                let (mut trun_bytes, mut mdat_bytes, mut samples) = (0u64, 0u64, 0usize);
                while (buf.position() as usize) < data.len() {
                    match Any::decode(&mut buf).expect("a part is whole boxes") {
                        Any::Styp(_) => {}
                        Any::Moof(m) => {
                            for e in m.traf[0].trun[0].samples.iter() {
                                trun_bytes += u64::from(e.size.unwrap_or(0));
                                samples += 1;
                            }
                        }
                        Any::Mdat(m) => mdat_bytes += m.data.len() as u64,
                        other => panic!("unexpected box {other:?}"),
                    }
                }
                assert_eq!(trun_bytes, mdat_bytes, "trun sizes cover the mdat");
                assert!(samples == 1 || duration <= target_secs + 1e-9, "part of {duration} s, {samples} samples");
            }
            ref cut @ (CmafEvent::SegmentStart { .. } | CmafEvent::PartStart { .. }) => {
                if let Some(o) = other.as_deref_mut() {
                    o.follow_event(cut);
                }
            }
            CmafEvent::Init { .. } | CmafEvent::SegmentEnd { .. } => {}
        }
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let h264 = |sps: &'static [u8]| {
        H264Config::from_parameter_sets(vec![Bytes::from_static(sps)], vec![Bytes::from_static(&[0x68, 0xeb])], 4)
            .unwrap()
    };
    let aac = AacConfig::from_audio_specific_config(&[0x11, 0x90]).unwrap();
    let cfg = CmafConfig::default();
    let target = cfg.part_target.as_secs_f64();
    let mut video = CmafCutter::new(TrackKind::Video, cfg, 0);
    let mut audio = CmafCutter::new(TrackKind::Audio, cfg, 0);
    let mut which = false;
    video.handle_config(TrackConfig::Video(h264(SPS_A)));
    audio.handle_config(TrackConfig::Audio(aac.clone()));
    audio.follow_video(true);
    let (mut v_ms, mut a_ms) = (0i64, 0i64);
    for step in steps {
        match step {
            Step::Video { step_ms, cts_ms, key, framed, payload } => {
                v_ms += i64::from(step_ms);
                let data = if framed {
                    let mut p = Payload::new();
                    p.push_start_code();
                    p.push(Bytes::from_static(&[9, 0xf0]));
                    for nal in payload.split(|&b| b == 0xff) {
                        p.push_start_code();
                        p.push(Bytes::copy_from_slice(nal));
                    }
                    p
                } else {
                    let mut v = vec![0, 0, 0, 1, 9, 0xf0];
                    v.extend_from_slice(&payload);
                    Bytes::from(v).into()
                };
                let au = AccessUnit {
                    track: TrackKind::Video,
                    dts: MediaTime::new(v_ms, Timescale::MILLIS),
                    pts: MediaTime::new(v_ms + i64::from(cts_ms), Timescale::MILLIS),
                    keyframe: key,
                    data,
                };
                video.handle_access_unit(&au);
            }
            Step::Audio { step_ms, header, payload } => {
                a_ms += i64::from(step_ms);
                let mut v = match aac.adts_header(payload.len()) {
                    Ok(h) if header => h.to_vec(),
                    _ => Vec::new(),
                };
                v.extend_from_slice(&payload);
                let t = MediaTime::new(a_ms, Timescale::MILLIS);
                let au =
                    AccessUnit { track: TrackKind::Audio, pts: t, dts: t, keyframe: true, data: Bytes::from(v).into() };
                audio.handle_access_unit(&au);
            }
            Step::Reconfigure => {
                which = !which;
                video.handle_config(TrackConfig::Video(h264(if which { SPS_B } else { SPS_A })));
            }
            Step::Flush => {
                video.flush();
                audio.flush();
            }
        }
        check(&mut video, Some(&mut audio), target);
        check(&mut audio, None, target);
    }
    video.flush();
    audio.flush();
    check(&mut video, Some(&mut audio), target);
    check(&mut audio, None, target);
});
