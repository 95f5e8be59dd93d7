//! Shared test helpers.
#![allow(dead_code, unreachable_pub)]

use bytes::BytesMut;
use ingest::flv::{FlvDemuxer, FlvTagDecoder};
use media::{MediaTime, Payload, Segment, StreamEvent, Timescale};
use segmenter::{Segmenter, SegmenterConfig};

/// The first segments of the bundled clip, cut as the gateway cuts them.
pub fn clip_segments(n: usize) -> Vec<Segment> {
    fixture_segments("clip.flv", n)
}

/// The first `n` segments of a `testdata/` FLV fixture, cut as the gateway cuts them.
pub fn fixture_segments(name: &str, n: usize) -> Vec<Segment> {
    let path = format!("{}/../testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut buf = BytesMut::from(&std::fs::read(path).expect("testdata/clip.flv")[..]);
    let mut dec = FlvTagDecoder::new();
    let mut demux = FlvDemuxer::new();
    let mut seg = Segmenter::new(SegmenterConfig::with_target(MediaTime::new(2, Timescale::new(1))), 0);
    let mut events = Vec::new();
    let mut out = Vec::new();
    while let Some(tag) = dec.decode(&mut buf).expect("clip decodes") {
        demux.handle_tag(tag.tag_type, tag.timestamp, &Payload::from(tag.body), &mut events).expect("clip demuxes");
        for ev in events.drain(..) {
            match ev {
                StreamEvent::Tracks(t) => seg.handle_tracks(t),
                StreamEvent::Media(au) => seg.handle_access_unit(&au),
                StreamEvent::End => {}
            }
        }
        while let Some(s) = seg.poll_segment() {
            out.push(s);
            if out.len() == n {
                return out;
            }
        }
    }
    out
}
