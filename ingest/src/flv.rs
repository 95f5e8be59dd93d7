//! FLV tag bodies (as carried in RTMP audio/video messages and FLV files) to access units.
//!
//! Video: H.264 in AVCC framing becomes Annex B without copying the NAL units. Each
//! 4-byte length prefix is replaced by a static start code fragment (a NAL unit marker,
//! `media::Payload::push_start_code`, so CMAF finds the units without a scan) and the NAL
//! body is a slice of the incoming buffer. An access unit delimiter leads every access unit and the
//! SPS/PPS from the sequence header are put in front of every keyframe that lacks them, so
//! each segment decodes on its own (ISO/IEC 13818-1 Amendment 3 / Apple HLS authoring
//! rules). Composition time offsets become PTS = DTS + CTS.
//!
//! Audio: AAC raw frames get a 7-byte ADTS header fragment.
//!
//! Timestamps are 32-bit milliseconds that wrap after ~49.7 days; [`TimestampExtender`]
//! unwraps them into a continuous 64-bit timeline.
//!
//! ## Codec configurations as real encoders send them
//! A sequence header may arrive empty, late, repeated or changed, and none of these is a
//! reason to drop a publisher:
//! * **Empty or unusable.** ffmpeg relaying with `-c copy` from a source whose AAC is ADTS
//!   (MPEG-TS, SRT, HLS, a raw `.aac`) writes an AAC sequence header with no
//!   AudioSpecificConfig, then the real one; for H.264 from Annex B sources it does the same
//!   with the AVC record. Such a header is ignored (a [`FlvNotice`] says so) and the
//!   previous configuration, if any, stays in force.
//! * **Late.** Frames that arrive before a usable configuration cannot be described and are
//!   dropped and counted; an H.264 keyframe that carries SPS and PPS in band configures the
//!   track itself (4-byte NAL lengths, the universal AVCC choice). Only a publisher that
//!   sends [`MAX_FRAMES_WITHOUT_OUTPUT`] frames without ever yielding one access unit is
//!   refused ([`FlvError::MissingSequenceHeader`]): nothing it sends can be played.
//! * **Repeated.** An identical header changes nothing.
//! * **Changed.** A different header (or new SPS/PPS in band) yields a new
//!   [`StreamEvent::Tracks`]; the segmenter switches at the next keyframe.

use bytes::{Buf, Bytes, BytesMut};
use media::{AacConfig, AccessUnit, H264Config, MediaTime, Payload, StreamEvent, Timescale, TrackInfo, TrackKind};

use crate::error::FlvError;

/// FLV tag type for audio.
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type for video.
pub const TAG_VIDEO: u8 = 9;
/// FLV tag type for script data.
pub const TAG_SCRIPT: u8 = 18;

/// An access unit delimiter NAL unit (primary_pic_type 7: any slice type), behind its
/// start code ([`Payload::push_start_code`]).
static AUD: &[u8] = &[0x09, 0xf0];

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// Unwraps 32-bit millisecond timestamps into 64-bit ones.
#[derive(Debug, Default, Clone)]
pub struct TimestampExtender {
    last: Option<(u32, i64)>,
}

impl TimestampExtender {
    /// The 64-bit timestamp for `ts`: the nearest one to the previous value, so a wrap
    /// continues forward and a small step back stays a small step back.
    pub fn extend(&mut self, ts: u32) -> i64 {
        let v = match self.last {
            None => ts as i64,
            Some((l32, l64)) => l64 + ts.wrapping_sub(l32) as i32 as i64,
        };
        self.last = Some((ts, v));
        v
    }
}

/// Frames a publisher may send without any of them becoming an access unit (no usable
/// sequence header for any track) before it is refused: about 10 s of 25 fps video.
pub const MAX_FRAMES_WITHOUT_OUTPUT: u64 = 250;

/// Something the demuxer tolerated rather than refusing the publisher; the shell logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlvNotice {
    /// A sequence header with no usable configuration was ignored; the previous
    /// configuration (if any) stays in force.
    IgnoredSequenceHeader {
        /// Which track.
        track: TrackKind,
        /// Why it was unusable.
        reason: media::CodecError,
    },
    /// Frames of `track` are being dropped until a usable sequence header arrives (sent
    /// once per run of such frames).
    FramesBeforeConfiguration {
        /// Which track.
        track: TrackKind,
    },
}

