//! CMAF (fragmented MP4, ISO/IEC 23000-19) for DASH and fMP4/LL-HLS: one track per
//! file, an init segment (`ftyp` + `moov` with `mvex`) and media segments made of chunks
//! (`moof` + `mdat`), each chunk one LL-HLS part. Boxes are encoded with `mp4-atom`; the
//! samples go into the `mdat` directly, so each payload byte is copied once, from the
//! access unit into its chunk.
//!
//! [`CmafCutter`] is the sans-IO cutter for one track: access units in, [`CmafEvent`]s
//! out. It never reads a clock:
//! - a video segment starts at a keyframe once `segment_target` has passed;
//! - an audio track follows the video's segment starts ([`CmafCutter::cut_at`]), or its
//!   own target when the stream has no video;
//! - a part (chunk) closes before the sample that would take it past `part_target`, so
//!   no part is longer than the target (one sample longer than it aside).
//!
//! A sample's duration is the distance to the next one's decode time, so a chunk holds
//! the samples before the one that closes it. Video samples are the access unit's NAL
//! units with 4-byte lengths (access unit delimiters and parameter sets dropped: they are
//! in the `avcC`); audio samples are the ADTS frames without their headers.
use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use media::{AacConfig, AccessUnit, H264Config, MediaTime, Payload, Timescale, TrackKind};
use mp4_atom::{
    Audio, Avc1, Avcc, Codec, Dinf, Dref, Encode, FourCC, Ftyp, Hdlr, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex,
    Mvhd, Smhd, Stbl, Stco, Stsc, Stsd, Stsz, Stts, Styp, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry,
    TrunSamples, Url, Visual, Vmhd, esds,
};

/// Every CMAF file here holds one track, with this id.
pub const TRACK_ID: u32 = 1;

/// Sample flags: a sync sample (depends on nothing).
const SYNC: u32 = 0x0200_0000;
/// Sample flags: not a sync sample (depends on others, `sample_is_non_sync_sample`).
const NON_SYNC: u32 = 0x0101_0000;

/// Why a CMAF file could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmafError {
    /// A box could not be encoded.
    #[error("mp4 encoding: {0}")]
    Encode(String),
}

impl From<mp4_atom::Error> for CmafError {
    fn from(e: mp4_atom::Error) -> Self {
        CmafError::Encode(e.to_string())
    }
}

/// A track's decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackConfig {
    /// H.264 video (timescale 90 kHz).
    Video(H264Config),
    /// AAC audio (timescale: the sampling rate).
    Audio(AacConfig),
}

impl TrackConfig {
    /// Ticks per second of the track's media timeline.
    pub fn timescale(&self) -> u32 {
        match self {
            TrackConfig::Video(_) => 90_000,
            TrackConfig::Audio(a) => a.sample_rate.max(1),
        }
    }

    /// The RFC 6381 codecs string: `avc1.PPCCLL` or `mp4a.40.N`.
    pub fn codecs(&self) -> String {
        match self {
            TrackConfig::Video(v) => format!("avc1.{:02x}{:02x}{:02x}", v.profile, v.compatibility, v.level),
            TrackConfig::Audio(a) => format!("mp4a.40.{}", a.object_type),
        }
    }

    /// The track kind.
    pub fn kind(&self) -> TrackKind {
        match self {
            TrackConfig::Video(_) => TrackKind::Video,
            TrackConfig::Audio(_) => TrackKind::Audio,
        }
    }
}

fn brands() -> (FourCC, Vec<FourCC>) {
    (FourCC::new(b"cmf2"), vec![FourCC::new(b"cmf2"), FourCC::new(b"cmfc"), FourCC::new(b"iso6"), FourCC::new(b"mp41")])
}

