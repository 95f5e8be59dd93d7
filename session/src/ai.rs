//! Batch AI selection and retries, without IO (spec `ai-gateway-protocol.md` §2).
//!
//! * [`AiSelector`]: one per (pipeline, model), like go-livepeer's `AISessionSelector`:
//!   the orchestrators whose last answer offers the model, warm ones before cold ones,
//!   each group by latency score; priced ones above the ceiling are left out; a failed
//!   one is suspended (2 s doubling to 60 s, per selector, so a broken text-to-image runner
//!   does not suspend the orchestrator's transcoding or its other models).
//! * [`AiAttempts`]: one per request: which orchestrator to try next, what a failure means
//!   (§2.7), and when to give up.
//!
//! The shell does the IO the answers ask for ([`Next::Refresh`]: ask every known
//! orchestrator `GetOrchestrator` with the job's capabilities) and passes `now` in.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use num_rational::BigRational;
use num_traits::ToPrimitive;
use transport::ai::{AiFailure, Pipeline};
use transport::proto::OrchestratorInfo;

use crate::payment::session_price;
use crate::pool::OrchId;

/// A selector's orchestrator list is asked again after this long (`AISessionManagerTTL`),
/// which also renews the auth tokens (valid 30 minutes) long before they expire.
pub const REFRESH_TTL: Duration = Duration::from_secs(600);
/// First suspension of a failing orchestrator; doubles with each failure in a row.
pub const BASE_PENALTY: Duration = Duration::from_secs(2);
/// Longest suspension.
pub const MAX_PENALTY: Duration = Duration::from_secs(60);
/// Attempts per request (`maxTries`).
pub const MAX_TRIES: u32 = 20;
/// Attempts on one orchestrator whose ticket params expired (`maxSameSessTries`).
pub const SAME_SESSION_TRIES: u32 = 3;
/// A list that left nothing usable is not asked again sooner than this (a request for a
/// model nobody offers must not turn into a discovery round per request).
pub const MIN_REFRESH_GAP: Duration = Duration::from_secs(5);
/// Weight of the newest observation in the latency score.
const EWMA: f64 = 0.3;

/// One orchestrator able to run the selector's model.
#[derive(Debug, Clone)]
pub struct AiSession {
    /// Its place in the gateway's pool.
    pub orch: OrchId,
    /// Its discovery address.
    pub uri: String,
    /// Its answer: `transcoder` (where jobs go), auth token, price and ticket params.
    pub info: OrchestratorInfo,
    /// The model is loaded.
    pub warm: bool,
    /// Price per unit, wei (0 off-chain).
    pub price: BigRational,
    /// Seconds per unit of work, moving average (0 until measured, so new ones are tried).
    pub latency_score: f64,
    /// Jobs running on it now.
    pub in_use: u32,
}

/// Why an orchestrator is not in a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    /// Its address.
    pub uri: String,
    /// Why.
    pub reason: String,
}

/// The orchestrators for one (pipeline, model).
#[derive(Debug)]
pub struct AiSelector {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model.
    pub model: String,
    sessions: Vec<AiSession>,
    excluded: Vec<Excluded>,
    suspended: HashMap<OrchId, (Instant, u32)>,
    refreshed_at: Option<Instant>,
}

/// One orchestrator's discovery answer, as the shell got it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Its place in the pool.
    pub orch: OrchId,
    /// Its address.
    pub uri: String,
    /// The `OrchestratorInfo`, or why there was none.
    pub info: Result<OrchestratorInfo, String>,
}

impl AiSelector {
    /// An empty selector; the first request refreshes it.
    pub fn new(pipeline: Pipeline, model: &str) -> Self {
        AiSelector {
            pipeline,
            model: model.to_owned(),
            sessions: Vec::new(),
            excluded: Vec::new(),
            suspended: HashMap::new(),
            refreshed_at: None,
        }
    }

    fn usable(&self, now: Instant) -> impl Iterator<Item = &AiSession> {
        self.sessions.iter().filter(move |s| !self.is_suspended(s.orch, now))
    }

