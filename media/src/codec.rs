//! Codec configurations: H.264 (AVCDecoderConfigurationRecord, SPS) and AAC
//! (AudioSpecificConfig, ADTS).

use bytes::{Bytes, BytesMut};

use crate::bits::{BitReader, Eof, unescape_rbsp};

/// A codec configuration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The record ended before a field it declares.
    Truncated(&'static str),
    /// A field holds a value the format does not allow.
    Invalid(&'static str),
    /// Valid but not something Sluice can carry.
    Unsupported(&'static str),
}

// `media` depends on `bytes` only, so the error's Display is written by hand.
impl std::error::Error for CodecError {}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Truncated(what) => write!(f, "truncated {what}"),
            CodecError::Invalid(what) => write!(f, "invalid {what}"),
            CodecError::Unsupported(what) => write!(f, "unsupported {what}"),
        }
    }
}

impl From<Eof> for CodecError {
    fn from(_: Eof) -> Self {
        CodecError::Truncated("SPS")
    }
}

/// Picture size in luma samples after cropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VideoDimensions {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// H.264 decoder configuration: parameter sets and the NAL length size used in AVCC framing.
#[derive(Clone, PartialEq, Eq)]
pub struct H264Config {
    /// `profile_idc` from the SPS.
    pub profile: u8,
    /// The constraint flags byte.
    pub compatibility: u8,
    /// `level_idc`.
    pub level: u8,
    /// Bytes in each NAL length prefix in AVCC framing (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence parameter sets (NAL units without start codes).
    pub sps: Vec<Bytes>,
    /// Picture parameter sets.
    pub pps: Vec<Bytes>,
    /// Coded picture size from the first SPS.
    pub dimensions: VideoDimensions,
}

impl std::fmt::Debug for H264Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "H264Config({} {}x{}, {} sps, {} pps)",
            self.codec_string(),
            self.dimensions.width,
            self.dimensions.height,
            self.sps.len(),
            self.pps.len()
        )
    }
}

impl H264Config {
    /// Parses an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1). The parameter
    /// sets are sliced out of `record` without copying.
    pub fn from_avc_record(record: &Bytes) -> Result<Self, CodecError> {
        let r = record.as_ref();
        if r.len() < 7 {
            return Err(CodecError::Truncated("AVC decoder configuration record"));
        }
        if r[0] != 1 {
            return Err(CodecError::Invalid("AVC configurationVersion"));
        }
        let nal_length_size = (r[4] & 0b11) + 1;
        if nal_length_size == 3 {
            return Err(CodecError::Invalid("NAL length size 3"));
        }
        let mut pos = 5;
        let take_sets = |count: usize, pos: &mut usize| -> Result<Vec<Bytes>, CodecError> {
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                let len_bytes = r.get(*pos..*pos + 2).ok_or(CodecError::Truncated("parameter set length"))?;
                let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
                *pos += 2;
                if r.len() < *pos + len {
                    return Err(CodecError::Truncated("parameter set"));
                }
                out.push(record.slice(*pos..*pos + len));
                *pos += len;
            }
            Ok(out)
        };
        let num_sps = (r[5] & 0x1f) as usize;
        pos += 1;
        let sps = take_sets(num_sps, &mut pos)?;
        let num_pps = *r.get(pos).ok_or(CodecError::Truncated("PPS count"))? as usize;
        pos += 1;
        let pps = take_sets(num_pps, &mut pos)?;
        Self::from_parameter_sets(sps, pps, nal_length_size)
    }

    /// Builds a configuration from raw SPS and PPS NAL units (as found in band in Annex B).
    pub fn from_parameter_sets(sps: Vec<Bytes>, pps: Vec<Bytes>, nal_length_size: u8) -> Result<Self, CodecError> {
        let first = sps.first().ok_or(CodecError::Invalid("AVC record without SPS"))?;
        if pps.is_empty() {
            return Err(CodecError::Invalid("AVC record without PPS"));
        }
        if first.len() < 4 || first[0] & 0x1f != 7 {
            return Err(CodecError::Invalid("SPS NAL unit"));
        }
        let dimensions = parse_sps_dimensions(first)?;
        Ok(H264Config {
            profile: first[1],
            compatibility: first[2],
            level: first[3],
            nal_length_size,
            sps,
            pps,
            dimensions,
        })
    }

    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!("avc1.{:02x}{:02x}{:02x}", self.profile, self.compatibility, self.level)
    }
}