/// The init segment (`ftyp` + `moov`) of a one-track CMAF file for `config`.
///
/// Errors: [`CmafError::Encode`] if a box cannot be encoded (a parameter set over 64 KiB).
pub fn init_segment(config: &TrackConfig) -> Result<Bytes, CmafError> {
    let (major, compatible) = brands();
    let timescale = config.timescale();
    let dinf = Dinf { dref: Dref { entries: vec![Url { location: String::new() }.into()] } };
    let empty_tables = |codec: Codec| Stbl {
        stsd: Stsd { codecs: vec![codec] },
        stts: Stts::default(),
        stsc: Stsc::default(),
        stsz: Stsz::default(),
        stco: Some(Stco::default()),
        ..Default::default()
    };
    let (tkhd, hdlr, minf) = match config {
        TrackConfig::Video(v) => {
            let (w, h) =
                (v.dimensions.width.min(u16::MAX as u32) as u16, v.dimensions.height.min(u16::MAX as u32) as u16);
            let avc1 = Avc1 {
                visual: Visual {
                    data_reference_index: 1,
                    width: w,
                    height: h,
                    horizresolution: 72.into(),
                    vertresolution: 72.into(),
                    frame_count: 1,
                    compressor: "".into(),
                    depth: 24,
                },
                avcc: Avcc {
                    configuration_version: 1,
                    avc_profile_indication: v.profile,
                    profile_compatibility: v.compatibility,
                    avc_level_indication: v.level,
                    length_size: 4,
                    sequence_parameter_sets: v.sps.iter().map(|s| s.to_vec()).collect(),
                    picture_parameter_sets: v.pps.iter().map(|s| s.to_vec()).collect(),
                    ext: None,
                },
                ..Default::default()
            };
            (
                Tkhd {
                    track_id: TRACK_ID,
                    enabled: true,
                    in_movie: true,
                    width: w.into(),
                    height: h.into(),
                    ..Default::default()
                },
                Hdlr { handler: FourCC::new(b"vide"), name: "Sluice video".into() },
                Minf { vmhd: Some(Vmhd::default()), dinf, stbl: empty_tables(Codec::Avc1(avc1)), ..Default::default() },
            )
        }
        TrackConfig::Audio(a) => {
            let mp4a = Mp4a {
                audio: Audio {
                    data_reference_index: 1,
                    channel_count: u16::from(a.channel_config.max(1)),
                    sample_size: 16,
                    sample_rate: (a.sample_rate.min(u16::MAX as u32) as u16).into(),
                },
                esds: mp4_atom::Esds {
                    es_desc: esds::EsDescriptor {
                        es_id: TRACK_ID as u16,
                        depends_on_es_id: None,
                        url: None,
                        ocr_es_id: None,
                        stream_priority: 0,
                        dec_config: esds::DecoderConfig {
                            object_type_indication: 0x40,
                            stream_type: 5,
                            dec_specific: Some(esds::DecoderSpecific {
                                profile: a.object_type,
                                freq_index: a.frequency_index,
                                chan_conf: a.channel_config,
                                raw: Vec::new(),
                            }),
                            ..Default::default()
                        },
                        sl_config: esds::SLConfig {},
                    },
                },
                btrt: None,
                taic: None,
            };
            (
                Tkhd {
                    track_id: TRACK_ID,
                    enabled: true,
                    in_movie: true,
                    alternate_group: 1,
                    volume: 1.into(),
                    ..Default::default()
                },
                Hdlr { handler: FourCC::new(b"soun"), name: "Sluice audio".into() },
                Minf { smhd: Some(Smhd::default()), dinf, stbl: empty_tables(Codec::Mp4a(mp4a)), ..Default::default() },
            )
        }
    };
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id: TRACK_ID + 1,
            ..Default::default()
        },
        mvex: Some(Mvex {
            trex: vec![Trex { track_id: TRACK_ID, default_sample_description_index: 1, ..Default::default() }],
            ..Default::default()
        }),
        trak: vec![Trak {
            tkhd,
            mdia: Mdia { mdhd: Mdhd { timescale, language: "und".into(), ..Default::default() }, hdlr, minf },
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = Vec::with_capacity(1024);
    Ftyp { major_brand: major, minor_version: 0, compatible_brands: compatible }.encode(&mut out)?;
    moov.encode(&mut out)?;
    Ok(Bytes::from(out))
}

/// The `styp` box that opens each media segment.
pub fn segment_type() -> Bytes {
    let (major, compatible) = brands();
    let mut out = Vec::with_capacity(32);
    // A fixed box of a few bytes cannot fail to encode.
    let _ = Styp { major_brand: major, minor_version: 0, compatible_brands: compatible }.encode(&mut out);
    Bytes::from(out)
}

/// One sample: its timing, kind, and bytes (as slices of the access unit's payload).
#[derive(Debug, Clone)]
struct Sample {
    dts: u64,
    cts_offset: i64,
    duration: u32,
    sync: bool,
    /// Video: (NAL length, NAL) pairs; audio: the raw AAC frame.
    parts: Vec<Bytes>,
    size: usize,
}

/// A chunk (`moof` + `mdat`) of `samples`, sequence number `sequence`.
fn chunk(sequence: u32, samples: &[Sample]) -> Result<Bytes, CmafError> {
    let entries: Vec<TrunEntry> = samples
        .iter()
        .map(|s| TrunEntry {
            duration: Some(s.duration),
            size: Some(s.size as u32),
            flags: Some(if s.sync { SYNC } else { NON_SYNC }),
            cts: Some(s.cts_offset),
        })
        .collect();
    let mut moof = Moof {
        mfhd: Mfhd { sequence_number: sequence },
        traf: vec![Traf {
            tfhd: Tfhd { track_id: TRACK_ID, default_base_is_moof: true, ..Default::default() },
            tfdt: Some(Tfdt { base_media_decode_time: samples.first().map_or(0, |s| s.dts) }),
            trun: vec![Trun { data_offset: Some(0), samples: TrunSamples::Explicit(entries) }],
            ..Default::default()
        }],
    };
    // The data offset counts from the moof's first byte to the first sample.
    let mut head = Vec::with_capacity(256);
    moof.encode(&mut head)?;
    let offset = head.len() + 8;
    moof.traf[0].trun[0].data_offset = Some(offset as i32);
    head.clear();
    moof.encode(&mut head)?;
    let body: usize = samples.iter().map(|s| s.size).sum();
    let mut out = BytesMut::with_capacity(head.len() + 8 + body);
    out.extend_from_slice(&head);
    out.put_u32((8 + body) as u32);
    out.extend_from_slice(b"mdat");
    for s in samples {
        for p in &s.parts {
            out.extend_from_slice(p);
        }
    }
    Ok(out.freeze())
}

/// The NAL units of a fragmented Annex B payload as `(begin, end)` byte ranges, start
/// codes (and zeros before them) excluded; the scan crosses fragment boundaries.
fn nal_ranges(p: &Payload) -> Vec<(usize, usize)> {
    let mut starts = Vec::new();
    let (mut zeros, mut i) = (0usize, 0usize);
    for part in p.parts() {
        for &b in part.iter() {
            if b == 1 && zeros >= 2 {
                starts.push((i + 1, i - zeros));
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            i += 1;
        }
    }
    (0..starts.len()).map(|k| (starts[k].0, starts.get(k + 1).map_or(p.len(), |n| n.1))).collect()
}

/// The samples of `au`, at `dts`/`pts` in track ticks. Their bytes are slices of the
/// access unit's fragments (nothing is copied here; the chunk writer copies once).
fn samples_of(au: &AccessUnit, config: &TrackConfig, dts: u64, pts: u64) -> Vec<Sample> {
    let data = &au.data;
    match config {
        TrackConfig::Video(_) => {
            let mut parts = Vec::new();
            let mut size = 0;
            for (begin, end) in nal_ranges(data) {
                let Some(nal) = data.slice(begin, end).filter(|n| !n.is_empty()) else { continue };
                // AUD (9), SPS (7) and PPS (8) are not samples' business in `avc1`.
                if matches!(nal.parts()[0][0] & 0x1f, 7..=9) {
                    continue;
                }
                size += 4 + nal.len();
                parts.push(Bytes::copy_from_slice(&(nal.len() as u32).to_be_bytes()));
                parts.extend(nal.parts().iter().cloned());
            }
            vec![Sample { dts, cts_offset: pts as i64 - dts as i64, duration: 0, sync: au.keyframe, parts, size }]
        }
        TrackConfig::Audio(_) => {
            // One sample per ADTS frame (1024 PCM samples each).
            let mut out = Vec::new();
            let (mut at, mut offset) = (dts, 0usize);
            while let Some(head) = data.slice(offset, (offset + 9).min(data.len())).map(|h| h.to_contiguous()) {
                let Ok((_, frame_len)) = AacConfig::from_adts_header(&head) else { break };
                let header = if head[1] & 1 == 0 { 9 } else { 7 };
                let Some(raw) = data.slice(offset + header, offset + frame_len).filter(|_| frame_len >= header) else {
                    break;
                };
                out.push(Sample {
                    dts: at,
                    cts_offset: 0,
                    duration: 1024,
                    sync: true,
                    size: raw.len(),
                    parts: raw.parts().to_vec(),
                });
                at += 1024;
                offset += frame_len;
            }
            out
        }
    }
}

/// What the cutter hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum CmafEvent {
    /// A new init segment: at the start, and after a configuration change (a new
    /// timeline for the players: a discontinuity or a new period).
    Init {
        /// The configuration it describes.
        config: TrackConfig,
        /// `ftyp` + `moov`.
        data: Bytes,
    },
    /// A chunk of media segment `msn`: part `part` of it (from 0). The first part of a
    /// segment starts with the segment's `styp`.
    Part {
        /// Media sequence number of its segment.
        msn: u64,
        /// Index of the part in its segment.
        part: u32,
        /// Starts with a sync sample.
        independent: bool,
        /// Its start on the track's timeline, seconds (`tfdt` / timescale).
        start: f64,
        /// Seconds.
        duration: f64,
        /// `[styp] moof mdat`.
        data: Bytes,
    },
    /// A video keyframe that will start a new segment arrived: its decode time, for
    /// the audio track to cut there too ([`CmafCutter::cut_at`]). Comes before the parts
    /// of the segment it ends.
    SegmentStart {
        /// When, in 90 kHz ticks.
        at: MediaTime,
    },
    /// A video part after the first of its segment begins with the sample at `at` (90 kHz
    /// ticks): the audio track closes its part there too ([`CmafCutter::part_cut_at`]),
    /// so both tracks' parts end together and players' buffers grow in step.
    PartStart {
        /// When, in 90 kHz ticks.
        at: MediaTime,
    },
    /// Segment `msn` is complete.
    SegmentEnd {
        /// Its media sequence number.
        msn: u64,
        /// Its start, in track ticks (`tfdt` of its first chunk).
        start: u64,
        /// Its length in track ticks.
        duration: u64,
        /// Ticks per second.
        timescale: u32,
    },
}

/// Targets for a [`CmafCutter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CmafConfig {
    /// Segment length to reach before cutting (at a keyframe for video).
    pub segment_target: MediaTime,
    /// Part (chunk) length to reach before closing a part.
    pub part_target: MediaTime,
}