    fn is_suspended(&self, orch: OrchId, now: Instant) -> bool {
        self.suspended.get(&orch).is_some_and(|(until, _)| *until > now)
    }

    /// True when the list should be asked again: never asked, older than [`REFRESH_TTL`],
    /// or nothing in it is usable now and it was last asked [`MIN_REFRESH_GAP`] ago.
    pub fn needs_refresh(&self, now: Instant) -> bool {
        match self.refreshed_at {
            None => true,
            Some(t) => {
                let age = now.saturating_duration_since(t);
                age >= REFRESH_TTL || (age >= MIN_REFRESH_GAP && self.usable(now).next().is_none())
            }
        }
    }

    /// True when an orchestrator other than `chosen` and those in `skip` is usable now
    /// (an attempt on `chosen` then keeps time for a retry elsewhere).
    pub fn has_alternative(&self, now: Instant, chosen: OrchId, skip: &[OrchId]) -> bool {
        self.usable(now).any(|s| s.orch != chosen && !skip.contains(&s.orch))
    }

    /// Takes a discovery round's answers (§2.4): an orchestrator stays if it lists the
    /// model under the pipeline, answered with a service URI, and is not priced above
    /// `ceiling` (wei per unit; `None` = any price). Known ones keep their latency score
    /// and running jobs.
    pub fn refresh(&mut self, now: Instant, answers: Vec<Answer>, ceiling: Option<&BigRational>) {
        let old: HashMap<OrchId, (f64, u32)> =
            self.sessions.iter().map(|s| (s.orch, (s.latency_score, s.in_use))).collect();
        self.sessions.clear();
        self.excluded.clear();
        for a in answers {
            let mut exclude = |reason: String| self.excluded.push(Excluded { uri: a.uri.clone(), reason });
            let info = match a.info {
                Ok(i) => i,
                Err(e) => {
                    exclude(format!("no answer: {e}"));
                    continue;
                }
            };
            let offered = info.capabilities.as_ref().and_then(|c| transport::ai::offers(c, self.pipeline, &self.model));
            let Some(warm) = offered else {
                exclude(format!("does not offer {} with model {}", self.pipeline, self.model));
                continue;
            };
            if info.transcoder.is_empty() {
                exclude("answered without a service URI".into());
                continue;
            }
            let price = match session_price(&info) {
                Ok(p) => p,
                Err(e) => {
                    exclude(format!("unusable price: {e}"));
                    continue;
                }
            };
            if let Some(c) = ceiling
                && &price > c
            {
                exclude(format!("price {} wei/unit above the cap of {} wei/unit", fmt_price(&price), fmt_price(c)));
                continue;
            }
            let (latency_score, in_use) = old.get(&a.orch).copied().unwrap_or((0.0, 0));
            self.sessions.push(AiSession { orch: a.orch, uri: a.uri, info, warm, price, latency_score, in_use });
        }
        self.refreshed_at = Some(now);
    }

    /// The best usable orchestrator not in `skip`: warm before cold, then the lowest
    /// latency score, then the fewest running jobs. Marks it in use.
    pub fn select(&mut self, now: Instant, skip: &[OrchId]) -> Option<AiSession> {
        let best = self
            .sessions
            .iter()
            .enumerate()
            .filter(|(_, s)| !skip.contains(&s.orch) && !self.is_suspended(s.orch, now))
            .min_by(|(_, a), (_, b)| {
                (!a.warm, a.in_use > 0)
                    .cmp(&(!b.warm, b.in_use > 0))
                    .then(a.latency_score.total_cmp(&b.latency_score))
                    .then(a.in_use.cmp(&b.in_use))
            })
            .map(|(i, _)| i)?;
        let s = &mut self.sessions[best];
        s.in_use += 1;
        Some(s.clone())
    }

