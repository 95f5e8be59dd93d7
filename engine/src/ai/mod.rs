//! Batch AI and LLM jobs through orchestrators (AI gateway spec): the IO around
//! `session::ai`'s selectors and retries.
//!
//! * [`Ai`] is the gateway-wide setup: one selector per (pipeline, model), refreshed by
//!   asking every known orchestrator `GetOrchestrator` with the job's capabilities; the
//!   price ceilings; the tickets of paid jobs; the result store.
//! * [`request`] reads a client's body into the job sent on (defaults applied, model
//!   always named, multipart rewritten in go-livepeer's field order) and its units.
//! * [`reply`] turns an orchestrator's answer into the client's: result files copied into
//!   the gateway's store and named by its own URLs, LLM streams relayed.
//! * [`routes`] is the public HTTP API, the OpenAI-compatible alias and image-to-video's
//!   async mode; [`byoc`] BYOC jobs (`/process/request/…`); [`keys`] the API keys, rate
//!   limits and usage.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use num_rational::BigRational;
use session::ai::{AfterFailure, AiAttempts, AiSelector, AiSession, Answer, Next};
use session::payment::{PaymentPlan, params_ev};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use transport::ai::{AiFailure, MaxPrices, Pipeline, Units};
use transport::pm::{Balances, TicketSender};

use crate::config::GatewayConfig;
use crate::transcode::Transcoding;

pub mod byoc;
pub mod config;
pub mod keys;
pub mod meter;
pub mod reply;
pub mod request;
pub mod results;
pub mod routes;

/// A discovery answer is waited for at least this long once one has come…
const DISCOVERY_MIN_WAIT: Duration = Duration::from_millis(500);
/// …and never longer than this.
const DISCOVERY_MAX_WAIT: Duration = Duration::from_secs(6);
/// Selectors kept before those for models nobody offers are dropped.
const MAX_SELECTORS: usize = 256;
/// Most tickets sent with one job (what an orchestrator accepts per ticket params).
pub const MAX_TICKETS_PER_JOB: u32 = 600;
/// Longest a result file download from an orchestrator may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// An AI request's failure: the status and the message the client gets
/// (`{"error":{"message":…}}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct AiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The reason, said plainly (go-livepeer hides 500 and 503 reasons; Sluice does not).
    pub message: String,
}

impl AiError {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        AiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
    /// A 503 with `message`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        AiError { status: StatusCode::SERVICE_UNAVAILABLE, message: message.into() }
    }
    /// A 500 with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        AiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: message.into() }
    }
}

/// A job ready to send: the body as the orchestrator gets it, and what it pays for.
#[derive(Debug, Clone)]
pub struct Job {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model, always named (the pipeline's default when the client gave none).
    pub model: String,
    /// `Content-Type` of `body`.
    pub content_type: String,
    /// The body sent to the orchestrator.
    pub body: Bytes,
    /// What the job pays for.
    pub units: Units,
    /// An LLM answer streamed as server-sent events.
    pub stream: bool,
}

/// An orchestrator's successful answer.
pub struct Answered {
    /// The orchestrator's response (body unread: an LLM stream is relayed as it comes).
    pub response: http::Response<hyper::body::Incoming>,
    /// Which orchestrator answered (its discovery address).
    pub orchestrator: String,
    /// Where it took the job (`OrchestratorInfo.transcoder`).
    pub transcoder: String,
    /// Attempts it took.
    pub tries: u32,
    /// What the job cost, wei (0 off-chain).
    pub fee_wei: f64,
    /// When the request arrived.
    pub started: Instant,
}

/// Per-pipeline deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    image: Duration,
    video: Duration,
    audio: Duration,
    /// Longest wait for the first token and between tokens.
    pub llm_idle: Duration,
}

impl Timeouts {
    /// The deadline of a job of `p` (retries included).
    pub fn deadline(&self, p: Pipeline, stream: bool) -> Duration {
        match p {
            Pipeline::ImageToVideo => self.video,
            Pipeline::AudioToText | Pipeline::TextToSpeech => self.audio,
            Pipeline::Llm if stream => self.llm_idle,
            Pipeline::Llm => self.llm_idle * 5,
            _ => self.image,
        }
    }
}