/// Reads the picture size from an SPS NAL unit (H.264 §7.3.2.1.1).
fn parse_sps_dimensions(sps_nal: &[u8]) -> Result<VideoDimensions, CodecError> {
    let rbsp = unescape_rbsp(&sps_nal[1..]);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags + level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = 0;
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return Err(CodecError::Invalid("chroma_format_idc"));
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(CodecError::Invalid("num_ref_frames_in_pic_order_cnt_cycle"));
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => return Err(CodecError::Invalid("pic_order_cnt_type")),
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? as u64 + 1;
    let height_map_units = r.ue()? as u64 + 1;
    let frame_mbs_only = r.bit()? as u64;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if r.bit()? == 1 {
        crop_l = r.ue()? as u64;
        crop_r = r.ue()? as u64;
        crop_t = r.ue()? as u64;
        crop_b = r.ue()? as u64;
    }
    let chroma_array_type = if separate_colour_plane == 1 { 0 } else { chroma_format_idc };
    let (sub_w, sub_h) = match chroma_format_idc {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let (crop_x, crop_y) =
        if chroma_array_type == 0 { (1, 2 - frame_mbs_only) } else { (sub_w, sub_h * (2 - frame_mbs_only)) };
    let width = (width_mbs * 16).saturating_sub(crop_x * (crop_l + crop_r));
    let height = ((2 - frame_mbs_only) * height_map_units * 16).saturating_sub(crop_y * (crop_t + crop_b));
    if width == 0 || height == 0 || width > 16384 || height > 16384 {
        return Err(CodecError::Invalid("picture size"));
    }
    Ok(VideoDimensions { width: width as u32, height: height as u32 })
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), Eof> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// AAC decoder configuration (ISO/IEC 14496-3 §1.6.2.1 AudioSpecificConfig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// Audio object type (2 = AAC LC, 5 = HE-AAC/SBR, 29 = HE-AACv2/PS).
    pub object_type: u8,
    /// Index into the ADTS sampling frequency table.
    pub frequency_index: u8,
    /// Sampling rate in Hz.
    pub sample_rate: u32,
    /// Channel configuration (1 = mono, 2 = stereo, ...).
    pub channel_config: u8,
}

const AAC_RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

impl AacConfig {
    /// Parses an AudioSpecificConfig.
    pub fn from_audio_specific_config(asc: &[u8]) -> Result<Self, CodecError> {
        let mut r = BitReader::new(asc);
        let trunc = |_| CodecError::Truncated("AudioSpecificConfig");
        let mut object_type = r.bits(5).map_err(trunc)?;
        if object_type == 31 {
            object_type = 32 + r.bits(6).map_err(trunc)?;
        }
        let frequency_index = r.bits(4).map_err(trunc)?;
        if frequency_index == 15 {
            // An explicit 24-bit rate cannot be expressed in an ADTS header.
            return Err(CodecError::Unsupported("explicit AAC sampling rate"));
        }
        let sample_rate =
            *AAC_RATES.get(frequency_index as usize).ok_or(CodecError::Invalid("AAC sampling frequency index"))?;
        let channel_config = r.bits(4).map_err(trunc)?;
        if object_type == 0 || object_type > 45 {
            return Err(CodecError::Invalid("AAC audio object type"));
        }
        if channel_config == 0 || channel_config > 7 {
            return Err(CodecError::Unsupported("AAC channel configuration"));
        }
        Ok(AacConfig {
            object_type: object_type as u8,
            frequency_index: frequency_index as u8,
            sample_rate,
            channel_config: channel_config as u8,
        })
    }

    /// The two-byte AudioSpecificConfig for this configuration.
    pub fn to_audio_specific_config(&self) -> [u8; 2] {
        let ot = self.object_type.min(31);
        [(ot << 3) | (self.frequency_index >> 1), ((self.frequency_index & 1) << 7) | (self.channel_config << 3)]
    }

    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// Samples per AAC frame (1024 for the core coder; SBR doubles the output rate but the
    /// timestamps in FLV/TS count core frames).
    pub fn samples_per_frame(&self) -> u32 {
        1024
    }

