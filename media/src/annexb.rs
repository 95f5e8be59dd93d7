//! Where the NAL units of an H.264 Annex B payload are (ISO/IEC 14496-10 Annex B).
//!
//! A producer that already knows where its NAL units begin (FLV's length prefixes, an RTP
//! depayloader's units) writes each start code with [`Payload::push_start_code`]: one
//! shared static fragment, recognised by its address. A payload whose first fragment is
//! that marker is *framed*: its NAL units are the fragments between markers, found
//! without reading a payload byte. Any other payload (MPEG-TS input, a contiguous buffer)
//! is scanned for start codes, across fragment boundaries.
//!
//! A framed payload promises that every start code in it is a marker; a producer that
//! cannot promise it pushes ordinary fragments and gets the scan.
use bytes::Bytes;

use crate::Payload;

/// The start code pushed by [`Payload::push_start_code`] is the first four bytes of this
/// `static`: it has one address, so a fragment pointing at it is a marker and not a start
/// code that happens to be in data. (The fifth byte keeps the compiler from giving a
/// constant `[0, 0, 0, 1]` elsewhere the same address.)
static MARKER: [u8; 5] = [0, 0, 0, 1, 0xff];

fn is_marker(b: &Bytes) -> bool {
    b.len() == 4 && std::ptr::eq(b.as_ptr(), MARKER.as_ptr())
}

impl Payload {
    /// Appends a 4-byte Annex B start code that marks the start of the NAL unit whose
    /// fragments follow. Every start code of a payload built this way from its first
    /// fragment must be pushed here (see the module docs).
    pub fn push_start_code(&mut self) {
        self.push(Bytes::from_static(&MARKER[..4]));
    }

    /// True when the payload's NAL units are delimited by markers
    /// ([`Payload::push_start_code`]) and need no scan.
    pub fn is_nal_framed(&self) -> bool {
        self.parts().first().is_some_and(is_marker)
    }
}

/// Finds the NAL units of Annex B payloads; keeps its scratch space between payloads.
#[derive(Debug, Default)]
pub struct NalUnits {
    /// A scanned payload's units' fragments, in order.
    fragments: Vec<Bytes>,
    /// Per unit: its fragments (`from..to` in the payload's fragments when framed, in
    /// `fragments` when scanned), and its length in bytes.
    units: Vec<(usize, usize, usize)>,
    /// Scan scratch: per start code, (first byte of its unit, first byte of the code).
    starts: Vec<(usize, usize)>,
}

/// One NAL unit: at least one byte, in one or more fragments.
#[derive(Debug, Clone, Copy)]
pub struct NalUnit<'a> {
    fragments: &'a [Bytes],
    len: usize,
}

impl<'a> NalUnit<'a> {
    /// The unit's bytes, header first, as fragments of the payload it came from.
    pub fn fragments(&self) -> &'a [Bytes] {
        self.fragments
    }

    /// Length in bytes (at least 1).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// `nal_unit_type` (the low five bits of the header byte).
    pub fn nal_type(&self) -> u8 {
        self.fragments[0][0] & 0x1f
    }

    /// The unit as one buffer: the handle itself when it is one fragment, else a copy.
    pub fn to_bytes(&self) -> Bytes {
        match self.fragments {
            [one] => one.clone(),
            many => {
                let mut v = Vec::with_capacity(self.len);
                for f in many {
                    v.extend_from_slice(f);
                }
                Bytes::from(v)
            }
        }
    }
}

impl NalUnits {
    /// Empty.
    pub fn new() -> Self {
        NalUnits::default()
    }

    /// The NAL units of `p`, in order: a framed payload's fragments between markers (no
    /// byte read, no handle cloned), or else every start code's unit (`00 00 01`, zeros
    /// before it excluded from the unit before), as slices of `p`'s fragments. Bytes
    /// before the first start code and empty units are no units.
    pub fn split<'a>(&'a mut self, p: &'a Payload) -> impl Iterator<Item = NalUnit<'a>> + 'a {
        self.units.clear();
        let source: &'a [Bytes] = if p.is_nal_framed() && self.frame(p) {
            p.parts()
        } else {
            self.scan(p);
            &self.fragments
        };
        self.units.iter().map(move |&(from, to, len)| NalUnit { fragments: &source[from..to], len })
    }

    /// A framed payload's units, from its markers. False (and nothing kept) if a unit
    /// starts with a zero byte: no NAL header does (forbidden_zero_bit and a type of 0),
    /// but an Annex B stream wrapped in AVCC or RTP by a broken encoder does, and the
    /// scan then splits it as the TS path would.
    fn frame(&mut self, p: &Payload) -> bool {
        let parts = p.parts();
        let (mut from, mut len) = (0, 0);
        for i in 0..=parts.len() {
            if i < parts.len() && !is_marker(&parts[i]) {
                len += parts[i].len();
                continue;
            }
            if len > 0 {
                if parts[from][0] == 0 {
                    self.units.clear();
                    return false;
                }
                self.units.push((from, i, len));
            }
            (from, len) = (i + 1, 0);
        }
        true
    }

    fn scan(&mut self, p: &Payload) {
        self.fragments.clear();
        let starts = &mut self.starts;
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
        // Each unit runs from its start to the next start code; the fragments are walked
        // once, as the units are in order.
        let (mut k, mut off) = (0usize, 0usize);
        let parts = p.parts();
        for i in 0..starts.len() {
            let (begin, end) = (starts[i].0, starts.get(i + 1).map_or(p.len(), |n| n.1));
            if begin >= end {
                continue;
            }
            // Skip fragments that end before the unit begins.
            while k < parts.len() && off + parts[k].len() <= begin {
                off += parts[k].len();
                k += 1;
            }
            let from = self.fragments.len();
            let (mut j, mut at) = (k, off);
            while j < parts.len() && at < end {
                let f = &parts[j];
                let (fs, fe) = (at, at + f.len());
                self.fragments.push(f.slice(begin.max(fs) - fs..end.min(fe) - fs));
                if fe > end {
                    break;
                }
                at = fe;
                j += 1;
            }
            self.units.push((from, self.fragments.len(), end - begin));
        }
    }
}