impl std::fmt::Display for FlvNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlvNotice::IgnoredSequenceHeader { track, reason } => {
                write!(f, "ignored an unusable {track:?} sequence header ({reason}); waiting for a usable one")
            }
            FlvNotice::FramesBeforeConfiguration { track } => {
                write!(f, "{track:?} frames before a usable sequence header are dropped until one arrives")
            }
        }
    }
}

/// Counters of what the demuxer tolerated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlvStats {
    /// Sequence headers ignored as unusable, `[video, audio]`.
    pub ignored_sequence_headers: [u64; 2],
    /// Frames dropped for want of a configuration, `[video, audio]`.
    pub dropped_before_configuration: [u64; 2],
}

/// Turns FLV audio/video tag bodies of one stream into [`StreamEvent`]s.
#[derive(Default)]
pub struct FlvDemuxer {
    video: Option<H264Config>,
    audio: Option<AacConfig>,
    clock: TimestampExtender,
    /// NAL boundaries of the tag being converted, kept to avoid an allocation per frame.
    nals: Vec<(usize, usize, u8)>,
    stats: FlvStats,
    /// Access units yielded so far (saturating; only "any yet?" matters).
    produced: u64,
    /// Per track: a run of unconfigured frames is in progress (its notice was sent).
    waiting: [bool; 2],
    notices: std::collections::VecDeque<FlvNotice>,
}

fn track_idx(t: TrackKind) -> usize {
    match t {
        TrackKind::Video => 0,
        TrackKind::Audio => 1,
    }
}

impl FlvDemuxer {
    /// A demuxer with no track configured yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current track configuration.
    pub fn tracks(&self) -> TrackInfo {
        TrackInfo { video: self.video.clone(), audio: self.audio.clone() }
    }

    /// What the demuxer has tolerated so far.
    pub fn stats(&self) -> FlvStats {
        self.stats
    }

    /// The next thing tolerated since the last call, for the log.
    pub fn poll_notice(&mut self) -> Option<FlvNotice> {
        self.notices.pop_front()
    }

    /// Applies a parsed sequence header to the track's configuration (`slot`): a new one
    /// is announced, the same one changes nothing, an unusable one is ignored with a notice.
    fn apply_header<T: PartialEq>(
        &mut self,
        track: TrackKind,
        parsed: Result<T, media::CodecError>,
        slot: fn(&mut Self) -> &mut Option<T>,
        out: &mut Vec<StreamEvent>,
    ) {
        match parsed {
            Ok(cfg) => {
                let current = slot(self);
                if current.as_ref() != Some(&cfg) {
                    *current = Some(cfg);
                    out.push(StreamEvent::Tracks(self.tracks()));
                }
            }
            Err(reason) => self.ignore_header(track, reason),
        }
    }

    fn ignore_header(&mut self, track: TrackKind, reason: media::CodecError) {
        self.stats.ignored_sequence_headers[track_idx(track)] += 1;
        self.notices.push_back(FlvNotice::IgnoredSequenceHeader { track, reason });
    }

    /// A frame of `track` with no configuration to describe it: dropped. Refuses the
    /// publisher only once [`MAX_FRAMES_WITHOUT_OUTPUT`] such frames came and nothing at all
    /// was ever yielded.
    fn drop_unconfigured(&mut self, track: TrackKind) -> Result<(), FlvError> {
        let i = track_idx(track);
        self.stats.dropped_before_configuration[i] += 1;
        if !self.waiting[i] {
            self.waiting[i] = true;
            self.notices.push_back(FlvNotice::FramesBeforeConfiguration { track });
        }
        let dropped: u64 = self.stats.dropped_before_configuration.iter().sum();
        if self.produced == 0 && dropped >= MAX_FRAMES_WITHOUT_OUTPUT {
            return Err(FlvError::MissingSequenceHeader(track));
        }
        Ok(())
    }

    fn yielded(&mut self, track: TrackKind) {
        self.produced = self.produced.saturating_add(1);
        self.waiting[track_idx(track)] = false;
    }