    /// The 7-byte ADTS header (ISO/IEC 13818-7 §6.2, no CRC) for a raw frame of
    /// `payload_len` bytes. ADTS has two bits of profile, so HE-AAC streams are signalled as
    /// AAC LC with implicit SBR, as every muxer does.
    pub fn adts_header(&self, payload_len: usize) -> Result<[u8; 7], CodecError> {
        let frame_len = payload_len + 7;
        if frame_len > 0x1fff {
            return Err(CodecError::Invalid("AAC frame longer than ADTS allows"));
        }
        let profile = match self.object_type {
            1..=4 => self.object_type - 1,
            _ => 1,
        };
        let fl = frame_len as u32;
        Ok([
            0xff,
            0xf1,
            (profile << 6) | (self.frequency_index << 2) | (self.channel_config >> 2),
            ((self.channel_config & 3) << 6) | ((fl >> 11) as u8 & 0x3),
            (fl >> 3) as u8,
            (((fl & 7) as u8) << 5) | 0x1f,
            0xfc,
        ])
    }

    /// The ADTS header as `Bytes`, for use as a payload fragment.
    pub fn adts_header_bytes(&self, payload_len: usize) -> Result<Bytes, CodecError> {
        let h = self.adts_header(payload_len)?;
        let mut b = BytesMut::with_capacity(7);
        b.extend_from_slice(&h);
        Ok(b.freeze())
    }

    /// Parses the configuration back out of an ADTS header.
    pub fn from_adts_header(h: &[u8]) -> Result<(Self, usize), CodecError> {
        if h.len() < 7 {
            return Err(CodecError::Truncated("ADTS header"));
        }
        if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
            return Err(CodecError::Invalid("ADTS syncword"));
        }
        let profile = h[2] >> 6;
        let frequency_index = (h[2] >> 2) & 0xf;
        let channel_config = ((h[2] & 1) << 2) | (h[3] >> 6);
        let frame_len = (((h[3] & 3) as usize) << 11) | ((h[4] as usize) << 3) | ((h[5] as usize) >> 5);
        let sample_rate =
            *AAC_RATES.get(frequency_index as usize).ok_or(CodecError::Invalid("AAC sampling frequency index"))?;
        Ok((AacConfig { object_type: profile + 1, frequency_index, sample_rate, channel_config }, frame_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A 1280x720 High profile (level 3.1) SPS in the form x264 writes it
    // (no frame cropping).
    const SPS_720P: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x6a, 0x02, 0x02, 0x02, 0x80, 0x00, 0x00,
        0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18, 0xcb,
    ];

    #[test]
    fn parses_720p_sps() {
        let d = parse_sps_dimensions(SPS_720P).unwrap();
        assert_eq!(d, VideoDimensions { width: 1280, height: 720 });
    }

    #[test]
    fn avc_record_slices_parameter_sets() {
        let mut rec = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, SPS_720P.len() as u8];
        rec.extend_from_slice(SPS_720P);
        rec.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        let cfg = H264Config::from_avc_record(&Bytes::from(rec)).unwrap();
        assert_eq!(cfg.nal_length_size, 4);
        assert_eq!(cfg.codec_string(), "avc1.64001f");
        assert_eq!(cfg.pps[0].as_ref(), &[0x68, 0xeb, 0xe3, 0xcb]);
        assert_eq!(cfg.dimensions.width, 1280);
    }

    #[test]
    fn truncated_avc_record_is_an_error() {
        let rec = Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 30, 0x67]);
        assert!(matches!(H264Config::from_avc_record(&rec), Err(CodecError::Truncated(_))));
    }

    #[test]
    fn adts_roundtrip() {
        let cfg = AacConfig::from_audio_specific_config(&[0x12, 0x10]).unwrap();
        assert_eq!((cfg.object_type, cfg.sample_rate, cfg.channel_config), (2, 44100, 2));
        let h = cfg.adts_header(300).unwrap();
        let (back, len) = AacConfig::from_adts_header(&h).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(len, 307);
        assert_eq!(cfg.to_audio_specific_config(), [0x12, 0x10]);
    }
}
