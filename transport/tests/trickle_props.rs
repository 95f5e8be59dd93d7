//! Properties of the trickle channel core under random interleavings of one publisher and
//! one subscriber: the ring never holds more than five segments or more bytes than were
//! written and not evicted, and every byte the publisher wrote reaches the subscriber in
//! order, or the subscriber is told the segment was evicted (it never sees wrong bytes).
#![allow(clippy::disallowed_methods)] // one real instant as the epoch

use std::time::Instant;

use bytes::Bytes;
use proptest::prelude::*;
use transport::trickle::{Limits, RING, ReadStart, ReadStep, TrickleServer};

#[derive(Debug, Clone)]
enum Op {
    /// The publisher writes a chunk of this size to its current segment.
    Write(usize),
    /// The publisher ends its segment and starts the next.
    Next,
    /// The subscriber takes one step.
    Read,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![4 => (1usize..64).prop_map(Op::Write), 1 => Just(Op::Next), 4 => Just(Op::Read)]
}

struct Subscriber {
    seq: u64,
    offset: usize,
    got: Vec<u8>,
    opened: bool,
    delivered: Vec<u64>,
    evicted: Vec<u64>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn bytes_arrive_in_order_or_are_reported_evicted(ops in proptest::collection::vec(op(), 1..300)) {
        let t0 = Instant::now();
        let mut s = TrickleServer::new(Limits::default(), false);
        s.create("ch", "video/MP2T", t0).unwrap();
        let mut written: Vec<Vec<u8>> = vec![Vec::new()];
        let mut pub_seq = s.open_write("ch", -1, false, "", t0).unwrap();
        let mut sub = Subscriber { seq: 0, offset: 0, got: vec![], opened: false, delivered: vec![], evicted: vec![] };
        let mut counter = 0u8;
        for op in ops {
            match op {
                Op::Write(n) => {
                    let chunk: Vec<u8> = (0..n).map(|_| { counter = counter.wrapping_add(1); counter }).collect();
                    s.write("ch", pub_seq, Bytes::from(chunk.clone()), t0).unwrap();
                    written[pub_seq as usize].extend_from_slice(&chunk);
                }
                Op::Next => {
                    s.finish_write("ch", pub_seq).unwrap();
                    pub_seq = s.open_write("ch", pub_seq as i64 + 1, false, "", t0).unwrap();
                    written.push(Vec::new());
                }
                Op::Read => {
                    if !sub.opened {
                        match s.open_read("ch", sub.seq as i64).unwrap() {
                            ReadStart::Segment { seq, .. } => { prop_assert_eq!(seq, sub.seq); sub.opened = true; }
                            ReadStart::Missing { latest, .. } => {
                                // Too old: jump to the latest, the skipped ones evicted.
                                prop_assert!(latest > sub.seq || sub.seq > pub_seq);
                                if latest > sub.seq {
                                    sub.evicted.extend(sub.seq..latest);
                                    sub.seq = latest;
                                }
                            }
                        }
                        continue;
                    }
                    match s.read("ch", sub.seq, sub.offset) {
                        ReadStep::Data(c) => { sub.offset += c.len(); sub.got.extend_from_slice(&c); }
                        ReadStep::Pending => {}
                        ReadStep::End { .. } => {
                            prop_assert_eq!(&sub.got, &written[sub.seq as usize], "segment {} in full", sub.seq);
                            sub.delivered.push(sub.seq);
                            sub = Subscriber { seq: sub.seq + 1, offset: 0, got: vec![], opened: false, ..sub };
                        }
                        ReadStep::Gone => {
                            let w = &written[sub.seq as usize];
                            prop_assert!(w.starts_with(&sub.got), "a truncated segment is a prefix of what was written");
                            sub.evicted.push(sub.seq);
                            sub = Subscriber { seq: sub.seq + 1, offset: 0, got: vec![], opened: false, ..sub };
                        }
                    }
                }
            }
            let (segments, bytes) = s.held("ch").unwrap();
            prop_assert!(segments <= RING);
            let newest = pub_seq as usize;
            let live: usize = written.iter().enumerate().filter(|(i, _)| i + RING > newest).map(|(_, w)| w.len()).sum();
            prop_assert!(bytes <= live, "held {} bytes, at most {} are in the ring", bytes, live);
            prop_assert_eq!(s.total_bytes(), bytes);
        }
        // Every segment the subscriber got past was delivered whole or reported evicted.
        let mut seen: Vec<u64> = sub.delivered.iter().chain(&sub.evicted).copied().collect();
        seen.sort_unstable();
        seen.dedup();
        prop_assert_eq!(seen, (0..sub.seq).collect::<Vec<_>>());
    }
}
