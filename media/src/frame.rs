//! Access units and their zero-copy payloads.

use std::fmt;

use bytes::Bytes;

use crate::MediaTime;

/// Which elementary stream an access unit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// H.264 video, Annex B byte stream (start codes, AUD and parameter sets in band).
    Video,
    /// AAC audio with ADTS headers.
    Audio,
}

/// An access unit's bytes as a list of fragments whose concatenation is the elementary
/// stream data.
///
/// Fragments are `Bytes` handles into the buffers the payload arrived in (RTMP chunk
/// payloads, a file read) plus small static or generated pieces (start codes, ADTS headers).
/// Nothing is copied until a muxer writes the fragments into a segment.
#[derive(Clone, Default)]
pub struct Payload {
    parts: Vec<Bytes>,
    len: usize,
}

impl Payload {
    /// An empty payload.
    pub fn new() -> Self {
        Payload::default()
    }

    /// An empty payload with room for `n` fragments.
    pub fn with_capacity(n: usize) -> Self {
        Payload { parts: Vec::with_capacity(n), len: 0 }
    }

    /// Appends a fragment; empty fragments are skipped.
    pub fn push(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.len += part.len();
            self.parts.push(part);
        }
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The fragments in order.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The fragments, given up (no handle cloned).
    pub fn into_parts(self) -> Vec<Bytes> {
        self.parts
    }

    /// The bytes in `start..end` as a payload of sub-slices of this one's fragments (no copy).
    /// Returns `None` when the range is out of bounds.
    pub fn slice(&self, start: usize, end: usize) -> Option<Payload> {
        if start > end || end > self.len {
            return None;
        }
        let mut out = Payload::with_capacity(2);
        for (p, r) in self.pieces(start, end) {
            out.push(p.slice(r));
        }
        Some(out)
    }

    /// Where bytes `start..end` are: each fragment holding some of them with the range of
    /// it they take, in order (nothing past the payload's end).
    pub fn pieces(&self, start: usize, end: usize) -> impl Iterator<Item = (&Bytes, std::ops::Range<usize>)> {
        let mut off = 0;
        self.parts
            .iter()
            .map(move |p| {
                let ps = off;
                off += p.len();
                (p, ps)
            })
            .take_while(move |&(_, ps)| ps < end)
            .filter_map(move |(p, ps)| {
                let pe = ps + p.len();
                (pe > start).then(|| (p, start.max(ps) - ps..end.min(pe) - ps))
            })
    }

    /// Copies `dst.len()` bytes starting at `start` into `dst`. Returns false (and leaves
    /// `dst` unspecified) when the payload is too short. Meant for headers and length
    /// prefixes, not for payload bodies.
    #[inline]
    pub fn copy_range(&self, start: usize, dst: &mut [u8]) -> bool {
        // Headers usually sit in the first fragment.
        if let Some(first) = self.parts.first()
            && let Some(src) = start.checked_add(dst.len()).and_then(|end| first.get(start..end))
        {
            dst.copy_from_slice(src);
            return true;
        }
        self.copy_range_across(start, dst)
    }

    fn copy_range_across(&self, start: usize, dst: &mut [u8]) -> bool {
        if start.checked_add(dst.len()).is_none_or(|e| e > self.len) {
            return false;
        }
        let mut off = 0;
        let mut written = 0;
        for p in &self.parts {
            let (ps, pe) = (off, off + p.len());
            off = pe;
            let want_start = start + written;
            if written == dst.len() {
                break;
            }
            if pe <= want_start {
                continue;
            }
            let from = want_start - ps;
            let n = (pe - want_start).min(dst.len() - written);
            dst[written..written + n].copy_from_slice(&p[from..from + n]);
            written += n;
        }
        written == dst.len()
    }

    /// Copies the payload into one contiguous buffer (tests and slow paths only).
    pub fn to_contiguous(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut v = Vec::with_capacity(self.len);
                for p in many {
                    v.extend_from_slice(p);
                }
                Bytes::from(v)
            }
        }
    }
}

impl From<Vec<Bytes>> for Payload {
    fn from(parts: Vec<Bytes>) -> Self {
        let mut p = Payload::with_capacity(parts.len());
        for b in parts {
            p.push(b);
        }
        p
    }
}

/// Payloads are equal when their bytes are, however they are split into fragments.
impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.len == other.len && self.parts.iter().flat_map(|p| p.iter()).eq(other.parts.iter().flat_map(|p| p.iter()))
    }
}

impl Eq for Payload {}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Self {
        let mut p = Payload::new();
        p.push(b);
        p
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes in {} parts)", self.len, self.parts.len())
    }
}

/// One coded frame, ready for a muxer.
///
/// Video payloads are Annex B (each NAL unit behind a start code) and carry an access unit
/// delimiter and, on keyframes, the SPS and PPS; audio payloads are ADTS frames. That is
/// what MPEG-TS carries, so a TS muxer writes the payload as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessUnit {
    /// Which track.
    pub track: TrackKind,
    /// Presentation time.
    pub pts: MediaTime,
    /// Decode time (equal to `pts` for audio and for streams without B-frames).
    pub dts: MediaTime,
    /// True for a random access point (an IDR picture; every audio frame).
    pub keyframe: bool,
    /// The coded bytes.
    pub data: Payload,
}

/// `data` split into fragments at `cuts` (each taken modulo `data.len() + 1`): for tests
/// that must not depend on where fragments end.
#[cfg(test)]
pub(crate) fn split(data: &[u8], cuts: &[usize]) -> Payload {
    let b = Bytes::copy_from_slice(data);
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    let mut p = Payload::new();
    let mut last = 0;
    for c in cuts {
        p.push(b.slice(last..c));
        last = c;
    }
    p.push(b.slice(last..));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn payloads_are_equal_when_their_bytes_are(
            data in proptest::collection::vec(any::<u8>(), 0..64),
            cuts in proptest::collection::vec(any::<usize>(), 0..5),
            other in proptest::collection::vec(any::<usize>(), 0..5),
            flip in any::<prop::sample::Index>(),
        ) {
            prop_assert_eq!(split(&data, &cuts), split(&data, &other));
            if !data.is_empty() {
                let mut changed = data.clone();
                changed[flip.index(data.len())] ^= 1;
                prop_assert_ne!(split(&data, &cuts), split(&changed, &other));
                prop_assert_ne!(split(&data, &cuts), split(&data[1..], &other));
            }
        }

        #[test]
        fn slice_and_copy_match_contiguous(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
            a in any::<usize>(), b in any::<usize>(),
        ) {
            let p = split(&data, &cuts);
            let whole = p.to_contiguous();
            prop_assert_eq!(whole.as_ref(), data.as_slice());
            let (s, e) = { let s = a % (data.len() + 1); let e = b % (data.len() + 1); (s.min(e), s.max(e)) };
            let sl = p.slice(s, e).unwrap();
            let sl = sl.to_contiguous();
            prop_assert_eq!(sl.as_ref(), &data[s..e]);
            let mut buf = vec![0u8; e - s];
            prop_assert!(p.copy_range(s, &mut buf));
            prop_assert_eq!(buf.as_slice(), &data[s..e]);
            prop_assert!(p.slice(0, data.len() + 1).is_none());
            let mut too_long = vec![0u8; data.len() + 1];
            prop_assert!(!p.copy_range(0, &mut too_long));
        }
    }
}
