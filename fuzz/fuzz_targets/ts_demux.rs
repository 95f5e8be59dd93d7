//! Transport stream demuxing of arbitrary bytes in arbitrary splits. Half the inputs are
//! preceded by valid PAT/PMT tables (as Sluice's muxer writes them), so the fuzzer reaches
//! PES reassembly instead of stopping at PSI CRCs. Invariants: no panic; every access
//! unit's payload is no longer than the input; splitting the input differently yields the
//! same access units.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use segmenter::ts::demux::TsDemuxer;
use segmenter::ts::mux::{TsMuxer, TsTracks};

#[derive(Arbitrary, Debug)]
struct Input {
    with_tables: bool,
    split: u16,
    data: Vec<u8>,
}

fn run(chunks: &[&[u8]]) -> Vec<(bool, i64, i64, usize)> {
    let mut d = TsDemuxer::new();
    let mut out = vec![];
    let mut drain = |d: &mut TsDemuxer| {
        while let Some(r) = d.poll() {
            if let Ok(au) = r {
                out.push((au.keyframe, au.pts.ticks(), au.dts.ticks(), au.data.len()));
            }
        }
    };
    for c in chunks {
        d.push(c);
        drain(&mut d);
    }
    d.flush();
    drain(&mut d);
    out
}

fuzz_target!(|input: Input| {
    let mut data = BytesMut::new();
    if input.with_tables {
        TsMuxer::new(TsTracks { video: true, audio: true }).write_tables(&mut data);
    }
    data.extend_from_slice(&input.data);
    let whole = run(&[&data]);
    for au in &whole {
        assert!(au.3 <= data.len());
    }
    if !data.is_empty() {
        let k = input.split as usize % data.len();
        assert_eq!(run(&[&data[..k], &data[k..]]), whole);
    }
});
