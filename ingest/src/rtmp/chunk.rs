//! The RTMP chunk stream (Adobe RTMP specification §5.3): decoding interleaved chunks into
//! messages and encoding messages into chunks.
//!
//! The decoder takes payload bytes out of the caller's read buffer as soon as they are
//! available, even in the middle of a chunk, as `Bytes` slices of that buffer. The read
//! buffer therefore never holds more than one incomplete chunk *header* when it grows, and
//! payload bytes are never moved before the muxer writes them into a segment.

use std::collections::HashMap;

use bytes::{Buf, BufMut, BytesMut};
use media::Payload;

use crate::error::RtmpError;

/// Chunk size both sides start with (§5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size a peer may set: the spec's 31-bit field (§5.4.1), 2^31-1. Any legal
/// size is accepted (the deepch/vdk library sends 2^27, some servers 2^31-1) because the
/// decoder never allocates by chunk size: payload bytes are taken from the read buffer as
/// they arrive, so memory is bounded by what is actually buffered ([`MAX_BUFFERED`]) and
/// by the 24-bit message length, never by the chunk size.
pub const MAX_CHUNK_SIZE: u32 = 0x7fff_ffff;
/// Largest chunk size this side sends: big enough that a video frame is one chunk, small
/// enough for any peer.
pub const MAX_OUT_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Chunk streams a peer may have messages in flight on at once. Encoders use fewer than ten.
pub const MAX_CHUNK_STREAMS: usize = 64;
/// Bytes of partially received messages held at once, over all chunk streams.
pub const MAX_BUFFERED: usize = 32 * 1024 * 1024;

const EXTENDED: u32 = 0xFF_FFFF;

/// One complete RTMP message.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// The chunk stream it arrived on.
    pub csid: u32,
    /// Message timestamp in milliseconds (32-bit, wraps).
    pub timestamp: u32,
    /// Message type id (§5.4, §7.1).
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// The message body as slices of the read buffer.
    pub payload: Payload,
}

#[derive(Default)]
struct ChunkStream {
    has_header: bool,
    timestamp: u32,
    /// The last timestamp field seen (absolute for type 0, delta for types 1 and 2): a
    /// type 3 chunk that starts a new message adds it again (§5.3.1.2.4).
    ts_field: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Bytes of the current message still to come; 0 when between messages.
    remaining: u32,
    partial: Payload,
}

/// Decodes chunks into messages. See the module docs for how it treats the buffer.
pub struct ChunkDecoder {
    chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
    /// Chunk stream and payload bytes left in the chunk currently being read.
    in_chunk: Option<(u32, u32)>,
    buffered: usize,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkDecoder {
    /// A decoder at the default chunk size.
    pub fn new() -> Self {
        ChunkDecoder { chunk_size: DEFAULT_CHUNK_SIZE, streams: HashMap::new(), in_chunk: None, buffered: 0 }
    }

    /// Applies a Set Chunk Size message from the peer.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), RtmpError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(RtmpError::ChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// The chunk size in force.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Applies an Abort message: drops the partial message on `csid`.
    pub fn abort(&mut self, csid: u32) {
        if let Some(st) = self.streams.get_mut(&csid) {
            self.buffered -= st.partial.len();
            st.partial = Payload::new();
            st.remaining = 0;
        }
        // An Abort arrives as a message of its own, so no chunk is half read at this point.
        debug_assert!(self.in_chunk.is_none());
    }

    /// Reads chunks from `buf` until a message completes (`Some`) or more input is needed
    /// (`None`). Consumed bytes are removed from `buf`; an incomplete header is left in it.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>, RtmpError> {
        loop {
            if let Some((csid, rem)) = self.in_chunk {
                if rem > 0 {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = (rem as usize).min(buf.len());
                    let part = buf.split_to(n).freeze();
                    let st = self.streams.get_mut(&csid).ok_or(RtmpError::Protocol("chunk state lost"))?;
                    st.partial.push(part);
                    st.remaining -= n as u32;
                    self.buffered += n;
                    if rem as usize > n {
                        self.in_chunk = Some((csid, rem - n as u32));
                        return Ok(None);
                    }
                }
                self.in_chunk = None;
                let st = self.streams.get_mut(&csid).ok_or(RtmpError::Protocol("chunk state lost"))?;
                if st.remaining == 0 {
                    let payload = std::mem::take(&mut st.partial);
                    self.buffered -= payload.len();
                    return Ok(Some(RawMessage {
                        csid,
                        timestamp: st.timestamp,
                        type_id: st.type_id,
                        stream_id: st.stream_id,
                        payload,
                    }));
                }
                continue;
            }
            let Some(used) = self.parse_header(buf)? else {
                return Ok(None);
            };
            buf.advance(used);
        }
    }

