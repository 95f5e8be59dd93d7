//! FLV audio/video tag bodies to access units, bodies split into arbitrary fragments (as
//! RTMP chunks deliver them). Invariants: no panic; every video access unit starts with an
//! access unit delimiter; every audio access unit starts with an ADTS sync word.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use ingest::flv::FlvDemuxer;
use libfuzzer_sys::fuzz_target;
use media::{Payload, StreamEvent, TrackKind};

#[derive(Arbitrary, Debug)]
struct Tag {
    video: bool,
    ts: u32,
    cut: u16,
    body: Vec<u8>,
}

fuzz_target!(|tags: Vec<Tag>| {
    let mut d = FlvDemuxer::new();
    let mut out = Vec::new();
    for t in tags {
        let b = Bytes::from(t.body);
        let cut = if b.is_empty() { 0 } else { t.cut as usize % b.len() };
        let mut p = Payload::new();
        p.push(b.slice(..cut));
        p.push(b.slice(cut..));
        let kind = if t.video { 9 } else { 8 };
        if d.handle_tag(kind, t.ts, &p, &mut out).is_err() {
            continue;
        }
        for ev in out.drain(..) {
            if let StreamEvent::Media(au) = ev {
                let head = au.data.to_contiguous();
                match au.track {
                    TrackKind::Video => assert!(head.starts_with(&[0, 0, 0, 1, 9])),
                    TrackKind::Audio => assert!(head.starts_with(&[0xff]) && head[1] & 0xf0 == 0xf0),
                }
            }
        }
    }
});
