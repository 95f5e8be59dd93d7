//! MPEG-2 transport stream (ISO/IEC 13818-1) muxing and demuxing.

mod crc;
pub mod demux;
pub mod mux;

/// Size of a transport stream packet.
pub const PACKET_SIZE: usize = 188;
/// Sync byte that starts every packet.
pub const SYNC: u8 = 0x47;
/// PID of the program association table.
pub const PID_PAT: u16 = 0x0000;
/// PID Sluice uses for the program map table (ffmpeg's choice too).
pub const PID_PMT: u16 = 0x1000;
/// PID of the video elementary stream.
pub const PID_VIDEO: u16 = 0x0100;
/// PID of the audio elementary stream.
pub const PID_AUDIO: u16 = 0x0101;
/// stream_type for H.264 (Table 2-34).
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// stream_type for AAC in ADTS.
pub const STREAM_TYPE_AAC: u8 = 0x0f;
/// Timestamps are 33 bits of a 90 kHz clock.
pub const TIMESTAMP_MASK: i64 = (1 << 33) - 1;

use media::{AacConfig, AccessUnit, H264Config, TrackInfo, TrackKind, annexb_nal_units};

/// The codec configurations carried in-band by demuxed access units (SPS and PPS in an
/// Annex B keyframe, the ADTS header of an AAC frame), for a cutter fed from MPEG-TS
/// rather than from RTMP's sequence headers. `None` until each wanted track's
/// configuration has been seen.
pub fn track_info(aus: &[AccessUnit], want_video: bool, want_audio: bool) -> Option<TrackInfo> {
    let mut t = TrackInfo::default();
    if let Some(a) = aus.iter().find(|a| a.track == TrackKind::Audio) {
        t.audio = AacConfig::from_adts_header(&a.data.to_contiguous()).ok().map(|(c, _)| c);
    }
    for v in aus.iter().filter(|a| a.track == TrackKind::Video && a.keyframe) {
        let (mut sps, mut pps) = (vec![], vec![]);
        for nal in annexb_nal_units(&v.data.to_contiguous()) {
            match nal.first().map(|h| h & 0x1f) {
                Some(7) => sps.push(nal),
                Some(8) => pps.push(nal),
                _ => {}
            }
        }
        if !sps.is_empty() && !pps.is_empty() {
            t.video = H264Config::from_parameter_sets(sps, pps, 4).ok();
            break;
        }
    }
    let complete = (!want_video || t.video.is_some()) && (!want_audio || t.audio.is_some());
    complete.then_some(t)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use media::{MediaTime, Payload, Timescale};

    use super::*;

    fn au(track: TrackKind, key: bool, data: &'static [u8]) -> AccessUnit {
        let t = MediaTime::new(0, Timescale::MPEG);
        AccessUnit { track, pts: t, dts: t, keyframe: key, data: Payload::from(Bytes::from_static(data)) }
    }

    #[test]
    fn configurations_come_from_in_band_parameter_sets_and_adts() {
        const SPS: &[u8] = &[
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01,
            0x00, 0x00, 0x03, 0x00, 0x3c, 0x8f, 0x16, 0x2e, 0x48, 0, 0, 1, 0x68, 0xeb, 0, 0, 1, 0x65, 1,
        ];
        const ADTS: &[u8] = &[0xff, 0xf1, 0x50, 0x80, 0x01, 0x7f, 0xfc, 1, 2];
        let p_frame = au(TrackKind::Video, false, &[0, 0, 1, 0x41, 1]);
        assert_eq!(track_info(std::slice::from_ref(&p_frame), true, false), None, "no keyframe yet");
        let key = au(TrackKind::Video, true, SPS);
        let t = track_info(&[p_frame, key.clone()], true, false).expect("video from the keyframe");
        assert_eq!(t.video.unwrap().dimensions.width, 640);
        assert_eq!(track_info(std::slice::from_ref(&key), true, true), None, "audio wanted, none yet");
        let t = track_info(&[key, au(TrackKind::Audio, true, ADTS)], true, true).expect("both");
        assert_eq!(t.audio.unwrap().sample_rate, 44_100);
    }
}
