//! The orchestrator fault matrix, simulated: five streams publish 2 s segments for 60 s of
//! virtual time to three scripted orchestrators; 20 s in, the busiest one misbehaves.
//! Every row of `docs/RELIABILITY.md` is here, plus latency, loss and expired ticket
//! params. The session managers and the pool are the real ones; only the network is
//! scripted, and time is virtual, so the whole matrix runs in well under a second.
//!
//! The real-process suite (`engine/tests/faults.rs`) stays the outer ring: it runs the
//! same faults against `sluice orchestrator` processes over TLS.
#![allow(clippy::disallowed_methods)] // the simulation's epoch is the one real instant

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use num_rational::BigRational;
use session::manager::{SubmitFailure, SubmitReply};
use session::pool::{DefaultSelector, OrchestratorPool};
use session::{Action, Event, JobOutcome, LinkConfig, SegmentJob, SegmentJobs};
use transport::orch_addr::{OrchestratorUri, parse_orch_addrs};
use transport::proto::{
    AuthToken, OrchestratorInfo, PriceInfo, TicketParams, TranscodeData, TranscodeResult, TranscodedSegmentData,
    transcode_result,
};
use transport::refusal::{Failure, FailureReason, classify_http, wire};

const SEGMENT: Duration = Duration::from_secs(2);
const STREAMS: usize = 5;
const RUN: Duration = Duration::from_secs(60);
const FAULT_AT: Duration = Duration::from_secs(20);
const ORCHS: usize = 3;
/// Unix seconds at the simulation's epoch.
const UNIX_EPOCH_AT_T0: i64 = 1_800_000_000;

/// What the misbehaving orchestrator does once the fault starts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Process killed: connections refused.
    Killed,
    /// TCP open, no replies.
    Hang,
    /// `/segment` answers 500.
    Error500,
    /// `OrchestratorBusy` every other segment.
    BusyEveryOther,
    /// Bodies that are not a `TranscodeResult`.
    Garbage,
    /// Price above the cap from the fault on, back under it 20 s later (paid).
    PriceAboveCapThenBelow,
    /// Its host name stops resolving.
    DnsGone,
    /// 2.6 s per segment: slower than real time.
    Slow,
    /// One request in four is reset.
    Loss,
    /// Sessions opened before the fault get `400 TicketParams expired` (paid).
    ExpiredParams,
    /// The price triples (still under the cap) from the fault on (paid).
    PriceTripled,
    /// Results stop carrying ticket params (paid): the ones in force must be kept.
    ResultsWithoutParams,
}

struct Orch {
    addr: OrchestratorUri,
    price: i64,
    sessions_opened: u32,
    submits: u32,
    generation: u32,
}

/// One delivered segment.
#[derive(Clone)]
struct Delivered {
    seq: u64,
    outcome: JobOutcome,
    attempts: u32,
    failover_ms: Option<f64>,
}

/// A pending answer.
enum Pending {
    Event(usize, Event),
}

struct Sim {
    t0: Instant,
    now: Instant,
    fault: Fault,
    faulty: Option<usize>,
    orchs: Vec<Orch>,
    pool: Arc<OrchestratorPool>,
    config: Arc<LinkConfig>,
    discovered: bool,
    streams: Vec<SegmentJobs>,
    /// Answers in flight, by delivery time (ties in insertion order).
    queue: BTreeMap<(Instant, u64), Pending>,
    serial: u64,
    /// Per stream, what was delivered.
    delivered: Vec<Vec<Delivered>>,
    /// Which orchestrator each stream's session is with (by transcoder URL).
    session_of: HashMap<String, usize>,
    rng: u64,
}

fn addr(i: usize) -> OrchestratorUri {
    parse_orch_addrs(&format!("https://o{i}.sim:8935")).unwrap().remove(0)
}

