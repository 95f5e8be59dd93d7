//! One live stream's task: performs the [`LiveJob`]'s actions and feeds back, with the
//! time, what its orchestrator and channels do.
//!
//! While attached it runs four small tasks: the input publisher (each cut segment into
//! its POST as the bytes come), the output reader ([`super::output`]), the events reader
//! and the control publisher (cached `/update`s, a keepalive every 10 s). A detach stops
//! them and ends the orchestrator's job by closing its input channel; the segment in
//! progress is replayed to the next orchestrator.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use segmenter::Piece;
use session::live::{Action, Attempt, DetachReason, Event, LiveConfig as JobConfig, LiveJob, StartRefusal};
use session::pool::OrchId;
use session::signer::SignedState;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};
use transport::client::NetError;
use transport::live::{StartReply, StartRequest};
use transport::proto::OrchestratorInfo;
use transport::refusal::FailureReason;
use transport::tls::CertPolicy;
use transport::trickle_client::TrickleClient;

use super::output::{OutputEvent, OutputSink};
use super::pay::credentials;
use super::tasks::{control_task, events_task, input_task};
use super::{Input, Live, LiveRequest, LiveStatus};
use crate::metrics::{LiveTiming, Metrics};

/// The control keepalive (go-livepeer: 10 s).
pub(super) const KEEPALIVE: Duration = Duration::from_secs(10);
/// How long a job start may take (go-livepeer: 5 s).
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest runner event read.
pub(super) const MAX_EVENT: usize = 1 << 20;

/// What the driver's helper tasks report.
pub(super) enum Note {
    Started {
        attempt: Attempt,
        result: Result<Box<(OrchestratorInfo, StartReply, Option<SignedState>)>, StartRefusal>,
    },
    Output(OutputEvent),
    RunnerEvent(serde_json::Value),
    /// A channel of the job ended or failed.
    ChannelGone(&'static str),
    InputTaken,
    /// A payment's outcome (`sent`: false when nothing was due), with fresh info when the
    /// auth token was renewed for it and the payer's next state.
    Paid {
        ok: bool,
        sent: bool,
        info: Option<Box<OrchestratorInfo>>,
        state: Option<SignedState>,
    },
}

/// A note from the helper tasks of attachment `.0` (notes of an attachment given up
/// are dropped: a late answer from the old orchestrator must not count against the new).
type Tagged = (u64, Note);

/// A publish that comes before discovery has seen an orchestrator with the model waits
/// this long for one.
const DISCOVERY_WAIT: Duration = Duration::from_secs(15);

/// The running job's IO.
struct Attachment {
    /// Tags this attachment's notes.
    generation: u64,
    orch: OrchId,
    info: OrchestratorInfo,
    reply: StartReply,
    /// The payer's state from the last payment.
    pay_state: Option<SignedState>,
    input: mpsc::UnboundedSender<(Piece, Option<Instant>)>,
    /// The latest `/update`, for the control task.
    control: watch::Sender<Option<Bytes>>,
    /// Its helper tasks: dropped (aborted) with it.
    tasks: JoinSet<()>,
    started: Instant,
    first_output: bool,
}

pub(crate) struct Driver {
    live: Arc<Live>,
    id: String,
    request: LiveRequest,
    job: LiveJob,
    client: TrickleClient,
    sink: Arc<Mutex<OutputSink>>,
    status: watch::Sender<LiveStatus>,
    notes_tx: mpsc::UnboundedSender<Tagged>,
    notes: mpsc::UnboundedReceiver<Tagged>,
    generation: u64,
    /// Called when the AI side ends in failure: the publisher is disconnected (spec §2.5).
    on_failure: Box<dyn Fn(String) + Send>,
    /// When the stream asked for candidates first (discovery may not have run yet).
    waiting_since: Option<Instant>,
    /// The segment in progress at the orchestrator, for in-flight counting.
    sending: Option<u64>,
    starting: HashMap<u64, (OrchestratorInfo, StartReply, Option<SignedState>)>,
    attached: Option<Attachment>,
    /// The input segment in progress, for a replay after a swap.
    current: Vec<Piece>,
    /// The latest `/update` (sent to each orchestrator on attach).
    last_update: Option<Bytes>,
    /// The stream's AI side failed (or was refused) for the current publisher: its
    /// remaining input starts no new job; a new publisher, or its leaving, clears it.
    refused_publisher: bool,
    cfg: JobConfig,
}

impl Driver {
    pub(crate) fn new(
        live: Arc<Live>,
        id: &str,
        request: LiveRequest,
        stores: crate::output::Stores,
        status: watch::Sender<LiveStatus>,
        frames: Arc<super::FrameClock>,
        on_failure: Box<dyn Fn(String) + Send>,
    ) -> Self {
        let cfg = JobConfig {
            output_timeout: Duration::from_secs_f64(live.config.live_output_timeout),
            ..JobConfig::default()
        };
        let job = LiveJob::new(cfg.clone());
        let sink = OutputSink::new(
            live.hub.clone(),
            format!("{id}-out"),
            stores,
            live.config.live_output_segment,
            frames,
            live.metrics.clone(),
        );
        let (notes_tx, notes) = mpsc::unbounded_channel();
        Driver {
            id: id.to_owned(),
            request,
            job,
            client: TrickleClient::new(CertPolicy::AcceptAny),
            sink: Arc::new(Mutex::new(sink)),
            status,
            notes_tx,
            notes,
            generation: 0,
            on_failure,
            waiting_since: None,
            sending: None,
            starting: HashMap::new(),
            attached: None,
            current: Vec::new(),
            last_update: None,
            refused_publisher: false,
            cfg,
            live,
        }
    }

