//! The samples of access units, written once into the buffers that chunks take their
//! `mdat` bodies from.
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use media::{AacConfig, AccessUnit, NalUnits, Payload, TrackKind};

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
        for (f, r) in p.pieces(begin, end) {
            self.put(&f[r]);
        }
    }

    /// Moves the first `n` unclaimed bytes to `out`, as handles. There must be `n`: the
    /// cutter claims exactly what it wrote.
    pub(super) fn take(&mut self, mut n: usize, out: &mut Payload) {
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