    /// Parses one chunk header at the front of `buf` without consuming it; on success
    /// updates the chunk stream's state, sets `in_chunk` and returns the header length.
    fn parse_header(&mut self, buf: &[u8]) -> Result<Option<usize>, RtmpError> {
        let Some(&b0) = buf.first() else { return Ok(None) };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b) => (64 + b as u32, 2),
                None => return Ok(None),
            },
            1 => match buf.get(1..3) {
                Some(b) => (64 + b[0] as u32 + 256 * b[1] as u32, 3),
                None => return Ok(None),
            },
            c => (c as u32, 1),
        };
        let header_len = [11, 7, 3, 0][fmt as usize];
        if buf.len() < pos + header_len {
            return Ok(None);
        }
        if !self.streams.contains_key(&csid) {
            if fmt != 0 {
                return Err(RtmpError::NoPreviousHeader { csid });
            }
            if self.streams.len() >= MAX_CHUNK_STREAMS {
                return Err(RtmpError::TooManyChunkStreams);
            }
        }
        let h = &buf[pos..pos + header_len];
        pos += header_len;
        let st_prev = self.streams.get(&csid);
        let in_progress = st_prev.is_some_and(|s| s.remaining > 0);
        if in_progress && fmt != 3 {
            return Err(RtmpError::InterruptedMessage { csid });
        }
        if fmt != 0 && !st_prev.is_some_and(|s| s.has_header) {
            return Err(RtmpError::NoPreviousHeader { csid });
        }
        let u24 = |b: &[u8]| (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let mut ts_field = 0;
        let extended;
        if fmt < 3 {
            ts_field = u24(&h[0..3]);
            extended = ts_field == EXTENDED;
        } else {
            extended = st_prev.is_some_and(|s| s.extended);
        }
        if extended {
            let Some(ext) = buf.get(pos..pos + 4) else { return Ok(None) };
            let ext = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]);
            let stored = st_prev.map_or(0, |s| s.ts_field);
            if fmt < 3 || !in_progress || ext == stored {
                // Continuation chunks repeat the extended timestamp in most implementations
                // (librtmp, ffmpeg, Flash) but not all: consume it only when it matches.
                ts_field = ext;
                pos += 4;
            } else {
                ts_field = stored;
            }
        }
        let st = self.streams.entry(csid).or_default();
        if !in_progress {
            match fmt {
                0 => {
                    st.timestamp = ts_field;
                    st.length = u24(&h[3..6]);
                    st.type_id = h[6];
                    st.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
                }
                1 => {
                    st.timestamp = st.timestamp.wrapping_add(ts_field);
                    st.length = u24(&h[3..6]);
                    st.type_id = h[6];
                }
                2 => st.timestamp = st.timestamp.wrapping_add(ts_field),
                _ => {
                    ts_field = st.ts_field;
                    st.timestamp = st.timestamp.wrapping_add(ts_field);
                }
            }
            st.ts_field = ts_field;
            st.extended = extended;
            st.has_header = true;
            st.remaining = st.length;
            // One fragment per chunk when reads are large; more if they are small.
            // (Capped: a tiny chunk size must not make a huge reservation up front.)
            st.partial = Payload::with_capacity(((st.length / self.chunk_size) as usize + 2).min(64));
            if self.buffered + st.length as usize > MAX_BUFFERED {
                return Err(RtmpError::TooMuchBuffered);
            }
        }
        let chunk = st.remaining.min(self.chunk_size);
        self.in_chunk = Some((csid, chunk));
        Ok(Some(pos))
    }
}

