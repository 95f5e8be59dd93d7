//! Transport stream muxer: PAT/PMT, PES packetisation, PCR, continuity counters,
//! adaptation-field stuffing and the random access indicator.
//!
//! The muxer writes into a caller-owned `BytesMut`. Payload fragments are copied exactly
//! once, straight into the 184-byte packet payloads.

use bytes::{BufMut, BytesMut};
use media::{AccessUnit, MediaTime, Timescale, TrackKind};

use super::crc::crc32_mpeg2;
use super::*;

/// Which tracks the program carries: H.264 on [`PID_VIDEO`], AAC on [`PID_AUDIO`].
pub use media::TrackSet as TsTracks;

/// A transport stream muxer for one program.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    tracks: TsTracks,
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
}

impl TsMuxer {
    /// A muxer for the given tracks. The PCR rides on video if there is video.
    pub fn new(tracks: TsTracks) -> Self {
        TsMuxer { tracks, cc_pat: 0, cc_pmt: 0, cc_video: 0, cc_audio: 0 }
    }

    /// The tracks this muxer declares in its PMT.
    pub fn tracks(&self) -> TsTracks {
        self.tracks
    }

    fn pcr_pid(&self) -> u16 {
        if self.tracks.video { PID_VIDEO } else { PID_AUDIO }
    }

    /// Writes a PAT and a PMT (each in one packet). Every segment starts with them.
    pub fn write_tables(&mut self, out: &mut BytesMut) {
        // PAT: one program, number 1, on PID_PMT.
        let mut pat = [0u8; 12];
        pat[0] = 0x00; // table_id
        pat[1] = 0xb0; // section_syntax_indicator, '0', reserved, length hi
        pat[2] = 13; // section_length: 5 + 4 (program) + 4 (CRC)
        pat[3..5].copy_from_slice(&1u16.to_be_bytes()); // transport_stream_id
        pat[5] = 0xc1; // reserved, version 0, current_next 1
        pat[6] = 0; // section_number
        pat[7] = 0; // last_section_number
        pat[8..10].copy_from_slice(&1u16.to_be_bytes());
        pat[10..12].copy_from_slice(&(0xe000 | PID_PMT).to_be_bytes());
        let mut cc = self.cc_pat;
        write_section(out, PID_PAT, &mut cc, &pat);
        self.cc_pat = cc;

        let mut pmt = Vec::with_capacity(32);
        let n_streams = self.tracks.video as usize + self.tracks.audio as usize;
        let section_length = 9 + 5 * n_streams + 4;
        pmt.push(0x02);
        pmt.push(0xb0 | (section_length >> 8) as u8);
        pmt.push(section_length as u8);
        pmt.extend_from_slice(&1u16.to_be_bytes()); // program_number
        pmt.extend_from_slice(&[0xc1, 0, 0]);
        pmt.extend_from_slice(&(0xe000 | self.pcr_pid()).to_be_bytes());
        pmt.extend_from_slice(&[0xf0, 0]); // program_info_length 0
        if self.tracks.video {
            pmt.push(STREAM_TYPE_H264);
            pmt.extend_from_slice(&(0xe000 | PID_VIDEO).to_be_bytes());
            pmt.extend_from_slice(&[0xf0, 0]);
        }
        if self.tracks.audio {
            pmt.push(STREAM_TYPE_AAC);
            pmt.extend_from_slice(&(0xe000 | PID_AUDIO).to_be_bytes());
            pmt.extend_from_slice(&[0xf0, 0]);
        }
        let mut cc = self.cc_pmt;
        write_section(out, PID_PMT, &mut cc, &pmt);
        self.cc_pmt = cc;
    }

