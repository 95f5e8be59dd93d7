//! Live video-to-video streams (spec `trickle-and-live-ai.md` §2): the IO around the
//! sans-IO [`session::live::LiveJob`].
//!
//! An RTMP publish to `rtmp://HOST/live/{stream}?pipeline={model}&params={json}` makes a
//! live AI stream. Its cutter runs in streaming mode (an IDR after at least
//! `--live-min-segment`), and each segment's bytes go into the orchestrator's input
//! channel as they are cut. The processed output is republished twice: on the gateway's
//! own trickle channel `{stream}-out` (segment for segment, as the runner wrote it) and as
//! HLS at `/stream/{stream}-out.m3u8` (re-cut into short segments). `/update` messages go
//! out on the job's control channel; the runner's status events feed `/status`.
//!
//! * [`driver`]: one stream's task: performs the job's actions (start, attach, detach,
//!   pay, suspend) and feeds back what happens, with the time.
//! * [`output`]: reading the processed output into the gateway's channel and playlist.
//! * [`auth`]: the auth webhook asked before a stream's job starts.
//! * [`hook`]: the `/start` media-server hook's form.
//! * [`pull`]: the `/start` hook's input, pulled from a media server with ffmpeg.
//!
//! Decisions (which orchestrator, retries, watchdogs, swaps, payment times) are the
//! job's; `docs/LIVE_AI.md` describes them.
use std::sync::Arc;

use bytes::Bytes;
use segmenter::Piece;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use transport::trickle_http::TrickleHub;

use crate::config::LiveConfig;
use crate::metrics::Metrics;
use crate::transcode::Transcoding;

pub mod auth;
pub mod driver;
pub mod hook;
pub mod output;
pub mod pay;
pub mod pull;
mod tasks;

/// Largest `/update` body, bytes.
pub const MAX_UPDATE: usize = 64 * 1024;

/// What a publish asked for in its URL's query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LiveRequest {
    /// The model (`pipeline=`).
    pub pipeline: String,
    /// Its params (`params=`, a JSON object; `{}` when absent).
    pub params: serde_json::Value,
    /// The stream id sent to the orchestrator (`streamId=`, or the auth webhook's); the
    /// stream's name when absent.
    pub stream_id: Option<String>,
    /// An id for the pipeline from the auth webhook, shown in `/status`.
    pub pipeline_id: Option<String>,
    /// The ingest URL's raw query (for the auth webhook).
    pub query: String,
    /// How the stream arrives, as the auth webhook names it: `rtmp` or `whip`.
    pub source: &'static str,
    /// Already admitted by the auth webhook (the `/start` hook asks it itself).
    pub authorized: bool,
}

/// Checks a model name: 1–128 characters of A–Z a–z 0–9 `_ - . /`.
///
/// Errors: [`LiveRequestError::Pipeline`] otherwise.
pub fn check_pipeline(pipeline: &str) -> Result<(), LiveRequestError> {
    let ok = !pipeline.is_empty()
        && pipeline.len() <= 128
        && pipeline.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'));
    if ok { Ok(()) } else { Err(LiveRequestError::Pipeline) }
}

/// Why a live request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveRequestError {
    /// `params` is not a JSON object.
    #[error("params is not a JSON object: {0}")]
    Params(String),
    /// `pipeline` names no model.
    #[error("pipeline must be 1-128 characters of A-Z a-z 0-9 _ - . /")]
    Pipeline,
}

/// The live request in an RTMP app and stream name (`live/abc?pipeline=x&params=...`),
/// if they carry `pipeline`. The query may sit on either.
pub fn parse_query(app: &str, name: &str) -> Result<Option<LiveRequest>, LiveRequestError> {
    let query = [name, app].iter().find_map(|s| s.split_once('?').map(|(_, q)| q.to_owned())).unwrap_or_default();
    let mut pipeline = None;
    let mut params = None;
    let mut stream_id = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "pipeline" => pipeline = Some(v.into_owned()),
            "params" => params = Some(v.into_owned()),
            "streamId" => stream_id = Some(v.into_owned()).filter(|s| !s.is_empty()),
            _ => {}
        }
    }
    let Some(pipeline) = pipeline else { return Ok(None) };
    check_pipeline(&pipeline)?;
    let params = match params.filter(|p| !p.trim().is_empty()) {
        None => serde_json::json!({}),
        Some(p) => match serde_json::from_str::<serde_json::Value>(&p) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(_) => return Err(LiveRequestError::Params("not an object".into())),
            Err(e) => return Err(LiveRequestError::Params(e.to_string())),
        },
    };
    Ok(Some(LiveRequest { pipeline, params, stream_id, query, source: "rtmp", ..Default::default() }))
}