    /// Handles one tag body of type `tag_type` ([`TAG_AUDIO`] or [`TAG_VIDEO`]; others are
    /// ignored) with timestamp `ts_ms`, appending what it yields to `out`: a
    /// [`StreamEvent::Tracks`] when a configuration changes (sequence header, or new SPS/PPS
    /// in band) and a [`StreamEvent::Media`] per frame.
    pub fn handle_tag(
        &mut self,
        tag_type: u8,
        ts_ms: u32,
        body: &Payload,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), FlvError> {
        match tag_type {
            TAG_VIDEO => self.handle_video(ts_ms, body, out),
            TAG_AUDIO => self.handle_audio(ts_ms, body, out),
            _ => Ok(()),
        }
    }

    /// Handles a video tag body.
    pub fn handle_video(&mut self, ts_ms: u32, body: &Payload, out: &mut Vec<StreamEvent>) -> Result<(), FlvError> {
        let mut h = [0u8; 5];
        if body.is_empty() {
            return Ok(());
        }
        body.copy_range(0, &mut h[..1]);
        if h[0] & 0x80 != 0 {
            let mut fourcc = [0u8; 4];
            body.copy_range(1, &mut fourcc);
            return Err(FlvError::UnsupportedEnhancedVideo(String::from_utf8_lossy(&fourcc).into_owned()));
        }
        let frame_type = h[0] >> 4;
        let codec = h[0] & 0x0f;
        if frame_type == 5 {
            return Ok(()); // video info / command frame: no picture
        }
        if codec != 7 {
            return Err(FlvError::UnsupportedVideoCodec(codec));
        }
        if !body.copy_range(0, &mut h) {
            return Err(FlvError::Truncated("AVC video"));
        }
        let cts = (((h[2] as i32) << 24 | (h[3] as i32) << 16 | (h[4] as i32) << 8) >> 8) as i64;
        match h[1] {
            0 => {
                let record = body.slice(5, body.len()).unwrap_or_default().to_contiguous();
                self.apply_header(TrackKind::Video, H264Config::from_avc_record(&record), |d| &mut d.video, out);
                Ok(())
            }
            1 => {
                // No configuration yet: four-byte NAL lengths (what every AVCC muxer writes)
                // let a keyframe with in-band SPS/PPS configure the track itself.
                let cfg = self.video.as_ref();
                let nal_length_size = cfg.map_or(4, |c| c.nal_length_size);
                let dts = self.clock.extend(ts_ms);
                let Some(conv) = avcc_to_annexb(body, 5, nal_length_size, cfg, frame_type == 1, &mut self.nals)? else {
                    return Ok(());
                };
                if let Some((sps, pps)) = conv.parameter_sets {
                    // New parameter sets in band (a resolution change without a new sequence
                    // header): later keyframes must be given these, not the old ones.
                    if cfg.is_none_or(|c| c.sps != sps || c.pps != pps) {
                        match H264Config::from_parameter_sets(sps, pps, nal_length_size) {
                            Ok(new) => {
                                self.video = Some(new);
                                out.push(StreamEvent::Tracks(self.tracks()));
                            }
                            // Unusable in-band sets: keep the configuration in force.
                            Err(reason) => self.ignore_header(TrackKind::Video, reason),
                        }
                    }
                }
                if self.video.is_none() {
                    return self.drop_unconfigured(TrackKind::Video);
                }
                self.yielded(TrackKind::Video);
                out.push(StreamEvent::Media(AccessUnit {
                    track: TrackKind::Video,
                    dts: MediaTime::new(dts, Timescale::MILLIS),
                    pts: MediaTime::new(dts + cts, Timescale::MILLIS),
                    keyframe: conv.has_idr || frame_type == 1,
                    data: conv.data,
                }));
                Ok(())
            }
            _ => Ok(()), // end of sequence
        }
    }

