//! The boxes: init segments, chunks (`moof` + `mdat`), and the samples of an access unit
//! as slices of its fragments.
use bytes::{BufMut, Bytes, BytesMut};
use media::{AacConfig, AccessUnit, H264Config, Payload, TrackKind};
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

/// A piece of a sample's `mdat` bytes.
#[derive(Debug, Clone)]
pub(super) enum Piece {
    /// A NAL unit's 4-byte big-endian length.
    Length(u32),
    /// Payload bytes (a slice of the access unit's).
    Data(Bytes),
}

/// One sample: its timing, kind, and bytes (as slices of the access unit's payload).
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub(super) dts: u64,
    pub(super) cts_offset: i64,
    pub(super) duration: u32,
    pub(super) sync: bool,
    /// Video: (NAL length, NAL) pairs; audio: the raw AAC frame.
    pub(super) parts: Vec<Piece>,
    pub(super) size: usize,
}

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: f64 = 2_208_988_800.0;

/// Unix seconds as a 64-bit NTP timestamp (32.32 fixed point since 1900).
pub(super) fn ntp_timestamp(unix: f64) -> u64 {
    let ntp = (unix + NTP_UNIX_OFFSET).max(0.0);
    let secs = ntp.trunc();
    ((secs as u64) << 32) | (((ntp - secs) * 4_294_967_296.0) as u64 & 0xffff_ffff)
}

/// A `prft` box (ISO/IEC 14496-12 §8.16.5): the sample at `media_time` (track ticks) of
/// the following fragment reached the gateway at `unix` (Unix seconds).
pub(super) fn producer_reference_time(media_time: u64, unix: f64) -> Result<Vec<u8>, CmafError> {
    let mut out = Vec::with_capacity(32);
    mp4_atom::Prft {
        reference_track_id: TRACK_ID,
        ntp_timestamp: ntp_timestamp(unix),
        media_time,
        utc_time_semantics: mp4_atom::ReferenceTime::Input,
    }
    .encode(&mut out)?;
    Ok(out)
}

/// A chunk (`moof` + `mdat`) of `samples`, sequence number `sequence`, behind `prefix`
/// (the `styp` and `prft` that open a segment, or nothing), in one buffer: the samples'
/// bytes are copied once, here.
pub(super) fn chunk(sequence: u32, samples: &[Sample], prefix: &[u8]) -> Result<Bytes, CmafError> {
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
    // The data offset counts from the moof's first byte to the first sample: known once
    // the moof is encoded, and written into its `trun` in place.
    let mut head = Vec::with_capacity(64 + 16 * samples.len());
    moof.encode(&mut head)?;
    let offset = (head.len() + 8) as i32;
    if !patch_data_offset(&mut head, offset) {
        moof.traf[0].trun[0].data_offset = Some(offset);
        head.clear();
        moof.encode(&mut head)?;
    }
    let body: usize = samples.iter().map(|s| s.size).sum();
    let mut out = BytesMut::with_capacity(prefix.len() + head.len() + 8 + body);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&head);
    out.put_u32((8 + body) as u32);
    out.extend_from_slice(b"mdat");
    for s in samples {
        for p in &s.parts {
            match p {
                Piece::Length(n) => out.put_u32(*n),
                Piece::Data(d) => out.extend_from_slice(d),
            }
        }
    }
    Ok(out.freeze())
}

/// Writes `offset` into the `data_offset` of the first `trun` of the first `traf` of
/// the encoded `moof` (which must have been encoded with a `data_offset`). False if the
/// boxes are not laid out as expected.
fn patch_data_offset(moof: &mut [u8], offset: i32) -> bool {
    /// The first child box of type `kind` in `buf[from..to]`: its start.
    fn find(buf: &[u8], from: usize, to: usize, kind: &[u8; 4]) -> Option<usize> {
        let mut at = from;
        while at + 8 <= to {
            let size = u32::from_be_bytes(buf[at..at + 4].try_into().ok()?) as usize;
            if size < 8 || at + size > to {
                return None;
            }
            if &buf[at + 4..at + 8] == kind {
                return Some(at);
            }
            at += size;
        }
        None
    }
    let size = |at: usize| u32::from_be_bytes([moof[at], moof[at + 1], moof[at + 2], moof[at + 3]]) as usize;
    let Some(traf) = find(moof, 8, moof.len(), b"traf") else { return false };
    let Some(trun) = find(moof, traf + 8, traf + size(traf), b"trun") else { return false };
    // Header (8), version and flags (4; data-offset-present is 0x000001), sample count (4).
    let (flags, at) = (moof[trun + 11], trun + 16);
    if flags & 1 == 0 || at + 4 > trun + size(trun) {
        return false;
    }
    moof[at..at + 4].copy_from_slice(&offset.to_be_bytes());
    true
}

