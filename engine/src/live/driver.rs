//! One live stream's task: performs the [`LiveJob`]'s actions and feeds back, with the
//! time, what its orchestrator and channels do.
//!
//! While attached it runs four small tasks: the input publisher (each cut segment into
//! its POST as the bytes come), the output reader ([`super::output`]), the events reader
//! and the control publisher (cached `/update`s, a keepalive every 10 s). A detach stops
//! them and ends the orchestrator's job by closing its input channel; the segment in
//! progress is replayed to the next orchestrator.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use segmenter::Piece;
use session::live::{Action, Attempt, DetachReason, Event, LiveConfig as JobConfig, LiveJob, StartRefusal};
use session::pool::OrchId;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use transport::client::NetError;
use transport::live::{StartReply, StartRequest, offchain_seg_data};
use transport::proto::OrchestratorInfo;
use transport::refusal::FailureReason;
use transport::segment::segment_header;
use transport::tls::CertPolicy;
use transport::trickle_client::{SegmentWriter, TrickleClient, TricklePublisher, TrickleSubscriber};

use super::output::{OutputEvent, OutputSink};
use super::{Input, Live, LiveRequest, LiveStatus};
use crate::metrics::{LiveTiming, Metrics};

/// The control keepalive (go-livepeer: 10 s).
const KEEPALIVE: Duration = Duration::from_secs(10);
/// How long a job start may take (go-livepeer: 5 s).
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest runner event read.
const MAX_EVENT: usize = 1 << 20;

/// What the driver's helper tasks report.
enum Note {
    Started { attempt: Attempt, result: Result<Box<(OrchestratorInfo, StartReply)>, StartRefusal> },
    Output(OutputEvent),
    RunnerEvent(serde_json::Value),
    EventsGone,
    InputSent,
    InputTaken,
    Paid(bool),
}

/// The running job's IO.
struct Attachment {
    orch: OrchId,
    info: OrchestratorInfo,
    reply: StartReply,
    input: mpsc::UnboundedSender<(Piece, Option<Instant>)>,
    control: mpsc::UnboundedSender<Bytes>,
    tasks: Vec<JoinHandle<()>>,
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
    notes_tx: mpsc::UnboundedSender<Note>,
    notes: mpsc::UnboundedReceiver<Note>,
    starting: HashMap<u64, (OrchestratorInfo, StartReply)>,
    attached: Option<Attachment>,
    /// The input segment in progress, for a replay after a swap.
    current: Vec<Piece>,
    /// The latest `/update` (sent to each orchestrator on attach).
    last_update: Option<Bytes>,
}

impl Driver {
    pub(crate) fn new(
        live: Arc<Live>,
        id: &str,
        request: LiveRequest,
        output: Arc<RwLock<crate::output::StreamOutput>>,
        status: watch::Sender<LiveStatus>,
        frames: Arc<super::FrameClock>,
    ) -> Self {
        let cfg = JobConfig {
            output_timeout: Duration::from_secs_f64(live.config.live_output_timeout),
            ..JobConfig::default()
        };
        let sink = OutputSink::new(
            live.hub.clone(),
            format!("{id}-out"),
            output,
            live.config.live_output_segment,
            frames,
            live.metrics.clone(),
        );
        let (notes_tx, notes) = mpsc::unbounded_channel();
        Driver {
            id: id.to_owned(),
            request,
            job: LiveJob::new(cfg),
            client: TrickleClient::new(CertPolicy::AcceptAny),
            sink: Arc::new(Mutex::new(sink)),
            status,
            notes_tx,
            notes,
            starting: HashMap::new(),
            attached: None,
            current: Vec::new(),
            last_update: None,
            live,
        }
    }