    fn with(&mut self, orch: OrchId, f: impl FnOnce(&mut AiSession)) {
        if let Some(s) = self.sessions.iter_mut().find(|s| s.orch == orch) {
            f(s);
        }
    }

    /// A job on `orch` succeeded, taking `took` for `work` units (pixels, milliseconds,
    /// tokens): its score moves toward seconds per million units; its suspension count
    /// resets.
    pub fn complete(&mut self, orch: OrchId, took: Duration, work: u64) {
        let score = took.as_secs_f64() * 1e6 / work.max(1) as f64;
        self.with(orch, |s| {
            s.in_use = s.in_use.saturating_sub(1);
            s.latency_score =
                if s.latency_score == 0.0 { score } else { s.latency_score + EWMA * (score - s.latency_score) };
        });
        self.suspended.remove(&orch);
    }

    /// A job on `orch` ended without counting for or against it.
    pub fn release(&mut self, orch: OrchId) {
        self.with(orch, |s| s.in_use = s.in_use.saturating_sub(1));
    }

    /// `orch` failed: released and suspended (2 s, doubling with each failure in a row,
    /// at most 60 s). Returns the penalty.
    pub fn suspend(&mut self, orch: OrchId, now: Instant) -> Duration {
        self.release(orch);
        let in_row = self.suspended.get(&orch).map_or(0, |(_, n)| *n) + 1;
        let penalty = BASE_PENALTY.saturating_mul(1 << (in_row - 1).min(5)).min(MAX_PENALTY);
        self.suspended.insert(orch, (now + penalty, in_row));
        penalty
    }

    /// How long `orch` stays suspended after `now`, if it is.
    pub fn suspended_for(&self, orch: OrchId, now: Instant) -> Option<Duration> {
        self.suspended.get(&orch).map(|(until, _)| until.saturating_duration_since(now)).filter(|d| !d.is_zero())
    }

    /// The orchestrators in the selector now (for the control API).
    pub fn sessions(&self) -> &[AiSession] {
        &self.sessions
    }

    /// Why nothing can be chosen, orchestrator by orchestrator.
    pub fn why_none(&self, now: Instant, skip: &[OrchId]) -> String {
        let mut why: Vec<String> = self.excluded.iter().map(|e| format!("{}: {}", e.uri, e.reason)).collect();
        for s in &self.sessions {
            if let Some((until, _)) = self.suspended.get(&s.orch).filter(|(u, _)| *u > now) {
                let left = until.saturating_duration_since(now).as_secs_f64();
                why.push(format!("{}: suspended for {left:.1} s after a failure", s.uri));
            } else if skip.contains(&s.orch) {
                why.push(format!("{}: already tried for this request", s.uri));
            }
        }
        if why.is_empty() {
            format!("no orchestrator offers {} with model {}", self.pipeline, self.model)
        } else {
            why.join("; ")
        }
    }
}

fn fmt_price(p: &BigRational) -> String {
    if p.is_integer() { p.to_integer().to_string() } else { format!("{:.6}", p.to_f64().unwrap_or(f64::NAN)) }
}

/// What a request does next.
#[derive(Debug, Clone)]
pub enum Next {
    /// Ask the orchestrators again (then call [`AiAttempts::next`] again).
    Refresh,
    /// Send the job to this orchestrator within `timeout`.
    Try {
        /// The orchestrator.
        session: Box<AiSession>,
        /// What is left of the request's deadline, or at most half the whole deadline
        /// while another orchestrator could still take the job (a hung one then leaves
        /// time for the retry).
        timeout: Duration,
    },
    /// No orchestrator can take it: 503 with this reason.
    GiveUp(String),
}

/// What a failed attempt means for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again ([`AiAttempts::next`]).
    Retry,
    /// The input was refused: 400 with this message.
    BadRequest(String),
}

/// One request's attempts (§2.7).
#[derive(Debug)]
pub struct AiAttempts {
    deadline: Instant,
    total: Duration,
    tries: u32,
    per_orch: HashMap<OrchId, u32>,
    skip: Vec<OrchId>,
    refreshed: bool,
    last_failure: Option<String>,
}