impl Default for CmafConfig {
    fn default() -> Self {
        CmafConfig {
            segment_target: MediaTime::from_secs_f64(2.0, Timescale::MPEG),
            part_target: MediaTime::from_secs_f64(0.5, Timescale::MPEG),
        }
    }
}

/// The sans-IO CMAF cutter of one track (see the module docs).
#[derive(Debug)]
pub struct CmafCutter {
    cfg: CmafConfig,
    kind: TrackKind,
    config: Option<TrackConfig>,
    /// The last sample, waiting for the next one to know its duration.
    pending: Option<Sample>,
    /// Samples of the part being built.
    part: Vec<Sample>,
    msn: u64,
    part_index: u32,
    sequence: u32,
    /// Start (ticks) of the open segment, if one is open.
    segment_start: Option<u64>,
    /// A segment must start at or after this time (audio following video), in ticks of
    /// the 90 kHz clock.
    cut_after: Option<i64>,
    /// End (ticks) of the last sample placed in a finished part.
    last_end: Option<u64>,
    /// An audio track of a stream with video: segments start only where the video's do.
    follow: bool,
    /// The next part starts at the first sample at or after this (90 kHz ticks).
    part_cut: Option<i64>,
    events: VecDeque<CmafEvent>,
}

impl CmafCutter {
    /// A cutter for a `kind` track; media sequence numbers start at `first_msn`.
    pub fn new(kind: TrackKind, cfg: CmafConfig, first_msn: u64) -> Self {
        CmafCutter {
            cfg,
            kind,
            config: None,
            pending: None,
            part: Vec::new(),
            msn: first_msn,
            part_index: 0,
            sequence: 1,
            segment_start: None,
            cut_after: None,
            last_end: None,
            follow: false,
            part_cut: None,
            events: VecDeque::new(),
        }
    }

