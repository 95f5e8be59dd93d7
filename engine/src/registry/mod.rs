//! The stream registry and the per-stream task.
//!
//! One live stream = one task that owns its segmenter; its output is shared with the HTTP
//! handlers behind a lock that is held only to swap in a new segment. A publisher that
//! comes back under the same stream id takes the stream over: the old connection is told
//! to go, the playlist continues with a discontinuity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ingest::redact::RedactedAddr;
use ingest::server::{PublishAccepted, PublishHandler, PublishRejected, PublishRequest};
use media::StreamEvent;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info_span, warn};

use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::output::{RenditionStats, StreamOutput, StreamStats};
use crate::transcode::{StreamTranscoder, Transcoding};

mod task;
use task::StreamTask;

/// Events buffered between a publisher and its stream task. At 30 fps plus audio this is
/// several seconds; beyond it the publisher's reads pause (TCP back-pressure).
const STREAM_QUEUE: usize = 512;
/// How long a replaced publisher may take to deliver what it still has.
const TAKEOVER_DRAIN: Duration = Duration::from_secs(2);

enum Command {
    Publisher { rx: mpsc::Receiver<StreamEvent>, remote: String },
}

struct Handle {
    output: Arc<RwLock<StreamOutput>>,
    /// The source cut into CMAF tracks (LL-HLS); empty for an output-only stream.
    cmaf: Arc<RwLock<crate::cmaf::CmafOutput>>,
    /// A live AI stream's driver (its processed output is the stream `{id}-out`).
    live: Option<crate::live::LiveStream>,
    /// A stream that lives and goes with this one (a live AI stream's `{id}-out`).
    companion: Option<String>,
    /// An output with no publisher of its own (a companion): not counted against the
    /// stream limit.
    output_only: bool,
    /// The transcode task's status, published by its recorder (the only writer).
    transcode: Option<tokio::sync::watch::Receiver<crate::status::TranscodeStatus>>,
    commands: mpsc::UnboundedSender<Command>,
    kick: Option<oneshot::Sender<&'static str>>,
    generation: u64,
}

/// All streams of the gateway.
pub struct Registry {
    config: Arc<GatewayConfig>,
    metrics: Arc<Metrics>,
    streams: Mutex<HashMap<String, Handle>>,
    transcoding: Option<Arc<Transcoding>>,
    /// Live AI, when orchestrators are configured.
    live: Option<Arc<crate::live::Live>>,
    generation: std::sync::atomic::AtomicU64,
    /// Woken whenever a stream's publisher goes (see [`Registry::wait_all_ended`]).
    stream_ended: tokio::sync::Notify,
    /// The main runtime: transcode tasks run there (stream tasks run where their first
    /// publisher's connection does, on an ingest thread).
    runtime: tokio::runtime::Handle,
}

/// A stream as the control API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    /// Stream id (the `{id}` of playback URLs).
    pub id: String,
    /// Counters.
    #[serde(flatten)]
    pub stats: StreamStats,
    /// Video codec and size, e.g. `avc1.64001f 1280x720`.
    pub video: Option<String>,
    /// Audio codec and rate, e.g. `mp4a.40.2 44100Hz 2ch`.
    pub audio: Option<String>,
    /// Source and transcoded renditions.
    pub renditions: Vec<RenditionStats>,
    /// Orchestrator sessions and recent segment results (empty without transcoding).
    pub transcode: crate::status::TranscodeStatus,
}