    #[allow(clippy::disallowed_methods)] // IO shell: the job's clock
    pub(crate) async fn run(
        mut self,
        mut input: mpsc::UnboundedReceiver<Input>,
        mut control: mpsc::UnboundedReceiver<Bytes>,
    ) {
        info!(pipeline = %self.request.pipeline, "live AI stream");
        loop {
            while let Some(a) = self.job.poll_action() {
                self.perform(a);
            }
            if self.job.ended() {
                break;
            }
            if self.job.needs_candidates() {
                let now = Instant::now();
                let candidates = self.live.transcoding.pool().live_candidates(&self.request.pipeline, now);
                self.set_status(|g| g.state = if g.swaps > 0 { "swapping" } else { "starting" });
                self.job.start(now, candidates);
                continue;
            }
            let deadline = self.job.poll_timeout();
            tokio::select! {
                i = input.recv() => match i {
                    Some(Input::Piece(p, at)) => self.on_piece(p, at),
                    Some(Input::End) | None => self.job.handle(Instant::now(), Event::InputEnded),
                },
                Some(c) = control.recv() => {
                    self.last_update = Some(c.clone());
                    if let Some(a) = &self.attached {
                        let _ = a.control.send(c);
                    }
                }
                Some(n) = self.notes.recv() => self.on_note(n),
                _ = sleep_until(deadline) => self.job.handle_timeout(Instant::now()),
            }
        }
        self.sink.lock().unwrap_or_else(|e| e.into_inner()).end();
        info!("live AI stream ended");
    }

    fn set_status(&self, f: impl FnOnce(&mut super::GatewayStatus)) {
        self.status.send_modify(|s| f(&mut s.gateway));
    }