    /// The track's configuration (from the stream's track info); a change ends the open
    /// segment and emits a new init segment.
    pub fn handle_config(&mut self, config: TrackConfig) {
        if config.kind() != self.kind || self.config.as_ref() == Some(&config) {
            return;
        }
        self.finish_segment();
        match init_segment(&config) {
            Ok(data) => self.events.push_back(CmafEvent::Init { config: config.clone(), data }),
            Err(_) => return,
        }
        self.config = Some(config);
    }

    /// An audio track of a stream with video cuts only where the video does
    /// ([`CmafCutter::cut_at`]), so the two tracks' segments line up.
    pub fn follow_video(&mut self, follow: bool) {
        self.follow = follow;
    }

    /// Closes the open part before the first sample at or after `at` (the start of a
    /// video part), so the tracks' parts line up. The part target still applies.
    pub fn part_cut_at(&mut self, at: MediaTime) {
        self.part_cut = Some(at.rescale(Timescale::MPEG).ticks());
    }

    /// Starts the next segment at the first sample at or after `at` (the start of a
    /// video segment), unless the open segment starts there or later.
    pub fn cut_at(&mut self, at: MediaTime) {
        self.cut_after = Some(at.rescale(Timescale::MPEG).ticks());
    }

    /// One access unit of this track, in decode order. Units of another track, or before
    /// a configuration, are ignored.
    pub fn handle_access_unit(&mut self, au: &AccessUnit) {
        let Some(config) = self.config.clone() else { return };
        if au.track != self.kind {
            return;
        }
        let scale = Timescale::new(config.timescale());
        let (dts, pts) = (au.dts.rescale(scale).ticks().max(0) as u64, au.pts.rescale(scale).ticks().max(0) as u64);
        let target = self.cfg.segment_target.rescale(scale).ticks().max(0) as u64;
        if self.kind == TrackKind::Video
            && au.keyframe
            && self.segment_start.is_some_and(|start| dts.saturating_sub(start) >= target)
        {
            self.events.push_back(CmafEvent::SegmentStart { at: au.dts.rescale(Timescale::MPEG) });
        }
        for mut s in samples_of(au, &config, dts, pts) {
            if let Some(mut prev) = self.pending.take() {
                prev.duration = s.dts.saturating_sub(prev.dts).min(u32::MAX as u64) as u32;
                if prev.duration == 0 {
                    prev.duration = 1;
                }
                self.place(prev, &config);
            }
            if s.parts.is_empty() {
                s.size = 0;
            }
            self.pending = Some(s);
        }
    }