    fn tagger(&self, generation: u64) -> impl Fn(Note) + Send + Clone + 'static {
        let tx = self.notes_tx.clone();
        move |n| {
            let _ = tx.send((generation, n));
        }
    }

    #[allow(clippy::disallowed_methods)] // IO shell: the job's clock
    pub(crate) async fn run(
        mut self,
        mut input: mpsc::UnboundedReceiver<Input>,
        mut control: watch::Receiver<Option<Bytes>>,
    ) {
        info!(pipeline = %self.request.pipeline, "live AI stream");
        // The request of the stream's current publisher, as it asked (before the webhook).
        let mut asked = self.request.clone();
        self.admit().await;
        let mut retry_at: Option<Instant> = None;
        loop {
            while let Some(a) = self.job.poll_action() {
                self.perform(a);
            }
            if self.job.needs_candidates() && retry_at.is_none() {
                let now = Instant::now();
                let candidates = self.live.transcoding.pool().live_candidates(&self.request.pipeline, now);
                let since = *self.waiting_since.get_or_insert(now);
                let pool = self.live.transcoding.pool();
                if candidates.is_empty()
                    && !pool.all_discovered()
                    && now.saturating_duration_since(since) < DISCOVERY_WAIT
                {
                    // Discovery may not have seen an orchestrator with the model yet.
                    retry_at = Some(now + Duration::from_millis(500));
                } else {
                    self.set_status(|g| g.state = if g.swaps > 0 { "swapping" } else { "starting" });
                    self.job.start(now, candidates);
                    continue;
                }
            }
            let deadline = match (self.job.poll_timeout(), retry_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                i = input.recv() => match i {
                    Some(Input::Piece(p, at)) => {
                        if self.job.ended() && self.refused_publisher {
                            // The rest of a refused or failed publisher's input, until
                            // it is gone: no new job for it.
                            continue;
                        }
                        if self.job.ended() {
                            // A publisher came back after the stream's AI side ended: a
                            // fresh job (its swap chain starts over).
                            info!("input again: live AI restarts");
                            self.job = LiveJob::new(self.cfg.clone());
                            self.waiting_since = None;
                            self.sink.lock().unwrap_or_else(|e| e.into_inner()).reopen();
                            // The auth webhook is asked again, about this publisher's query.
                            self.request = asked.clone();
                            self.admit().await;
                        }
                        self.on_piece(p, at);
                    }
                    Some(Input::End) => {
                        self.refused_publisher = false;
                        self.job.handle(Instant::now(), Event::InputEnded);
                    }
                    Some(Input::Publisher(request)) => {
                        self.refused_publisher = false;
                        asked = match request {
                            Some(r) => r,
                            None => LiveRequest { authorized: false, ..asked.clone() },
                        };
                        // A publisher taking over a running job is admitted too; its
                        // pipeline and params apply from the stream's next job.
                        if !self.job.ended() && !asked.authorized {
                            let mut probe = asked.clone();
                            if let Err(e) = super::auth::admit(&self.live, &self.id, &mut probe).await {
                                warn!(error = %e, "new publisher refused");
                                Metrics::add(&self.live.metrics.live_auth_refused_total, 1);
                                self.job.refuse(e.to_string());
                            }
                        }
                    }
                    // The stream is gone for good.
                    None => {
                        self.job.handle(Instant::now(), Event::InputEnded);
                        while let Some(a) = self.job.poll_action() {
                            self.perform(a);
                        }
                        break;
                    }
                },
                Ok(()) = control.changed() => {
                    if let Some(c) = control.borrow_and_update().clone() {
                        self.last_update = Some(c.clone());
                        if let Some(a) = &self.attached {
                            let _ = a.control.send_replace(Some(c));
                        }
                    }
                }
                Some((generation, n)) = self.notes.recv() => {
                    if matches!(n, Note::Started { .. }) || self.attached.as_ref().is_some_and(|a| a.generation == generation) {
                        self.on_note(n);
                    }
                }
                _ = sleep_until(deadline) => {
                    let now = Instant::now();
                    if retry_at.is_some_and(|t| t <= now) {
                        retry_at = None;
                    }
                    self.job.handle_timeout(now);
                }
            }
        }
        info!("live AI stream removed");
    }