impl Registry {
    /// An empty registry.
    /// (Called inside the main tokio runtime: transcode tasks are spawned there.)
    pub fn new(
        config: Arc<GatewayConfig>,
        metrics: Arc<Metrics>,
        transcoding: Option<Arc<Transcoding>>,
        live: Option<Arc<crate::live::Live>>,
    ) -> Arc<Self> {
        Arc::new(Registry {
            config,
            metrics,
            streams: Mutex::new(HashMap::new()),
            transcoding,
            live,
            generation: Default::default(),
            stream_ended: tokio::sync::Notify::new(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// The orchestrators, best first, with what is known of each (empty without
    /// transcoding).
    pub fn orchestrators(&self) -> Vec<session::pool::OrchestratorState> {
        self.transcoding.as_ref().map(|t| t.pool().ranking(std::time::Instant::now())).unwrap_or_default()
    }

    /// Variants a stream's master playlist lists when every rendition is healthy
    /// (the source plus one per transcoding profile).
    pub fn variants_per_stream(&self) -> usize {
        1 + self.transcoding.as_ref().map_or(0, |t| t.profiles().len())
    }

    /// The target segment duration in seconds.
    pub fn segment_duration(&self) -> f64 {
        self.config.segmenting.segment_duration
    }

    /// The output of stream `id`.
    pub fn output(&self, id: &str) -> Option<Arc<RwLock<StreamOutput>>> {
        self.lock().get(id).map(|h| h.output.clone())
    }

    /// Stream `id`'s CMAF output (LL-HLS), if the stream exists.
    pub fn cmaf(&self, id: &str) -> Option<Arc<RwLock<crate::cmaf::CmafOutput>>> {
        self.lock().get(id).map(|h| h.cmaf.clone())
    }

    fn cmaf_config(&self) -> segmenter::cmaf::CmafConfig {
        let secs = |s: f64| media::MediaTime::from_secs_f64(s, media::Timescale::MPEG);
        segmenter::cmaf::CmafConfig {
            segment_target: secs(self.config.segmenting.segment_duration),
            part_target: secs(self.config.segmenting.part_duration),
        }
    }

    /// Live AI, when orchestrators are configured.
    pub fn live_ai(&self) -> Option<&Arc<crate::live::Live>> {
        self.live.as_ref()
    }

    /// The live AI side of stream `id`, if it is a live AI stream.
    pub fn live(&self, id: &str) -> Option<crate::live::LiveStream> {
        self.lock().get(id).and_then(|h| h.live.clone())
    }

    /// All streams, sorted by id.
    pub fn list(&self) -> Vec<StreamSummary> {
        let streams = self.lock();
        let mut out: Vec<StreamSummary> = streams
            .iter()
            .map(|(id, h)| {
                let o = h.output.read().unwrap_or_else(|e| e.into_inner());
                let t = o.tracks();
                StreamSummary {
                    id: id.clone(),
                    stats: o.stats.clone(),
                    video: t
                        .video
                        .as_ref()
                        .map(|v| format!("{} {}x{}", v.codec_string(), v.dimensions.width, v.dimensions.height)),
                    audio: t
                        .audio
                        .as_ref()
                        .map(|a| format!("{} {}Hz {}ch", a.codec_string(), a.sample_rate, a.channel_config)),
                    renditions: o.rendition_stats(),
                    transcode: h.transcode.as_ref().map(|r| r.borrow().clone()).unwrap_or_default(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Disconnects stream `id`'s publisher, logging `reason`.
    pub fn kick(&self, id: &str, reason: String) {
        if let Some(k) = self.lock().get_mut(id).and_then(|h| h.kick.take()) {
            warn!(stream_id = %id, %reason, "publisher disconnected");
            let _ = k.send("live AI ended");
        }
    }

    /// Ends every stream's publisher (shutdown). Streams flush and mark their playlists
    /// ended as their publishers go.
    pub fn kick_all(&self) {
        for h in self.lock().values_mut() {
            if let Some(k) = h.kick.take() {
                let _ = k.send("gateway shutting down");
            }
        }
    }

    /// Waits until no stream has a publisher (each has flushed its last segment and ended
    /// its playlist), or `timeout` passes. Returns true if all ended.
    pub async fn wait_all_ended(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.stream_ended.notified();
            tokio::pin!(notified);
            // Register before checking, so an end between the check and the wait is seen.
            notified.as_mut().enable();
            let live = self.lock().values().any(|h| h.output.read().unwrap_or_else(|e| e.into_inner()).stats.live);
            if !live {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        // A panic elsewhere while holding the lock leaves the map consistent (every update
        // is a single insert/remove), so a poisoned lock is still usable.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream `{id}-out` a live AI stream's processed output plays as: an ordinary
    /// stream in the output store, with no publisher of its own.
    fn output_stream(&self, id: &str) -> (Handle, Arc<RwLock<StreamOutput>>, crate::cmaf::SharedCmaf) {
        let generation = self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let target = self.config.live.live_output_segment;
        let output = Arc::new(RwLock::new(StreamOutput::new(
            id,
            // As many segments as the source window's span (0 keeps them all).
            match self.config.segmenting.playlist_window {
                0 => 0,
                w => w.max((w as f64 * self.config.segmenting.segment_duration / target).ceil() as usize),
            },
            (2.0 * target).ceil().max(1.0),
            &[],
        )));
        output.write().unwrap_or_else(|e| e.into_inner()).set_live(true);
        let (commands, _) = mpsc::unbounded_channel();
        let cmaf = Arc::new(RwLock::new(crate::cmaf::CmafOutput::new(self.cmaf_config())));
        let h = Handle {
            output: output.clone(),
            cmaf: cmaf.clone(),
            live: None,
            companion: None,
            output_only: true,
            transcode: None,
            commands,
            kick: None,
            generation,
        };
        (h, output, cmaf)
    }

    fn spawn_stream(self: &Arc<Self>, id: &str, live: Option<crate::live::LiveStream>) -> Handle {
        let generation = self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profiles = self.transcoding.as_ref().map(|t| t.profiles()).unwrap_or_default();
        let output = Arc::new(RwLock::new(StreamOutput::new(
            id,
            self.config.segmenting.playlist_window,
            self.config.segmenter_config().playlist_target_secs() as f64,
            profiles,
        )));
        let cmaf = Arc::new(RwLock::new(crate::cmaf::CmafOutput::new(self.cmaf_config())));
        // A live AI stream goes to its orchestrator instead of being transcoded.
        let transcoder = self.transcoding.as_ref().filter(|_| live.is_none()).map(|t| {
            let _main = self.runtime.enter();
            t.start_stream(id, output.clone(), cmaf.clone())
        });
        let transcode = transcoder.as_ref().map(StreamTranscoder::status);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = StreamTask {
            id: id.to_owned(),
            registry: self.clone(),
            output: output.clone(),
            cmaf: cmaf.clone(),
            generation,
            transcoder,
            live: live.clone(),
        };
        // A root span: the stream outlives the connection that created it.
        tokio::spawn(task.run(rx).instrument(info_span!(parent: None, "stream", stream_id = %id)));
        Metrics::add(&self.metrics.streams_active, 1);
        let companion = live.as_ref().map(|_| format!("{id}-out"));
        Handle { output, cmaf, live, companion, output_only: false, transcode, commands: tx, kick: None, generation }
    }

    /// Removes stream `id` if it is still generation `generation` and nobody is waiting to
    /// publish to it. Returns false if it must live on.
    fn remove_if_idle(&self, id: &str, generation: u64, pending: &mut mpsc::UnboundedReceiver<Command>) -> bool {
        let mut streams = self.lock();
        // Checked under the lock: `on_publish` sends its command while holding it.
        if !pending.is_empty() {
            return false;
        }
        if streams.get(id).is_some_and(|h| h.generation == generation) {
            if let Some(c) = streams.remove(id).and_then(|h| h.companion) {
                streams.remove(&c);
            }
            self.metrics.streams_active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        true
    }
}

/// Turns an RTMP app and stream name into a stream id, as go-livepeer does without auth:
/// the path `app/name` (query string dropped) loses leading slashes, an optional `stream/`
/// and any `live/`; its first element is the stream id and the rest, if any, the stream
/// key. So `rtmp://host/live/abc`, `rtmp://host/abc`, `rtmp://host/abc/KEY` and
/// `rtmp://host/live/abc?token=x` all publish stream `abc`. A path with no id gets eight
/// random hex characters, as in go-livepeer.
pub fn stream_id_for(app: &str, name: &str) -> Result<String, &'static str> {
    let strip_query = |s: &str| s.split('?').next().unwrap_or_default().to_owned();
    let path = format!("{}/{}", strip_query(app), strip_query(name));
    let rest = path.trim_start_matches([' ', '/']);
    let rest = rest.strip_prefix("stream/").unwrap_or(rest).replace("live/", "");
    let id = match rest.split('/').next().filter(|id| !id.is_empty()) {
        Some(id) => id.to_owned(),
        None => format!("{:08x}", crate::random_u32()),
    };
    let ok = id.len() <= 128
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok { Ok(id) } else { Err("stream name must be 1-128 characters of A-Z a-z 0-9 _ - .") }
}

/// The registry as the RTMP server's publish handler.
pub struct PublishGate(pub Arc<Registry>);

impl PublishHandler for PublishGate {
    fn on_publish(&self, req: &PublishRequest) -> Result<PublishAccepted, PublishRejected> {
        self.0.publish(req)
    }
}

impl Registry {
    /// Accepts or refuses a publish: validates the name, enforces the stream limit, takes
    /// over an existing stream of the same id.
    pub fn publish(self: &Arc<Self>, req: &PublishRequest) -> Result<PublishAccepted, PublishRejected> {
        match crate::live::parse_query(&req.app, &req.name) {
            Ok(live) => self.publish_with(req, live),
            Err(e) => {
                Metrics::add(&self.metrics.publishes_rejected_total, 1);
                Err(PublishRejected { code: "NetStream.Publish.BadName", reason: e.to_string() })
            }
        }
    }

    /// [`Registry::publish`] for a live AI request built elsewhere (the `/start` hook's
    /// pulled input); the query on `req.name`, if any, is not read.
    pub fn publish_live(
        self: &Arc<Self>,
        req: &PublishRequest,
        live: crate::live::LiveRequest,
    ) -> Result<PublishAccepted, PublishRejected> {
        self.publish_with(req, Some(live))
    }

    fn publish_with(
        self: &Arc<Self>,
        req: &PublishRequest,
        live: Option<crate::live::LiveRequest>,
    ) -> Result<PublishAccepted, PublishRejected> {
        let reject = |code, reason: String| {
            Metrics::add(&self.metrics.publishes_rejected_total, 1);
            Err(PublishRejected { code, reason })
        };
        let id = match stream_id_for(&req.app, &req.name) {
            Ok(id) => id,
            Err(e) => return reject("NetStream.Publish.BadName", e.to_owned()),
        };
        if live.is_some() && self.live.is_none() {
            return reject(
                "NetStream.Publish.Rejected",
                "live AI (?pipeline=) needs orchestrators: start the gateway with --orch-addr".into(),
            );
        }
        let mut streams = self.lock();
        let published = streams.values().filter(|h| !h.output_only).count();
        if !streams.contains_key(&id) && published >= self.config.listen.max_streams {
            return reject(
                "NetStream.Publish.Rejected",
                format!("stream limit of {} reached", self.config.listen.max_streams),
            );
        }
        let existed = streams.contains_key(&id);
        let mut live = live;
        if !existed && let (Some(request), Some(l)) = (live.take(), self.live.as_ref()) {
            // A new live AI stream: its processed output plays as `{id}-out`.
            let out_id = format!("{id}-out");
            let (out_handle, out, out_cmaf) = self.output_stream(&out_id);
            streams.insert(out_id, out_handle);
            let weak = Arc::downgrade(self);
            let kick_id = id.clone();
            let on_failure: Box<dyn Fn(String) + Send> = Box::new(move |reason: String| {
                if let Some(r) = weak.upgrade() {
                    r.kick(&kick_id, reason);
                }
            });
            let stream = {
                let _main = self.runtime.enter();
                l.start_stream(&id, request, out, out_cmaf, on_failure)
            };
            streams.insert(id.clone(), self.spawn_stream(&id, Some(stream)));
        }
        let handle = streams.entry(id.clone()).or_insert_with(|| self.spawn_stream(&id, None));
        if let Some(old) = handle.kick.take() {
            let _ = old.send("replaced by a new publisher");
        }
        if existed && let Some(l) = &handle.live {
            // The newcomer's own request, for the auth webhook and the next job.
            l.send(crate::live::Input::Publisher(live));
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let (kick_tx, kick_rx) = oneshot::channel();
        handle.kick = Some(kick_tx);
        if handle.commands.send(Command::Publisher { rx, remote: RedactedAddr(req.remote).to_string() }).is_err() {
            return reject("NetStream.Publish.Rejected", "stream is shutting down".into());
        }
        Metrics::add(&self.metrics.publishes_total, 1);
        Ok(PublishAccepted { stream_id: id, sink: tx, kick: kick_rx })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_follow_go_livepeer() {
        assert_eq!(stream_id_for("live", "abc").unwrap(), "abc");
        assert_eq!(stream_id_for("live", "abc?token=x").unwrap(), "abc");
        assert_eq!(stream_id_for("abc", "").unwrap(), "abc");
        assert_eq!(stream_id_for("abc", "KEY").unwrap(), "abc", "rtmp://host/{{manifestID}}/{{key}}");
        assert_eq!(stream_id_for("live", "abc/KEY").unwrap(), "abc");
        assert_eq!(stream_id_for("stream", "abc").unwrap(), "abc");
        assert_eq!(stream_id_for("live", "live").unwrap(), "live", "only `live/` is stripped");
        assert!(stream_id_for("live", "..").is_err());
        assert!(stream_id_for("live", "a b").is_err());
        for (app, name) in [("live", ""), ("", ""), ("live", "?x=1")] {
            let id = stream_id_for(app, name).unwrap();
            assert!(id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
    }
}
