//! One live video-to-video stream's decisions (spec `trickle-and-live-ai.md` §2.2–§2.5),
//! without IO: which orchestrator to start the job on and how starts are retried, when to
//! pay, when an orchestrator is given up (watchdogs) and swapped for another, and when
//! the stream ends.
//!
//! The driver feeds [`Event`]s with `now` and performs the [`Action`]s it polls; it asks
//! [`LiveJob::poll_timeout`] when to call [`LiveJob::handle_timeout`]. The candidates
//! (orchestrators offering the model, warm first) come from the driver at each start.
//!
//! Rules, with go-livepeer's numbers as defaults ([`LiveConfig`]):
//! * Starts: up to 20 tries in all and 3 per orchestrator for a retryable refusal
//!   (`ticketparams expired`); `insufficient capacity` and other refusals move on to the
//!   next orchestrator without suspending one for capacity; all within a deadline.
//! * Watchdogs while attached: no output segment for `output_timeout` *while input is
//!   recent* (an orchestrator is never blamed for a publisher that stopped); no event for
//!   `events_timeout`; a segment starting while `max_in_flight` are still not taken (a
//!   slow orchestrator, go-livepeer's `SlowOrchChecker`); a channel of the job gone. Each
//!   detaches the orchestrator, suspends it, and starts on another.
//! * Payments refused: go-livepeer only logs them (and the orchestrator ends the job when
//!   its balance runs out). Here `max_payment_refusals` in a row detach the orchestrator
//!   with a clear reason, without suspending it (the fault may be the payer's).
//! * Swaps chain: a swap within `swap_window` of the previous one extends the chain, a
//!   later one starts a new chain; a chain longer than `max_swaps` ends the stream
//!   ("too many swaps"). This is go-livepeer's `checkSwap`, not a sliding window.
//! * Payments: at most one per `payment_interval`, and only while input flows.
use std::time::{Duration, Instant};

use crate::pool::OrchId;

/// Limits; the defaults are go-livepeer's.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Start tries in all before the stream ends (go: 20).
    pub start_tries: usize,
    /// Tries per orchestrator for a retryable refusal (go: 3).
    pub tries_per_orchestrator: usize,
    /// All tries of one start within this (go: `-aiProcessingRetryTimeout`, 2 s; longer
    /// here so a cold orchestrator's first answer fits).
    pub start_deadline: Duration,
    /// No output for this long while input is recent: swap (go: 30 s).
    pub output_timeout: Duration,
    /// No runner event for this long: swap (go: 30 s).
    pub events_timeout: Duration,
    /// Input segments in flight at once before the orchestrator counts as slow (go: 3).
    pub max_in_flight: usize,
    /// Swaps within this of each other form a chain (go: 3 min).
    pub swap_window: Duration,
    /// Swaps a chain may hold (go: 2).
    pub max_swaps: usize,
    /// At most one payment per this (go: `-livePaymentInterval`, 5 s).
    pub payment_interval: Duration,
    /// Payments refused in a row before the orchestrator is given up.
    pub max_payment_refusals: u32,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            start_tries: 20,
            tries_per_orchestrator: 3,
            start_deadline: Duration::from_secs(30),
            output_timeout: Duration::from_secs(30),
            events_timeout: Duration::from_secs(30),
            max_in_flight: 3,
            swap_window: Duration::from_secs(180),
            max_swaps: 2,
            payment_interval: Duration::from_secs(5),
            max_payment_refusals: 3,
        }
    }
}

/// One try at starting the job on an orchestrator; answers to older tries are stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt(pub u64);

/// How a start was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartRefusal {
    /// `503 insufficient capacity`: move on, no suspension.
    Capacity,
    /// Worth asking the same orchestrator again (e.g. `ticketparams expired`, after
    /// fresh ticket params).
    Retryable(String),
    /// Anything else: move on and suspend it.
    Other(String),
}

/// Why an orchestrator was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetachReason {
    /// No output segment for the output timeout while input was recent.
    NoOutput,
    /// No runner event for the events timeout.
    NoEvents,
    /// Too many input segments in flight.
    Slow,
    /// A channel of its job ended or failed (trickle 404, closed, connection lost).
    ChannelGone,
    /// Payments were refused, several in a row.
    PaymentRefused,
    /// The input ended; the stream is over.
    InputEnded,
}

