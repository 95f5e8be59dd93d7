//! The boxes: init segments, chunks (`moof` + `mdat`), and the samples of access units,
//! written once into the buffers chunks take their `mdat` bodies from.
use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use media::{AacConfig, AccessUnit, H264Config, NalUnits, Payload, TrackKind};
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

/// The bytes of the samples written and not yet claimed by a chunk, in decode order: the
/// one copy of each payload byte, made when its access unit arrives. A chunk's `mdat`
/// body is the first bytes of this stream, taken as `Bytes` handles (no copy). The stream
/// lives in buffers that are filled and never regrown: what does not fit the open one
/// goes on in a new one (a sample may span two), and the full one's unclaimed bytes are
/// kept frozen, so no byte is ever moved and no room is left unused.
#[derive(Debug, Default)]
pub(super) struct SampleBytes {
    /// Unclaimed bytes of earlier, full buffers, in order.
    carried: VecDeque<Bytes>,
    /// The buffer being written (its unclaimed bytes follow the carried ones).
    open: BytesMut,
}

/// The size of the buffers [`SampleBytes`] opens (larger only for a larger write). A
/// buffer lives as long as the last part with bytes in it; small ones are given back
/// sooner, and stay below the allocator's `mmap` threshold (128 KiB for glibc), where
/// freed memory is reused warm instead of mapped afresh.
const SAMPLE_BUFFER: usize = 64 * 1024;

impl SampleBytes {
    /// Appends `src` (the copy): into the open buffer as far as it has room, the rest
    /// into a new one ([`SAMPLE_BUFFER`] bytes, or the rest's size if larger).
    #[inline]
    fn put(&mut self, src: &[u8]) {
        let room = self.open.capacity() - self.open.len();
        if src.len() <= room {
            self.open.extend_from_slice(src);
            return;
        }
        let (now, rest) = src.split_at(room);
        self.open.extend_from_slice(now);
        let full = std::mem::replace(&mut self.open, BytesMut::with_capacity(rest.len().max(SAMPLE_BUFFER)));
        if !full.is_empty() {
            self.carried.push_back(full.freeze());
        }
        self.open.extend_from_slice(rest);
    }

    /// Appends bytes `begin..end` of `p`.
    fn put_range(&mut self, p: &Payload, begin: usize, end: usize) {
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
            self.put(&f[begin.max(fs) - fs..end.min(fe) - fs]);
        }
    }

    /// Moves the first `n` unclaimed bytes to `out`, as handles. There must be `n`: the
    /// cutter claims exactly what it wrote.
    fn take(&mut self, mut n: usize, out: &mut Payload) {
        debug_assert!(n <= self.unclaimed(), "claiming {n} bytes of {}", self.unclaimed());
        while n > 0 {
            let Some(front) = self.carried.front_mut() else { break };
            if front.len() > n {
                out.push(front.split_to(n));
                return;
            }
            n -= front.len();
            if let Some(b) = self.carried.pop_front() {
                out.push(b);
            }
        }
        let n = n.min(self.open.len());
        if n > 0 {
            out.push(self.open.split_to(n).freeze());
        }
    }

    /// Bytes written and not claimed.
    pub(super) fn unclaimed(&self) -> usize {
        self.carried.iter().map(Bytes::len).sum::<usize>() + self.open.len()
    }
}

/// One sample: its timing and kind, and its size (its bytes are next in the cutter's
/// [`SampleBytes`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub(super) dts: u64,
    pub(super) cts_offset: i64,
    pub(super) duration: u32,
    pub(super) sync: bool,
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

