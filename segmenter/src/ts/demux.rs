//! Transport stream demuxer: finds PAT and PMT, reassembles PES packets of H.264 and AAC
//! streams and returns them as access units (Annex B / ADTS, as carried).
//!
//! Input may come in any split; sync is found again after garbage. Malformed packets and
//! PES headers are reported as [`TsError`]s in the output order and demuxing continues.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};
use media::{AccessUnit, MediaTime, Payload, Timescale, TrackKind};

use super::mux::TsTracks;
use super::*;
use crate::error::TsError;

/// Longest PES payload reassembled. A 4K keyframe is a few MB; more is a broken stream.
pub const MAX_PES: usize = 32 * 1024 * 1024;

struct PesState {
    kind: TrackKind,
    buf: BytesMut,
    started: bool,
    random_access: bool,
}

/// Unwraps 33-bit timestamps into a continuous timeline.
#[derive(Default, Clone, Copy)]
struct Unwrap33 {
    last: Option<(u64, i64)>,
}

impl Unwrap33 {
    fn extend(&mut self, ts: u64) -> i64 {
        let v = match self.last {
            None => ts as i64,
            Some((l33, l64)) => {
                let mut d = (ts as i64 - l33 as i64) & TIMESTAMP_MASK;
                if d > TIMESTAMP_MASK / 2 {
                    d -= TIMESTAMP_MASK + 1;
                }
                l64 + d
            }
        };
        self.last = Some((ts, v));
        v
    }
}

/// A transport stream demuxer.
#[derive(Default)]
pub struct TsDemuxer {
    pending: BytesMut,
    pmt_pid: Option<u16>,
    streams: HashMap<u16, PesState>,
    out: VecDeque<Result<AccessUnit, TsError>>,
    /// Both tracks share one clock so a wrap on one is seen on the other.
    clock: Unwrap33,
}

impl TsDemuxer {
    /// A demuxer that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Which tracks the PMT declared so far.
    pub fn tracks(&self) -> TsTracks {
        let mut t = TsTracks { video: false, audio: false };
        for s in self.streams.values() {
            match s.kind {
                TrackKind::Video => t.video = true,
                TrackKind::Audio => t.audio = true,
            }
        }
        t
    }

    /// Feeds bytes of the transport stream.
    pub fn push(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
        let mut pos = 0;
        let buf = std::mem::take(&mut self.pending);
        while buf.len() - pos >= PACKET_SIZE {
            if buf[pos] != SYNC {
                // Resynchronise: the next sync byte that is followed by another one a packet
                // later (or ends the buffer) starts a packet.
                let skip_from = pos;
                pos += 1;
                while pos < buf.len()
                    && !(buf[pos] == SYNC && (pos + PACKET_SIZE >= buf.len() || buf[pos + PACKET_SIZE] == SYNC))
                {
                    pos += 1;
                }
                self.out.push_back(Err(TsError::SyncLost { skipped: pos - skip_from }));
                continue;
            }
            let packet: [u8; PACKET_SIZE] = buf[pos..pos + PACKET_SIZE].try_into().expect("slice is a packet long");
            self.handle_packet(&packet);
            pos += PACKET_SIZE;
        }
        self.pending.extend_from_slice(&buf[pos..]);
    }

    /// Ends the input: the last PES of each stream is emitted.
    pub fn flush(&mut self) {
        let mut pids: Vec<u16> = self.streams.keys().copied().collect();
        pids.sort_unstable();
        for pid in pids {
            self.finish_pes(pid);
        }
    }

    /// The next access unit or error, in stream order.
    pub fn poll(&mut self) -> Option<Result<AccessUnit, TsError>> {
        self.out.pop_front()
    }

    fn handle_packet(&mut self, p: &[u8; PACKET_SIZE]) {
        let pusi = p[1] & 0x40 != 0;
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        if p[1] & 0x80 != 0 {
            return; // transport_error_indicator: the packet is known bad
        }
        let afc = (p[3] >> 4) & 0x3;
        let mut off = 4;
        let mut random_access = false;
        if afc & 0x2 != 0 {
            let len = p[4] as usize;
            if len > 183 {
                self.out.push_back(Err(TsError::AdaptationField { pid }));
                return;
            }
            if len > 0 {
                random_access = p[5] & 0x40 != 0;
            }
            off += 1 + len;
        }
        if afc & 0x1 == 0 || off >= PACKET_SIZE {
            return;
        }
        let payload = &p[off..];
        if pid == PID_PAT {
            if pusi {
                self.handle_pat(payload);
            }
        } else if Some(pid) == self.pmt_pid {
            if pusi {
                self.handle_pmt(payload);
            }
        } else if self.streams.contains_key(&pid) {
            if pusi {
                self.finish_pes(pid);
            }
            let Some(st) = self.streams.get_mut(&pid) else { return };
            if pusi {
                st.started = true;
                st.random_access = random_access;
            }
            if st.started {
                if st.buf.len() + payload.len() > MAX_PES {
                    st.buf.clear();
                    st.started = false;
                    self.out.push_back(Err(TsError::PesTooLong { pid }));
                    return;
                }
                st.buf.extend_from_slice(payload);
            }
        }
    }