/// Encodes messages into chunks.
pub struct ChunkEncoder {
    chunk_size: u32,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        ChunkEncoder { chunk_size: DEFAULT_CHUNK_SIZE }
    }
}

impl ChunkEncoder {
    /// Changes the outgoing chunk size. Call it right after queueing the Set Chunk Size
    /// message that announces it.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_OUT_CHUNK_SIZE);
    }

    /// Appends `payload` as one message: a type 0 chunk, then type 3 continuations.
    pub fn write(&self, out: &mut BytesMut, csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        let extended = timestamp >= EXTENDED;
        let mut first = true;
        let mut chunks = payload.chunks(self.chunk_size as usize);
        loop {
            let chunk = chunks.next();
            if chunk.is_none() && !first {
                break;
            }
            put_basic_header(out, if first { 0 } else { 3 }, csid);
            if first {
                out.put_uint(if extended { EXTENDED } else { timestamp } as u64, 3);
                out.put_uint(payload.len() as u64, 3);
                out.put_u8(type_id);
                out.put_u32_le(stream_id);
            }
            if extended {
                out.put_u32(timestamp);
            }
            out.put_slice(chunk.unwrap_or_default());
            first = false;
        }
    }
}

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    match csid {
        2..=63 => out.put_u8(fmt << 6 | csid as u8),
        64..=319 => {
            out.put_u8(fmt << 6);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            out.put_u8(fmt << 6 | 1);
            out.put_u16_le((csid - 64) as u16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(dec: &mut ChunkDecoder, data: &[u8], step: usize) -> Vec<RawMessage> {
        let mut buf = BytesMut::new();
        let mut out = vec![];
        for piece in data.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        out
    }

    #[test]
    fn decodes_all_header_types() {
        // fmt0 (csid 4, ts 1000, len 3, type 9, sid 1), fmt1 (+40, len 2, type 8),
        // fmt2 (+40), fmt3 new message (+40 again).
        let mut d = vec![0x04, 0, 0x03, 0xe8, 0, 0, 3, 9, 1, 0, 0, 0, b'a', b'b', b'c'];
        d.extend_from_slice(&[0x44, 0, 0, 40, 0, 0, 2, 8, b'd', b'e']);
        d.extend_from_slice(&[0x84, 0, 0, 40, b'f', b'g']);
        d.extend_from_slice(&[0xc4, b'h', b'i']);
        let msgs = decode_all(&mut ChunkDecoder::new(), &d, 1);
        let ts: Vec<u32> = msgs.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![1000, 1040, 1080, 1120]);
        assert_eq!(msgs[0].type_id, 9);
        assert_eq!(msgs[1].type_id, 8);
        assert_eq!(msgs[3].payload.to_contiguous().as_ref(), b"hi");
        assert_eq!(msgs[3].stream_id, 1);
    }

    #[test]
    fn continuation_without_start_is_rejected() {
        let mut buf = BytesMut::from(&[0xc5u8, 1, 2, 3][..]);
        assert!(matches!(ChunkDecoder::new().decode(&mut buf), Err(RtmpError::NoPreviousHeader { csid: 5 })));
    }

    #[test]
    fn new_header_inside_a_message_is_rejected() {
        // 200-byte message, one 128-byte chunk, then a fmt0 header on the same csid.
        let mut d = vec![0x04, 0, 0, 0, 0, 0, 200, 9, 1, 0, 0, 0];
        d.extend_from_slice(&[0u8; 128]);
        d.extend_from_slice(&[0x04, 0, 0, 0, 0, 0, 10, 9, 1, 0, 0, 0]);
        let mut buf = BytesMut::from(&d[..]);
        let mut dec = ChunkDecoder::new();
        assert!(matches!(dec.decode(&mut buf), Err(RtmpError::InterruptedMessage { csid: 4 })));
    }

    #[test]
    fn rejects_bad_chunk_sizes() {
        let mut dec = ChunkDecoder::new();
        assert_eq!(dec.set_chunk_size(0), Err(RtmpError::ChunkSize(0)));
        assert_eq!(dec.set_chunk_size(0x8000_0000), Err(RtmpError::ChunkSize(0x8000_0000)));
        for legal in [1, 4096, 134_217_728, 0x7fff_ffff] {
            assert!(dec.set_chunk_size(legal).is_ok(), "{legal}");
        }
    }

    /// Every legal chunk size decodes, including the spec's maximum: a message then comes
    /// as one chunk whatever its length, and the decoder holds no more than its bytes.
    #[test]
    fn huge_chunk_sizes_decode_with_bounded_memory() {
        for size in [134_217_728u32, 0x7fff_ffff] {
            let mut enc = ChunkEncoder::default();
            enc.set_chunk_size(MAX_OUT_CHUNK_SIZE);
            let payload = vec![7u8; 300_000];
            let mut wire = BytesMut::new();
            enc.write(&mut wire, 6, 40, 9, 1, &payload);
            let mut dec = ChunkDecoder::new();
            dec.set_chunk_size(size).unwrap();
            // Fed in small reads, as a socket delivers it.
            let mut buf = BytesMut::new();
            let mut got = None;
            for piece in wire.chunks(1400) {
                buf.extend_from_slice(piece);
                if let Some(m) = dec.decode(&mut buf).unwrap() {
                    got = Some(m);
                }
                assert!(dec.buffered <= payload.len());
            }
            let m = got.expect("message decoded");
            assert_eq!(m.payload.len(), payload.len());
            assert_eq!(dec.buffered, 0);
        }
    }

    #[test]
    fn bounds_chunk_streams() {
        // One-byte chunks of unfinished 100-byte messages on ever more chunk streams.
        let mut buf = BytesMut::new();
        for csid in 2..(3 + MAX_CHUNK_STREAMS as u32) {
            put_basic_header(&mut buf, 0, csid);
            buf.extend_from_slice(&[0, 0, 0, 0, 0, 100, 9, 1, 0, 0, 0, 0]);
        }
        let mut dec = ChunkDecoder::new();
        dec.set_chunk_size(1).unwrap();
        let r = loop {
            match dec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                other => break other,
            }
        };
        assert!(matches!(r, Err(RtmpError::TooManyChunkStreams)));
    }

    #[test]
    fn payload_is_sliced_not_copied() {
        let mut enc = ChunkEncoder::default();
        enc.set_chunk_size(64);
        let body = vec![7u8; 1000];
        let mut wire = BytesMut::new();
        enc.write(&mut wire, 6, 0, 9, 1, &body);
        let base = wire.as_ptr() as usize;
        let len = wire.len();
        let mut dec = ChunkDecoder::new();
        dec.set_chunk_size(64).unwrap();
        let msg = dec.decode(&mut wire).unwrap().unwrap();
        for p in msg.payload.parts() {
            let a = p.as_ptr() as usize;
            assert!(a >= base && a + p.len() <= base + len, "fragment outside the read buffer");
        }
        assert_eq!(msg.payload.len(), 1000);
    }

    proptest! {
        #[test]
        fn encode_decode_roundtrip(
            msgs in proptest::collection::vec(
                (2u32..400, any::<u32>(), 1u8..30, 0u32..4, proptest::collection::vec(any::<u8>(), 0..700)),
                1..8),
            chunk_size in 1u32..300,
            step in 1usize..100,
        ) {
            let mut enc = ChunkEncoder::default();
            enc.set_chunk_size(chunk_size);
            let mut wire = BytesMut::new();
            for (csid, ts, ty, sid, body) in &msgs {
                enc.write(&mut wire, *csid, *ts, *ty, *sid, body);
            }
            let mut dec = ChunkDecoder::new();
            dec.set_chunk_size(chunk_size).unwrap();
            let got = decode_all(&mut dec, &wire, step);
            prop_assert_eq!(got.len(), msgs.len());
            for (g, (csid, ts, ty, sid, body)) in got.iter().zip(&msgs) {
                prop_assert_eq!(g.csid, *csid);
                prop_assert_eq!(g.timestamp, *ts);
                prop_assert_eq!(g.type_id, *ty);
                prop_assert_eq!(g.stream_id, *sid);
                let p = g.payload.to_contiguous();
                prop_assert_eq!(p.as_ref(), body.as_slice());
            }
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut dec = ChunkDecoder::new();
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = dec.decode(&mut buf) {}
        }
    }
}