    /// Handles an audio tag body.
    pub fn handle_audio(&mut self, ts_ms: u32, body: &Payload, out: &mut Vec<StreamEvent>) -> Result<(), FlvError> {
        let mut h = [0u8; 2];
        if body.is_empty() {
            return Ok(());
        }
        body.copy_range(0, &mut h[..1]);
        let format = h[0] >> 4;
        if format != 10 {
            return Err(FlvError::UnsupportedAudioCodec(format));
        }
        if !body.copy_range(0, &mut h) {
            return Err(FlvError::Truncated("AAC audio"));
        }
        if h[1] == 0 {
            let asc = body.slice(2, body.len()).unwrap_or_default().to_contiguous();
            self.apply_header(TrackKind::Audio, AacConfig::from_audio_specific_config(&asc), |d| &mut d.audio, out);
            return Ok(());
        }
        let raw = body.slice(2, body.len()).unwrap_or_default();
        if raw.is_empty() {
            return Ok(());
        }
        let Some(cfg) = self.audio.as_ref() else {
            return self.drop_unconfigured(TrackKind::Audio);
        };
        let header =
            cfg.adts_header_bytes(raw.len()).map_err(|source| FlvError::Codec { track: TrackKind::Audio, source })?;
        let mut data = Payload::with_capacity(1 + raw.parts().len());
        data.push(header);
        for p in raw.parts() {
            data.push(p.clone());
        }
        let t = MediaTime::new(self.clock.extend(ts_ms), Timescale::MILLIS);
        self.yielded(TrackKind::Audio);
        out.push(StreamEvent::Media(AccessUnit { track: TrackKind::Audio, pts: t, dts: t, keyframe: true, data }));
        Ok(())
    }
}

struct Converted {
    data: Payload,
    has_idr: bool,
    /// SPS and PPS found in band, if both were.
    parameter_sets: Option<(Vec<Bytes>, Vec<Bytes>)>,
}

/// Rewrites the AVCC NAL units of `body[start..]` (with `nal_length_size`-byte length
/// prefixes) as Annex B fragments; a keyframe without parameter sets gets those of `cfg`.
/// Returns `None` for an access unit with no NAL units.
fn avcc_to_annexb(
    body: &Payload,
    start: usize,
    nal_length_size: u8,
    cfg: Option<&H264Config>,
    flagged_key: bool,
    nals: &mut Vec<(usize, usize, u8)>,
) -> Result<Option<Converted>, FlvError> {
    let n = nal_length_size as usize;
    let tag_len = body.len();
    // First pass: NAL boundaries and types (no payload bytes are touched but the headers).
    nals.clear();
    let mut pos = start;
    while pos + n <= tag_len {
        let mut lb = [0u8; 4];
        body.copy_range(pos, &mut lb[4 - n..]);
        let len = u32::from_be_bytes(lb) as usize;
        let begin = pos + n;
        if len > tag_len - begin {
            return Err(FlvError::NalOverrun { len, offset: pos, tag_len });
        }
        if len > 0 {
            let mut t = [0u8; 1];
            body.copy_range(begin, &mut t);
            nals.push((begin, begin + len, t[0] & 0x1f));
        }
        pos = begin + len;
    }
    if nals.is_empty() {
        return Ok(None);
    }
    let has_idr = nals.iter().any(|&(_, _, t)| t == NAL_IDR);
    let has_sps = nals.iter().any(|&(_, _, t)| t == NAL_SPS);
    let has_pps = nals.iter().any(|&(_, _, t)| t == NAL_PPS);
    let parameter_sets = (has_sps && has_pps).then(|| {
        let collect = |ty: u8| -> Vec<Bytes> {
            nals.iter()
                .filter(|&&(_, _, t)| t == ty)
                .map(|&(b, e, _)| body.slice(b, e).unwrap_or_default().to_contiguous())
                .collect()
        };
        (collect(NAL_SPS), collect(NAL_PPS))
    });
    // AUD, start code + fragments per NAL, parameter sets: sized once, never regrown.
    let sets = cfg.map_or(0, |c| 2 * (c.sps.len() + c.pps.len()));
    let mut out = Payload::with_capacity(2 + sets + nals.len() + body.parts().len() + nals.len());
    out.push_start_code();
    out.push(Bytes::from_static(AUD));
    if let Some(cfg) = cfg
        && (has_idr || flagged_key)
        && !has_sps
    {
        for ps in cfg.sps.iter().chain(&cfg.pps) {
            out.push_start_code();
            out.push(ps.clone());
        }
    }
    for &(b, e, t) in nals.iter() {
        if t == NAL_AUD {
            continue;
        }
        // In-band SPS/PPS are kept: they may be new ones (a resolution change).
        out.push_start_code();
        for p in body.slice(b, e).unwrap_or_default().parts() {
            out.push(p.clone());
        }
    }
    Ok(Some(Converted { data: out, has_idr, parameter_sets }))
}