    fn on_piece(&mut self, p: Piece, at: Instant) {
        match &p {
            Piece::Bytes { seq, .. } => {
                if self.current.first().is_some_and(|f| !matches!(f, Piece::Bytes { seq: s, .. } if s == seq)) {
                    self.current.clear();
                }
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
            Note::Output(OutputEvent::Gone(why)) if self.attached.is_some() => {
                info!(%why, "orchestrator output ended");
                self.job.handle(now, Event::ChannelGone);
            }
            Note::EventsGone if self.attached.is_some() => self.job.handle(now, Event::ChannelGone),
            Note::Output(OutputEvent::Gone(_)) | Note::EventsGone => {}
            Note::RunnerEvent(ev) => {
                self.job.handle(now, Event::RunnerEvent);
                let inner = ev.get("event").cloned().unwrap_or(ev);
                if inner.get("type").and_then(|t| t.as_str()) == Some("status") {
                    self.status.send_modify(|s| s.runner = Some(inner));
                }
            }
            Note::InputSent => {
                self.job.handle(now, Event::InputSegmentSent);
                self.set_status(|g| g.input_segments += 1);
            }
            Note::InputTaken => self.job.handle(now, Event::InputSegmentTaken),
            Note::Paid(ok) => {
                Metrics::add(&self.live.metrics.live_payments_total, 1);
                if !ok {
                    Metrics::add(&self.live.metrics.live_payment_failures_total, 1);
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
            Action::Pay { orch: _ } => {
                if let Some(a) = &self.attached {
                    let net = self.live.transcoding.net().clone();
                    let (transcoder, seg) = (a.info.transcoder.clone(), credentials(&a.info));
                    let notes = self.notes_tx.clone();
                    tokio::spawn(async move {
                        let ok = net.live_payment(&transcoder, &seg, "", Duration::from_secs(5)).await;
                        if let Err(e) = &ok {
                            warn!(error = %e, "live payment failed");
                        }
                        let _ = notes.send(Note::Paid(ok.is_ok()));
                    });
                }
            }
            Action::Ended(reason) => {
                info!(%reason, "live AI job over");
                self.set_status(|g| {
                    g.state = "ended";
                    g.error = Some(reason.to_string());
                });
            }
        }
    }

    /// `GetOrchestrator` for a fresh auth token, then the job start (§2.2).
    fn start(&mut self, attempt: Attempt, orch: OrchId) {
        let Some(uri) = self.live.transcoding.pool().address(orch) else {
            let _ = self.notes_tx.send(Note::Started { attempt, result: Err(StartRefusal::Other("unknown".into())) });
            return;
        };
        let net = self.live.transcoding.net().clone();
        let req = self.live.transcoding.live_request(&self.request.pipeline);
        let body = StartRequest {
            model_id: self.request.pipeline.clone(),
            params: self.request.params.clone(),
            gateway_request_id: format!("{}-{}", self.id, attempt.0),
            stream_id: self.id.clone(),
        };
        let notes = self.notes_tx.clone();
        info!(orchestrator = %uri, attempt = attempt.0, "starting live job");
        tokio::spawn(async move {
            let result = async {
                let info = net
                    .get_orchestrator_within(&uri.to_string(), req, START_TIMEOUT)
                    .await
                    .map_err(|e| StartRefusal::Other(format!("GetOrchestrator: {e}")))?;
                let reply = net
                    .start_live(&info.transcoder, &credentials(&info), "", &body, START_TIMEOUT)
                    .await
                    .map_err(refusal)?;
                Ok(Box::new((info, reply)))
            }
            .await;
            if let Err(e) = &result {
                warn!(orchestrator = %uri, refusal = ?e, "live job start refused");
            }
            let _ = notes.send(Note::Started { attempt, result });
        });
    }

    #[allow(clippy::disallowed_methods)] // IO shell: timing the first segment
    fn attach(&mut self, orch: OrchId, swap: bool) {
        let Some((info, reply)) = self.starting.drain().max_by_key(|(k, _)| *k).map(|(_, v)| v) else { return };
        info!(manifest_id = %reply.manifest_id, transcoder = %info.transcoder, swap, "live job running");
        let mut tasks = Vec::new();
        let (input_tx, input_rx) = mpsc::unbounded_channel();
        tasks.push(tokio::spawn(input_task(
            self.client.clone(),
            reply.publish_url.clone(),
            input_rx,
            self.notes_tx.clone(),
            self.live.metrics.clone(),
        )));
        // The segment in progress goes to the new orchestrator from its start.
        for p in &self.current {
            let _ = input_tx.send((p.clone(), None));
        }
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        tasks.push(tokio::spawn(super::output::read(
            self.client.clone(),
            reply.subscribe_url.clone(),
            self.sink.clone(),
            out_tx,
        )));
        let notes = self.notes_tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(e) = out_rx.recv().await {
                let _ = notes.send(Note::Output(e));
            }
        }));
        tasks.push(tokio::spawn(events_task(self.client.clone(), reply.events_url.clone(), self.notes_tx.clone())));
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        if let Some(u) = &self.last_update {
            let _ = control_tx.send(u.clone());
        }
        tasks.push(tokio::spawn(control_task(self.client.clone(), reply.control_url.clone(), control_rx)));
        let uri = self.live.transcoding.pool().address(orch).map(|u| u.to_string());
        self.set_status(|g| {
            g.state = "running";
            g.orchestrator = uri;
            g.manifest_id = Some(reply.manifest_id.clone());
        });
        self.attached = Some(Attachment {
            orch,
            info,
            reply,
            input: input_tx,
            control: control_tx,
            tasks,
            started: Instant::now(),
            first_output: true,
        });
    }