/// Writes the samples of `au` (at `dts`/`pts` in track ticks) to `bytes`, the one copy of
/// its payload, and appends them to `out`: video, one sample of the access unit's NAL
/// units with 4-byte lengths (access unit delimiters and parameter sets dropped: they are
/// in the `avcC`); audio, one sample per ADTS frame without its header. `nals` is scratch
/// space.
pub(super) fn write_samples(
    au: &AccessUnit,
    (dts, pts): (u64, u64),
    nals: &mut NalUnits,
    bytes: &mut SampleBytes,
    out: &mut Vec<Sample>,
) {
    let data = &au.data;
    match au.track {
        TrackKind::Video => {
            let mut size = 0;
            for nal in nals.split(data) {
                // AUD (9), SPS (7) and PPS (8) are not samples' business in `avc1`.
                if matches!(nal.nal_type(), 7..=9) {
                    continue;
                }
                size += 4 + nal.len();
                bytes.put(&(nal.len() as u32).to_be_bytes());
                for f in nal.fragments() {
                    bytes.put(f);
                }
            }
            let cts_offset = pts as i64 - dts as i64;
            out.push(Sample { dts, cts_offset, duration: 0, sync: au.keyframe, size });
        }
        TrackKind::Audio => {
            // One sample per ADTS frame (1024 PCM samples each). The fixed header (7
            // bytes) says all that is needed, the CRC's presence too.
            let (mut at, mut offset) = (dts, 0usize);
            let mut head = [0u8; 7];
            while offset < data.len() {
                if !data.copy_range(offset, &mut head) {
                    break;
                }
                let Ok((_, frame_len)) = AacConfig::from_adts_header(&head) else { break };
                let header = if head[1] & 1 == 0 { 9 } else { 7 };
                if frame_len < header || offset + frame_len > data.len() {
                    break;
                }
                let size = frame_len - header;
                bytes.put_range(data, offset + header, offset + frame_len);
                out.push(Sample { dts: at, cts_offset: 0, duration: 1024, sync: true, size });
                at += 1024;
                offset += frame_len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(parts: &[&'static [u8]]) -> Payload {
        let mut p = Payload::new();
        for f in parts {
            p.push(Bytes::from_static(f));
        }
        p
    }

    /// Bytes claimed across a buffer change come out in order, and none is copied twice:
    /// a write that does not fit fills the open buffer and goes on in a new one, and the
    /// full buffer's unclaimed bytes are handed out as they were written.
    #[test]
    fn sample_bytes_are_claimed_in_order_across_buffers() {
        let mut b = SampleBytes::default();
        let data = payload(&[b"abcdef", b"ghij"]);
        b.put_range(&data, 0, 10);
        let first_buffer = b.open.as_ptr();
        // Fill the buffer but for two bytes: the next write of four spans two buffers.
        let filler = vec![b'x'; b.open.capacity() - b.open.len() - 2];
        b.put(&filler);
        b.put_range(&data, 2, 6);
        assert_eq!(b.open.as_ref(), b"ef", "the rest went into a new buffer");
        assert_eq!(b.unclaimed(), 10 + filler.len() + 4);
        let mut out = Payload::new();
        b.take(3, &mut out);
        assert_eq!(out.to_contiguous(), Bytes::from_static(b"abc"));
        assert_eq!(out.parts()[0].as_ptr(), first_buffer, "a handle into the buffer, not a copy");
        let mut out = Payload::new();
        b.take(7 + filler.len() + 3, &mut out);
        let mut want = b"defghij".to_vec();
        want.extend_from_slice(&filler);
        want.extend_from_slice(b"cde");
        assert_eq!(out.to_contiguous(), Bytes::from(want));
        assert_eq!(out.parts().len(), 2, "the rest of the full buffer, then the open one");
        let mut out = Payload::new();
        b.take(1, &mut out);
        assert_eq!(out.to_contiguous(), Bytes::from_static(b"f"));
        assert_eq!(b.unclaimed(), 0);
    }

    /// A video sample is its NAL units with lengths, AUD and parameter sets dropped, from
    /// a framed payload (markers) and a scanned one alike.
    #[test]
    fn video_samples_are_length_prefixed_nal_units() {
        let mut framed = Payload::new();
        for nal in [&[0x09u8, 0xf0][..], &[0x67, 1, 2], &[0x68, 3], &[0x65, 4, 5, 6]] {
            framed.push_start_code();
            framed.push(Bytes::copy_from_slice(nal));
        }
        let scanned = payload(&[b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x67\x01", b"\x02\x00\x00\x01\x65\x04\x05\x06"]);
        for data in [framed, scanned] {
            let au = AccessUnit {
                track: TrackKind::Video,
                dts: media::MediaTime::new(0, media::Timescale::MPEG),
                pts: media::MediaTime::new(3000, media::Timescale::MPEG),
                keyframe: true,
                data,
            };
            let (mut b, mut out) = (SampleBytes::default(), Vec::new());
            write_samples(&au, (0, 3000), &mut NalUnits::new(), &mut b, &mut out);
            assert_eq!(out.len(), 1);
            assert_eq!((out[0].size, out[0].cts_offset, out[0].sync), (8, 3000, true));
            let mut got = Payload::new();
            b.take(out[0].size, &mut got);
            assert_eq!(got.to_contiguous(), Bytes::from_static(&[0, 0, 0, 4, 0x65, 4, 5, 6]));
        }
    }
}