    /// Writes one access unit as a PES packet. Access units of a track the muxer does not
    /// declare are ignored (returns false).
    pub fn write_access_unit(&mut self, au: &AccessUnit, out: &mut BytesMut) -> bool {
        let (pid, stream_id) = match au.track {
            TrackKind::Video if self.tracks.video => (PID_VIDEO, 0xe0),
            TrackKind::Audio if self.tracks.audio => (PID_AUDIO, 0xc0),
            _ => return false,
        };
        let pts = ts90k(au.pts);
        let dts = ts90k(au.dts);
        let with_dts = pts != dts;
        // PES header (§2.4.3.6).
        let mut h = [0u8; 19];
        h[0..3].copy_from_slice(&[0, 0, 1]);
        h[3] = stream_id;
        let header_data_len = if with_dts { 10 } else { 5 };
        let pes_len = 3 + header_data_len + au.data.len();
        // 0 = unbounded, allowed for video only; audio frames always fit.
        let pes_len_field = if pes_len <= 0xffff { pes_len as u16 } else { 0 };
        h[4..6].copy_from_slice(&pes_len_field.to_be_bytes());
        h[6] = 0x84; // '10', data_alignment_indicator
        h[7] = if with_dts { 0xc0 } else { 0x80 };
        h[8] = header_data_len as u8;
        put_timestamp(&mut h[9..14], if with_dts { 0x3 } else { 0x2 }, pts);
        if with_dts {
            put_timestamp(&mut h[14..19], 0x1, dts);
        }
        let header = &h[..9 + header_data_len];

        let pcr = (pid == self.pcr_pid()).then_some(dts);
        let cc = match au.track {
            TrackKind::Video => &mut self.cc_video,
            TrackKind::Audio => &mut self.cc_audio,
        };
        let total = header.len() + au.data.len();
        let mut flags = 0u8;
        if au.keyframe && au.track == TrackKind::Video {
            flags |= 0x40; // random_access_indicator
        }
        if pcr.is_some() {
            flags |= 0x10; // PCR_flag
        }
        // Adaptation field bytes (length byte included) the first packet needs anyway.
        let first_af = if flags == 0 {
            0
        } else if pcr.is_some() {
            8
        } else {
            2
        };
        let n_packets = if total <= 184 - first_af { 1 } else { 1 + (total - (184 - first_af)).div_ceil(184) };
        // Size the region once, pre-filled with the stuffing byte, and write packets by
        // index: no per-byte capacity checks, and stuffing costs nothing extra.
        let start = out.len();
        out.resize(start + n_packets * PACKET_SIZE, 0xff);
        let mut src = Cursor { header, parts: au.data.parts(), part: 0, off: 0, header_off: 0 };
        let mut remaining = total;
        for (i, pkt) in out[start..].chunks_exact_mut(PACKET_SIZE).enumerate() {
            let first = i == 0;
            let mut af_len = if first { first_af } else { 0 };
            let mut stuffing = 0;
            if remaining < 184 - af_len {
                let need = 184 - af_len - remaining;
                if af_len == 0 {
                    // An adaptation field of length 0 is one byte; of length n, n+1 bytes.
                    af_len = if need == 1 { 1 } else { 2 };
                    stuffing = need.saturating_sub(af_len);
                } else {
                    stuffing = need;
                }
            }
            pkt[0] = SYNC;
            pkt[1] = if first { 0x40 } else { 0 } | (pid >> 8) as u8;
            pkt[2] = pid as u8;
            pkt[3] = if af_len > 0 { 0x30 } else { 0x10 } | *cc;
            *cc = (*cc + 1) & 0x0f;
            if af_len > 0 {
                pkt[4] = (af_len - 1 + stuffing) as u8;
                if af_len > 1 {
                    pkt[5] = if first { flags } else { 0 };
                    if let (true, Some(p)) = (first && flags & 0x10 != 0, pcr) {
                        pkt[6..12].copy_from_slice(&pcr_bytes(p));
                    }
                }
            }
            let body = 4 + af_len + stuffing;
            src.copy_into(&mut pkt[body..]);
            remaining -= PACKET_SIZE - body;
        }
        debug_assert_eq!(remaining, 0);
        true
    }
}

/// Reads the PES header then the payload fragments, in order.
struct Cursor<'a> {
    header: &'a [u8],
    header_off: usize,
    parts: &'a [bytes::Bytes],
    part: usize,
    off: usize,
}

impl Cursor<'_> {
    /// Fills `dst` with the next `dst.len()` bytes.
    fn copy_into(&mut self, dst: &mut [u8]) {
        let mut w = 0;
        if self.header_off < self.header.len() {
            let k = dst.len().min(self.header.len() - self.header_off);
            dst[..k].copy_from_slice(&self.header[self.header_off..self.header_off + k]);
            self.header_off += k;
            w = k;
        }
        while w < dst.len() {
            let p = &self.parts[self.part];
            let k = (dst.len() - w).min(p.len() - self.off);
            dst[w..w + k].copy_from_slice(&p[self.off..self.off + k]);
            self.off += k;
            w += k;
            if self.off == p.len() {
                self.part += 1;
                self.off = 0;
            }
        }
    }
}

/// A media time as a 33-bit 90 kHz timestamp.
pub fn ts90k(t: MediaTime) -> u64 {
    (t.rescale(Timescale::MPEG).ticks() & TIMESTAMP_MASK) as u64
}

fn put_timestamp(b: &mut [u8], prefix: u8, ts: u64) {
    b[0] = (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1;
    b[1] = (ts >> 22) as u8;
    b[2] = (((ts >> 15) as u8) << 1) | 1;
    b[3] = (ts >> 7) as u8;
    b[4] = ((ts as u8) << 1) | 1;
}

/// program_clock_reference_base (33 bits), 6 reserved bits, extension 0.
fn pcr_bytes(base: u64) -> [u8; 6] {
    let hi = ((base >> 1) as u32).to_be_bytes();
    [hi[0], hi[1], hi[2], hi[3], (((base & 1) as u8) << 7) | 0x7e, 0]
}

fn write_section(out: &mut BytesMut, pid: u16, cc: &mut u8, section: &[u8]) {
    out.put_u8(SYNC);
    out.put_u8(0x40 | (pid >> 8) as u8);
    out.put_u8(pid as u8);
    out.put_u8(0x10 | *cc);
    *cc = (*cc + 1) & 0x0f;
    out.put_u8(0); // pointer_field
    out.put_slice(section);
    out.put_u32(crc32_mpeg2(section));
    out.put_bytes(0xff, PACKET_SIZE - 5 - section.len() - 4);
}
