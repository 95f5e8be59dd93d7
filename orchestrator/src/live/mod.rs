//! Live video-to-video on the local orchestrator (spec `trickle-and-live-ai.md` §2.2, §2.4,
//! §3): `POST /live-video-to-video` admits a job as go-livepeer's orchestrator does, makes
//! its four trickle channels and starts a [`runner`] on them; `POST /payment` credits a
//! running job. The models are CPU [`effects`] run through GStreamer.
pub mod effects;
#[cfg(feature = "live")]
pub mod pipeline;
#[cfg(feature = "live")]
pub mod runner;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prost::Message;
use tokio::sync::watch;
use transport::live::{StartReply, StartRequest};
use transport::proto::PaymentResult;
use transport::segment::{PAYMENT_HEADER, SEGMENT_HEADER};
#[cfg(feature = "live")]
use transport::tls::CertPolicy;
#[cfg(feature = "live")]
use transport::trickle_client::TrickleClient;
use transport::trickle_http::TrickleHub;

use crate::service::{Shared, unix_now};
use effects::Effect;

/// The capability number of live video-to-video (spec §2.8).
pub use transport::live::CAPABILITY;
/// Largest start request body.
const MAX_START_BODY: usize = 1 << 20;

/// Running live jobs and their limits.
pub struct LiveJobs {
    /// Jobs at once before `503 insufficient capacity`.
    pub capacity: usize,
    jobs: Mutex<HashMap<String, watch::Sender<bool>>>,
    hub: Arc<TrickleHub>,
    /// An injected runner failure (`POST /fault` `runner_crash`): every runner stops with
    /// this error while it is set.
    crash: watch::Sender<Option<String>>,
}

impl LiveJobs {
    /// A table for up to `capacity` jobs whose channels live on `hub` (none when built
    /// without the `live` feature).
    pub fn new(capacity: usize, hub: Arc<TrickleHub>) -> Self {
        LiveJobs {
            capacity: if cfg!(feature = "live") { capacity } else { 0 },
            jobs: Mutex::default(),
            hub,
            crash: watch::channel(None).0,
        }
    }

