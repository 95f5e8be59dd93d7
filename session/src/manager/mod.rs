//! The per-stream session manager for segment jobs (transcoding, spec §3–§5, §7).
//!
//! A [`SegmentJobs`] owns one stream's orchestrator session, its queue of segments and
//! its credit ledger. It is driven from outside:
//!
//! * [`SegmentJobs::handle`] takes an [`Event`] (a segment is ready, a session opened,
//!   a payment was signed, a submit was answered, renditions were fetched) with `now`;
//! * [`SegmentJobs::handle_timeout`] is called once [`SegmentJobs::poll_timeout`]'s
//!   instant has passed;
//! * [`SegmentJobs::poll_action`] yields what to do: open a session, sign a payment,
//!   submit, fetch, end a session, deliver a job's outcome, report a fact.
//!
//! Every network operation carries an [`OpId`]; an answer to an operation the manager
//! no longer waits for (it timed out, the job moved on) is ignored, so a late answer can
//! never be taken for the current one. The manager arms a deadline for each operation;
//! the driver's own transport timeouts normally answer first, the manager's deadline is
//! the backstop for an answer that never comes.
//!
//! Rules (see `docs/TRANSCODING.md`, `docs/RELIABILITY.md`):
//! * one segment at a time, in order; a segment is tried at most `max_attempts` times
//!   within its deadline (§4.7 total timeout from when it closed);
//! * the session is kept while the pool says it is healthy (§7.4) and refreshed when its
//!   auth token nears expiry or (paid) its ticket params have been idle too long;
//! * refusals a fresh session cures refresh it; others fail over to an orchestrator not
//!   yet tried for this segment and suspend the failing one; an input error gives up;
//! * a segment that waited longer than its upload deadline plus three segment durations
//!   is skipped, and a segment cut between keyframes is not sent at all.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use num_rational::BigRational;
use num_traits::ToPrimitive;
use transport::identity::Address;
use transport::orch_addr::OrchestratorUri;
use transport::pm::Balances;
use transport::proto::OrchestratorInfo;
use transport::refusal::{Failure, FailureReason, Reaction};
use transport::segment::{GRPC_TIMEOUT, SegmentTimeouts};

use crate::payment::PaymentPlan;
use crate::pool::{OrchId, OrchestratorPool};
use crate::report::{Report, SegmentResult, SessionStatus};

mod attempt;
mod events;
mod session;
pub use events::*;
use session::{Gate, Session};

/// Refresh the session when the auth token expires within this (go-livepeer: last 10 %).
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(180);
/// Without chain access the gateway cannot see ticket params expire; refresh them after
/// this long without a `TranscodeResult` (params live ~40 L1 blocks ≈ 8 min).
pub const PARAMS_MAX_IDLE: Duration = Duration::from_secs(120);
/// A price more than this many times the session's starting price ends the session
/// (go-livepeer `priceIncreaseThreshold`).
pub const PRICE_INCREASE_LIMIT: i64 = 2;
/// A session opened while a segment waits gets at most half the segment's duration, and
/// at least this (an orchestrator that does not answer by then is skipped).
pub const MIN_OPEN_BUDGET: Duration = Duration::from_millis(500);
/// The manager's own deadline for an operation runs this much past the transport's, so
/// the transport's answer (with what it knows: whether headers came) normally wins.
pub const BACKSTOP_GRACE: Duration = Duration::from_millis(500);
/// A backlogged segment is skipped once it waited its upload deadline plus this many
/// segment durations (so a backlog never grows without bound).
pub const BACKLOG_SEGMENTS: f64 = 3.0;

enum Phase {
    Opening { op: OpId, orch: OrchId, addr: OrchestratorUri, deadline: Instant },
    Paying { op: OpId, plan: PaymentPlan, deadline: Instant },
    Submitting { op: OpId, plan: Option<PaymentPlan>, deadline: Instant },
    Fetching { op: OpId, sig: Vec<u8>, upload: Duration, tickets: u32, deadline: Instant },
}

struct Current {
    id: JobId,
    job: SegmentJob,
    queued: Instant,
    deadline: Instant,
    attempts: u32,
    /// Orchestrators that failed this segment.
    tried: Vec<OrchId>,
    /// Orchestrators passed over while opening a session for the current attempt.
    open_tried: Vec<OrchId>,
    first_started: Option<Instant>,
    started: Instant,
    last_error: String,
    upload: Option<Duration>,
    phase: Option<Phase>,
}

enum Queued {
    Job(JobId, SegmentJob, Instant),
    End,
}