impl AiAttempts {
    /// A request arriving at `now` that must be answered within `deadline`.
    pub fn new(now: Instant, deadline: Duration) -> Self {
        AiAttempts {
            deadline: now + deadline,
            total: deadline,
            tries: 0,
            per_orch: HashMap::new(),
            skip: Vec::new(),
            refreshed: false,
            last_failure: None,
        }
    }

    /// The next step. A refresh is asked for at most once per request.
    pub fn next(&mut self, sel: &mut AiSelector, now: Instant) -> Next {
        let give_up = |why: String, last: &Option<String>| match last {
            Some(l) => Next::GiveUp(format!("{why} (last failure: {l})")),
            None => Next::GiveUp(why),
        };
        if now >= self.deadline {
            return give_up("no orchestrator answered within the request's deadline".into(), &self.last_failure);
        }
        if self.tries >= MAX_TRIES {
            return give_up(format!("gave up after {MAX_TRIES} attempts"), &self.last_failure);
        }
        if !self.refreshed && sel.needs_refresh(now) {
            self.refreshed = true;
            return Next::Refresh;
        }
        match sel.select(now, &self.skip) {
            Some(session) => {
                self.tries += 1;
                *self.per_orch.entry(session.orch).or_default() += 1;
                let left = self.deadline.saturating_duration_since(now);
                let timeout =
                    if sel.has_alternative(now, session.orch, &self.skip) { left.min(self.total / 2) } else { left };
                Next::Try { session: Box::new(session), timeout }
            }
            None if !self.refreshed && sel.needs_refresh(now) => {
                self.refreshed = true;
                Next::Refresh
            }
            None => give_up(sel.why_none(now, &self.skip), &self.last_failure),
        }
    }

    /// The attempt on `orch` failed with the orchestrator's error `text` (or a transport
    /// error, which is [`AiFailure::Other`]).
    pub fn failed(
        &mut self,
        sel: &mut AiSelector,
        orch: OrchId,
        failure: &AiFailure,
        text: &str,
        now: Instant,
    ) -> AfterFailure {
        self.last_failure = Some(text.chars().take(200).collect());
        match failure {
            AiFailure::TicketParamsExpired if self.per_orch.get(&orch).copied().unwrap_or(0) < SAME_SESSION_TRIES => {
                sel.release(orch);
                // The params are stale: the next refresh brings new ones.
                self.refreshed = false;
                sel.refreshed_at = None;
            }
            AiFailure::TicketParamsExpired | AiFailure::InvalidNonce | AiFailure::InsufficientCapacity => {
                sel.release(orch);
                self.skip.push(orch);
            }
            AiFailure::BadRequest(msg) => {
                // The input's fault, not the orchestrator's (go-livepeer suspends it too).
                sel.release(orch);
                return AfterFailure::BadRequest(msg.clone());
            }
            AiFailure::Other => {
                sel.suspend(orch, now);
                self.skip.push(orch);
            }
        }
        AfterFailure::Retry
    }