    /// Makes every runner, running or started from now on, fail with `reason` (`None`
    /// ends the fault).
    pub fn set_crash(&self, reason: Option<String>) {
        self.crash.send_replace(reason);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<bool>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Jobs running.
    pub fn running(&self) -> usize {
        self.lock().len()
    }

    /// Stops every job.
    pub fn stop_all(&self) {
        for stop in self.lock().values() {
            let _ = stop.send(true);
        }
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(serde_json::json!({ "error": { "message": message.to_string() } }))).into_response()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// `POST /live-video-to-video`: admits the job (payment 402, credentials 403, payment
/// processing and balance 400, as §2.2), checks capacity (503 `insufficient capacity`)
/// and the model, makes `{mid}`, `{mid}-out`, `{mid}-control` and `{mid}-events`, starts
/// the runner and answers with their URLs.
pub(crate) async fn start(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let admitted = {
        let block = s.latest_block();
        let mut gate = s.gate.lock().expect("gate lock");
        gate.admit(header(&headers, SEGMENT_HEADER), header(&headers, PAYMENT_HEADER), unix_now(), block)
    };
    if let Err(r) = admitted {
        tracing::info!(status = r.status(), reason = %r, "live job refused");
        return error(StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST), r);
    }
    if body.len() > MAX_START_BODY {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let req: StartRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")),
    };
    let model = if req.model_id.is_empty() { "noop" } else { req.model_id.as_str() };
    let Some(effect) = Effect::for_model(model, &req.params) else {
        return error(StatusCode::BAD_REQUEST, format!("model {model:?} is not served here"));
    };
    let live = &s.live;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mid = hex(&crate::service::random::<8>());
    {
        let mut jobs = live.lock();
        if jobs.len() >= live.capacity {
            tracing::info!(capacity = live.capacity, "live job refused: insufficient capacity");
            return error(StatusCode::SERVICE_UNAVAILABLE, "insufficient capacity");
        }
        jobs.insert(mid.clone(), stop_tx);
    }
    const CHANNELS: [(&str, &str); 4] =
        [("", "video/MP2T"), ("-out", "video/MP2T"), ("-control", "application/json"), ("-events", "application/json")];
    for (i, (suffix, mime)) in CHANNELS.iter().enumerate() {
        if let Err(e) = live.hub.create(&format!("{mid}{suffix}"), mime) {
            live.lock().remove(&mid);
            for (made, _) in &CHANNELS[..i] {
                let _ = live.hub.delete(&format!("{mid}{made}"));
            }
            return error(StatusCode::SERVICE_UNAVAILABLE, format!("trickle channels: {e}"));
        }
    }
    let base = format!("{}/ai/trickle/{mid}", s.service_uri());
    let reply = StartReply {
        publish_url: base.clone(),
        subscribe_url: format!("{base}-out"),
        control_url: format!("{base}-control"),
        events_url: format!("{base}-events"),
        manifest_id: mid.clone(),
        request_id: None,
    };
    tracing::info!(%mid, model, stream_id = %req.stream_id, request_id = %req.gateway_request_id, "live job started");
    spawn_runner(s.clone(), &reply, &req, model, effect, stop_rx);
    axum::Json(reply).into_response()
}

/// Runs the job's runner; when it ends, the job's four channels close (§2.4).
#[cfg(feature = "live")]
fn spawn_runner(
    shared: Arc<Shared>,
    reply: &StartReply,
    req: &StartRequest,
    model: &str,
    effect: Effect,
    stop: watch::Receiver<bool>,
) {
    let mid = reply.manifest_id.clone();
    let spec = runner::JobSpec {
        mid: mid.clone(),
        stream_id: req.stream_id.clone(),
        model_id: model.to_owned(),
        params: req.params.clone(),
        subscribe_url: reply.publish_url.clone(),
        publish_url: reply.subscribe_url.clone(),
        control_url: reply.control_url.clone(),
        events_url: reply.events_url.clone(),
    };
    // The runner reaches the channels through the orchestrator's own URL, with its
    // self-signed certificate, as ai-runner reaches go-livepeer's. Each job has its own
    // client, so its own connection: one HTTP/2 connection shared by every job would run
    // into the server's concurrent-stream limit (each job holds about six long-polls), and
    // a connection error would end every job at once.
    let client = TrickleClient::new(CertPolicy::AcceptAny);
    tokio::spawn(async move {
        runner::run(spec, effect, client, stop, shared.live.crash.subscribe()).await;
        shared.live.lock().remove(&mid);
        for suffix in ["", "-out", "-control", "-events"] {
            let _ = shared.live.hub.delete(&format!("{mid}{suffix}"));
        }
        tracing::info!(%mid, "live job ended");
    });
}

/// Built without the runner: capacity is 0, so no job gets this far.
#[cfg(not(feature = "live"))]
fn spawn_runner(_: Arc<Shared>, _: &StartReply, _: &StartRequest, _: &str, _: Effect, _: watch::Receiver<bool>) {
    tracing::warn!("live job admitted without a runner built in");
}

/// `POST /payment` (§2.4): admits the payment headers like a start and answers with a
/// `PaymentResult` carrying fresh `OrchestratorInfo` (new ticket params).
pub(crate) async fn payment(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let admitted = {
        let block = s.latest_block();
        let mut gate = s.gate.lock().expect("gate lock");
        gate.admit(header(&headers, SEGMENT_HEADER), header(&headers, PAYMENT_HEADER), unix_now(), block)
    };
    match admitted {
        Ok(a) => {
            let token = a.seg.auth_token.clone().unwrap_or_default();
            let info = s.info(&a.sender, token);
            s.stats.lock().expect("stats lock").live_payments += 1;
            (StatusCode::OK, PaymentResult { info: Some(info) }.encode_to_vec()).into_response()
        }
        Err(r) => {
            tracing::info!(status = r.status(), reason = %r, "live payment refused");
            error(StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST), r)
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
