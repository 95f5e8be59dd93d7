//! Trickle core cost per segment: a publisher writing one 500 KB segment in 16 KiB chunks
//! into `transport::trickle::TrickleServer` while subscribers read it chunk by chunk, as
//! the HTTP shell drives it (no sockets): the decision and bookkeeping work a segment adds.
#![allow(clippy::disallowed_methods)] // one real instant as the epoch
use std::time::Instant;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use transport::trickle::{Limits, ReadStart, ReadStep, TrickleServer};

const CHUNK: usize = 16 * 1024;
const CHUNKS: usize = 31;

fn segment(s: &mut TrickleServer, seq: &mut u64, subscribers: usize, data: &Bytes, now: Instant) -> usize {
    let w = s.open_write("ch", *seq as i64, false, "", now).unwrap();
    let mut offsets = vec![0usize; subscribers];
    for _ in 0..subscribers {
        let ReadStart::Segment { .. } = s.open_read("ch", w as i64).unwrap() else { panic!() };
    }
    let mut delivered = 0;
    for i in 0..CHUNKS {
        s.write("ch", w, data.slice(i * CHUNK..(i + 1) * CHUNK), now).unwrap();
        for off in offsets.iter_mut() {
            while let ReadStep::Data(c) = s.read("ch", w, *off) {
                *off += c.len();
                delivered += c.len();
            }
        }
    }
    s.finish_write("ch", w).unwrap();
    *seq += 1;
    delivered
}

fn trickle(c: &mut Criterion) {
    let data = Bytes::from(vec![7u8; CHUNK * CHUNKS]);
    let mut g = c.benchmark_group("trickle_core_segment");
    for subscribers in [1usize, 100] {
        let mut s = TrickleServer::new(Limits::default(), false);
        let now = Instant::now();
        s.create("ch", "video/MP2T", now).unwrap();
        let mut seq = 0;
        g.bench_with_input(BenchmarkId::from_parameter(format!("{subscribers}_subscribers")), &subscribers, |b, &n| {
            b.iter(|| segment(&mut s, &mut seq, n, &data, now))
        });
    }
    g.finish();
}

criterion_group!(benches, trickle);
criterion_main!(benches);