fn ticket_params(orch: usize, generation: u32) -> TicketParams {
    TicketParams {
        recipient: vec![orch as u8 + 1; 20],
        face_value: 1_000_000_000_000u64.to_be_bytes().to_vec(),
        win_prob: vec![0xff; 32],
        recipient_rand_hash: vec![generation as u8; 32],
        seed: vec![1],
        expiration_block: vec![1],
        expiration_params: None,
    }
}

impl Sim {
    fn new(fault: Fault) -> Self {
        let t0 = Instant::now();
        let paid = matches!(
            fault,
            Fault::PriceAboveCapThenBelow | Fault::ExpiredParams | Fault::PriceTripled | Fault::ResultsWithoutParams
        );
        let orchs = (0..ORCHS).map(|i| Orch { addr: addr(i), price: 1, sessions_opened: 0, submits: 0, generation: 0 });
        let orchs: Vec<Orch> = orchs.collect();
        let pool = pool_of(ORCHS);
        // 10 wei per pixel at most; orchestrators quote 1 wei per pixel.
        let config = link(paid, paid.then(|| BigRational::from_integer(10.into())));
        let streams = (0..STREAMS).map(|i| SegmentJobs::new(config.clone(), pool.clone(), 0x5eed + i as u64)).collect();
        Sim {
            t0,
            now: t0,
            fault,
            faulty: None,
            orchs,
            pool,
            config,
            discovered: false,
            streams,
            queue: BTreeMap::new(),
            serial: 0,
            delivered: vec![Vec::new(); STREAMS],
            session_of: HashMap::new(),
            rng: 0x1234_5678,
        }
    }

    fn at(&self) -> Duration {
        self.now - self.t0
    }

    fn faulting(&self, orch: usize) -> bool {
        self.faulty == Some(orch)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng.is_multiple_of(one_in)
    }

    fn later(&mut self, after: Duration, stream: usize, event: Event) {
        self.serial += 1;
        self.queue.insert((self.now + after, self.serial), Pending::Event(stream, event));
    }

    fn info(&self, orch: usize) -> OrchestratorInfo {
        let o = &self.orchs[orch];
        OrchestratorInfo {
            transcoder: format!("https://o{orch}.sim:8935"),
            address: vec![orch as u8 + 1; 20],
            ticket_params: Some(ticket_params(orch, o.generation)),
            price_info: Some(PriceInfo { price_per_unit: o.price, pixels_per_unit: 1, ..Default::default() }),
            auth_token: Some(AuthToken {
                token: vec![1],
                session_id: format!("o{orch}-g{}-s{}", o.generation, o.sessions_opened),
                expiration: UNIX_EPOCH_AT_T0 + self.at().as_secs() as i64 + 3600,
            }),
            ..Default::default()
        }
    }