/// One stream's session manager for segment jobs. See the module docs.
pub struct SegmentJobs {
    config: Arc<LinkConfig>,
    pool: Arc<OrchestratorPool>,
    rng: u64,
    next_id: u64,
    queue: VecDeque<Queued>,
    current: Option<Current>,
    session: Option<Session>,
    ledger: Balances,
    actions: VecDeque<Action>,
    idle: bool,
}

impl SegmentJobs {
    /// A manager choosing among `pool`'s orchestrators; `seed` seeds the selector's
    /// draws (any non-zero value).
    pub fn new(config: Arc<LinkConfig>, pool: Arc<OrchestratorPool>, seed: u64) -> Self {
        SegmentJobs {
            config,
            pool,
            rng: splitmix64(seed) | 1,
            next_id: 0,
            queue: VecDeque::new(),
            current: None,
            session: None,
            ledger: Balances::default(),
            actions: VecDeque::new(),
            idle: true,
        }
    }

    /// Queues a closed segment; returns the id its outcome will be delivered under.
    pub fn push(&mut self, now: Instant, job: SegmentJob) -> JobId {
        let id = JobId(self.next());
        self.queue.push_back(Queued::Job(id, job, now));
        self.pump(now);
        id
    }

    /// The publisher ended: after the queued segments, the session ends.
    pub fn end(&mut self, now: Instant) {
        self.queue.push_back(Queued::End);
        self.pump(now);
    }

