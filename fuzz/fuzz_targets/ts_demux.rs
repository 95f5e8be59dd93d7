//! Transport stream demuxing of arbitrary bytes in arbitrary splits. Invariants: no panic;
//! every access unit has a payload no longer than the input; splitting the input
//! differently yields the same access units.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use segmenter::ts::demux::TsDemuxer;

#[derive(Arbitrary, Debug)]
struct Input {
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
    let data = &input.data[..];
    let whole = run(&[data]);
    for au in &whole {
        assert!(au.3 <= data.len());
    }
    if !data.is_empty() {
        let k = input.split as usize % data.len();
        assert_eq!(run(&[&data[..k], &data[k..]]), whole);
    }
});