    /// Asks the auth webhook (if any) about the stream; a refusal ends the job, which
    /// disconnects the publisher.
    async fn admit(&mut self) {
        match super::auth::admit(&self.live, &self.id, &mut self.request).await {
            Ok(()) => {
                let (pipeline, pipeline_id) = (self.request.pipeline.clone(), self.request.pipeline_id.clone());
                self.set_status(|g| {
                    g.pipeline = pipeline;
                    g.pipeline_id = pipeline_id;
                });
            }
            Err(e) => {
                warn!(error = %e, "live AI stream refused");
                Metrics::add(&self.live.metrics.live_auth_refused_total, 1);
                self.job.refuse(e.to_string());
            }
        }
    }

    fn set_status(&self, f: impl FnOnce(&mut super::GatewayStatus)) {
        self.status.send_modify(|s| f(&mut s.gateway));
    }

    #[allow(clippy::disallowed_methods)] // IO shell: the job's clock
    fn on_piece(&mut self, p: Piece, at: Instant) {
        if let Piece::Bytes { seq, .. } = &p
            && self.attached.is_some()
            && self.sending != Some(*seq)
        {
            // A segment begins at the orchestrator.
            self.sending = Some(*seq);
            self.job.handle(Instant::now(), Event::InputSegmentSent);
            self.set_status(|g| g.input_segments += 1);
        }
        match &p {
            Piece::Bytes { seq, data } => {
                if self.current.first().is_some_and(|f| !matches!(f, Piece::Bytes { seq: s, .. } if s == seq)) {
                    self.current.clear();
                }
                // Its audio, for an output that has none.
                self.sink.lock().unwrap_or_else(|e| e.into_inner()).input(data);
                self.current.push(p.clone());
            }
            Piece::End(_) => self.current.clear(),
        }
        if let Some(a) = &self.attached {
            let _ = a.input.send((p, Some(at)));
        }
    }

    #[allow(clippy::disallowed_methods)] // IO shell: the job's clock
    fn on_note(&mut self, n: Note) {
        let now = Instant::now();
        match n {
            Note::Started { attempt, result } => {
                if result.is_err() {
                    Metrics::add(&self.live.metrics.live_start_failures_total, 1);
                }
                let result = result.map(|started| {
                    self.starting.insert(attempt.0, *started);
                });
                self.job.handle(now, Event::StartAnswered { attempt, result });
            }
            Note::Output(OutputEvent::Segment(at)) => {
                self.job.handle(now, Event::OutputSegment);
                if let Some(a) = &mut self.attached
                    && std::mem::take(&mut a.first_output)
                {
                    let took = at.saturating_duration_since(a.started);
                    self.live.metrics.observe_live(LiveTiming::FirstSegment, took);
                    let delay = took.as_secs_f64();
                    info!(delay_secs = delay, "first processed segment");
                    self.set_status(|g| g.first_segment_delay_secs = Some(delay));
                }
                self.set_status(|g| g.output_segments += 1);
            }
            Note::Output(OutputEvent::Gone(why)) => {
                info!(%why, "orchestrator output ended");
                self.job.handle(now, Event::ChannelGone);
            }
            Note::ChannelGone(which) => {
                info!(channel = which, "a channel of the job ended");
                self.job.handle(now, Event::ChannelGone);
            }
            Note::RunnerEvent(ev) => {
                self.job.handle(now, Event::RunnerEvent);
                let inner = ev.get("event").cloned().unwrap_or(ev);
                if inner.get("type").and_then(|t| t.as_str()) == Some("status") {
                    if inner.get("state").and_then(|s| s.as_str()) == Some("ERROR") {
                        let why = inner["inference_status"]["last_error"].as_str().unwrap_or("runner error").to_owned();
                        warn!(error = %why, "the runner reports a failure");
                        self.set_status(|g| g.runner_error = Some(why));
                    }
                    self.status.send_modify(|s| s.runner = Some(inner));
                }
            }
            Note::InputTaken => self.job.handle(now, Event::InputSegmentTaken),
            Note::Paid { ok, sent, info, state } => {
                if sent {
                    Metrics::add(&self.live.metrics.live_payments_total, 1);
                }
                if !ok {
                    Metrics::add(&self.live.metrics.live_payment_failures_total, 1);
                }
                if let Some(a) = self.attached.as_mut() {
                    if let Some(info) = info {
                        a.info = *info;
                    }
                    if state.is_some() {
                        a.pay_state = state;
                    }
                }
                self.job.handle(now, Event::PaymentAnswered { ok });
            }
        }
    }