    /// Runs the scenario and returns the per-stream deliveries.
    fn run(mut self) -> Self {
        let mut next_segment = self.t0;
        let mut seq = 0u64;
        loop {
            // The next thing to happen: a segment closing, an answer, a manager timer.
            let timer = self.streams.iter().filter_map(SegmentJobs::poll_timeout).min();
            let answer = self.queue.keys().next().map(|k| k.0);
            let seg = (next_segment < self.t0 + RUN).then_some(next_segment);
            let Some(t) = [timer, answer, seg].into_iter().flatten().min() else { break };
            self.now = self.now.max(t);
            if self.faulty.is_none() && self.at() >= FAULT_AT {
                // The orchestrator with the most sessions misbehaves.
                let busiest =
                    (0..ORCHS).max_by_key(|i| self.session_of.values().filter(|o| *o == i).count()).unwrap_or(0);
                self.faulty = Some(busiest);
                if self.fault == Fault::PriceAboveCapThenBelow {
                    self.orchs[busiest].price = 50;
                }
                if self.fault == Fault::ExpiredParams {
                    self.orchs[busiest].generation += 1;
                }
                if self.fault == Fault::PriceTripled {
                    self.orchs[busiest].price = 3;
                }
            }
            if self.fault == Fault::PriceAboveCapThenBelow
                && let Some(f) = self.faulty
                && self.at() >= FAULT_AT * 2
            {
                self.orchs[f].price = 1;
            }
            // One discovery round 25 s after the fault: every orchestrator re-quotes.
            if !self.discovered && self.at() >= FAULT_AT * 2 + Duration::from_secs(5) {
                self.discovered = true;
                for (id, _) in self.pool.addresses() {
                    let info = self.info(id.0);
                    let took = Duration::from_millis(3);
                    session::discovery::judge(&self.pool, &self.config, id, Ok(info), took, self.now);
                }
            }
            if seg == Some(t) && t <= self.now {
                for s in 0..STREAMS {
                    let job =
                        SegmentJob { seq, duration: SEGMENT, independent: true, bytes: 200_000, profiles: profiles() };
                    self.streams[s].push(self.now, job);
                }
                seq += 1;
                next_segment += SEGMENT;
                if next_segment >= self.t0 + RUN {
                    for s in 0..STREAMS {
                        self.streams[s].end(self.now);
                    }
                }
            }
            while let Some(entry) = self.queue.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let Pending::Event(s, e) = entry.remove();
                self.streams[s].handle(self.now, e);
            }
            for s in 0..STREAMS {
                self.streams[s].handle_timeout(self.now);
                while let Some(a) = self.streams[s].poll_action() {
                    self.perform(s, a);
                }
            }
        }
        self
    }

    /// The scripted network and orchestrators.
    fn perform(&mut self, s: usize, action: Action) {
        let fast = Duration::from_millis(3);
        match action {
            Action::OpenSession { op, addr, budget, .. } => {
                let orch = self.orchs.iter().position(|o| o.addr == addr).unwrap();
                let unix_now = UNIX_EPOCH_AT_T0 + self.at().as_secs() as i64;
                let failing = self.faulting(orch);
                let refused = |detail: &str| Failure::new(FailureReason::Unreachable, detail);
                let result = match self.fault {
                    Fault::Killed if failing => Some((fast, Err(refused("connection refused")))),
                    Fault::DnsGone if failing => Some((fast, Err(refused("dns error: failed to lookup address")))),
                    Fault::Hang if failing => {
                        // The transport's deadline answers for the silent peer.
                        Some((budget, Err(Failure::new(FailureReason::Timeout, "GetOrchestrator timed out"))))
                    }
                    _ => None,
                };
                let (after, result) = result.unwrap_or_else(|| {
                    self.orchs[orch].sessions_opened += 1;
                    (fast, Ok(self.info(orch)))
                });
                if result.is_ok() {
                    self.session_of.insert(format!("{s}"), orch);
                }
                self.later(after, s, Event::SessionOpened { op, result, unix_now });
            }
            Action::Pay { op, tickets, params, .. } => {
                assert!(params.is_some(), "{:?}: a payment without ticket params", self.fault);
                self.later(Duration::ZERO, s, Event::PaymentAnswered { op, result: Ok(format!("{tickets} tickets")) });
            }
            Action::Submit { op, transcoder, auth_token, profiles, timeouts, .. } => {
                let orch: usize = transcoder[9..10].parse().unwrap();
                self.session_of.insert(format!("{s}"), orch);
                self.orchs[orch].submits += 1;
                let n = self.orchs[orch].submits;
                let failing = self.faulting(orch);
                let http = |status, body: &str| {
                    Err(SubmitFailure { failure: classify_http(status, body), response_received: true })
                };
                let unreachable = |detail: &str| {
                    Err(SubmitFailure {
                        failure: Failure::new(FailureReason::Unreachable, detail),
                        response_received: false,
                    })
                };
                let ok = |info: OrchestratorInfo, upload| {
                    let data = TranscodeData {
                        segments: profiles
                            .iter()
                            .enumerate()
                            .map(|(k, _)| TranscodedSegmentData {
                                url: format!("{transcoder}/stream/{op:?}/{k}.ts"),
                                pixels: 1000,
                                ..Default::default()
                            })
                            .collect(),
                        sig: vec![],
                    };
                    Ok(SubmitReply {
                        result: TranscodeResult {
                            seq: 0,
                            info: Some(info),
                            result: Some(transcode_result::Result::Data(data)),
                        },
                        upload,
                    })
                };
                let upload = Duration::from_millis(20);
                let lost = self.fault == Fault::Loss && failing && self.chance(4);
                let (after, result) = match self.fault {
                    Fault::Killed | Fault::DnsGone if failing => (fast, unreachable("connection reset")),
                    Fault::Hang if failing => (
                        timeouts.upload,
                        Err(SubmitFailure {
                            failure: Failure::new(FailureReason::Timeout, "segment upload (header timeout)"),
                            response_received: false,
                        }),
                    ),
                    Fault::Error500 if failing => (upload, http(500, "Internal Server Error")),
                    Fault::BusyEveryOther if failing && n.is_multiple_of(2) => {
                        let r = TranscodeResult {
                            result: Some(transcode_result::Result::Error(wire::BUSY.into())),
                            ..Default::default()
                        };
                        (upload, Ok(SubmitReply { result: r, upload }))
                    }
                    Fault::Garbage if failing => {
                        // The real decoder meets real garbage.
                        let body = [0x0a, 0xff, 0xff, 0x01, 0x12];
                        let failure = transport::segment::decode_result(&body).unwrap_err();
                        (upload, Err(SubmitFailure { failure, response_received: true }))
                    }
                    Fault::ExpiredParams if failing => {
                        let sid = auth_token.map(|t| t.session_id).unwrap_or_default();
                        let current = format!("o{orch}-g{}-", self.orchs[orch].generation);
                        if sid.starts_with(&current) {
                            (Duration::from_millis(300), ok(self.info(orch), upload))
                        } else {
                            (upload, http(400, wire::TICKET_PARAMS_EXPIRED))
                        }
                    }
                    Fault::Slow if orch == 0 => (Duration::from_millis(2600), ok(self.info(orch), upload)),
                    Fault::ResultsWithoutParams if failing => {
                        let info = OrchestratorInfo { ticket_params: None, ..self.info(orch) };
                        (Duration::from_millis(300), ok(info, upload))
                    }
                    Fault::Loss if lost => (fast, unreachable("connection reset by peer")),
                    _ => (Duration::from_millis(300), ok(self.info(orch), upload)),
                };
                self.later(after, s, Event::SubmitAnswered { op, result });
            }
            Action::Fetch { op, urls, .. } => {
                let renditions = urls.iter().map(|u| Bytes::from(u.clone().into_bytes())).collect();
                self.later(Duration::from_millis(5), s, Event::RenditionsFetched { op, result: Ok(renditions) });
            }
            Action::Deliver { outcome, record, .. } => {
                let d =
                    Delivered { seq: record.seq, outcome, attempts: record.attempts, failover_ms: record.failover_ms };
                self.delivered[s].push(d);
            }
            Action::EndSession { .. } | Action::Presign { .. } | Action::Report(_) | Action::Ended => {}
        }
    }
}

