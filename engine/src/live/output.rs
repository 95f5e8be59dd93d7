//! A live stream's processed output: each segment read from the orchestrator's `{mid}-out`
//! is written, as its bytes arrive, into the gateway's own trickle channel
//! `{stream}-out`, and demuxed and re-cut into short HLS segments of the ordinary stream
//! `{stream}-out`. The sink outlives orchestrators: after a swap the next one's output
//! continues the same channel and playlist (with a discontinuity).
//!
//! Audio: a runner that sends AAC (the local one carries the input's through) is kept as
//! it is. A runner whose output has no AAC track (ai-runner sends Opus, which HLS in
//! MPEG-TS does not carry here) gets the input's AAC instead: the sink demuxes it from
//! the input segments and interleaves it by timestamp with the processed video, which
//! keeps the input's PTS. The `{stream}-out` trickle channel carries the runner's bytes
//! unchanged either way.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use media::{AccessUnit, MediaTime, Timescale};
use segmenter::ts::demux::TsDemuxer;
use segmenter::{Segmenter, SegmenterConfig};
use transport::trickle_client::{TrickleClient, TrickleSubscriber};
use transport::trickle_http::TrickleHub;

use crate::output::StreamOutput;

/// Units held while the output's codec configurations are not known yet.
const MAX_HELD: usize = 2000;
/// Input audio frames kept for an output without audio (about 20 s of 48 kHz AAC).
const MAX_CARRIED: usize = 1000;

/// The input's audio, for an output that has none.
struct InputAudio {
    demux: TsDemuxer,
    queue: VecDeque<AccessUnit>,
    /// The output takes it (its programme declared no AAC).
    active: bool,
}

impl InputAudio {
    fn new() -> Self {
        InputAudio { demux: TsDemuxer::new(), queue: VecDeque::new(), active: false }
    }
}

/// Where processed output goes, across orchestrators.
pub struct OutputSink {
    hub: Arc<TrickleHub>,
    channel: String,
    output: Arc<RwLock<StreamOutput>>,
    /// The output's CMAF tracks (`/stream/{id}-out.mpd`, `…/ll.m3u8`).
    cmaf: crate::cmaf::SharedCmaf,
    cutter: Segmenter,
    demux: TsDemuxer,
    configured: bool,
    held: Vec<AccessUnit>,
    /// The gateway channel's segment being written.
    open: Option<u64>,
    /// Input frames' arrival times, for the round trip.
    frames: Arc<super::FrameClock>,
    metrics: Arc<crate::metrics::Metrics>,
    /// The input's audio while the output may need it; `None` once the output is known
    /// to have its own.
    carry: Option<InputAudio>,
}

impl OutputSink {
    /// A sink writing channel `channel` of `hub` and the stream's `stores`: its HLS (cut
    /// at `segment_secs`) and its CMAF tracks.
    pub fn new(
        hub: Arc<TrickleHub>,
        channel: String,
        stores: crate::output::Stores,
        segment_secs: f64,
        frames: Arc<super::FrameClock>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let target = MediaTime::from_secs_f64(segment_secs, Timescale::MPEG);
        let _ = hub.create(&channel, "video/MP2T");
        OutputSink {
            hub,
            channel,
            output: stores.hls,
            cmaf: stores.cmaf,
            cutter: Segmenter::new(SegmenterConfig::with_target(target), 0),
            demux: TsDemuxer::new(),
            configured: false,
            held: Vec::new(),
            open: None,
            frames,
            metrics,
            carry: Some(InputAudio::new()),
        }
    }