/// The gateway's side of a stream's job, for `/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GatewayStatus {
    /// `starting`, `running`, `swapping` or `ended`.
    pub state: &'static str,
    /// The model.
    pub pipeline: String,
    /// The pipeline id the auth webhook gave, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<String>,
    /// The orchestrator running the job.
    pub orchestrator: Option<String>,
    /// The job's id there.
    pub manifest_id: Option<String>,
    /// Orchestrators given up so far.
    pub swaps: u64,
    /// Why the last orchestrator was given up, or why the stream ended.
    pub error: Option<String>,
    /// The last failure a runner reported (a status event in state `ERROR`).
    pub runner_error: Option<String>,
    /// Input segments sent, output segments received.
    pub input_segments: u64,
    /// Output segments received.
    pub output_segments: u64,
    /// Seconds from the job start to its first output segment.
    pub first_segment_delay_secs: Option<f64>,
    /// Per-frame round trip (input access unit received to the processed frame back),
    /// over the last frames.
    pub frame_latency: Option<FrameLatency>,
    /// The HLS playlist of the processed stream.
    pub hls_url: String,
    /// The gateway's trickle channel of the processed stream.
    pub trickle_url: String,
}

/// Round-trip quantiles over recent frames, milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FrameLatency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Frames measured.
    pub frames: usize,
}

/// Frames measured for [`FrameLatency`].
const LATENCY_WINDOW: usize = 600;
/// Input frames remembered while waiting for their processed copy.
const FRAMES_IN_FLIGHT: usize = 600;

/// When each input video frame arrived, by PTS, until its processed copy comes back (the
/// runner keeps the input's PTS), and the round trips of the last frames.
#[derive(Default)]
pub struct FrameClock {
    inner: std::sync::Mutex<FrameClockInner>,
}

#[derive(Default)]
struct FrameClockInner {
    received: std::collections::VecDeque<(i64, std::time::Instant)>,
    recent: std::collections::VecDeque<f64>,
}

impl FrameClock {
    /// An input video frame with PTS `pts` (90 kHz ticks) arrived at `at`.
    pub fn input(&self, pts: i64, at: std::time::Instant) {
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if i.received.len() >= FRAMES_IN_FLIGHT {
            i.received.pop_front();
        }
        i.received.push_back((pts, at));
    }

    /// The processed frame with PTS `pts` came back at `at`: its round trip, if its input
    /// is remembered. Older inputs are forgotten (dropped by the runner).
    pub fn output(&self, pts: i64, at: std::time::Instant) -> Option<std::time::Duration> {
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while i.received.front().is_some_and(|(p, _)| *p < pts) {
            i.received.pop_front();
        }
        let (p, t) = *i.received.front()?;
        if p != pts {
            return None;
        }
        i.received.pop_front();
        let took = at.saturating_duration_since(t);
        if i.recent.len() >= LATENCY_WINDOW {
            i.recent.pop_front();
        }
        i.recent.push_back(took.as_secs_f64() * 1000.0);
        Some(took)
    }

    /// Quantiles of the recent round trips.
    pub fn latency(&self) -> Option<FrameLatency> {
        let i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<f64> = i.recent.iter().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Some(FrameLatency { p50_ms: q(0.5), p99_ms: q(0.99), max_ms: v[v.len() - 1], frames: v.len() })
    }
}

/// What `/status` shows: the runner's last status event and the gateway's state.
#[derive(Debug, Clone, Default)]
pub struct LiveStatus {
    /// The last `status` event from the runner (its `event` object).
    pub runner: Option<serde_json::Value>,
    /// The gateway's side.
    pub gateway: GatewayStatus,
}