    /// Attempts made so far.
    pub fn tries(&self) -> u32 {
        self.tries
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one real instant as their epoch
mod tests {
    use super::*;
    use transport::ai::job_capabilities;
    use transport::proto::PriceInfo;

    fn info(uri: &str, model: &str, warm: bool, price: i64) -> OrchestratorInfo {
        let mut caps = job_capabilities(Pipeline::TextToImage, model, "");
        caps.constraints.as_mut().unwrap().per_capability.get_mut(&27).unwrap().models.get_mut(model).unwrap().warm =
            warm;
        OrchestratorInfo {
            transcoder: uri.into(),
            capabilities: Some(caps),
            price_info: (price > 0).then(|| PriceInfo {
                price_per_unit: price,
                pixels_per_unit: 1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn answer(i: usize, warm: bool, price: i64) -> Answer {
        let uri = format!("https://o{i}:8935");
        Answer { orch: OrchId(i), uri: uri.clone(), info: Ok(info(&uri, "m", warm, price)) }
    }

    fn selector(answers: Vec<Answer>, now: Instant) -> AiSelector {
        let mut s = AiSelector::new(Pipeline::TextToImage, "m");
        s.refresh(now, answers, None);
        s
    }

    #[test]
    fn warm_before_cold_then_latency() {
        let now = Instant::now();
        let mut s = selector(vec![answer(0, false, 0), answer(1, true, 0), answer(2, true, 0)], now);
        s.complete(OrchId(1), Duration::from_secs(2), 1_000_000);
        s.complete(OrchId(2), Duration::from_secs(1), 1_000_000);
        assert_eq!(s.select(now, &[]).unwrap().orch, OrchId(2), "warm and fastest");
        assert_eq!(s.select(now, &[]).unwrap().orch, OrchId(1), "warm, idle beats busy");
        assert_eq!(s.select(now, &[OrchId(1), OrchId(2)]).unwrap().orch, OrchId(0), "cold last");
    }

    #[test]
    fn refresh_filters_model_uri_and_price() {
        let now = Instant::now();
        let mut wrong_model = answer(1, true, 0);
        wrong_model.info = Ok(info("https://o1:8935", "other", true, 0));
        let mut no_uri = answer(2, true, 0);
        no_uri.info.as_mut().unwrap().transcoder.clear();
        let err = Answer { orch: OrchId(3), uri: "https://o3:8935".into(), info: Err("timed out".into()) };
        let mut s = AiSelector::new(Pipeline::TextToImage, "m");
        let cap = BigRational::from_integer(100.into());
        s.refresh(now, vec![answer(0, true, 50), wrong_model, no_uri, err, answer(4, true, 150)], Some(&cap));
        assert_eq!(s.sessions().len(), 1);
        let why = s.why_none(now, &[OrchId(0)]);
        for part in [
            "does not offer text-to-image with model m",
            "without a service URI",
            "no answer: timed out",
            "price 150 wei/unit above the cap of 100",
            "already tried",
        ] {
            assert!(why.contains(part), "{part} in {why}");
        }
    }

    #[test]
    fn soft_failures_skip_hard_ones_suspend() {
        let now = Instant::now();
        let mut s = selector(vec![answer(0, true, 0), answer(1, true, 0), answer(2, true, 0)], now);
        let mut a = AiAttempts::new(now, Duration::from_secs(30));
        let Next::Try { session, .. } = a.next(&mut s, now) else { panic!() };
        let first = session.orch;
        assert_eq!(
            a.failed(&mut s, first, &AiFailure::InsufficientCapacity, "insufficient capacity", now),
            AfterFailure::Retry
        );
        assert!(!s.is_suspended(first, now), "capacity does not suspend");
        let Next::Try { session, .. } = a.next(&mut s, now) else { panic!() };
        assert_ne!(session.orch, first, "skipped for this request");
        let second = session.orch;
        a.failed(&mut s, second, &AiFailure::Other, "HTTP 500", now);
        assert!(s.is_suspended(second, now));
        let Next::Try { session, .. } = a.next(&mut s, now) else { panic!() };
        let third = session.orch;
        a.failed(&mut s, third, &AiFailure::Other, "boom", now);
        // Nothing left, and the list was just asked: the request gives up with the reasons.
        match a.next(&mut s, now) {
            Next::GiveUp(why) => {
                assert!(why.contains("suspended for 2.0 s"), "{why}");
                assert!(why.contains("already tried"), "{why}");
                assert!(why.contains("last failure: boom"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // A new request may use the capacity-limited one again; the suspended ones come
        // back after their penalty.
        let mut b = AiAttempts::new(now, Duration::from_secs(30));
        let Next::Try { session, .. } = b.next(&mut s, now) else { panic!() };
        assert_eq!(session.orch, first);
        let later = now + Duration::from_secs(3);
        assert!(!s.is_suspended(second, later));
        // A second failure in a row doubles the penalty.
        assert_eq!(s.suspend(second, later), Duration::from_secs(4));
    }

    #[test]
    fn expired_ticket_params_retry_same_then_skip() {
        let now = Instant::now();
        let mut s = selector(vec![answer(0, true, 0)], now);
        let mut a = AiAttempts::new(now, Duration::from_secs(30));
        for _ in 0..SAME_SESSION_TRIES {
            match a.next(&mut s, now) {
                Next::Refresh => {
                    s.refresh(now, vec![answer(0, true, 0)], None);
                    let Next::Try { session, .. } = a.next(&mut s, now) else { panic!() };
                    a.failed(&mut s, session.orch, &AiFailure::TicketParamsExpired, "TicketParams expired", now);
                }
                Next::Try { session, .. } => {
                    a.failed(&mut s, session.orch, &AiFailure::TicketParamsExpired, "TicketParams expired", now);
                }
                Next::GiveUp(w) => panic!("{w}"),
            }
        }
        assert!(matches!(a.next(&mut s, now), Next::Refresh | Next::GiveUp(_)));
        assert_eq!(a.tries(), SAME_SESSION_TRIES);
    }

    #[test]
    fn attempts_keep_time_for_a_retry_while_others_remain() {
        let now = Instant::now();
        let mut s = selector(vec![answer(0, true, 0), answer(1, true, 0)], now);
        let mut a = AiAttempts::new(now, Duration::from_secs(10));
        let Next::Try { session, timeout } = a.next(&mut s, now) else { panic!() };
        assert_eq!(timeout, Duration::from_secs(5), "another could take it: half");
        let later = now + Duration::from_secs(5);
        a.failed(&mut s, session.orch, &AiFailure::Other, "timed out", later);
        let Next::Try { timeout, .. } = a.next(&mut s, later) else { panic!() };
        assert_eq!(timeout, Duration::from_secs(5), "the last one gets all that is left");
    }

    #[test]
    fn bad_request_is_the_clients() {
        let now = Instant::now();
        let mut s = selector(vec![answer(0, true, 0)], now);
        let mut a = AiAttempts::new(now, Duration::from_secs(30));
        let Next::Try { session, .. } = a.next(&mut s, now) else { panic!() };
        let f = AiFailure::classify("upscale container returned 400: image too large");
        assert_eq!(a.failed(&mut s, session.orch, &f, "", now), AfterFailure::BadRequest("image too large".into()));
        assert!(!s.is_suspended(session.orch, now));
        assert_eq!(s.sessions()[0].in_use, 0);
    }

    #[test]
    fn empty_selector_refreshes_once_then_gives_up_with_reason() {
        let now = Instant::now();
        let mut s = AiSelector::new(Pipeline::Llm, "echo");
        let mut a = AiAttempts::new(now, Duration::from_secs(5));
        assert!(matches!(a.next(&mut s, now), Next::Refresh));
        s.refresh(now, vec![], None);
        match a.next(&mut s, now) {
            Next::GiveUp(why) => assert_eq!(why, "no orchestrator offers llm with model echo"),
            other => panic!("{other:?}"),
        }
        // Past the deadline nothing more is tried.
        let mut late = AiAttempts::new(now, Duration::from_secs(1));
        assert!(matches!(late.next(&mut s, now + Duration::from_secs(2)), Next::GiveUp(_)));
        // A refreshed, still fresh selector with usable sessions is not asked again.
        let mut t = selector(vec![answer(0, true, 0)], now);
        assert!(!t.needs_refresh(now + Duration::from_secs(599)));
        assert!(t.needs_refresh(now + REFRESH_TTL));
        for _ in 0..3 {
            t.suspend(OrchId(0), now); // 2, 4, then 8 s
        }
        assert!(!t.needs_refresh(now + Duration::from_secs(1)), "nothing usable, but just asked");
        assert!(t.needs_refresh(now + MIN_REFRESH_GAP), "nothing usable");
    }
}