    fn section<'a>(&mut self, payload: &'a [u8], table_id: u8) -> Option<&'a [u8]> {
        let pointer = *payload.first()? as usize;
        let s = payload.get(1 + pointer..)?;
        if s.len() < 3 || s[0] != table_id {
            return None;
        }
        let len = (u16::from_be_bytes([s[1], s[2]]) & 0x0fff) as usize;
        // Sections of PAT/PMT fit one packet in every stream Sluice reads.
        let sec = s.get(..3 + len)?;
        if len < 9 || super::crc::crc32_mpeg2(sec) != 0 {
            self.out.push_back(Err(TsError::Psi { table_id }));
            return None;
        }
        Some(&sec[8..sec.len() - 4])
    }

    fn handle_pat(&mut self, payload: &[u8]) {
        let Some(body) = self.section(payload, 0x00) else { return };
        for prog in body.chunks_exact(4) {
            let number = u16::from_be_bytes([prog[0], prog[1]]);
            if number != 0 {
                self.pmt_pid = Some(u16::from_be_bytes([prog[2] & 0x1f, prog[3]]));
                return;
            }
        }
    }

    fn handle_pmt(&mut self, payload: &[u8]) {
        let Some(body) = self.section(payload, 0x02) else { return };
        if body.len() < 4 {
            return;
        }
        let info_len = (u16::from_be_bytes([body[2], body[3]]) & 0x0fff) as usize;
        let mut es = body.get(4 + info_len..).unwrap_or_default();
        while es.len() >= 5 {
            let stream_type = es[0];
            let pid = u16::from_be_bytes([es[1] & 0x1f, es[2]]);
            let es_info = (u16::from_be_bytes([es[3], es[4]]) & 0x0fff) as usize;
            let kind = match stream_type {
                STREAM_TYPE_H264 => Some(TrackKind::Video),
                STREAM_TYPE_AAC => Some(TrackKind::Audio),
                _ => None,
            };
            if let Some(kind) = kind {
                self.streams.entry(pid).or_insert_with(|| PesState {
                    kind,
                    buf: BytesMut::new(),
                    started: false,
                    random_access: false,
                });
            }
            es = es.get(5 + es_info..).unwrap_or_default();
        }
    }

    fn finish_pes(&mut self, pid: u16) {
        let Some(st) = self.streams.get_mut(&pid) else { return };
        if !st.started || st.buf.is_empty() {
            return;
        }
        st.started = false;
        let pes = st.buf.split().freeze();
        let r = parse_pes(&pes, pid).map(|(pts, dts, data)| {
            let pts = self.clock.extend(pts);
            let dts = dts.map_or(pts, |d| pts + signed33(d as i64 - (pts & TIMESTAMP_MASK)));
            let keyframe = match st.kind {
                TrackKind::Audio => true,
                TrackKind::Video => st.random_access || has_idr(&data),
            };
            AccessUnit {
                track: st.kind,
                pts: MediaTime::new(pts, Timescale::MPEG),
                dts: MediaTime::new(dts, Timescale::MPEG),
                keyframe,
                data: Payload::from(data),
            }
        });
        self.out.push_back(r);
    }
}

fn signed33(d: i64) -> i64 {
    let d = d & TIMESTAMP_MASK;
    if d > TIMESTAMP_MASK / 2 { d - (TIMESTAMP_MASK + 1) } else { d }
}

fn read_ts(b: &[u8]) -> u64 {
    ((b[0] as u64 >> 1) & 0x7) << 30
        | (b[1] as u64) << 22
        | (b[2] as u64 >> 1) << 15
        | (b[3] as u64) << 7
        | (b[4] as u64) >> 1
}

/// Returns (PTS, DTS if present, payload).
fn parse_pes(pes: &Bytes, pid: u16) -> Result<(u64, Option<u64>, Bytes), TsError> {
    let bad = |what| TsError::Pes { pid, what };
    if pes.len() < 9 || pes[0..3] != [0, 0, 1] {
        return Err(bad("start code"));
    }
    let flags = pes[7] >> 6;
    let hdl = pes[8] as usize;
    let payload_start = 9 + hdl;
    if pes.len() < payload_start {
        return Err(bad("header length"));
    }
    let (pts, dts) = match flags {
        2 if hdl >= 5 => (read_ts(&pes[9..14]), None),
        3 if hdl >= 10 => (read_ts(&pes[9..14]), Some(read_ts(&pes[14..19]))),
        _ => return Err(bad("PTS missing")),
    };
    let declared = u16::from_be_bytes([pes[4], pes[5]]) as usize;
    let end = if declared == 0 { pes.len() } else { (6 + declared).min(pes.len()) };
    if end < payload_start {
        return Err(bad("packet length"));
    }
    Ok((pts, dts, pes.slice(payload_start..end)))
}

/// True if the Annex B data holds an IDR slice (NAL type 5).
pub fn has_idr(data: &[u8]) -> bool {
    let mut zeros = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == 1
            && zeros >= 2
            && let Some(&h) = data.get(i + 1)
            && h & 0x1f == 5
        {
            return true;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    false
}