    /// Bytes of an input segment (as sent to the orchestrator): their audio is kept in
    /// case the output has none.
    pub fn input(&mut self, data: &Bytes) {
        let Some(c) = self.carry.as_mut() else { return };
        c.demux.push(data);
        while let Some(r) = c.demux.poll() {
            if let Ok(au) = r
                && au.track == media::TrackKind::Audio
            {
                // A new timeline (a publisher that restarted its clock): older audio
                // would hold back everything after it.
                let ticks = |a: &AccessUnit| a.dts.rescale(Timescale::MPEG).ticks();
                if c.queue.back().is_some_and(|last| ticks(&au) + 90_000 < ticks(last)) {
                    c.queue.clear();
                }
                c.queue.push_back(au);
                if c.queue.len() > MAX_CARRIED {
                    c.queue.pop_front();
                }
            }
        }
    }

    /// A new orchestrator's output starts: a new timeline, whose codec settings may
    /// differ.
    pub fn restart(&mut self) {
        self.finish_segment();
        self.demux = TsDemuxer::new();
        self.configured = false;
        self.cmaf_mut().restart();
        // The next orchestrator's output may lack audio where this one had it.
        let carry = self.carry.get_or_insert_with(InputAudio::new);
        carry.active = false;
        self.held.clear();
        self.cutter.mark_discontinuity();
        self.drain();
    }

    /// The stream's publisher came back after the sink ended: live again.
    pub fn reopen(&mut self) {
        // The returning publisher's timeline is a new one.
        self.carry = Some(InputAudio::new());
        let _ = self.hub.create(&self.channel, "video/MP2T");
        self.output.write().unwrap_or_else(|e| e.into_inner()).set_live(true);
    }

    /// An output segment begins. The channel is made again if it was closed meanwhile
    /// (idle sweep, a DELETE).
    pub fn begin_segment(&mut self) {
        self.finish_segment();
        self.open = match self.hub.open_segment(&self.channel) {
            Ok(seq) => Some(seq),
            Err(_) => {
                let _ = self.hub.create(&self.channel, "video/MP2T");
                self.hub.open_segment(&self.channel).ok()
            }
        };
    }

    /// Its next bytes.
    pub fn chunk(&mut self, data: Bytes) {
        if let Some(seq) = self.open {
            let _ = self.hub.write_segment(&self.channel, seq, data.clone());
        }
        self.demux.push(&data);
        while let Some(r) = self.demux.poll() {
            match r {
                Ok(au) => self.feed(au),
                Err(e) => tracing::debug!(error = %e, "processed output: malformed packet skipped"),
            }
        }
        self.drain();
    }

    /// The segment ended.
    pub fn finish_segment(&mut self) {
        if let Some(seq) = self.open.take() {
            let _ = self.hub.finish_segment(&self.channel, seq);
        }
    }

    #[allow(clippy::disallowed_methods)] // IO shell: when the frame came back
    fn feed(&mut self, au: AccessUnit) {
        if au.track == media::TrackKind::Video
            && let Some(took) = self.frames.output(au.pts.rescale(Timescale::MPEG).ticks(), Instant::now())
        {
            self.metrics.observe_live(crate::metrics::LiveTiming::RoundTrip, took);
        }
        if self.configured {
            self.cut(au);
            return;
        }
        self.held.push(au);
        let declared = self.demux.tracks();
        // An output without AAC borrows the input's, if the input has some.
        let borrowed = match self.carry.as_ref().and_then(|c| c.queue.front()) {
            Some(a) if !declared.audio => Some(a.clone()),
            _ => None,
        };
        let mut probe = std::borrow::Cow::Borrowed(&self.held);
        if let Some(a) = borrowed.clone() {
            probe.to_mut().push(a);
        }
        if let Some(t) = segmenter::ts::track_info(&probe, declared.video, declared.audio || borrowed.is_some()) {
            self.cutter.handle_tracks(t.clone());
            self.cmaf_mut().handle_tracks(&t);
            self.output.write().unwrap_or_else(|e| e.into_inner()).set_tracks(t);
            self.configured = true;
            if borrowed.is_some() {
                tracing::info!("the processed output has no AAC: the input's audio is carried into it");
                if let Some(c) = self.carry.as_mut() {
                    c.active = true;
                    // Audio from before the first processed frame is not wanted.
                    let first = self.held.iter().map(|a| a.dts).min();
                    c.queue.retain(|a| first.is_none_or(|f| a.dts >= f));
                }
            } else if declared.audio {
                self.carry = None;
            }
            self.held.sort_by_key(|a| a.dts);
            for a in std::mem::take(&mut self.held) {
                self.cut(a);
            }
        } else if self.held.len() > MAX_HELD {
            self.held.remove(0);
        }
    }