/// A pool of orchestrators `o0.sim` … `o{n-1}.sim`.
fn pool_of(n: usize) -> Arc<OrchestratorPool> {
    Arc::new(OrchestratorPool::new(
        (0..n).map(|i| (addr(i), None)).collect(),
        Box::new(DefaultSelector::default()),
        vec![],
    ))
}

/// The link settings of the simulated gateway: three attempts, the given payment mode.
fn link(paid: bool, max_price: Option<BigRational>) -> Arc<LinkConfig> {
    Arc::new(LinkConfig {
        max_attempts: 3,
        paid,
        max_price,
        capabilities: transport::capabilities::job_capabilities(&profiles(), false, ""),
        blocklist: vec![],
    })
}

fn profiles() -> Vec<transport::proto::VideoProfile> {
    ["P240p30fps16x9", "P360p30fps16x9"].iter().map(|n| transport::profiles::preset(n).unwrap()).collect()
}

/// Every stream got every segment, in order, transcoded; returns (retried segments, the
/// longest failover in ms).
fn check_no_gaps(sim: &Sim, fault: Fault) -> (usize, f64) {
    let segments = (RUN.as_secs() / SEGMENT.as_secs()) as usize;
    let mut retried = 0;
    let mut worst: f64 = 0.0;
    for (s, got) in sim.delivered.iter().enumerate() {
        assert_eq!(got.len(), segments, "{fault:?}: stream {s} got {} of {segments} segments", got.len());
        for (i, Delivered { seq, outcome, attempts, failover_ms: failover }) in got.iter().enumerate() {
            assert_eq!(*seq, i as u64, "{fault:?}: stream {s} out of order");
            assert!(
                matches!(outcome, JobOutcome::Transcoded(r) if r.len() == 2),
                "{fault:?}: stream {s} segment {seq}: {outcome:?}"
            );
            if *attempts > 1 {
                retried += 1;
                worst = worst.max(failover.unwrap_or(0.0));
            }
        }
    }
    (retried, worst)
}