    /// Decides where the complete sample `s` goes: a new segment, a new part, or the
    /// open part.
    fn place(&mut self, s: Sample, config: &TrackConfig) {
        let scale = config.timescale() as u64;
        let ticks = |m: MediaTime| m.rescale(Timescale::new(config.timescale())).ticks().max(0) as u64;
        let starts_segment = match (self.kind, self.segment_start) {
            (_, None) => true,
            (TrackKind::Video, Some(start)) => s.sync && s.dts.saturating_sub(start) >= ticks(self.cfg.segment_target),
            (TrackKind::Audio, Some(start)) => match self.cut_after {
                // In the common unit (ticks × both rates): the sample at or after the
                // cut, the open segment before it.
                Some(at) => {
                    let cut = at as i128 * scale as i128;
                    s.dts as i128 * 90_000 >= cut && (start as i128 * 90_000) < cut
                }
                None => !self.follow && s.dts.saturating_sub(start) >= ticks(self.cfg.segment_target),
            },
        };
        let at_part_cut = self.part_cut.is_some_and(|at| s.dts as i128 * 90_000 >= at as i128 * scale as i128);
        if starts_segment {
            self.finish_segment();
            self.segment_start = Some(s.dts);
            self.cut_after = None;
            self.part_cut = None;
        } else if at_part_cut && !self.part.is_empty() {
            self.finish_part();
            self.part_cut = None;
        } else if !self.part.is_empty()
            && self.part.iter().map(|p| p.duration as u64).sum::<u64>() + s.duration as u64
                > ticks(self.cfg.part_target)
        {
            // This sample would take the part past its target (LL-HLS: no part longer
            // than PART-TARGET): it opens the next one.
            self.finish_part();
            if self.kind == TrackKind::Video {
                let at = MediaTime::new(s.dts as i64, Timescale::new(config.timescale())).rescale(Timescale::MPEG);
                self.events.push_back(CmafEvent::PartStart { at });
            }
        }
        self.part.push(s);
    }