impl LiveStatus {
    /// go-livepeer's shape: the runner's status fields with `gateway_status` beside them.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = match &self.runner {
            Some(serde_json::Value::Object(m)) => serde_json::Value::Object(m.clone()),
            _ => serde_json::json!({}),
        };
        v["gateway_status"] = serde_json::to_value(&self.gateway).unwrap_or_default();
        v
    }
}

/// Unix seconds now (auth token expiries are in Unix seconds).
#[allow(clippy::disallowed_methods)] // IO shell: wall clock
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// What the stream task sends the live driver.
#[derive(Debug)]
pub enum Input {
    /// Bytes of the input, as the cutter hands them out, and when.
    Piece(Piece, std::time::Instant),
    /// The publisher left.
    End,
    /// A new publisher took the stream over, with the live request of its own URL (none
    /// if its URL has no `pipeline`: the stream's request stands, to be admitted again).
    Publisher(Option<LiveRequest>),
}

/// A live stream's handles, kept by the registry.
#[derive(Clone)]
pub struct LiveStream {
    input: mpsc::UnboundedSender<Input>,
    /// The latest `/update` (a newer one replaces one not sent yet).
    control: Arc<watch::Sender<Option<Bytes>>>,
    status: watch::Receiver<LiveStatus>,
    frames: Arc<FrameClock>,
}

impl LiveStream {
    /// Hands the driver cut input.
    pub fn send(&self, input: Input) {
        let _ = self.input.send(input);
    }

    /// An input video frame with PTS `pts` (90 kHz ticks) arrived now.
    #[allow(clippy::disallowed_methods)] // IO shell: arrival time
    pub fn frame_in(&self, pts: i64) {
        self.frames.input(pts, std::time::Instant::now());
    }

    /// Queues a control message (new params) for the runner; one not sent yet is
    /// replaced (the latest params are what count).
    pub fn update(&self, params: Bytes) {
        self.control.send_replace(Some(params));
    }

    /// The current status.
    pub fn status(&self) -> LiveStatus {
        let mut s = self.status.borrow().clone();
        s.gateway.frame_latency = self.frames.latency();
        s
    }
}

/// Gateway-wide live AI setup.
pub struct Live {
    transcoding: Arc<Transcoding>,
    hub: Arc<TrickleHub>,
    config: LiveConfig,
    metrics: Arc<Metrics>,
    /// The gateway's public HTTP base (for the URLs in `/status`).
    http_base: String,
    /// Pays priced orchestrators (a local key or a remote signer); none off-chain.
    payer: Option<Arc<pay::LivePayer>>,
    /// Asks the auth webhook; HTTPS certificates are verified against public roots.
    webhook_net: transport::client::OrchestratorNet,
}

impl Live {
    /// Live AI over `transcoding`'s orchestrators, republishing on `hub`.
    pub fn new(
        transcoding: Arc<Transcoding>,
        hub: Arc<TrickleHub>,
        config: LiveConfig,
        metrics: Arc<Metrics>,
        http_base: String,
        payer: Option<Arc<pay::LivePayer>>,
    ) -> Arc<Self> {
        let webhook_net = transport::client::OrchestratorNet::new(transport::tls::CertPolicy::PublicRoots);
        Arc::new(Live { transcoding, hub, config, metrics, http_base, payer, webhook_net })
    }

    /// What the auth webhook is asked about stream `id` (the URLs are this gateway's).
    pub fn auth_request(&self, id: &str, req: &LiveRequest) -> auth::AuthRequest {
        let base = &self.http_base;
        auth::AuthRequest {
            stream: id.to_owned(),
            stream_key: id.to_owned(),
            kind: req.source.to_owned(),
            query_params: req.query.clone(),
            gateway_host: base.split_once("://").map_or(base.as_str(), |(_, h)| h).to_owned(),
            whep_url: String::new(),
            status_url: format!("{base}/live/video-to-video/{id}/status"),
            update_url: format!("{base}/live/video-to-video/{id}/update"),
        }
    }