/// The NAL units of a contiguous Annex B byte stream, without their start codes, as
/// handles into `data` (no copy). Zero bytes before a start code belong to no unit.
pub fn annexb_nal_units(data: &Bytes) -> Vec<Bytes> {
    let p = Payload::from(data.clone());
    NalUnits::new().split(&p).map(|u| u.to_bytes()).collect()
}

/// The first sequence parameter set (NAL type 7) of an Annex B access unit.
pub fn annexb_sps(data: &Bytes) -> Option<Bytes> {
    annexb_nal_units(data).into_iter().find(|n| n.first().is_some_and(|h| h & 0x1f == 7))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn units_of(p: &Payload) -> Vec<Vec<u8>> {
        NalUnits::new().split(p).map(|u| u.to_bytes().to_vec()).collect()
    }

    #[test]
    fn scanned_units_drop_start_codes_and_the_zeros_before_them() {
        let data = Bytes::from_static(&[9, 9, 0, 0, 1, 0x67, 1, 0, 0, 0, 0, 1, 0x68, 2, 0, 0, 1, 0x65, 0, 3]);
        let want: Vec<Vec<u8>> = vec![vec![0x67, 1], vec![0x68, 2], vec![0x65, 0, 3]];
        assert_eq!(units_of(&Payload::from(data.clone())), want);
        assert_eq!(annexb_nal_units(&data), want.iter().map(|w| Bytes::from(w.clone())).collect::<Vec<_>>());
    }

    #[test]
    fn annexb_units_split_on_both_start_code_lengths() {
        let data =
            Bytes::from_static(&[0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x65, 4, 5]);
        let units = annexb_nal_units(&data);
        let want: Vec<&[u8]> = vec![&[9, 0xf0], &[0x67, 1, 2], &[0x68, 3], &[0x65, 4, 5]];
        assert_eq!(units.iter().map(|u| u.as_ref()).collect::<Vec<_>>(), want);
        assert_eq!(annexb_sps(&data).unwrap().as_ref(), &[0x67, 1, 2]);
        assert!(annexb_sps(&Bytes::from_static(&[0, 0, 1, 0x65, 1])).is_none());
        assert!(annexb_nal_units(&Bytes::new()).is_empty());
    }

    #[test]
    fn framed_units_are_the_fragments_between_markers() {
        let mut p = Payload::new();
        p.push_start_code();
        p.push(Bytes::from_static(&[9, 0xf0]));
        p.push_start_code();
        p.push(Bytes::from_static(&[0x65, 0, 0, 1]));
        p.push(Bytes::from_static(&[7]));
        assert!(p.is_nal_framed());
        let mut n = NalUnits::new();
        let units: Vec<_> = n.split(&p).collect();
        assert_eq!(units.len(), 2);
        assert_eq!((units[0].nal_type(), units[0].len(), units[0].fragments().len()), (9, 2, 1));
        // The framing is trusted: the 00 00 01 inside the second unit's bytes is data.
        assert_eq!((units[1].nal_type(), units[1].len(), units[1].fragments().len()), (5, 5, 2));
    }

    #[test]
    fn a_framed_unit_holding_annex_b_is_scanned() {
        // A publisher that wrapped a start code and two units in one AVCC unit.
        let mut p = Payload::new();
        p.push_start_code();
        p.push(Bytes::from_static(&[9, 0xf0]));
        p.push_start_code();
        p.push(Bytes::from_static(&[0, 0, 0, 1, 0x67, 5, 0, 0, 1, 0x65, 6]));
        assert_eq!(units_of(&p), vec![vec![9, 0xf0], vec![0x67, 5], vec![0x65, 6]]);
    }

    #[test]
    fn a_copied_start_code_is_not_a_marker() {
        let p = Payload::from(vec![Bytes::copy_from_slice(&[0, 0, 0, 1]), Bytes::from_static(&[0x41, 5])]);
        assert!(!p.is_nal_framed());
        assert_eq!(units_of(&p), vec![vec![0x41, 5]]);
    }

    proptest! {
        /// Fragmenting never changes the units, and the framed form of a stream gives the
        /// units the scan finds.
        #[test]
        fn fragments_do_not_change_units(
            nals in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            // Units with no start code (or trailing zero) inside, so the scan agrees.
            let nals: Vec<Vec<u8>> = nals.into_iter().map(|n| n.into_iter().map(|b| b.max(2)).collect()).collect();
            let mut stream = Vec::new();
            let mut framed = Payload::new();
            for n in &nals {
                stream.extend_from_slice(&[0, 0, 0, 1]);
                stream.extend_from_slice(n);
                framed.push_start_code();
                framed.push(Bytes::copy_from_slice(n));
            }
            let whole = units_of(&Payload::from(Bytes::from(stream.clone())));
            prop_assert_eq!(&whole, &nals);
            prop_assert_eq!(&units_of(&crate::frame::split(&stream, &cuts)), &nals);
            prop_assert_eq!(&units_of(&framed), &nals);
        }

        /// Any bytes, any fragments: the scan gives the same units and never panics.
        #[test]
        fn scan_is_fragment_independent(
            data in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..200),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let whole = units_of(&Payload::from(Bytes::from(data.clone())));
            prop_assert_eq!(units_of(&crate::frame::split(&data, &cuts)), whole);
        }
    }
}