/// Bytes `begin..end` of `p` as slices of its fragments (no copy), appended to `out`.
fn push_range(p: &Payload, begin: usize, end: usize, out: &mut Vec<Piece>) {
    let mut off = 0;
    for f in p.parts() {
        let (fs, fe) = (off, off + f.len());
        off = fe;
        if fe <= begin {
            continue;
        }
        if fs >= end {
            break;
        }
        out.push(Piece::Data(f.slice(begin.max(fs) - fs..end.min(fe) - fs)));
    }
}

/// The NAL units of a fragmented Annex B payload as `(begin, end)` byte ranges, start
/// codes (and zeros before them) excluded; the scan crosses fragment boundaries.
fn nal_ranges(p: &Payload, starts: &mut Vec<(usize, usize)>) {
    // First (first byte of the NAL, first byte of its start code) for each start code,
    // then turned into the ranges in place.
    starts.clear();
    // Zeros at the end of the fragments before this one (a start code may straddle).
    let (mut carry, mut base) = (0usize, 0usize);
    for part in p.parts() {
        let zeros_before = |j: usize| {
            let z = part[..j].iter().rev().take_while(|&&b| b == 0).count();
            if z == j { z + carry } else { z }
        };
        for j in memchr::memchr_iter(1, part) {
            let z = zeros_before(j);
            if z >= 2 {
                starts.push((base + j + 1, base + j - z));
            }
        }
        carry = zeros_before(part.len());
        base += part.len();
    }
    for k in 0..starts.len() {
        starts[k].1 = starts.get(k + 1).map_or(p.len(), |n| n.1);
    }
}

/// The samples of `au`, at `dts`/`pts` in track ticks. Their bytes are slices of the
/// access unit's fragments (nothing is copied here; the chunk writer copies once).
///
/// `ranges` is scratch space; the samples are appended to `out`.
pub(super) fn samples_of(
    au: &AccessUnit,
    config: &TrackConfig,
    dts: u64,
    pts: u64,
    ranges: &mut Vec<(usize, usize)>,
    out: &mut Vec<Sample>,
) {
    let data = &au.data;
    match config {
        TrackConfig::Video(_) => {
            nal_ranges(data, ranges);
            let mut parts = Vec::with_capacity(2 * ranges.len() + 2);
            let mut size = 0;
            for &(begin, end) in ranges.iter() {
                let mut kind = [0u8];
                if begin >= end || !data.copy_range(begin, &mut kind) {
                    continue;
                }
                // AUD (9), SPS (7) and PPS (8) are not samples' business in `avc1`.
                if matches!(kind[0] & 0x1f, 7..=9) {
                    continue;
                }
                size += 4 + (end - begin);
                parts.push(Piece::Length((end - begin) as u32));
                push_range(data, begin, end, &mut parts);
            }
            out.push(Sample { dts, cts_offset: pts as i64 - dts as i64, duration: 0, sync: au.keyframe, parts, size });
        }
        TrackConfig::Audio(_) => {
            // One sample per ADTS frame (1024 PCM samples each).
            let (mut at, mut offset) = (dts, 0usize);
            let mut head = [0u8; 9];
            while offset < data.len() {
                let n = (data.len() - offset).min(9);
                if !data.copy_range(offset, &mut head[..n]) {
                    break;
                }
                let Ok((_, frame_len)) = AacConfig::from_adts_header(&head[..n]) else { break };
                let header = if head[1] & 1 == 0 { 9 } else { 7 };
                if frame_len < header || offset + frame_len > data.len() {
                    break;
                }
                let mut parts = Vec::with_capacity(1);
                push_range(data, offset + header, offset + frame_len, &mut parts);
                out.push(Sample {
                    dts: at,
                    cts_offset: 0,
                    duration: 1024,
                    sync: true,
                    size: frame_len - header,
                    parts,
                });
                at += 1024;
                offset += frame_len;
            }
        }
    }
}
