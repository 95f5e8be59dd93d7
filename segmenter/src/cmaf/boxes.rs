//! The boxes: init segments and chunks (`moof` + `mdat`, the body taken from
//! [`SampleBytes`]).
use bytes::{BufMut, Bytes, BytesMut};
use media::{AacConfig, H264Config, Payload, TrackKind};

use super::samples::{Sample, SampleBytes};
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

/// The buffer boxes are encoded into: a `Vec` whose appends the compiler can inline into
/// `mp4-atom`'s encoders (a `moof` is mostly 4-byte fields), which the `Vec` impl in
/// `mp4-atom` does not allow across the crate boundary.
#[derive(Debug, Default)]
pub(super) struct BoxBuf(Vec<u8>);

impl mp4_atom::BufMut for BoxBuf {
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len()
    }

    #[inline(always)]
    fn append_slice(&mut self, val: &[u8]) {
        self.0.extend_from_slice(val);
    }

    #[inline(always)]
    fn set_slice(&mut self, pos: usize, val: &[u8]) {
        self.0[pos..pos + val.len()].copy_from_slice(val);
    }
}

/// What [`chunk`] keeps between chunks: the `moof` (its vectors reused), the buffer it is
/// encoded into, and the buffer chunk headers are cut from (one allocation for many).
#[derive(Debug)]
pub(super) struct ChunkScratch {
    moof: Moof,
    buf: BoxBuf,
    heads: BytesMut,
}

impl Default for ChunkScratch {
    fn default() -> Self {
        let moof = Moof {
            mfhd: Mfhd::default(),
            traf: vec![Traf {
                tfhd: Tfhd { track_id: TRACK_ID, default_base_is_moof: true, ..Default::default() },
                tfdt: Some(Tfdt::default()),
                trun: vec![Trun { data_offset: Some(0), samples: TrunSamples::Explicit(Vec::with_capacity(32)) }],
                ..Default::default()
            }],
        };
        ChunkScratch { moof, buf: BoxBuf(Vec::with_capacity(1024)), heads: BytesMut::new() }
    }
}

/// A chunk (`moof` + `mdat`) of `samples`, sequence number `sequence`, behind `prefix`
/// (the `styp` and `prft` that open a segment, or nothing): the header (`prefix`, `moof`
/// and the `mdat` header) as one handle, then the samples' bytes, claimed from `bytes`
/// (no copy). The samples' bytes are claimed even when the chunk fails, so the next
/// chunk's are next.
///
/// Errors: [`CmafError::Encode`] for no samples or a box that cannot be encoded.
pub(super) fn chunk(
    sequence: u32,
    samples: &[Sample],
    bytes: &mut SampleBytes,
    prefix: &[u8],
    scratch: &mut ChunkScratch,
) -> Result<Payload, CmafError> {
    let body_len: usize = samples.iter().map(|s| s.size).sum();
    let mut out = Payload::with_capacity(3);
    match chunk_head(sequence, samples, body_len, prefix, scratch) {
        Ok(head) => out.push(head),
        Err(e) => {
            bytes.take(body_len, &mut out);
            return Err(e);
        }
    }
    bytes.take(body_len, &mut out);
    Ok(out)
}

/// A chunk's header: `prefix`, the `moof` of `samples`, and the header of an `mdat` of
/// `body_len` bytes.
fn chunk_head(
    sequence: u32,
    samples: &[Sample],
    body_len: usize,
    prefix: &[u8],
    scratch: &mut ChunkScratch,
) -> Result<Bytes, CmafError> {
    let flags = |s: &Sample| if s.sync { SYNC } else { NON_SYNC };
    let (Some(first), Some(later)) = (samples.first(), samples.get(1).or(samples.first())) else {
        return Err(CmafError::Encode("a chunk without samples".into()));
    };
    // What the samples share goes into `tfhd` once (ISO/IEC 14496-12 §8.8.7): a common
    // duration, and the flags of every sample after the first (the first's own go into
    // `trun`'s first_sample_flags when they differ). Only sizes, and composition offsets
    // where there are any, are per sample.
    let duration = samples.iter().all(|s| s.duration == first.duration).then_some(first.duration);
    let default_flags = flags(later);
    let flags_per_sample = samples.iter().skip(1).any(|s| flags(s) != default_flags);
    let offsets = samples.iter().any(|s| s.cts_offset != 0);
    let ChunkScratch { moof, buf, heads } = scratch;
    moof.mfhd.sequence_number = sequence;
    let traf = &mut moof.traf[0];
    (traf.tfhd.default_sample_duration, traf.tfhd.default_sample_flags) = (duration, Some(default_flags));
    traf.tfdt = Some(Tfdt { base_media_decode_time: first.dts });
    let trun = &mut traf.trun[0];
    trun.data_offset = Some(0);
    if !matches!(trun.samples, TrunSamples::Explicit(_)) {
        trun.samples = TrunSamples::Explicit(Vec::new());
    }
    if let TrunSamples::Explicit(entries) = &mut trun.samples {
        entries.clear();
        entries.extend(samples.iter().enumerate().map(|(i, s)| TrunEntry {
            duration: if duration.is_some() { None } else { Some(s.duration) },
            size: Some(s.size as u32),
            flags: (flags_per_sample || (i == 0 && flags(s) != default_flags)).then(|| flags(s)),
            cts: offsets.then_some(s.cts_offset),
        }));
    }
    // The data offset counts from the moof's first byte to the first sample: known once
    // the moof is encoded, and written into its `trun` in place.
    buf.0.clear();
    moof.encode(buf)?;
    let offset = (buf.0.len() + 8) as i32;
    if !patch_data_offset(&mut buf.0, offset) {
        moof.traf[0].trun[0].data_offset = Some(offset);
        buf.0.clear();
        moof.encode(buf)?;
    }
    let head_len = prefix.len() + buf.0.len() + 8;
    if heads.capacity() - heads.len() < head_len {
        *heads = BytesMut::with_capacity(head_len.max(4096));
    }
    heads.extend_from_slice(prefix);
    heads.extend_from_slice(&buf.0);
    heads.put_u32((8 + body_len) as u32);
    heads.extend_from_slice(b"mdat");
    Ok(heads.split().freeze())
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