#[test]
fn every_fault_is_survived_without_a_gap() {
    let wall = Instant::now();
    for fault in [
        Fault::Killed,
        Fault::Hang,
        Fault::Error500,
        Fault::BusyEveryOther,
        Fault::Garbage,
        Fault::PriceAboveCapThenBelow,
        Fault::DnsGone,
        Fault::Slow,
        Fault::Loss,
        Fault::ExpiredParams,
        Fault::PriceTripled,
        Fault::ResultsWithoutParams,
    ] {
        let sim = Sim::new(fault).run();
        let (retried, worst) = check_no_gaps(&sim, fault);
        let opened: u32 = sim.orchs.iter().map(|o| o.sessions_opened).sum();
        println!("{fault:?}: retried {retried}, max failover {worst:.0} ms, sessions opened {opened}");
        // A retried segment finds its orchestrator within one segment duration.
        assert!(worst <= SEGMENT.as_secs_f64() * 1000.0, "{fault:?}: failover took {worst} ms");
        let faulty = sim.faulty.expect("the fault started");
        let state = &sim.pool.ranking(sim.now).into_iter().find(|o| o.addr == addr(faulty)).unwrap();
        match fault {
            // Suspended: only the segments in flight pay a retry.
            Fault::Killed | Fault::Hang | Fault::Error500 | Fault::Garbage | Fault::DnsGone => {
                assert!((1..=STREAMS).contains(&retried), "{fault:?}: {retried} retried");
                assert!(state.suspensions >= 1, "{fault:?}: never suspended");
            }
            Fault::BusyEveryOther | Fault::Loss => {
                assert!(retried >= 1, "{fault:?}: the fault was never met");
                assert!(state.suspensions >= 1);
            }
            // A price over the cap, or more than double the session's starting price,
            // moves streams without a failed attempt and without a suspension.
            Fault::PriceTripled => {
                assert_eq!(retried, 0, "{fault:?}");
                assert_eq!(state.suspensions, 0);
            }
            // The params in force are kept: nothing fails.
            Fault::ResultsWithoutParams => {
                assert_eq!(retried, 0, "{fault:?}");
                assert_eq!(state.suspensions, 0);
            }
            Fault::PriceAboveCapThenBelow => {
                assert_eq!(retried, 0, "{fault:?}");
                assert_eq!(state.suspensions, 0);
                assert_eq!(state.price_per_pixel, Some(1.0), "re-quoted under the cap after it fell");
            }
            // Expired params are cured by a fresh session on the same orchestrator, which
            // is never suspended for it.
            Fault::ExpiredParams => {
                assert!(retried >= 1, "{fault:?}: no session met the expiry");
                assert_eq!(state.suspensions, 0, "{fault:?}: a refresh must not suspend");
                assert!(state.failures.contains_key(&FailureReason::TicketParams));
            }
            // Slower than real time: streams leave it after one segment and do not return
            // while faster ones are known.
            Fault::Slow => {
                let slow = sim.pool.ranking(sim.now).into_iter().find(|o| o.addr == addr(0)).unwrap();
                assert!(slow.successes <= STREAMS as u64 + 2, "slow orchestrator kept {} segments", slow.successes);
            }
        }
    }
    let took = wall.elapsed();
    assert!(took < Duration::from_secs(10), "the matrix took {took:?} of wall time");
}

