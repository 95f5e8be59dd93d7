//! Shows with a counting allocator that payload bytes are copied at most once between the
//! socket read buffer and the segment.
//!
//! A copy of a payload needs somewhere to go, and that somewhere is an allocation. The
//! pipeline is measured per stage over a minute of stream (the demo clip six times), as it
//! is (350 kbit/s, ~1.4 KB video frames) and with 16 KiB of filler NAL in every video frame
//! (~4 Mbit/s):
//! * RTMP session + FLV demuxer (chunk reassembly, AVCC → Annex B, ADTS): a payload copy
//!   here would allocate about one byte per payload byte, at any bitrate. What it does
//!   allocate is bookkeeping per frame (fragment lists), which does not grow with the frame.
//!   At 4 Mbit/s it must stay under 0.25 bytes per payload byte.
//! * segment cutter: one buffer per segment, which the muxer fills (the one copy). It must
//!   stay under 1.5 bytes per segment byte (the buffer is sized from the previous segment
//!   plus a quarter; a second copy, or buffer regrowth, would exceed it).
//! * CMAF cutters (video, and audio following it): 64 KiB buffers the samples are written
//!   into (the one copy) and parts hold handles into, plus chunk headers and bookkeeping.
//!   They must stay under 1.25 bytes per part byte (a second copy would make it 2).
//!
//! Exits non-zero if a bound is broken or the counting allocator is not installed.
//!
//!   cargo bench -p bench --bench copy_check

use bench::{CountingAlloc, demo_clip, rtmp_wire, run_pipeline};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() {
    let flv = demo_clip();
    run_pipeline(&rtmp_wire(&flv, 0, 1).0, 16 * 1024); // warm-up
    let (mut worst_ingest, mut worst_seg, mut worst_cmaf) = (0.0f64, 0.0f64, 0.0f64);
    for filler in [0usize, 16 * 1024] {
        let (wire, payload) = rtmp_wire(&flv, filler, 6); // a minute of stream
        for read_size in [1460usize, 16 * 1024, 64 * 1024] {
            let st = run_pipeline(&wire, read_size);
            let ingest = st.ingest_alloc as f64 / payload as f64;
            let per_au = st.ingest_alloc as f64 / st.access_units as f64;
            let seg = st.segmenter_alloc as f64 / st.segment_bytes as f64;
            let cmaf = st.cmaf_alloc as f64 / st.cmaf_bytes as f64;
            worst_cmaf = worst_cmaf.max(cmaf);
            if filler > 0 {
                worst_ingest = worst_ingest.max(ingest);
            }
            worst_seg = worst_seg.max(seg);
            println!(
                "filler {filler:>5} B, reads of {read_size:>5} B: {payload} payload B -> {} segments / {} B | \
                 read buffers {} B | RTMP+FLV {} B = {ingest:.3}/payload B ({per_au:.0} B per frame) | \
                 cutter {} B = {seg:.3}/segment B | CMAF {} B of parts, {} B = {cmaf:.3}/part B",
                st.segments,
                st.segment_bytes,
                st.read_buffer_alloc,
                st.ingest_alloc,
                st.segmenter_alloc,
                st.cmaf_bytes,
                st.cmaf_alloc
            );
        }
    }
    assert!(worst_seg > 0.5, "the counting allocator is not installed");
    assert!(
        worst_ingest <= 0.25,
        "RTMP+FLV allocated {worst_ingest:.3} bytes per payload byte: a payload copy crept in"
    );
    assert!(worst_seg <= 1.5, "the cutter allocated {worst_seg:.3} bytes per segment byte: a second copy crept in");
    assert!(
        worst_cmaf <= 1.25,
        "the CMAF cutters allocated {worst_cmaf:.3} bytes per part byte: a second copy crept in"
    );
    println!(
        "at most one payload copy between socket buffer and segment or part \
         (worst: RTMP+FLV {worst_ingest:.3} B/payload B, cutter {worst_seg:.3} B/segment B, \
         CMAF {worst_cmaf:.3} B/part B)"
    );
}