/// How an attempt failed.
enum Attempt {
    /// The orchestrator refused or did not answer: the retry logic reads this text.
    Remote(String),
    /// This gateway could not make the request (paying): no orchestrator's fault.
    Local(AiError),
}

/// An orchestrator slot taken for an attempt, given back if the attempt is abandoned
/// (the client went away and its future was dropped).
struct Busy<'a> {
    cell: &'a SelectorCell,
    orch: session::OrchId,
    armed: bool,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.cell.sel.lock().unwrap_or_else(|e| e.into_inner()).release(self.orch);
        }
    }
}

/// An attempt's payment: settled with what the answer says, or its reserved credit
/// restored if the attempt ends without an answer.
struct Paid<'a> {
    payer: Option<&'a AiPayer>,
    plan: Option<PaymentPlan>,
}

impl Paid<'_> {
    /// The orchestrator answered: `units` were done. Returns the fee, wei.
    fn settle(&mut self, units: u64) -> f64 {
        let (Some(p), Some(plan)) = (self.payer, self.plan.take()) else { return 0.0 };
        let fee = if units > 0 { num_traits::ToPrimitive::to_f64(&plan.fee).unwrap_or(0.0) } else { 0.0 };
        plan.settle(&mut p.ledger.lock().unwrap_or_else(|e| e.into_inner()), units);
        fee
    }
}

