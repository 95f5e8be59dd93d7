//! RTMP chunk parsing and FLV → access units.

use bench::{demo_clip, rtmp_wire};
use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ingest::flv::{FlvDemuxer, FlvFileReader};
use ingest::rtmp::chunk::ChunkDecoder;
use ingest::rtmp::handshake::HANDSHAKE_SIZE;
use media::Payload;

fn chunk_parsing(c: &mut Criterion) {
    let (wire, _) = rtmp_wire(&demo_clip(), 16 * 1024, 1);
    let chunks = Bytes::from(wire[1 + 2 * HANDSHAKE_SIZE..].to_vec());
    let mut g = c.benchmark_group("rtmp_chunks");
    g.throughput(Throughput::Bytes(chunks.len() as u64));
    g.bench_function("decode_4096_byte_chunks_in_16k_reads", |b| {
        b.iter(|| {
            let mut dec = ChunkDecoder::new();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut n = 0;
            for read in chunks.chunks(16 * 1024) {
                buf.extend_from_slice(read);
                while let Some(m) = dec.decode(&mut buf).unwrap() {
                    if m.type_id == 1 {
                        dec.set_chunk_size(4096).unwrap();
                    }
                    n += 1;
                }
            }
            n
        })
    });
    g.finish();
}

fn flv_to_access_units(c: &mut Criterion) {
    let flv = demo_clip();
    let tags: Vec<_> = FlvFileReader::new(flv.clone()).unwrap().map(Result::unwrap).collect();
    let bytes: usize = tags.iter().map(|t| t.body.len()).sum();
    let mut g = c.benchmark_group("flv");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("tags_to_access_units", |b| {
        let mut out = Vec::with_capacity(4);
        b.iter(|| {
            let mut d = FlvDemuxer::new();
            let mut n = 0;
            for t in &tags {
                d.handle_tag(t.tag_type, t.timestamp, &Payload::from(t.body.clone()), &mut out).unwrap();
                n += out.len();
                out.clear();
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, chunk_parsing, flv_to_access_units);
criterion_main!(benches);