/// One tag read from an FLV file.
#[derive(Debug, Clone)]
pub struct FlvTag {
    /// [`TAG_AUDIO`], [`TAG_VIDEO`] or [`TAG_SCRIPT`].
    pub tag_type: u8,
    /// Milliseconds (24 bits plus the extension byte).
    pub timestamp: u32,
    /// The tag body, a slice of the file's bytes.
    pub body: Bytes,
}

/// Length of the FLV file header (signature, version, flags, header size) plus the
/// PreviousTagSize0 that follows it, or `None` if `d` is too short to tell.
fn file_header_len(d: &[u8]) -> Result<Option<usize>, FlvError> {
    if d.len() < 9 {
        return if b"FLV".starts_with(&d[..d.len().min(3)]) {
            Ok(None)
        } else {
            Err(FlvError::File("missing FLV signature"))
        };
    }
    if &d[..3] != b"FLV" {
        return Err(FlvError::File("missing FLV signature"));
    }
    let header_len = u32::from_be_bytes([d[5], d[6], d[7], d[8]]) as usize;
    if !(9..=1024).contains(&header_len) {
        return Err(FlvError::File("bad header length"));
    }
    Ok(Some(header_len + 4))
}

/// Type, timestamp and body size of the tag whose 11-byte header starts `h`.
fn tag_header(h: &[u8]) -> (u8, u32, usize) {
    let tag_type = h[0] & 0x1f;
    let size = (h[1] as usize) << 16 | (h[2] as usize) << 8 | h[3] as usize;
    let timestamp = (h[7] as u32) << 24 | (h[4] as u32) << 16 | (h[5] as u32) << 8 | h[6] as u32;
    (tag_type, timestamp, size)
}

/// Reads the tags of an FLV file held in memory (Adobe FLV spec, annex E); bodies are
/// slices of `data`.
pub struct FlvFileReader {
    data: Bytes,
    pos: usize,
}

impl FlvFileReader {
    /// Checks the file header and positions at the first tag.
    pub fn new(data: Bytes) -> Result<Self, FlvError> {
        let pos = file_header_len(&data)?.ok_or(FlvError::File("missing FLV signature"))?;
        Ok(FlvFileReader { data, pos })
    }
}

impl Iterator for FlvFileReader {
    type Item = Result<FlvTag, FlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        let d = &self.data;
        if self.pos + 11 > d.len() {
            return None;
        }
        let (tag_type, timestamp, size) = tag_header(&d[self.pos..]);
        let start = self.pos + 11;
        if start + size > d.len() {
            self.pos = d.len();
            return Some(Err(FlvError::File("tag runs past the end of the file")));
        }
        let body = d.slice(start..start + size);
        self.pos = start + size + 4;
        Some(Ok(FlvTag { tag_type, timestamp, body }))
    }
}

/// Reads FLV tags incrementally from a byte stream (a file read in blocks), so a file of
/// any size is processed in bounded memory. Bodies are split off the caller's buffer
/// without copying.
#[derive(Debug, Default)]
pub struct FlvTagDecoder {
    header_done: bool,
}

impl FlvTagDecoder {
    /// A decoder expecting the file header first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next tag off the front of `buf`; `Ok(None)` means more input is needed
    /// (nothing is consumed then).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<FlvTag>, FlvError> {
        if !self.header_done {
            let Some(n) = file_header_len(buf)? else { return Ok(None) };
            if buf.len() < n {
                return Ok(None);
            }
            buf.advance(n);
            self.header_done = true;
        }
        if buf.len() < 11 {
            return Ok(None);
        }
        let (tag_type, timestamp, size) = tag_header(buf);
        if buf.len() < 11 + size + 4 {
            return Ok(None);
        }
        buf.advance(11);
        let body = buf.split_to(size).freeze();
        buf.advance(4); // PreviousTagSize
        Ok(Some(FlvTag { tag_type, timestamp, body }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x6a, 0x02, 0x02, 0x02, 0x80, 0x00, 0x00,
        0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18, 0xcb,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb];

    fn seq_header() -> Payload {
        let mut v = vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, SPS.len() as u8];
        v.extend_from_slice(SPS);
        v.extend_from_slice(&[1, 0, PPS.len() as u8]);
        v.extend_from_slice(PPS);
        Bytes::from(v).into()
    }