impl DetachReason {
    /// The orchestrator is to blame (it is suspended).
    pub fn penalize(self) -> bool {
        matches!(self, DetachReason::NoOutput | DetachReason::NoEvents | DetachReason::Slow | DetachReason::ChannelGone)
    }

    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            DetachReason::NoOutput => "no_output",
            DetachReason::NoEvents => "no_events",
            DetachReason::Slow => "slow",
            DetachReason::ChannelGone => "channel_gone",
            DetachReason::PaymentRefused => "payment_refused",
            DetachReason::InputEnded => "input_ended",
        }
    }
}

/// Why the stream's AI side ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The input ended.
    InputEnded,
    /// No orchestrator took the job within the tries and deadline.
    NoOrchestrator(String),
    /// The swap chain grew past its limit.
    TooManySwaps,
    /// The gateway refused the stream before any start (its auth webhook said no).
    Refused(String),
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::InputEnded => f.write_str("input ended"),
            EndReason::NoOrchestrator(why) => write!(f, "no orchestrator took the job: {why}"),
            EndReason::TooManySwaps => f.write_str("Too many swaps"),
            EndReason::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The answer to a [`Action::Start`].
    StartAnswered {
        /// Which try.
        attempt: Attempt,
        /// Ok: the job runs there.
        result: Result<(), StartRefusal>,
    },
    /// An input segment began going to the orchestrator.
    InputSegmentSent,
    /// The orchestrator took an input segment in full (its POST completed).
    InputSegmentTaken,
    /// An output segment began arriving.
    OutputSegment,
    /// A runner event arrived.
    RunnerEvent,
    /// The output or control channel ended.
    ChannelGone,
    /// The answer to a [`Action::Pay`].
    PaymentAnswered {
        /// Accepted.
        ok: bool,
    },
    /// The input ended.
    InputEnded,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the job on `orch` (driver answers with [`Event::StartAnswered`]).
    Start {
        /// The try.
        attempt: Attempt,
        /// Where.
        orch: OrchId,
    },
    /// Suspend `orch` in the pool (it failed).
    Suspend {
        /// Which.
        orch: OrchId,
    },
    /// Tear down the running job on `orch` (its channels); the input carries on.
    Detach {
        /// Which.
        orch: OrchId,
        /// Why.
        reason: DetachReason,
    },
    /// Pay the attached orchestrator for the time since the last payment.
    Pay {
        /// Which.
        orch: OrchId,
    },
    /// Attached: `orch` runs the job; its output is the stream's output from now on.
    Attached {
        /// Which.
        orch: OrchId,
        /// A swap (not the first orchestrator of the stream).
        swap: bool,
    },
    /// The stream's AI side is over.
    Ended(EndReason),
}

#[derive(Debug)]
enum State {
    /// Waiting for candidates ([`LiveJob::start`]).
    Idle,
    Starting {
        attempt: Attempt,
        orch: OrchId,
        tries: usize,
        per_orch: Vec<(OrchId, usize)>,
        candidates: Vec<OrchId>,
        deadline: Instant,
        last_error: String,
    },
    Attached {
        orch: OrchId,
        since: Instant,
        last_output: Option<Instant>,
        last_event: Instant,
        in_flight: usize,
        next_payment: Instant,
        input_since_payment: bool,
        refusals: u32,
    },
    Ended,
}

/// A stream's live job. See the module docs.
#[derive(Debug)]
pub struct LiveJob {
    config: LiveConfig,
    state: State,
    actions: std::collections::VecDeque<Action>,
    next_attempt: u64,
    last_input: Option<Instant>,
    /// When the last swap happened and how long the chain is.
    last_swap: Option<Instant>,
    chain: usize,
    /// Attached at least once (later attachments are swaps).
    attached_before: bool,
    /// Input ended while starting or attached.
    input_ended: bool,
    /// Orchestrators given up for refusing this stream's payments: not tried again for it.
    refused_payments: Vec<OrchId>,
}

impl LiveJob {
    /// A job that waits for [`LiveJob::start`].
    pub fn new(config: LiveConfig) -> Self {
        LiveJob {
            config,
            state: State::Idle,
            actions: Default::default(),
            next_attempt: 0,
            last_input: None,
            last_swap: None,
            chain: 0,
            attached_before: false,
            input_ended: false,
            refused_payments: Vec::new(),
        }
    }