impl Drop for Paid<'_> {
    fn drop(&mut self) {
        if let (Some(p), Some(plan)) = (self.payer, self.plan.take()) {
            plan.restore(&mut p.ledger.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

/// A model list and when it was asked: (model, the orchestrator offering it).
type ModelList = (Instant, Vec<(String, String)>);

struct SelectorCell {
    sel: Mutex<AiSelector>,
    refreshing: tokio::sync::Mutex<()>,
}

/// The tickets of paid AI jobs: one sender per orchestrator session, one credit ledger.
struct AiPayer {
    signer: transport::identity::EthSigner,
    senders: Mutex<HashMap<([u8; 20], String), TicketSender>>,
    ledger: Mutex<Balances>,
}

/// The gateway's batch AI setup.
pub struct Ai {
    t: Arc<Transcoding>,
    selectors: Mutex<HashMap<(Pipeline, String), Arc<SelectorCell>>>,
    max_prices: Mutex<MaxPrices>,
    runner_version: String,
    /// Deadlines per pipeline.
    pub timeouts: Timeouts,
    /// Result files, served at `/stream/{request}/{file}`.
    pub results: Arc<results::ResultStore>,
    payer: Option<AiPayer>,
    /// Requests, outcomes and latency per pipeline.
    pub meter: Arc<meter::AiMeter>,
    /// API keys, limits and usage.
    pub keys: Arc<keys::KeyRing>,
    /// image-to-video's async jobs.
    pub(crate) async_jobs: routes::AsyncJobs,
    /// The last model list per pipeline (`GET /v1/models`).
    models_cache: Mutex<HashMap<Pipeline, ModelList>>,
}

impl Ai {
    /// The AI setup over `t`'s orchestrators, from `config`'s `[ai]`.
    pub fn new(
        t: Arc<Transcoding>,
        config: &GatewayConfig,
        keys: Arc<keys::KeyRing>,
        meter: Arc<meter::AiMeter>,
    ) -> Result<Arc<Self>, AiError> {
        let c = &config.ai;
        let global = (config.payment.max_price_per_unit > 0).then(|| {
            BigRational::new(config.payment.max_price_per_unit.into(), config.payment.pixels_per_unit.max(1).into())
        });
        let max_prices = match &c.max_price_per_capability {
            None => MaxPrices::global(global),
            Some(spec) => {
                let text = if spec.trim_start().starts_with('{') {
                    spec.clone()
                } else {
                    std::fs::read_to_string(spec).map_err(|e| AiError::internal(format!("{spec}: {e}")))?
                };
                MaxPrices::parse(&text, global, config.payment.pixels_per_unit.max(1) as u64)
                    .map_err(|e| AiError::internal(e.to_string()))?
            }
        };
        let payer = t.key().map(|signer| AiPayer { signer, senders: Mutex::default(), ledger: Mutex::default() });
        Ok(Arc::new(Ai {
            t,
            selectors: Mutex::default(),
            max_prices: Mutex::new(max_prices),
            runner_version: c.ai_min_runner_version.clone(),
            timeouts: Timeouts {
                image: Duration::from_secs_f64(c.ai_image_timeout),
                video: Duration::from_secs_f64(c.ai_video_timeout),
                audio: Duration::from_secs_f64(c.ai_audio_timeout),
                llm_idle: Duration::from_secs_f64(c.ai_llm_idle_timeout),
            },
            results: Arc::new(results::ResultStore::new(Duration::from_secs_f64(c.ai_result_ttl))),
            payer,
            meter,
            keys,
            async_jobs: routes::AsyncJobs::default(),
            models_cache: Mutex::default(),
        }))
    }

    fn cell(&self, p: Pipeline, model: &str) -> Arc<SelectorCell> {
        let mut m = self.selectors.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_SELECTORS && !m.contains_key(&(p, model.to_owned())) {
            // Clients name models freely: forget those no orchestrator offered.
            m.retain(|_, c| !c.sel.lock().unwrap_or_else(|e| e.into_inner()).sessions().is_empty());
        }
        m.entry((p, model.to_owned()))
            .or_insert_with(|| {
                Arc::new(SelectorCell { sel: Mutex::new(AiSelector::new(p, model)), refreshing: Default::default() })
            })
            .clone()
    }

    /// Sets one price ceiling at run time (`POST /ai/max-price` on the control API).
    pub fn set_max_price(&self, p: Pipeline, model: &str, ceiling: BigRational) {
        self.max_prices.lock().unwrap_or_else(|e| e.into_inner()).set(p, model, ceiling);
        // Asked again with the new ceiling on the next request: that model's selector, or
        // every one of the pipeline for its `default`.
        for ((sp, sm), c) in self.selectors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if *sp == p && (sm == model || model == transport::ai::DEFAULT_MODEL_KEY) {
                *c.sel.lock().unwrap_or_else(|e| e.into_inner()) = AiSelector::new(p, sm);
            }
        }
    }

    /// Every selector's orchestrators (control API `GET /ai/pools`).
    #[allow(clippy::disallowed_methods)] // IO shell: suspensions are reported from now
    pub fn pools(&self) -> serde_json::Value {
        let now = Instant::now();
        let m = self.selectors.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = serde_json::Map::new();
        for ((p, model), c) in m.iter() {
            let sel = c.sel.lock().unwrap_or_else(|e| e.into_inner());
            let list: Vec<serde_json::Value> = sel
                .sessions()
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "orchestrator": s.uri, "transcoder": s.info.transcoder, "warm": s.warm,
                        "latency_score": s.latency_score, "in_use": s.in_use,
                        "price_wei_per_unit": num_traits::ToPrimitive::to_f64(&s.price),
                        "suspended_for_secs": sel.suspended_for(s.orch, now).map_or(0.0, |d| d.as_secs_f64()),
                    })
                })
                .collect();
            out.insert(transport::ai::manifest_id(*p, model), serde_json::Value::Array(list));
        }
        serde_json::Value::Object(out)
    }

    /// Asks every known orchestrator what it offers for (`p`, `model`): all at once, then
    /// at least [`DISCOVERY_MIN_WAIT`] after the first answer, at most
    /// [`DISCOVERY_MAX_WAIT`] in all.
    #[allow(clippy::disallowed_methods)] // IO shell: times the round
    async fn discover(&self, p: Pipeline, model: &str) -> Vec<Answer> {
        let started = Instant::now();
        let mut calls = JoinSet::new();
        for (orch, addr) in self.t.pool().addresses() {
            let t = self.t.clone();
            let req = t.ai_request(p, model, &self.runner_version);
            calls.spawn(async move {
                let uri = addr.to_string();
                let r = t.net().get_orchestrator_within(&uri, req, DISCOVERY_MAX_WAIT).await;
                Answer { orch, uri, info: r.map_err(|e| e.to_string()) }
            });
        }
        let mut answers = Vec::new();
        let hard = tokio::time::Instant::from_std(started + DISCOVERY_MAX_WAIT);
        let mut soft = hard;
        loop {
            match tokio::time::timeout_at(soft.min(hard), calls.join_next()).await {
                Ok(Some(Ok(a))) => {
                    if a.info.is_ok() && soft == hard {
                        soft = tokio::time::Instant::now() + DISCOVERY_MIN_WAIT;
                    }
                    answers.push(a);
                }
                Ok(Some(Err(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        debug!(%p, model, answered = answers.len(), ms = started.elapsed().as_millis() as u64, "AI discovery");
        answers
    }

    /// Runs `job`: selects, sends, retries within the pipeline's deadline (spec §2.7).
    #[allow(clippy::disallowed_methods)] // IO shell: passes the time to the core
    pub async fn run(&self, job: &Job) -> Result<Answered, AiError> {
        let started = Instant::now();
        let cell = self.cell(job.pipeline, &job.model);
        let deadline = self.timeouts.deadline(job.pipeline, job.stream);
        let mut attempts = AiAttempts::new(started, deadline);
        loop {
            let next = {
                let mut sel = cell.sel.lock().unwrap_or_else(|e| e.into_inner());
                attempts.next(&mut sel, Instant::now())
            };
            match next {
                Next::GiveUp(why) => {
                    warn!(pipeline = %job.pipeline, model = %job.model, reason = %why, "no orchestrator for the job");
                    return Err(AiError::unavailable(format!("no orchestrators available: {why}")));
                }
                Next::Refresh => {
                    let _single = cell.refreshing.lock().await;
                    let stale = cell.sel.lock().unwrap_or_else(|e| e.into_inner()).needs_refresh(Instant::now());
                    if stale {
                        let answers = self.discover(job.pipeline, &job.model).await;
                        let ceiling = self
                            .max_prices
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .ceiling([(job.pipeline.capability(), job.model.as_str())]);
                        let mut sel = cell.sel.lock().unwrap_or_else(|e| e.into_inner());
                        sel.refresh(Instant::now(), answers, ceiling.as_ref());
                    }
                }
                Next::Try { session, timeout } => {
                    let orch = session.orch;
                    let sent = Instant::now();
                    // Whatever happens to this future, the orchestrator's slot is given back.
                    let mut busy = Busy { cell: &cell, orch, armed: true };
                    match self.attempt(job, &session, timeout).await {
                        Ok((response, fee_wei)) => {
                            busy.armed = false;
                            let mut sel = cell.sel.lock().unwrap_or_else(|e| e.into_inner());
                            sel.complete(orch, sent.elapsed(), job.units.count());
                            return Ok(Answered {
                                response,
                                orchestrator: session.uri.clone(),
                                transcoder: session.info.transcoder.clone(),
                                tries: attempts.tries(),
                                fee_wei,
                                started,
                            });
                        }
                        Err(Attempt::Local(e)) => return Err(e),
                        Err(Attempt::Remote(text)) => {
                            busy.armed = false;
                            let failure = AiFailure::classify(&text);
                            info!(
                                pipeline = %job.pipeline, model = %job.model, orchestrator = %session.uri,
                                error = %text, soft = failure.is_soft(), "AI attempt failed"
                            );
                            self.meter.attempt_failed(job.pipeline);
                            let mut sel = cell.sel.lock().unwrap_or_else(|e| e.into_inner());
                            if let AfterFailure::BadRequest(msg) =
                                attempts.failed(&mut sel, orch, &failure, &text, Instant::now())
                            {
                                return Err(AiError::bad_request(msg));
                            }
                        }
                    }
                }
            }
        }
    }

    /// One attempt on `s` within `budget`: the response when its status is 200; else what
    /// the retry logic reads (the orchestrator's body, or the transport error), or a local
    /// failure that is no orchestrator's fault.
    async fn attempt(
        &self,
        job: &Job,
        s: &AiSession,
        budget: Duration,
    ) -> Result<(http::Response<hyper::body::Incoming>, f64), Attempt> {
        let caps = transport::ai::job_capabilities(job.pipeline, &job.model, &self.runner_version);
        let token = s.info.auth_token.as_ref();
        let signer = self.payer.as_ref().map(|p| &p.signer);
        let seg = transport::ai::seg_data(job.pipeline, &job.model, &caps, token, signer);
        let (payment, plan) = self.pay(job, s)?;
        // The reserved credit comes back unless the orchestrator answers.
        let mut paid = Paid { payer: self.payer.as_ref(), plan };
        let url = format!("{}/{}", s.info.transcoder.trim_end_matches('/'), job.pipeline.name());
        let req = Request::post(&url)
            .header(transport::segment::SEGMENT_HEADER, transport::segment::segment_header(&seg))
            .header(transport::segment::PAYMENT_HEADER, payment)
            .header(http::header::AUTHORIZATION, transport::ai::AUTHORIZATION)
            .header(http::header::CONTENT_TYPE, &job.content_type)
            .body(Full::new(job.body.clone()))
            .map_err(|e| Attempt::Remote(format!("request to {url}: {e}")))?;
        let resp = self.t.net().send(req, budget).await.map_err(|e| Attempt::Remote(e.to_string()))?;
        if resp.status() == StatusCode::OK {
            return Ok((resp, paid.settle(job.units.count())));
        }
        let status = resp.status();
        paid.settle(0);
        let body = transport::client::OrchestratorNet::read_body(resp.into_body(), 64 << 10, Duration::from_secs(5))
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body).trim().to_owned();
        Err(Attempt::Remote(if text.is_empty() { format!("HTTP {}", status.as_u16()) } else { text }))
    }

    /// The `Livepeer-Payment` header for a job on `s`, and the plan to settle: empty
    /// off-chain or when the orchestrator quotes no price (spec §3.4). A job needing more
    /// tickets than an orchestrator takes at once ([`MAX_TICKETS_PER_JOB`]) is refused.
    fn pay(&self, job: &Job, s: &AiSession) -> Result<(String, Option<PaymentPlan>), Attempt> {
        let (Some(p), Some(tp), Some(price_info)) = (&self.payer, &s.info.ticket_params, &s.info.price_info) else {
            return Ok((String::new(), None));
        };
        let local = |m: String| Attempt::Local(AiError::internal(m));
        let session_id = s.info.auth_token.as_ref().map(|t| t.session_id.clone()).unwrap_or_default();
        let recipient: [u8; 20] =
            tp.recipient.as_slice().try_into().map_err(|_| Attempt::Remote("bad ticket recipient".into()))?;
        let ev = params_ev(tp).map_err(|e| Attempt::Remote(format!("ticket params: {e}")))?;
        let fee = transport::ai::job_fee(job.units.count(), &s.price);
        let plan = {
            let mut ledger = p.ledger.lock().unwrap_or_else(|e| e.into_inner());
            PaymentPlan::for_fee(&mut ledger, recipient, &session_id, s.price.clone(), fee, &ev)
        };
        let restore = |plan: PaymentPlan| plan.restore(&mut p.ledger.lock().unwrap_or_else(|e| e.into_inner()));
        if plan.tickets > MAX_TICKETS_PER_JOB {
            let n = plan.tickets;
            restore(plan);
            return Err(Attempt::Local(AiError::bad_request(format!(
                "the job would need {n} tickets at this orchestrator's price; at most {MAX_TICKETS_PER_JOB} go with one request (ask for fewer units)"
            ))));
        }
        let mut senders = p.senders.lock().unwrap_or_else(|e| e.into_inner());
        let sender = senders.entry((recipient, session_id)).or_insert_with(|| TicketSender::new(p.signer.clone()));
        let payment = sender
            .update_params(tp)
            .map_err(|e| format!("ticket params: {e}"))
            .and_then(|()| sender.payment(plan.tickets, price_info).map_err(|e| format!("payment: {e}")));
        match payment {
            Ok(payment) => Ok((transport::segment::payment_header(Some(&payment)), Some(plan))),
            Err(e) => {
                restore(plan);
                Err(local(e))
            }
        }
    }

    /// Downloads a result file an orchestrator names by URL.
    pub(crate) async fn download(&self, url: &str) -> Result<Bytes, String> {
        self.t.net().download(url, DOWNLOAD_TIMEOUT).await.map_err(|e| format!("downloading {url}: {e}"))
    }
}