    fn cmaf_mut(&self) -> std::sync::RwLockWriteGuard<'_, crate::cmaf::CmafOutput> {
        self.cmaf.write().unwrap_or_else(|e| e.into_inner())
    }

    /// To the cutters (MPEG-TS and CMAF); before a processed frame, the carried input
    /// audio up to its time.
    fn cut(&mut self, au: AccessUnit) {
        let now = crate::unix_now();
        if let Some(c) = self.carry.as_mut().filter(|c| c.active && au.track == media::TrackKind::Video) {
            while c.queue.front().is_some_and(|a| a.dts <= au.dts) {
                if let Some(a) = c.queue.pop_front() {
                    self.cutter.handle_access_unit(&a);
                    self.cmaf.write().unwrap_or_else(|e| e.into_inner()).handle_access_unit(&a, now);
                }
            }
        }
        self.cutter.handle_access_unit(&au);
        self.cmaf_mut().handle_access_unit(&au, now);
    }

    fn drain(&mut self) {
        let mut o = self.output.write().unwrap_or_else(|e| e.into_inner());
        while let Some(s) = self.cutter.poll_segment() {
            o.add_segment(s);
        }
    }

    /// The stream's AI side ended: the last segment goes out, the playlist and channel
    /// end.
    pub fn end(&mut self) {
        self.finish_segment();
        self.demux.flush();
        while let Some(Ok(au)) = self.demux.poll() {
            self.feed(au);
        }
        self.cutter.flush();
        self.drain();
        self.cmaf_mut().end();
        self.output.write().unwrap_or_else(|e| e.into_inner()).set_live(false);
        let _ = self.hub.delete(&self.channel);
    }
}

/// What the output reader reports.
#[derive(Debug)]
pub enum OutputEvent {
    /// A segment began arriving, at this instant.
    Segment(Instant),
    /// The orchestrator's output channel ended or failed.
    Gone(String),
}

/// Reads `url` (from the current segment, for the fastest first frame) into `sink` until
/// the channel ends; reports each segment and the end on `events`.
#[allow(clippy::disallowed_methods)] // IO shell: arrival times
pub async fn read(
    client: TrickleClient,
    url: String,
    sink: Arc<Mutex<OutputSink>>,
    events: tokio::sync::mpsc::UnboundedSender<OutputEvent>,
) {
    let mut sub = TrickleSubscriber::new(client, &url, -2);
    sink.lock().unwrap_or_else(|e| e.into_inner()).restart();
    loop {
        let mut seg = match sub.next_segment().await {
            Ok(Some(s)) => s,
            Ok(None) => {
                let _ = events.send(OutputEvent::Gone("output channel closed".into()));
                return;
            }
            Err(e) => {
                let _ = events.send(OutputEvent::Gone(format!("output channel: {e}")));
                return;
            }
        };
        let _ = events.send(OutputEvent::Segment(Instant::now()));
        sink.lock().unwrap_or_else(|e| e.into_inner()).begin_segment();
        loop {
            match seg.chunk().await {
                Ok(Some(c)) => {
                    let at = Instant::now();
                    let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                    s.chunk(c);
                    s.metrics.observe_live(crate::metrics::LiveTiming::OutputHandoff, at.elapsed());
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "output segment cut short");
                    break;
                }
            }
        }
        sink.lock().unwrap_or_else(|e| e.into_inner()).finish_segment();
    }
}
