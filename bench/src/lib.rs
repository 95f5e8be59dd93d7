//! Benchmark support for Sluice: input generation shared by the criterion benches, and the
//! counting allocator that shows how often payload bytes are copied on the way from the
//! socket to a segment.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use ingest::flv::{FlvFileReader, TAG_AUDIO, TAG_VIDEO};
use ingest::rtmp::amf0::{self, Amf0Value};
use ingest::rtmp::chunk::ChunkEncoder;
use ingest::rtmp::handshake::{HANDSHAKE_SIZE, client_c0c1};
use ingest::rtmp::message::{COMMAND_AMF0, CSID_COMMAND, SET_CHUNK_SIZE, control_u32};

/// Counts bytes handed out by the system allocator (allocations and reallocations).
pub struct CountingAlloc;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` unchanged; the counter is a side effect.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A reallocation may move (copy) the block: count the new size in full.
        ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Bytes allocated so far (only meaningful in a binary that installs [`CountingAlloc`]).
pub fn allocated() -> u64 {
    ALLOCATED.load(Ordering::Relaxed)
}

/// Resident memory of this process, bytes (from `/proc/self/statm`).
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// User + system CPU seconds of this process's threads whose name starts with `prefix`
/// (from `/proc/self/task/*/stat`).
pub fn thread_cpu_seconds(prefix: &str) -> f64 {
    let mut total = 0.0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    for t in tasks.flatten() {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15, at 11 and 12 after the command name.
        total += (ticks(11) + ticks(12)) / 100.0;
    }
    total
}

/// A multi-threaded runtime on `workers` threads named `name`, so their CPU can be told
/// apart with [`thread_cpu_seconds`].
pub fn named_runtime(name: &str, workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The benchmarks' input: `testdata/clip.flv` (10 s of 640x360 H.264 with B-frames and
/// AAC), kept fixed so figures stay comparable across changes to the demo clip.
pub fn demo_clip() -> Bytes {
    Bytes::from_static(include_bytes!("../../testdata/clip.flv"))
}

/// What a publisher sends for `flv`: handshake C0+C1+C2, Set Chunk Size 4096, `connect`,
/// `createStream`, `publish`, then every audio/video tag as an RTMP message. With
/// `filler > 0`, every coded video frame carries an extra filler-data NAL unit (H.264 type
/// 12, which decoders skip) of that many bytes, to model higher bitrates with the same
/// frame count. The clip is sent `loops` times with rising timestamps, as one stream.
/// Returns the wire bytes and the payload (tag body) bytes in them.
pub fn rtmp_wire(flv: &Bytes, filler: usize, loops: u32) -> (Vec<u8>, u64) {
    let mut out = BytesMut::new();
    out.extend_from_slice(&client_c0c1(1));
    out.extend_from_slice(&[0u8; HANDSHAKE_SIZE]);
    let mut enc = ChunkEncoder::default();
    control_u32(&enc, &mut out, SET_CHUNK_SIZE, 4096);
    enc.set_chunk_size(4096);
    let cmd = |enc: &ChunkEncoder, out: &mut BytesMut, sid: u32, vals: &[Amf0Value]| {
        let mut b = BytesMut::new();
        for v in vals {
            amf0::encode(v, &mut b);
        }
        enc.write(out, CSID_COMMAND, 0, COMMAND_AMF0, sid, &b);
    };
    let s = |x: &str| Amf0Value::String(x.into());
    cmd(&enc, &mut out, 0, &[s("connect"), Amf0Value::Number(1.0), amf0::object([("app", s("live"))])]);
    cmd(&enc, &mut out, 0, &[s("createStream"), Amf0Value::Number(2.0), Amf0Value::Null]);
    cmd(&enc, &mut out, 1, &[s("publish"), Amf0Value::Number(3.0), Amf0Value::Null, s("bench"), s("live")]);
    let mut payload = 0u64;
    let tags: Vec<_> =
        FlvFileReader::new(flv.clone()).expect("fixture is FLV").map(|t| t.expect("well formed")).collect();
    let span = tags.iter().map(|t| t.timestamp).max().unwrap_or(0) + 34;
    for tag in (0..loops).flat_map(|i| tags.iter().map(move |t| (i, t))).map(|(i, t)| {
        let mut t = t.clone();
        t.timestamp += i * span;
        t
    }) {
        if tag.tag_type == TAG_AUDIO || tag.tag_type == TAG_VIDEO {
            let csid = if tag.tag_type == TAG_VIDEO { 6 } else { 7 };
            let mut body = tag.body.to_vec();
            if filler > 0 && tag.tag_type == TAG_VIDEO && body.get(1) == Some(&1) {
                body.extend_from_slice(&(filler as u32).to_be_bytes());
                body.push(12);
                body.resize(body.len() + filler - 1, 0xff);
            }
            enc.write(&mut out, csid, tag.timestamp, tag.tag_type, 1, &body);
            payload += body.len() as u64;
        }
    }
    (out.to_vec(), payload)
}

/// What [`run_pipeline`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct PipelineStats {
    /// Bytes allocated for socket read buffers (the kernel's copy lands here).
    pub read_buffer_alloc: u64,
    /// Bytes allocated by the RTMP session and the FLV demuxer: chunk reassembly, Annex B
    /// conversion. A copy of the payload here would show as about one byte per payload byte.
    pub ingest_alloc: u64,
    /// Bytes allocated by the segment cutter: the segment buffers the muxer writes into
    /// (the one copy), plus small bookkeeping.
    pub segmenter_alloc: u64,
    /// Bytes allocated by the CMAF cutters (video, and audio following it): the buffers
    /// the samples are written into (the one copy), chunk headers, bookkeeping.
    pub cmaf_alloc: u64,
    /// Bytes of CMAF parts produced (headers and samples).
    pub cmaf_bytes: u64,
    /// Segments produced.
    pub segments: u64,
    /// Bytes of segments produced.
    pub segment_bytes: u64,
    /// Access units produced.
    pub access_units: u64,
}

/// Runs the gateway's ingest path without sockets: the wire bytes arrive in reads of
/// `read_size` into a read buffer managed as the RTMP server shell manages it, go through
/// the RTMP session, FLV demuxing, and the segment cutter and the CMAF cutters side by
/// side, and come out as segments and parts.
pub fn run_pipeline(wire: &[u8], read_size: usize) -> PipelineStats {
    use ingest::flv::FlvDemuxer;
    use ingest::rtmp::session::{ServerSession, SessionConfig, SessionEvent};
    use media::{StreamEvent, TrackKind};
    use segmenter::cmaf::{CmafConfig, CmafCutter, CmafEvent, TrackConfig};
    use segmenter::{Segmenter, SegmenterConfig};

    /// The CMAF cutters of a stream, as `engine::cmaf` drives them.
    struct Cmaf {
        video: CmafCutter,
        audio: CmafCutter,
    }
    impl Cmaf {
        fn handle(&mut self, ev: &StreamEvent) {
            match ev {
                StreamEvent::Tracks(t) => {
                    if let Some(v) = &t.video {
                        self.video.handle_config(TrackConfig::Video(v.clone()));
                    }
                    if let Some(a) = &t.audio {
                        self.audio.handle_config(TrackConfig::Audio(a.clone()));
                    }
                    self.audio.follow_video(t.video.is_some());
                }
                StreamEvent::Media(au) if au.track == TrackKind::Video => self.video.handle_access_unit(au),
                StreamEvent::Media(au) => self.audio.handle_access_unit(au),
                StreamEvent::End => {
                    self.video.flush();
                    self.audio.flush();
                }
            }
        }
        /// Bytes of the parts that came out.
        fn drain(&mut self) -> u64 {
            let mut bytes = 0;
            while let Some(e) = self.video.poll_event() {
                self.audio.follow_event(&e);
                if let CmafEvent::Part { data, .. } = e {
                    bytes += data.len() as u64;
                }
            }
            while let Some(e) = self.audio.poll_event() {
                if let CmafEvent::Part { data, .. } = e {
                    bytes += data.len() as u64;
                }
            }
            bytes
        }
    }

    let mut st = PipelineStats::default();
    let mut session = ServerSession::new(SessionConfig::default(), 0, 1);
    let mut demux = FlvDemuxer::new();
    let mut seg = Segmenter::new(SegmenterConfig::default(), 0);
    let cfg = CmafConfig::default();
    let mut cmaf =
        Cmaf { video: CmafCutter::new(TrackKind::Video, cfg, 0), audio: CmafCutter::new(TrackKind::Audio, cfg, 0) };
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let handle = |seg: &mut Segmenter, cmaf: &mut Cmaf, events: &mut Vec<StreamEvent>, st: &mut PipelineStats| {
        let before = allocated();
        for ev in events.iter() {
            cmaf.handle(ev);
        }
        st.cmaf_bytes += cmaf.drain();
        st.cmaf_alloc += allocated() - before;
        let before = allocated();
        for ev in events.drain(..) {
            match ev {
                StreamEvent::Tracks(t) => seg.handle_tracks(t),
                StreamEvent::Media(au) => {
                    st.access_units += 1;
                    seg.handle_access_unit(&au);
                }
                StreamEvent::End => seg.flush(),
            }
        }
        while let Some(s) = seg.poll_segment() {
            st.segments += 1;
            st.segment_bytes += s.data.len() as u64;
        }
        st.segmenter_alloc += allocated() - before;
    };
    for read in wire.chunks(read_size) {
        // The shell: keep at least 16 KiB free, growing by 64 KiB.
        if buf.capacity() - buf.len() < 16 * 1024 {
            let before = allocated();
            buf.reserve(64 * 1024);
            st.read_buffer_alloc += allocated() - before;
        }
        // What `read(2)` does.
        buf.extend_from_slice(read);
        let before = allocated();
        session.handle_input(&mut buf).expect("bench input is valid");
        while session.poll_transmit().is_some() {}
        st.ingest_alloc += allocated() - before;
        while let Some(ev) = session.poll_event() {
            let before = allocated();
            match ev {
                SessionEvent::Publish { .. } => session.accept_publish(),
                SessionEvent::Video { timestamp, payload } => {
                    demux.handle_tag(TAG_VIDEO, timestamp, &payload, &mut events).expect("valid video")
                }
                SessionEvent::Audio { timestamp, payload } => {
                    demux.handle_tag(TAG_AUDIO, timestamp, &payload, &mut events).expect("valid audio")
                }
                _ => {}
            }
            st.ingest_alloc += allocated() - before;
            handle(&mut seg, &mut cmaf, &mut events, &mut st);
        }
    }
    events.push(StreamEvent::End);
    handle(&mut seg, &mut cmaf, &mut events, &mut st);
    st
}

/// The next command-line argument as the number `flag` takes (`--streams 200`): an
/// error naming the flag if it is missing or not a number.
pub fn number_arg(args: &mut impl Iterator<Item = String>, flag: &str) -> anyhow::Result<u64> {
    use anyhow::Context;
    args.next()
        .with_context(|| format!("{flag} needs a value"))?
        .parse()
        .with_context(|| format!("{flag}: not a number"))
}