    /// The settings.
    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    /// Starts stream `id`'s live driver; its processed HLS goes into `output`;
    /// `on_failure` is called with the reason when the AI side ends in failure (the
    /// registry disconnects the publisher). The driver lives until the returned handle
    /// and its clones are dropped (the stream is removed).
    pub fn start_stream(
        self: &Arc<Self>,
        id: &str,
        request: LiveRequest,
        output: Arc<std::sync::RwLock<crate::output::StreamOutput>>,
        cmaf: crate::cmaf::SharedCmaf,
        on_failure: Box<dyn Fn(String) + Send>,
    ) -> LiveStream {
        let (input, input_rx) = mpsc::unbounded_channel();
        let (control, control_rx) = watch::channel(None);
        let gateway = GatewayStatus {
            state: "starting",
            pipeline: request.pipeline.clone(),
            hls_url: format!("{}/stream/{id}-out.m3u8", self.http_base),
            trickle_url: format!("{}/ai/trickle/{id}-out", self.http_base),
            ..Default::default()
        };
        let (status_tx, status) = watch::channel(LiveStatus { runner: None, gateway });
        let frames = Arc::new(FrameClock::default());
        Metrics::add(&self.metrics.live_streams_total, 1);
        let d = driver::Driver::new(
            self.clone(),
            id,
            request,
            crate::output::Stores { hls: output, cmaf },
            status_tx,
            frames.clone(),
            on_failure,
        );
        tokio::spawn(tracing::Instrument::instrument(
            d.run(input_rx, control_rx),
            tracing::info_span!(parent: None, "live", stream_id = %id),
        ));
        LiveStream { input, control: Arc::new(control), status, frames }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_name_the_pipeline_and_params() {
        assert_eq!(parse_query("live", "abc").unwrap(), None);
        assert_eq!(parse_query("live", "abc?token=1").unwrap(), None);
        let r = parse_query("live", "abc?pipeline=negate&params=%7B%22effect%22%3A%22hue%22%7D").unwrap().unwrap();
        assert_eq!(r.pipeline, "negate");
        assert_eq!(r.params["effect"], "hue");
        let r = parse_query("live?pipeline=edges", "abc").unwrap().unwrap();
        assert_eq!((r.pipeline.as_str(), r.params.clone()), ("edges", serde_json::json!({})));
        assert!(matches!(parse_query("live", "abc?pipeline=x&params={bad"), Err(LiveRequestError::Params(_))));
        assert!(matches!(parse_query("live", "abc?pipeline=x&params=[1]"), Err(LiveRequestError::Params(_))));
        assert_eq!(parse_query("live", "abc?pipeline="), Err(LiveRequestError::Pipeline));
        assert_eq!(parse_query("live", "abc?pipeline=a%20b"), Err(LiveRequestError::Pipeline));
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // one real instant as the epoch
    fn frame_clock_matches_outputs_to_inputs_by_pts() {
        use std::time::{Duration, Instant};
        let c = FrameClock::default();
        let t0 = Instant::now();
        for n in 0..10i64 {
            c.input(n * 3000, t0 + Duration::from_millis(n as u64 * 33));
        }
        // Frame 2 was dropped by the runner; 0, 1 and 3 come back 100 ms after they went in.
        for n in [0i64, 1, 3] {
            let back = t0 + Duration::from_millis(n as u64 * 33 + 100);
            assert_eq!(c.output(n * 3000, back), Some(Duration::from_millis(100)));
        }
        assert_eq!(c.output(2 * 3000, t0), None, "forgotten once a later frame came back");
        assert_eq!(c.output(12_345, t0), None, "not an input PTS");
        let l = c.latency().unwrap();
        assert_eq!((l.p50_ms, l.p99_ms, l.frames), (100.0, 100.0, 3));
    }

    #[test]
    fn status_has_the_runner_fields_and_the_gateway_beside_them() {
        let s = LiveStatus {
            runner: Some(serde_json::json!({"type": "status", "state": "ONLINE"})),
            gateway: GatewayStatus { state: "running", ..Default::default() },
        };
        let j = s.to_json();
        assert_eq!(j["state"], "ONLINE");
        assert_eq!(j["gateway_status"]["state"], "running");
    }
}