    fn nalu_tag(key: bool, cts: i32, nals: &[&[u8]]) -> Payload {
        let mut v = vec![if key { 0x17 } else { 0x27 }, 1];
        v.extend_from_slice(&cts.to_be_bytes()[1..]);
        for n in nals {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        Bytes::from(v).into()
    }

    fn one(d: &mut FlvDemuxer, tag: u8, ts: u32, body: &Payload) -> Result<Vec<StreamEvent>, FlvError> {
        let mut out = vec![];
        d.handle_tag(tag, ts, body, &mut out)?;
        Ok(out)
    }

    fn media(evs: Vec<StreamEvent>) -> AccessUnit {
        match evs.into_iter().last() {
            Some(StreamEvent::Media(au)) => au,
            other => panic!("expected media, got {other:?}"),
        }
    }

    #[test]
    fn keyframe_gets_aud_and_parameter_sets() {
        let mut d = FlvDemuxer::new();
        assert!(matches!(one(&mut d, TAG_VIDEO, 0, &seq_header()).unwrap()[..], [StreamEvent::Tracks(_)]));
        let au = media(one(&mut d, TAG_VIDEO, 40, &nalu_tag(true, 80, &[&[0x65, 1, 2, 3]])).unwrap());
        assert!(au.keyframe);
        assert_eq!(au.dts.ticks(), 40);
        assert_eq!(au.pts.ticks(), 120);
        let mut want = [&[0, 0, 0, 1], AUD].concat();
        for ps in [SPS, PPS, &[0x65, 1, 2, 3][..]] {
            want.extend_from_slice(&[0, 0, 0, 1]);
            want.extend_from_slice(ps);
        }
        assert_eq!(au.data.to_contiguous().as_ref(), want.as_slice());
    }

    #[test]
    fn negative_composition_time() {
        let mut d = FlvDemuxer::new();
        one(&mut d, TAG_VIDEO, 0, &seq_header()).unwrap();
        let au = media(one(&mut d, TAG_VIDEO, 100, &nalu_tag(false, -33, &[&[0x41, 9]])).unwrap());
        assert_eq!(au.pts.ticks(), 67);
        assert!(!au.keyframe);
    }

    #[test]
    fn errors_are_specific() {
        let mut d = FlvDemuxer::new();
        // Frames with no configuration are dropped, and refused only once nothing at all
        // has come out for MAX_FRAMES_WITHOUT_OUTPUT frames.
        for i in 1..MAX_FRAMES_WITHOUT_OUTPUT {
            assert!(one(&mut d, TAG_VIDEO, i as u32, &nalu_tag(true, 0, &[&[0x65]])).unwrap().is_empty());
        }
        assert_eq!(
            one(&mut d, TAG_VIDEO, 0, &nalu_tag(true, 0, &[&[0x65]])).unwrap_err(),
            FlvError::MissingSequenceHeader(TrackKind::Video)
        );
        let e = one(&mut d, TAG_VIDEO, 0, &Bytes::from_static(&[0x12, 0]).into()).unwrap_err();
        assert_eq!(e, FlvError::UnsupportedVideoCodec(2));
        let e = one(&mut d, TAG_AUDIO, 0, &Bytes::from_static(&[0x2f, 0]).into()).unwrap_err();
        assert_eq!(e, FlvError::UnsupportedAudioCodec(2));
        one(&mut d, TAG_VIDEO, 0, &seq_header()).unwrap();
        let mut bad = nalu_tag(true, 0, &[&[0x65, 1, 2]]).to_contiguous().to_vec();
        bad[8] = 200; // length prefix now overruns
        assert!(matches!(one(&mut d, TAG_VIDEO, 0, &Bytes::from(bad).into()), Err(FlvError::NalOverrun { .. })));
    }

    #[test]
    fn aac_frames_get_adts_headers() {
        let mut d = FlvDemuxer::new();
        one(&mut d, TAG_AUDIO, 0, &Bytes::from_static(&[0xaf, 0, 0x12, 0x10]).into()).unwrap();
        let au = media(one(&mut d, TAG_AUDIO, 23, &Bytes::from_static(&[0xaf, 1, 9, 9, 9]).into()).unwrap());
        let b = au.data.to_contiguous();
        assert_eq!(&b[..2], &[0xff, 0xf1]);
        assert_eq!(&b[7..], &[9, 9, 9]);
        assert_eq!(AacConfig::from_adts_header(&b).unwrap().1, 10);
    }

    /// ffmpeg's `-c copy` relay from ADTS: an empty AAC sequence header, then the real
    /// one. The empty one is ignored with a notice, frames before a usable one are dropped,
    /// and the publisher carries on; repeating the header changes nothing, changing it
    /// announces new tracks.
    #[test]
    fn empty_late_repeated_and_changed_configurations() {
        let mut d = FlvDemuxer::new();
        assert!(one(&mut d, TAG_AUDIO, 0, &Bytes::from_static(&[0xaf, 0]).into()).unwrap().is_empty());
        assert!(matches!(d.poll_notice(), Some(FlvNotice::IgnoredSequenceHeader { track: TrackKind::Audio, .. })));
        for ts in [0, 23] {
            assert!(one(&mut d, TAG_AUDIO, ts, &Bytes::from_static(&[0xaf, 1, 9, 9]).into()).unwrap().is_empty());
        }
        assert_eq!(d.poll_notice(), Some(FlvNotice::FramesBeforeConfiguration { track: TrackKind::Audio }));
        assert_eq!(d.poll_notice(), None, "one notice per run of dropped frames");
        assert_eq!(d.stats().dropped_before_configuration, [0, 2]);
        let asc: Payload = Bytes::from_static(&[0xaf, 0, 0x12, 0x10]).into();
        assert!(matches!(one(&mut d, TAG_AUDIO, 46, &asc).unwrap()[..], [StreamEvent::Tracks(_)]));
        assert!(one(&mut d, TAG_AUDIO, 46, &asc).unwrap().is_empty(), "repeated: no change");
        // A second empty header keeps the configuration in force.
        one(&mut d, TAG_AUDIO, 46, &Bytes::from_static(&[0xaf, 0]).into()).unwrap();
        media(one(&mut d, TAG_AUDIO, 46, &Bytes::from_static(&[0xaf, 1, 9, 9]).into()).unwrap());
        // 48 kHz stereo instead of 44.1 kHz: announced.
        let evs = one(&mut d, TAG_AUDIO, 69, &Bytes::from_static(&[0xaf, 0, 0x11, 0x90]).into()).unwrap();
        let [StreamEvent::Tracks(t)] = &evs[..] else { panic!("{evs:?}") };
        assert_eq!(t.audio.as_ref().unwrap().sample_rate, 48_000);
        // The same for video: an empty AVC record is ignored; a keyframe with SPS/PPS in
        // band configures the track without any sequence header.
        let mut d = FlvDemuxer::new();
        assert!(one(&mut d, TAG_VIDEO, 0, &Bytes::from_static(&[0x17, 0, 0, 0, 0]).into()).unwrap().is_empty());
        assert!(one(&mut d, TAG_VIDEO, 0, &nalu_tag(false, 0, &[&[0x41, 1]])).unwrap().is_empty());
        let evs = one(&mut d, TAG_VIDEO, 40, &nalu_tag(true, 0, &[SPS, PPS, &[0x65, 7]])).unwrap();
        assert!(matches!(&evs[..], [StreamEvent::Tracks(t), StreamEvent::Media(_)] if t.video.is_some()));
        assert_eq!(d.stats().ignored_sequence_headers, [1, 0]);
        assert_eq!(d.stats().dropped_before_configuration, [1, 0]);
    }

    #[test]
    fn in_band_parameter_sets_replace_the_configuration() {
        let mut d = FlvDemuxer::new();
        one(&mut d, TAG_VIDEO, 0, &seq_header()).unwrap();
        // A 640x360 SPS arrives in band with the next IDR.
        let sps2: &[u8] = &[
            0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00,
            0x03, 0x00, 0x3c, 0x8f, 0x16, 0x2e, 0x48,
        ];
        let evs =
            one(&mut d, TAG_VIDEO, 40, &nalu_tag(true, 0, &[sps2, &[0x68, 0xce, 0x3c, 0x80], &[0x65, 7]])).unwrap();
        let StreamEvent::Tracks(t) = &evs[0] else { panic!("expected a configuration change first") };
        let v = t.video.as_ref().unwrap();
        assert_eq!((v.dimensions.width, v.dimensions.height), (640, 360));
        // The next keyframe without parameter sets gets the new ones.
        let au = media(one(&mut d, TAG_VIDEO, 80, &nalu_tag(true, 0, &[&[0x65, 8]])).unwrap());
        let b = au.data.to_contiguous();
        assert!(b.windows(sps2.len()).any(|w| w == sps2));
    }

    #[test]
    fn incremental_reader_matches_whole_file_reader() {
        let tags: Vec<(u8, u32, Vec<u8>)> =
            vec![(9, 0, b"abc".to_vec()), (8, 1000 + 0x0100_0000, vec![]), (9, 2000 + 0x0200_0000, b"defgh".to_vec())];
        let file = flv_file(&tags);
        let whole: Vec<FlvTag> = FlvFileReader::new(Bytes::from(file.clone())).unwrap().map(Result::unwrap).collect();
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[2].timestamp, 2000 + 0x0200_0000);
        for step in [1, 2, 7, 100] {
            let got = decode_in_steps(&file, step);
            assert_eq!(got.len(), whole.len());
            for (a, b) in got.iter().zip(&whole) {
                assert_eq!((a.tag_type, a.timestamp, &a.body), (b.tag_type, b.timestamp, &b.body));
            }
        }
        assert!(FlvTagDecoder::new().decode(&mut BytesMut::from(&b"GIF89a....."[..])).is_err());
    }

