//! The trickle channel core (`transport::trickle::TrickleServer`) under arbitrary request
//! sequences, as the HTTP shell would feed them from the network: any channel names,
//! indexes (including -1, -2 and nonsense), resets, body chunks, reads from any offset,
//! deletes and sweeps. Invariants: no panic; the ring holds at most five segments per
//! channel; the byte accounting matches and stays within the limits.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use transport::trickle::{Limits, RING, TrickleServer};

#[derive(Arbitrary, Debug)]
enum Op {
    Create(u8),
    Delete(u8),
    OpenWrite { ch: u8, seq: i16, reset: bool },
    Write { ch: u8, seq: u8, len: u16 },
    Finish { ch: u8, seq: u8 },
    OpenRead { ch: u8, seq: i16 },
    Read { ch: u8, seq: u8, offset: u16 },
    CloseSegment { ch: u8, seq: u8 },
    Next(u8),
    Sweep(u8),
}

fuzz_target!(|ops: Vec<Op>| {
    let limits = Limits { max_channels: 4, max_segment_bytes: 4096, max_total_bytes: 16 * 1024 };
    let mut s = TrickleServer::new(limits, true);
    let t0 = Instant::now();
    let name = |c: u8| format!("c{}", c % 6);
    for (i, op) in ops.into_iter().take(2000).enumerate() {
        let now = t0 + Duration::from_millis(i as u64);
        match op {
            Op::Create(c) => drop(s.create(&name(c), "video/MP2T", now)),
            Op::Delete(c) => drop(s.delete(&name(c), now)),
            Op::OpenWrite { ch, seq, reset } => drop(s.open_write(&name(ch), seq as i64, reset, "", now)),
            Op::Write { ch, seq, len } => {
                drop(s.write(&name(ch), seq as u64, Bytes::from(vec![7u8; len as usize % 2048]), now))
            }
            Op::Finish { ch, seq } => drop(s.finish_write(&name(ch), seq as u64)),
            Op::OpenRead { ch, seq } => drop(s.open_read(&name(ch), seq as i64)),
            Op::Read { ch, seq, offset } => drop(s.read(&name(ch), seq as u64, offset as usize)),
            Op::CloseSegment { ch, seq } => drop(s.close_segment(&name(ch), seq as u64)),
            Op::Next(c) => drop(s.next(&name(c))),
            Op::Sweep(secs) => drop(s.expire_idle(now, Duration::from_secs(secs as u64))),
        }
        let mut sum = 0;
        for c in 0..6 {
            if let Some((segments, bytes)) = s.held(&name(c)) {
                assert!(segments <= RING);
                sum += bytes;
            }
        }
        assert_eq!(sum, s.total_bytes());
        assert!(s.total_bytes() <= limits.max_total_bytes);
        assert!(s.len() <= limits.max_channels);
    }
});