    /// Starts (or restarts, after a detach) with `candidates`, best first. With none, the
    /// stream ends.
    /// Orchestrators that refused this stream's payments are left out.
    pub fn start(&mut self, now: Instant, mut candidates: Vec<OrchId>) {
        if matches!(self.state, State::Ended | State::Starting { .. } | State::Attached { .. }) {
            return;
        }
        let offered = candidates.len();
        candidates.retain(|c| !self.refused_payments.contains(c));
        let last_error = if offered > 0 && candidates.is_empty() {
            "every orchestrator offering the model refused the stream's payments".into()
        } else {
            "no orchestrator offers the model".into()
        };
        let deadline = now + self.config.start_deadline;
        self.state = State::Starting {
            attempt: Attempt(0),
            orch: OrchId(usize::MAX),
            tries: 0,
            per_orch: Vec::new(),
            candidates,
            deadline,
            last_error,
        };
        self.try_next(now);
    }

    /// True while no orchestrator is being started or attached and the stream has not
    /// ended: the driver should call [`LiveJob::start`] with fresh candidates.
    pub fn needs_candidates(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// The orchestrator running the job, if any.
    pub fn attached(&self) -> Option<OrchId> {
        match self.state {
            State::Attached { orch, .. } => Some(orch),
            _ => None,
        }
    }

    /// The gateway refuses the stream (its auth webhook said no): the job ends, with
    /// `why`, without trying an orchestrator. A job already over is left alone.
    pub fn refuse(&mut self, why: String) {
        if !self.ended() {
            self.end(EndReason::Refused(why));
        }
    }

    /// True once the stream's AI side is over.
    pub fn ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn try_next(&mut self, now: Instant) {
        let State::Starting { attempt, orch, tries, per_orch, candidates, deadline, last_error } = &mut self.state
        else {
            return;
        };
        if *tries >= self.config.start_tries || now >= *deadline || candidates.is_empty() {
            let why = if candidates.is_empty() { last_error.clone() } else { format!("{tries} tries: {last_error}") };
            self.end(EndReason::NoOrchestrator(why));
            return;
        }
        *tries += 1;
        let next = candidates[0];
        match per_orch.iter_mut().find(|(o, _)| *o == next) {
            Some((_, n)) => *n += 1,
            None => per_orch.push((next, 1)),
        }
        self.next_attempt += 1;
        *attempt = Attempt(self.next_attempt);
        *orch = next;
        self.actions.push_back(Action::Start { attempt: *attempt, orch: next });
    }

    fn end(&mut self, reason: EndReason) {
        if let State::Attached { orch, .. } = self.state {
            self.actions.push_back(Action::Detach { orch, reason: DetachReason::InputEnded });
        }
        self.state = State::Ended;
        self.actions.push_back(Action::Ended(reason));
    }

    /// Takes one event at `now`.
    pub fn handle(&mut self, now: Instant, event: Event) {
        match event {
            Event::InputEnded => {
                self.input_ended = true;
                if !matches!(self.state, State::Ended) {
                    self.end(EndReason::InputEnded);
                }
            }
            Event::InputSegmentSent => {
                self.last_input = Some(now);
                if let State::Attached { in_flight, input_since_payment, .. } = &mut self.state {
                    *input_since_payment = true;
                    if *in_flight >= self.config.max_in_flight {
                        self.detach(now, DetachReason::Slow);
                    } else {
                        *in_flight += 1;
                    }
                }
            }
            Event::InputSegmentTaken => {
                if let State::Attached { in_flight, .. } = &mut self.state {
                    *in_flight = in_flight.saturating_sub(1);
                }
            }
            Event::OutputSegment => {
                if let State::Attached { last_output, .. } = &mut self.state {
                    *last_output = Some(now);
                }
            }
            Event::RunnerEvent => {
                if let State::Attached { last_event, .. } = &mut self.state {
                    *last_event = now;
                }
            }
            Event::ChannelGone => {
                if matches!(self.state, State::Attached { .. }) {
                    self.detach(now, DetachReason::ChannelGone);
                }
            }
            Event::PaymentAnswered { ok } => {
                if let State::Attached { refusals, .. } = &mut self.state {
                    *refusals = if ok { 0 } else { *refusals + 1 };
                    if *refusals >= self.config.max_payment_refusals {
                        let orch = self.attached();
                        self.refused_payments.extend(orch);
                        self.detach(now, DetachReason::PaymentRefused);
                    }
                }
            }
            Event::StartAnswered { attempt: a, result } => self.start_answered(now, a, result),
        }
    }

    fn start_answered(&mut self, now: Instant, a: Attempt, result: Result<(), StartRefusal>) {
        let State::Starting { attempt, orch, per_orch, candidates, last_error, .. } = &mut self.state else {
            return;
        };
        if *attempt != a {
            return; // stale
        }
        let orch = *orch;
        match result {
            Ok(()) => {
                let swap = self.attached_before;
                self.attached_before = true;
                self.state = State::Attached {
                    orch,
                    since: now,
                    last_output: None,
                    last_event: now,
                    in_flight: 0,
                    next_payment: now + self.config.payment_interval,
                    input_since_payment: false,
                    refusals: 0,
                };
                self.actions.push_back(Action::Attached { orch, swap });
            }
            Err(StartRefusal::Retryable(why)) => {
                let used = per_orch.iter().find(|(o, _)| *o == orch).map_or(0, |(_, n)| *n);
                if used >= self.config.tries_per_orchestrator {
                    candidates.retain(|c| *c != orch);
                    self.actions.push_back(Action::Suspend { orch });
                }
                *last_error = why;
                self.try_next(now);
            }
            Err(StartRefusal::Capacity) => {
                candidates.retain(|c| *c != orch);
                *last_error = "insufficient capacity".into();
                self.try_next(now);
            }
            Err(StartRefusal::Other(why)) => {
                candidates.retain(|c| *c != orch);
                self.actions.push_back(Action::Suspend { orch });
                *last_error = why;
                self.try_next(now);
            }
        }
    }

    /// Gives up the attached orchestrator and, unless the swap chain is full, asks for
    /// candidates again.
    fn detach(&mut self, now: Instant, reason: DetachReason) {
        let State::Attached { orch, .. } = self.state else { return };
        self.actions.push_back(Action::Detach { orch, reason });
        if reason.penalize() {
            self.actions.push_back(Action::Suspend { orch });
        }
        self.chain = match self.last_swap {
            Some(t) if now.saturating_duration_since(t) < self.config.swap_window => self.chain + 1,
            _ => 1,
        };
        self.last_swap = Some(now);
        self.state = State::Idle;
        if self.chain > self.config.max_swaps {
            self.state = State::Ended;
            self.actions.push_back(Action::Ended(EndReason::TooManySwaps));
        }
    }

    /// When [`LiveJob::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Starting { deadline, .. } => Some(*deadline),
            State::Attached { since, last_output, last_event, next_payment, .. } => {
                let output = last_output.unwrap_or(*since) + self.config.output_timeout;
                Some(output.min(*last_event + self.config.events_timeout).min(*next_payment))
            }
            State::Idle | State::Ended => None,
        }
    }

    /// Runs the watchdogs and the payment schedule at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::Starting { deadline, last_error, .. } => {
                if now >= *deadline {
                    let why = format!("start deadline passed: {last_error}");
                    self.end(EndReason::NoOrchestrator(why));
                }
            }
            State::Attached { orch, since, last_output, last_event, next_payment, input_since_payment, .. } => {
                let orch = *orch;
                let input_recent =
                    self.last_input.is_some_and(|t| now.saturating_duration_since(t) < self.config.output_timeout);
                let quiet_since = last_output.unwrap_or(*since);
                if input_recent && now.saturating_duration_since(quiet_since) >= self.config.output_timeout {
                    self.detach(now, DetachReason::NoOutput);
                    return;
                }
                if !input_recent && now.saturating_duration_since(quiet_since) >= self.config.output_timeout {
                    // The publisher paused: not the orchestrator's fault; look again later.
                    *last_output = Some(now);
                }
                if now.saturating_duration_since(*last_event) >= self.config.events_timeout {
                    self.detach(now, DetachReason::NoEvents);
                    return;
                }
                if now >= *next_payment {
                    *next_payment = now + self.config.payment_interval;
                    if std::mem::take(input_since_payment) {
                        self.actions.push_back(Action::Pay { orch });
                    }
                }
            }
            State::Idle | State::Ended => {}
        }
    }
}