    /// Decodes `file` fed `step` bytes at a time; every byte must be consumed.
    fn decode_in_steps(file: &[u8], step: usize) -> Vec<FlvTag> {
        let mut dec = FlvTagDecoder::new();
        let mut buf = BytesMut::new();
        let mut got = vec![];
        for piece in file.chunks(step) {
            buf.extend_from_slice(piece);
            while let Some(t) = dec.decode(&mut buf).unwrap() {
                got.push(t);
            }
        }
        assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
        got
    }

    fn flv_file(tags: &[(u8, u32, Vec<u8>)]) -> Vec<u8> {
        let mut file = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        for (ty, ts, body) in tags {
            file.push(*ty);
            file.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            file.extend_from_slice(&ts.to_be_bytes()[1..]);
            file.push((ts >> 24) as u8);
            file.extend_from_slice(&[0, 0, 0]);
            file.extend_from_slice(body);
            file.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        }
        file
    }

    proptest::proptest! {
        #[test]
        fn tag_decoder_is_split_invariant(
            tags in proptest::collection::vec((proptest::prop_oneof![proptest::strategy::Just(8u8), proptest::strategy::Just(9u8), proptest::strategy::Just(18u8)], proptest::prelude::any::<u32>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)), 0..12),
            step in 1usize..64,
        ) {
            let got: Vec<_> = decode_in_steps(&flv_file(&tags), step)
                .into_iter()
                .map(|t| (t.tag_type, t.timestamp, t.body.to_vec()))
                .collect();
            proptest::prop_assert_eq!(got, tags);
        }

        #[test]
        fn garbage_never_panics(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let _ = FlvTagDecoder::new().decode(&mut BytesMut::from(&data[..]));
            let _ = FlvFileReader::new(Bytes::from(data.clone())).map(|r| r.count());
            let b = Bytes::from(data);
            let cut = if b.is_empty() { 0 } else { cut % b.len() };
            let mut p = Payload::new();
            p.push(b.slice(..cut));
            p.push(b.slice(cut..));
            let mut d = FlvDemuxer::new();
            let mut out = vec![];
            let _ = d.handle_tag(TAG_VIDEO, 0, &seq_header(), &mut out);
            let _ = d.handle_tag(TAG_VIDEO, 1, &p, &mut out);
            let _ = d.handle_tag(TAG_AUDIO, 1, &p, &mut out);
        }
    }

    #[test]
    fn timestamps_unwrap() {
        let mut c = TimestampExtender::default();
        assert_eq!(c.extend(u32::MAX - 10), u32::MAX as i64 - 10);
        assert_eq!(c.extend(5), u32::MAX as i64 + 6);
        assert_eq!(c.extend(1), u32::MAX as i64 + 2);
    }
}