    fn finish_part(&mut self) {
        if self.part.is_empty() {
            return;
        }
        let samples = std::mem::take(&mut self.part);
        let Ok(body) = chunk(self.sequence, &samples) else { return };
        self.sequence = self.sequence.wrapping_add(1);
        let data = if self.part_index == 0 {
            let styp = segment_type();
            let mut b = BytesMut::with_capacity(styp.len() + body.len());
            b.extend_from_slice(&styp);
            b.extend_from_slice(&body);
            b.freeze()
        } else {
            body
        };
        let timescale = self.config.as_ref().map_or(90_000, TrackConfig::timescale) as f64;
        let duration = samples.iter().map(|s| s.duration as u64).sum::<u64>() as f64 / timescale;
        self.events.push_back(CmafEvent::Part {
            msn: self.msn,
            part: self.part_index,
            independent: samples[0].sync,
            start: samples[0].dts as f64 / timescale,
            duration,
            data,
        });
        self.part_index += 1;
        // Keep the segment's running length for its end.
        self.last_end = samples.last().map(|s| s.dts + s.duration as u64);
    }

    fn finish_segment(&mut self) {
        self.finish_part();
        if let (Some(start), Some(end)) = (self.segment_start.take(), self.last_end.take())
            && self.part_index > 0
        {
            self.events.push_back(CmafEvent::SegmentEnd {
                msn: self.msn,
                start,
                duration: end.saturating_sub(start),
                timescale: self.config.as_ref().map_or(90_000, TrackConfig::timescale),
            });
            self.msn += 1;
        }
        self.part_index = 0;
    }

    /// The stream ended: the last sample (with the previous one's duration) and the open
    /// segment go out.
    pub fn flush(&mut self) {
        if let (Some(mut last), Some(config)) = (self.pending.take(), self.config.clone()) {
            last.duration = self.part.last().map_or(3000, |p| p.duration).max(1);
            self.place(last, &config);
        }
        self.finish_segment();
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<CmafEvent> {
        self.events.pop_front()
    }

    /// The media sequence number the next segment will have.
    pub fn next_msn(&self) -> u64 {
        self.msn
    }
}