    fn detach(&mut self, orch: OrchId, reason: DetachReason) {
        let Some(a) = self.attached.take().filter(|a| a.orch == orch) else { return };
        if reason != DetachReason::InputEnded {
            Metrics::add(&self.live.metrics.live_swaps_total, 1);
            warn!(reason = reason.label(), manifest_id = %a.reply.manifest_id, "orchestrator given up");
            self.set_status(|g| {
                g.swaps += 1;
                g.error = Some(format!("orchestrator given up: {}", reason.label()));
            });
        }
        for t in &a.tasks {
            t.abort();
        }
        // Closing the input channel ends the orchestrator's job (it closes the rest).
        let client = self.client.clone();
        let url = a.reply.publish_url.clone();
        let control = a.reply.control_url.clone();
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

/// Off-chain credentials: the orchestrator's auth token in a `SegData`.
fn credentials(info: &OrchestratorInfo) -> String {
    segment_header(&offchain_seg_data(info.auth_token.as_ref()))
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

/// Publishes the input: each segment into its own POST as its pieces come.
#[allow(clippy::disallowed_methods)] // IO shell: hand-off times
async fn input_task(
    client: TrickleClient,
    url: String,
    mut pieces: mpsc::UnboundedReceiver<(Piece, Option<Instant>)>,
    notes: mpsc::UnboundedSender<Note>,
    metrics: Arc<Metrics>,
) {
    let mut publisher = match TricklePublisher::start(client, &url).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "input channel refused");
            let _ = notes.send(Note::EventsGone);
            return;
        }
    };
    let mut writer: Option<(u64, SegmentWriter)> = None;
    let finish = |w: SegmentWriter, notes: mpsc::UnboundedSender<Note>| {
        tokio::spawn(async move {
            if w.finish().await.is_ok() {
                let _ = notes.send(Note::InputTaken);
            }
        });
    };
    while let Some((p, cut_at)) = pieces.recv().await {
        match p {
            Piece::Bytes { seq, data } => {
                if writer.as_ref().is_some_and(|(s, _)| *s != seq)
                    && let Some((_, w)) = writer.take()
                {
                    finish(w, notes.clone());
                }
                if writer.is_none() {
                    writer = Some((seq, publisher.segment()));
                    let _ = notes.send(Note::InputSent);
                }
                if let Some((_, w)) = writer.as_mut()
                    && w.write(data).await.is_err()
                {
                    // The POST ended early: the orchestrator is gone or refused the
                    // segment; either way its job cannot go on.
                    warn!("input segment cut off by the orchestrator");
                    let _ = notes.send(Note::EventsGone);
                    return;
                }
                if let Some(t) = cut_at {
                    metrics.observe_live(LiveTiming::InputHandoff, t.elapsed());
                }
            }
            Piece::End(_) => {
                if let Some((_, w)) = writer.take() {
                    finish(w, notes.clone());
                }
            }
        }
    }
}

/// Reads runner events (one JSON per segment).
async fn events_task(client: TrickleClient, url: String, notes: mpsc::UnboundedSender<Note>) {
    let mut sub = TrickleSubscriber::new(client, &url, -2);
    while let Ok(Some(mut seg)) = sub.next_segment().await {
        let mut body = Vec::new();
        while let Ok(Some(c)) = seg.chunk().await {
            if body.len() + c.len() <= MAX_EVENT {
                body.extend_from_slice(&c);
            }
        }
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) => {
                let _ = notes.send(Note::RunnerEvent(v));
            }
            Err(e) if !body.is_empty() => tracing::debug!(error = %e, "runner event is not JSON"),
            Err(_) => {}
        }
    }
    let _ = notes.send(Note::EventsGone);
}

/// Publishes control messages, with a keepalive every 10 s.
async fn control_task(client: TrickleClient, url: String, mut messages: mpsc::UnboundedReceiver<Bytes>) {
    let Ok(mut publisher) = TricklePublisher::start(client, &url).await else {
        warn!("control channel refused");
        return;
    };
    let mut tick = tokio::time::interval(KEEPALIVE);
    tick.tick().await;
    loop {
        let msg = tokio::select! {
            m = messages.recv() => match m { Some(m) => m, None => return },
            _ = tick.tick() => Bytes::from_static(br#"{"keep":"alive"}"#),
        };
        let mut w = publisher.segment();
        if w.write(msg).await.is_err() || w.finish().await.is_err() {
            warn!("control message refused");
        }
    }
}