#[test]
fn nothing_usable_gives_gaps_and_not_sent_segments_blame_nobody() {
    let t0 = Instant::now();
    let pool = pool_of(1);
    let mut m = SegmentJobs::new(link(false, None), pool.clone(), 7);
    // A segment cut between keyframes is never sent.
    let job = |seq, independent| SegmentJob { seq, duration: SEGMENT, independent, bytes: 10, profiles: profiles() };
    m.push(t0, job(0, false));
    let Some(Action::Deliver { outcome: JobOutcome::NotSent(_), record, .. }) = m.poll_action() else {
        panic!("not-independent segment was not delivered as not sent")
    };
    assert!(!record.sent && !record.ok);
    // The only orchestrator refuses connections: the segment fails after it is
    // suspended, with a reason that names it.
    m.push(t0, job(1, true));
    let Some(Action::OpenSession { op, .. }) = m.poll_action() else { panic!("no session opened") };
    let refused = Failure::new(FailureReason::Unreachable, "connection refused");
    m.handle(t0, Event::SessionOpened { op, result: Err(refused), unix_now: 0 });
    let mut delivered = None;
    while let Some(a) = m.poll_action() {
        if let Action::Deliver { outcome, record, .. } = a {
            delivered = Some((outcome, record));
        }
    }
    let (outcome, record) = delivered.expect("delivered");
    assert!(matches!(&outcome, JobOutcome::Failed(e) if e.contains("no orchestrator available")), "{outcome:?}");
    assert!(record.sent && !record.ok);
    let state = &pool.ranking(t0)[0];
    assert_eq!(state.failures.get(&FailureReason::Unreachable), Some(&1));
    assert!(m.is_idle());
}

#[test]
fn a_late_answer_to_a_timed_out_operation_is_ignored() {
    let t0 = Instant::now();
    let mut m = SegmentJobs::new(link(false, None), pool_of(2), 9);
    m.push(t0, SegmentJob { seq: 0, duration: SEGMENT, independent: true, bytes: 10, profiles: profiles() });
    let Some(Action::OpenSession { op: first, addr: a, .. }) = m.poll_action() else { panic!() };
    // No answer: the manager's own deadline fires and it moves to the other orchestrator.
    let deadline = m.poll_timeout().expect("a deadline is armed");
    assert_eq!(deadline - t0, Duration::from_secs(1) + session::manager::BACKSTOP_GRACE, "half a segment, plus grace");
    m.handle_timeout(deadline);
    let next = std::iter::from_fn(|| m.poll_action()).find_map(|a| match a {
        Action::OpenSession { addr, .. } => Some(addr),
        _ => None,
    });
    assert_ne!(next, Some(a.clone()), "moved to the other orchestrator");
    // The first orchestrator's answer arrives late: ignored, nothing happens.
    let info = OrchestratorInfo { transcoder: "https://late".into(), ..Default::default() };
    m.handle(deadline, Event::SessionOpened { op: first, result: Ok(info), unix_now: 0 });
    assert!(m.poll_action().is_none(), "a stale answer produced work");
}