    #[allow(clippy::disallowed_methods)] // IO shell: pool suspensions are timed
    fn perform(&mut self, action: Action) {
        match action {
            Action::Start { attempt, orch } => self.start(attempt, orch),
            Action::Attached { orch, swap } => self.attach(orch, swap),
            Action::Detach { orch, reason } => self.detach(orch, reason),
            Action::Suspend { orch } => {
                self.live.transcoding.pool().failure(orch, FailureReason::Timeout, true, Instant::now());
            }
            Action::Pay { orch } => {
                let Some(a) = &self.attached else { return };
                let payer = self.live.payer.clone();
                // go-livepeer pays nothing to an orchestrator that charges nothing.
                if a.info.price_info.as_ref().is_none_or(|p| p.price_per_unit == 0) {
                    return;
                }
                let net = self.live.transcoding.net().clone();
                let info = a.info.clone();
                let (mid, state) = (a.reply.manifest_id.clone(), a.pay_state.clone());
                let uri = self.live.transcoding.pool().address(orch).map(|u| u.to_string());
                let req = self.live.transcoding.live_request(&self.request.pipeline);
                let note = self.tagger(a.generation);
                let Some(a) = self.attached.as_mut() else { return };
                a.tasks.spawn(async move {
                    let (ok, sent, info, state) = super::pay::cycle(&net, payer, info, &mid, state, uri, req).await;
                    note(Note::Paid { ok, sent, info: info.map(Box::new), state });
                });
            }
            Action::Ended(reason) => {
                info!(%reason, "live AI job over");
                // The processed playlist ends (and picks up again if the publisher returns).
                self.sink.lock().unwrap_or_else(|e| e.into_inner()).end();
                let failed = !matches!(reason, session::live::EndReason::InputEnded);
                self.set_status(|g| {
                    g.state = "ended";
                    if failed || g.error.is_none() {
                        g.error = Some(reason.to_string());
                    }
                });
                if failed {
                    self.refused_publisher = true;
                    // The stream cannot be processed: its publisher is told so (§2.5).
                    (self.on_failure)(format!("live AI ended: {reason}"));
                }
            }
        }
    }

    /// `GetOrchestrator` for a fresh auth token, then the job start (§2.2).
    fn start(&mut self, attempt: Attempt, orch: OrchId) {
        let Some(uri) = self.live.transcoding.pool().address(orch) else {
            let _ =
                self.notes_tx.send((0, Note::Started { attempt, result: Err(StartRefusal::Other("unknown".into())) }));
            return;
        };
        let net = self.live.transcoding.net().clone();
        let req = self.live.transcoding.live_request(&self.request.pipeline);
        let body = StartRequest {
            model_id: self.request.pipeline.clone(),
            params: self.request.params.clone(),
            gateway_request_id: format!("{}-{}", self.id, attempt.0),
            stream_id: self.request.stream_id.clone().unwrap_or_else(|| self.id.clone()),
        };
        let notes = self.notes_tx.clone();
        let payer = self.live.payer.clone();
        info!(orchestrator = %uri, attempt = attempt.0, "starting live job");
        tokio::spawn(async move {
            let result = async {
                let info = net
                    .get_orchestrator_within(&uri.to_string(), req, START_TIMEOUT)
                    .await
                    .map_err(|e| StartRefusal::Other(format!("GetOrchestrator: {e}")))?;
                // A priced orchestrator gets the first payment with the start (60 s of
                // 720p30, §2.2); the job has no id yet.
                let priced = info.price_info.as_ref().is_some_and(|p| p.price_per_unit > 0);
                let paid = match (&payer, priced) {
                    (Some(p), true) => {
                        p.pay(&info, "", None).await.map_err(|e| StartRefusal::Other(format!("payment: {e}")))?
                    }
                    _ => None,
                };
                let (creds, payment, state) = match paid {
                    Some(p) => (p.seg_creds, p.payment, Some(p.state)),
                    None => (credentials(&info), String::new(), None),
                };
                let reply =
                    net.start_live(&info.transcoder, &creds, &payment, &body, START_TIMEOUT).await.map_err(refusal)?;
                Ok(Box::new((info, reply, state)))
            }
            .await;
            if let Err(e) = &result {
                warn!(orchestrator = %uri, refusal = ?e, "live job start refused");
            }
            if let Err(mpsc::error::SendError((_, Note::Started { result: Ok(started), .. }))) =
                notes.send((0, Note::Started { attempt, result }))
            {
                // The stream ended meanwhile: end the job it no longer wants.
                let client = TrickleClient::new(CertPolicy::AcceptAny);
                let _ = client.close(&started.1.publish_url).await;
                let _ = client.close(&started.1.control_url).await;
            }
        });
    }