    /// True when nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.idle && self.current.is_none() && self.queue.is_empty()
    }

    /// The credit the ledger holds for `recipient`'s session `session_id`, wei.
    pub fn credit(&self, recipient: Address, session_id: &str) -> BigRational {
        self.ledger.get(recipient, session_id)
    }

    /// Takes an answer from the driver.
    pub fn handle(&mut self, now: Instant, event: Event) {
        match event {
            Event::SessionOpened { op, result, unix_now } => {
                if let Some(Phase::Opening { op: want, orch, addr, .. }) = self.phase()
                    && *want == op
                {
                    let (orch, addr) = (*orch, addr.clone());
                    self.take_phase();
                    self.on_opened(now, orch, addr, result, unix_now);
                }
            }
            Event::PaymentAnswered { op, result } => {
                if matches!(self.phase(), Some(Phase::Paying { op: want, .. }) if *want == op) {
                    let Some(Phase::Paying { plan, .. }) = self.take_phase() else { return };
                    match result {
                        Ok(header) => self.submit(now, Some(plan), Some(header)),
                        Err(f) => {
                            plan.restore(&mut self.ledger);
                            let f = Failure { next: Reaction::Refresh, ..f };
                            self.attempt_failed(now, f);
                        }
                    }
                }
            }
            Event::SubmitAnswered { op, result } => {
                if matches!(self.phase(), Some(Phase::Submitting { op: want, .. }) if *want == op) {
                    let Some(Phase::Submitting { plan, .. }) = self.take_phase() else { return };
                    self.on_submitted(now, plan, result);
                }
            }
            Event::RenditionsFetched { op, result } => {
                if matches!(self.phase(), Some(Phase::Fetching { op: want, .. }) if *want == op) {
                    let Some(Phase::Fetching { sig, upload, tickets, .. }) = self.take_phase() else { return };
                    self.on_fetched(now, sig, upload, tickets, result);
                }
            }
        }
    }

    /// When [`SegmentJobs::handle_timeout`] must be called next, if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase()? {
            Phase::Opening { deadline, .. }
            | Phase::Paying { deadline, .. }
            | Phase::Submitting { deadline, .. }
            | Phase::Fetching { deadline, .. } => Some(*deadline),
        }
    }

    /// The operation in flight ran past its deadline without an answer.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_none_or(|t| t > now) {
            return;
        }
        match self.take_phase() {
            Some(Phase::Opening { orch, addr, .. }) => self.on_opened(
                now,
                orch,
                addr,
                Err(Failure::new(FailureReason::Timeout, "GetOrchestrator: no answer in time")),
                0,
            ),
            Some(Phase::Paying { plan, .. }) => {
                plan.restore(&mut self.ledger);
                self.attempt_failed(now, Failure::new(FailureReason::Payment, "payment: no signature in time"));
            }
            Some(Phase::Submitting { plan, .. }) => {
                let failure = Failure::new(FailureReason::Timeout, "segment: no answer in time");
                self.on_submitted(now, plan, Err(SubmitFailure { failure, response_received: false }));
            }
            Some(Phase::Fetching { .. }) => {
                self.attempt_failed(now, Failure::new(FailureReason::Download, "rendition download: no answer in time"))
            }
            None => {}
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A uniform draw in [0, 1) (xorshift; selection needs spread, not secrecy).
    fn random(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn gate(&self) -> Gate<'_> {
        Gate { config: &self.config, pool: &self.pool }
    }

    fn phase(&self) -> Option<&Phase> {
        self.current.as_ref()?.phase.as_ref()
    }

    fn take_phase(&mut self) -> Option<Phase> {
        self.current.as_mut()?.phase.take()
    }

    fn set_phase(&mut self, phase: Phase) {
        if let Some(c) = self.current.as_mut() {
            c.phase = Some(phase);
        }
    }

    fn report(&mut self, r: Report) {
        self.actions.push_back(Action::Report(r));
    }

    /// Starts queued work while nothing is in flight.
    fn pump(&mut self, now: Instant) {
        while self.current.is_none() {
            match self.queue.pop_front() {
                None => {
                    self.idle = true;
                    return;
                }
                Some(Queued::End) => {
                    self.leave_session("stream ended");
                    self.actions.push_back(Action::Ended);
                }
                Some(Queued::Job(id, job, queued)) => {
                    self.idle = false;
                    self.start(now, id, job, queued);
                }
            }
        }
    }

    fn start(&mut self, now: Instant, id: JobId, job: SegmentJob, queued: Instant) {
        let secs = job.duration.as_secs_f64().max(0.5);
        let backlog_limit = SegmentTimeouts::for_duration(Duration::from_secs_f64(secs), 1.0).upload
            + Duration::from_secs_f64(BACKLOG_SEGMENTS * secs);
        let deadline = queued + SegmentTimeouts::for_duration(job.duration, 1.0).total;
        let waited = now.saturating_duration_since(queued);
        let mut c = Current {
            id,
            job,
            queued,
            deadline,
            attempts: 0,
            tried: Vec::new(),
            open_tried: Vec::new(),
            first_started: None,
            started: now,
            last_error: "no orchestrator available".into(),
            upload: None,
            phase: None,
        };
        if c.job.profiles.is_empty() {
            let record = self.record(&c, now, true, true, 0);
            self.actions.push_back(Action::Deliver { job: id, outcome: JobOutcome::NothingOffered, record });
            return;
        }
        let not_sent = if !c.job.independent {
            Some("segment starts between keyframes (keyframe interval above max_segment_duration)".to_owned())
        } else if waited > backlog_limit {
            self.report(Report::BacklogSkip { seq: c.job.seq, waited });
            Some("transcode backlog".to_owned())
        } else {
            None
        };
        if let Some(why) = not_sent {
            c.last_error = why.clone();
            let record = self.record(&c, now, false, false, 0);
            self.actions.push_back(Action::Deliver { job: id, outcome: JobOutcome::NotSent(why), record });
            return;
        }
        self.current = Some(c);
        self.begin_attempt(now);
    }

    fn begin_attempt(&mut self, now: Instant) {
        let max = self.config.max_attempts.max(1);
        let Some(c) = self.current.as_mut() else { return };
        if c.attempts >= max || now >= c.deadline {
            return self.finish_failed(now);
        }
        c.attempts += 1;
        c.started = now;
        c.first_started.get_or_insert(now);
        c.open_tried = c.tried.clone();
        if let Some(s) = &self.session {
            let keep = self.pool.keep_session(s.orch, now);
            match (s.needs_refresh(self.config.paid, now), keep) {
                (None, Ok(())) => return self.send(now),
                (Some(why), _) => self.leave_session(why),
                (None, Err(why)) => self.leave_session(&why),
            }
        }
        self.open_next(now);
    }

    /// Asks the selector for an orchestrator not passed over yet and opens a session.
    pub(super) fn open_next(&mut self, now: Instant) {
        if self.current.as_ref().is_some_and(|c| now >= c.deadline) {
            return self.deadline_passed(now);
        }
        let random = self.random();
        let Some(c) = self.current.as_mut() else { return };
        match self.pool.choose(&c.open_tried, now, random) {
            Err(e) => {
                c.last_error = format!("no orchestrator available ({})", e.0);
                self.finish_failed(now);
            }
            Ok((orch, addr)) => {
                let budget = (c.job.duration / 2).max(MIN_OPEN_BUDGET).min(GRPC_TIMEOUT);
                let op = OpId(self.next());
                self.actions.push_back(Action::OpenSession { op, orch, addr: addr.clone(), budget });
                self.set_phase(Phase::Opening { op, orch, addr, deadline: now + budget + BACKSTOP_GRACE });
            }
        }
    }

    fn on_opened(
        &mut self,
        now: Instant,
        orch: OrchId,
        addr: OrchestratorUri,
        result: Result<OrchestratorInfo, Failure>,
        unix_now: i64,
    ) {
        let key = SessionKey(self.next());
        let admitted = result.and_then(|info| self.gate().admit(key, now, orch, &addr, info, unix_now));
        match admitted {
            Ok(session) => {
                let status = SessionStatus {
                    orchestrator: addr.to_string(),
                    transcoder: session.info.transcoder.clone(),
                    session_id: session.session_id().to_owned(),
                    started_unix: unix_now.max(0) as u64,
                    ended: false,
                    segments: 0,
                    price_per_pixel_wei: session.start_price.as_ref().and_then(|p| p.to_f64()),
                };
                self.report(Report::SessionStarted(status));
                self.pool.session_delta(orch, 1);
                self.session = Some(session);
                self.send(now);
            }
            Err(failure) => {
                if failure.reason != FailureReason::Price {
                    self.pool.failure(orch, failure.reason, true, now);
                }
                self.report(Report::Unusable { orchestrator: addr.to_string(), failure });
                if let Some(c) = self.current.as_mut() {
                    c.open_tried.push(orch);
                }
                self.open_next(now);
            }
        }
    }

    /// One attempt failed: record it, suspend or not, then retry or give up.
    fn attempt_failed(&mut self, now: Instant, failure: Failure) {
        let Some(c) = self.current.as_mut() else { return };
        let took = now.saturating_duration_since(c.started);
        let (orch, orchestrator) = match &self.session {
            Some(s) => (Some(s.orch), s.addr.to_string()),
            None => (None, String::new()),
        };
        // A price that moved is not a fault: the orchestrator is not suspended for it.
        let suspend = failure.next == Reaction::Failover && failure.reason != FailureReason::Price;
        let suspended_for = orch.and_then(|o| self.pool.failure(o, failure.reason, suspend, now));
        c.last_error = failure.detail.clone();
        let (seq, attempt, next) = (c.job.seq, c.attempts, failure.next);
        if next == Reaction::Failover
            && let Some(o) = orch
        {
            c.tried.push(o);
        }
        self.report(Report::AttemptFailed { seq, orchestrator, attempt, took, failure, suspended_for });
        match next {
            Reaction::Refresh => self.leave_session("refused; refreshing the session"),
            Reaction::Failover => self.leave_session("failing over"),
            Reaction::GiveUp => return self.finish_failed(now),
        }
        self.begin_attempt(now);
    }

    /// The segment's deadline passed between attempts: it fails without blaming anyone.
    pub(super) fn deadline_passed(&mut self, now: Instant) {
        if let Some(c) = self.current.as_mut() {
            c.last_error = format!("{} (deadline passed)", c.last_error);
        }
        self.finish_failed(now);
    }

    pub(super) fn finish_failed(&mut self, now: Instant) {
        let Some(c) = self.current.take() else { return };
        let record = self.record(&c, now, false, true, 0);
        let outcome = JobOutcome::Failed(c.last_error.clone());
        self.actions.push_back(Action::Deliver { job: c.id, outcome, record });
        self.pump(now);
    }

    /// Ends the current session (nobody waits for the orchestrator's answer).
    pub(super) fn leave_session(&mut self, why: &str) {
        if let Some(s) = self.session.take() {
            self.pool.session_delta(s.orch, -1);
            self.report(Report::SessionEnded { orchestrator: s.addr.to_string(), why: why.to_owned() });
            let auth_token = s.info.auth_token.clone();
            self.actions.push_back(Action::EndSession { session: s.key, addr: s.addr, auth_token });
        }
    }

    fn record(&self, c: &Current, now: Instant, ok: bool, sent: bool, tickets: u32) -> SegmentResult {
        let failover =
            (ok && c.attempts > 1).then(|| c.first_started.map(|f| c.started.saturating_duration_since(f))).flatten();
        SegmentResult {
            seq: c.job.seq,
            orchestrator: self.session.as_ref().map(|s| s.addr.to_string()),
            ok,
            sent,
            error: (!ok).then(|| c.last_error.clone()),
            attempts: c.attempts,
            upload_ms: if ok { c.upload.map(|d| d.as_secs_f64() * 1000.0) } else { None },
            total_ms: now.saturating_duration_since(c.queued).as_secs_f64() * 1000.0,
            tickets,
            failover_ms: failover.map(|d| d.as_secs_f64() * 1000.0),
        }
    }
}

/// Spreads a seed over all 64 bits (splitmix64), so nearby seeds give unrelated draws.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// True when `address` (20 bytes from the wire) is on `list`.
pub fn blocked(list: &[Address], address: &[u8]) -> bool {
    !list.is_empty() && list.iter().any(|a| a.as_slice() == address)
}