    #[allow(clippy::disallowed_methods)] // IO shell: timing the first segment
    fn attach(&mut self, orch: OrchId, swap: bool) {
        let Some((info, reply, pay_state)) = self.starting.drain().max_by_key(|(k, _)| *k).map(|(_, v)| v) else {
            return;
        };
        info!(manifest_id = %reply.manifest_id, transcoder = %info.transcoder, swap, "live job running");
        self.generation += 1;
        let note = self.tagger(self.generation);
        let mut tasks = JoinSet::new();
        let (input_tx, input_rx) = mpsc::unbounded_channel();
        tasks.spawn(input_task(
            self.client.clone(),
            reply.publish_url.clone(),
            input_rx,
            note.clone(),
            self.live.metrics.clone(),
        ));
        // The segment in progress goes to the new orchestrator from its start.
        self.sending = None;
        for p in &self.current {
            if let Piece::Bytes { seq, .. } = p
                && self.sending != Some(*seq)
            {
                self.sending = Some(*seq);
                self.job.handle(Instant::now(), Event::InputSegmentSent);
            }
            let _ = input_tx.send((p.clone(), None));
        }
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        tasks.spawn(super::output::read(self.client.clone(), reply.subscribe_url.clone(), self.sink.clone(), out_tx));
        let n = note.clone();
        tasks.spawn(async move {
            while let Some(e) = out_rx.recv().await {
                n(Note::Output(e));
            }
        });
        tasks.spawn(events_task(self.client.clone(), reply.events_url.clone(), note.clone()));
        let (control_tx, control_rx) = watch::channel(self.last_update.clone());
        tasks.spawn(control_task(self.client.clone(), reply.control_url.clone(), control_rx, note));
        let uri = self.live.transcoding.pool().address(orch).map(|u| u.to_string());
        self.set_status(|g| {
            g.state = "running";
            g.orchestrator = uri;
            g.manifest_id = Some(reply.manifest_id.clone());
        });
        self.attached = Some(Attachment {
            generation: self.generation,
            orch,
            info,
            reply,
            pay_state,
            input: input_tx,
            control: control_tx,
            tasks,
            started: Instant::now(),
            first_output: true,
        });
    }

    fn detach(&mut self, orch: OrchId, reason: DetachReason) {
        let Some(a) = self.attached.take().filter(|a| a.orch == orch) else { return };
        self.sending = None;
        if reason != DetachReason::InputEnded {
            Metrics::add(&self.live.metrics.live_swaps_total, 1);
            warn!(reason = reason.label(), manifest_id = %a.reply.manifest_id, "orchestrator given up");
            self.set_status(|g| {
                g.swaps += 1;
                g.error = Some(format!("orchestrator given up: {}", reason.label()));
            });
        }
        // Dropping the attachment aborts its tasks (their notes would be stale anyway).
        // Closing the input channel ends the orchestrator's job (it closes the rest).
        let client = self.client.clone();
        let url = a.reply.publish_url.clone();
        let control = a.reply.control_url.clone();
        drop(a);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), client.close(&url)).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), client.close(&control)).await;
        });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn refusal(e: NetError) -> StartRefusal {
    match e {
        NetError::Status { status, body } => {
            if body.contains("insufficient capacity") {
                return StartRefusal::Capacity;
            }
            let f = transport::refusal::classify_http(status.as_u16(), &body);
            if matches!(f.reason, FailureReason::TicketParams | FailureReason::Auth) {
                StartRefusal::Retryable(body)
            } else {
                StartRefusal::Other(format!("{status}: {body}"))
            }
        }
        other => StartRefusal::Other(other.to_string()),
    }
}
