//! Which orchestrator gets a stream's next session: the gateway-wide pool of known
//! orchestrators with their measured performance, suspensions and prices, and the
//! pluggable [`Selector`] that ranks them (spec §7).
//!
//! The pool is shared by every stream. Streams report each attempt's outcome; a failure
//! suspends the orchestrator for a penalty that doubles with each failure in a row
//! (2 s, 4 s, … capped at 60 s) and expires on its own, a success clears it.
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use transport::orch_addr::OrchestratorUri;
use transport::refusal::FailureReason;

pub use crate::selector::{Candidate, DefaultSelector, Selector, Weights};

/// An orchestrator's place in the pool. Entries are only ever appended, so an id stays
/// valid for the pool's life; everything about an orchestrator is looked up by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrchId(pub usize);

/// First suspension after a failure; doubles with each further failure in a row.
pub const BASE_PENALTY: Duration = Duration::from_secs(2);
/// Longest suspension.
pub const MAX_PENALTY: Duration = Duration::from_secs(60);
/// An orchestrator priced above the cap is asked again (offered to the selector, so a
/// session open re-reads its price) after this long.
pub const PRICE_RECHECK: Duration = Duration::from_secs(20);
/// Weight of the newest observation in the moving averages.
const EWMA: f64 = 0.3;

/// One orchestrator as the pool knows it.
#[derive(Debug, Clone, Serialize)]
pub struct OrchestratorState {
    /// Its address as configured or announced (`https://host:port`).
    pub uri: String,
    /// The same, parsed.
    #[serde(skip)]
    pub addr: OrchestratorUri,
    /// Region, when the webhook gave one.
    pub region: Option<String>,
    /// Latency score moving average.
    pub latency_score: Option<f64>,
    /// Success moving average.
    pub success_rate: f64,
    /// Mean upload time (request to response headers), ms, moving average.
    pub upload_ms: Option<f64>,
    /// Price per pixel, wei, as last quoted.
    pub price_per_pixel: Option<f64>,
    /// Attempts that succeeded.
    pub successes: u64,
    /// Failures by reason.
    pub failures: BTreeMap<FailureReason, u64>,
    /// Failures in a row.
    pub failures_in_row: u32,
    /// Times suspended.
    pub suspensions: u64,
    /// Seconds of suspension left (0 when usable).
    pub suspended_for_secs: f64,
    /// Why the orchestrator is not offered to the selector right now, if it is not.
    pub excluded: Option<String>,
    /// Sessions streams hold with it now.
    pub sessions: u64,
    /// `GetOrchestrator` round trip in the last discovery round, ms.
    pub discovery_ms: Option<f64>,
    /// Live video-to-video models it offers, with whether each is warm (from its last
    /// discovery answer).
    pub live_models: Vec<(String, bool)>,
    /// It can take this gateway's transcoding jobs (false for one that only offers live
    /// AI: it stays usable for that, but is never chosen for a segment).
    pub transcodes: bool,
    #[serde(skip)]
    suspended_until: Option<Instant>,
    #[serde(skip)]
    over_price: Option<Instant>,
}

impl OrchestratorState {
    fn new(addr: &OrchestratorUri, region: Option<String>) -> Self {
        OrchestratorState {
            uri: addr.to_string(),
            addr: addr.clone(),
            region,
            latency_score: None,
            success_rate: 1.0,
            upload_ms: None,
            price_per_pixel: None,
            successes: 0,
            failures: BTreeMap::new(),
            failures_in_row: 0,
            suspensions: 0,
            suspended_for_secs: 0.0,
            excluded: None,
            sessions: 0,
            discovery_ms: None,
            live_models: Vec::new(),
            transcodes: true,
            suspended_until: None,
            over_price: None,
        }
    }

    fn exclusion(&self, now: Instant) -> Option<String> {
        if let Some(since) = self.over_price
            && now.saturating_duration_since(since) < PRICE_RECHECK
        {
            return Some("price above the cap".into());
        }
        match self.suspended_until {
            Some(t) if t > now => Some(format!(
                "suspended for {:.1} s after {} failure(s) in a row",
                (t - now).as_secs_f64(),
                self.failures_in_row
            )),
            _ => None,
        }
    }
}

/// The gateway's orchestrators and what it has learnt about them.
pub struct OrchestratorPool {
    entries: Mutex<Vec<OrchestratorState>>,
    /// What selection reads of each entry, kept beside it in a compact array (refreshed
    /// on every change) so a selection over 1,000 orchestrators scans 40 KB, not the
    /// full states; plus the candidate buffer every selection reuses.
    compact: Mutex<(Vec<Compact>, Vec<Candidate>)>,
    selector: Box<dyn Selector>,
    preferred_regions: Vec<String>,
}

impl std::fmt::Debug for OrchestratorPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorPool").field("orchestrators", &self.lock().len()).finish()
    }
}

/// The fields selection needs, per entry.
#[derive(Debug, Clone, Copy)]
struct Compact {
    /// Not offered before this instant (suspension or price above the cap).
    excluded_until: Option<Instant>,
    latency_score: Option<f64>,
    success_rate: f64,
    price: Option<f64>,
    preferred_region: bool,
    transcodes: bool,
}

/// Why a selection came out empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoneUsable(pub String);

impl OrchestratorPool {
    /// A pool over `uris` (with optional regions), ranked by `selector`.
    pub fn new(
        uris: Vec<(OrchestratorUri, Option<String>)>,
        selector: Box<dyn Selector>,
        preferred_regions: Vec<String>,
    ) -> Self {
        let entries = uris.iter().map(|(u, r)| OrchestratorState::new(u, r.clone())).collect();
        let p = OrchestratorPool {
            entries: Mutex::new(entries),
            compact: Mutex::new((Vec::new(), Vec::new())),
            selector,
            preferred_regions,
        };
        p.rebuild_compact(&p.lock());
        p
    }

    fn compact_of(&self, o: &OrchestratorState) -> Compact {
        let price_until = o.over_price.map(|since| since + PRICE_RECHECK);
        let excluded_until = match (o.suspended_until, price_until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Compact {
            excluded_until,
            latency_score: o.latency_score,
            success_rate: o.success_rate,
            price: o.price_per_pixel,
            preferred_region: o.region.as_ref().is_some_and(|r| self.preferred_regions.contains(r)),
            transcodes: o.transcodes,
        }
    }

    fn rebuild_compact(&self, entries: &[OrchestratorState]) {
        let mut c = self.compact.lock().unwrap_or_else(|e| e.into_inner());
        c.0 = entries.iter().map(|o| self.compact_of(o)).collect();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<OrchestratorState>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds orchestrators not known yet (from a webhook refresh); known ones keep their
    /// history. Returns how many were added.
    pub fn merge(&self, uris: &[(OrchestratorUri, Option<String>)]) -> usize {
        let mut e = self.lock();
        let mut added = 0;
        for (u, r) in uris {
            if let Some(x) = e.iter_mut().find(|x| &x.addr == u) {
                if r.is_some() {
                    x.region.clone_from(r);
                }
            } else {
                e.push(OrchestratorState::new(u, r.clone()));
                added += 1;
            }
        }
        self.rebuild_compact(&e);
        added
    }

    /// Picks an orchestrator for a session, leaving out `exclude` (those already tried
    /// for the segment at hand). `random` is uniform in [0, 1).
    pub fn choose(
        &self,
        exclude: &[OrchId],
        now: Instant,
        random: f64,
    ) -> Result<(OrchId, OrchestratorUri), NoneUsable> {
        let e = self.lock();
        let mut guard = self.compact.lock().unwrap_or_else(|e| e.into_inner());
        let (compact, candidates) = &mut *guard;
        candidates.clear();
        for (i, c) in compact.iter().enumerate() {
            if !c.transcodes
                || c.excluded_until.is_some_and(|t| t > now)
                || (!exclude.is_empty() && exclude.contains(&OrchId(i)))
            {
                continue;
            }
            candidates.push(Candidate {
                index: i,
                latency_score: c.latency_score,
                success_rate: c.success_rate,
                price: c.price,
                stake: None,
                preferred_region: c.preferred_region,
            });
        }
        if let Some(i) = self.selector.select(candidates, random) {
            return Ok((OrchId(i), e[i].addr.clone()));
        }
        if e.is_empty() {
            return Err(NoneUsable("no orchestrators configured".into()));
        }
        // Nothing usable: say why, orchestrator by orchestrator.
        let why: Vec<String> = e
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let reason = if !o.transcodes {
                    "offers live AI only".to_owned()
                } else if exclude.contains(&OrchId(i)) {
                    "already tried for this segment".to_owned()
                } else {
                    o.exclusion(now).unwrap_or_else(|| "not chosen".into())
                };
                format!("{}: {reason}", o.uri)
            })
            .collect();
        Err(NoneUsable(why.join("; ")))
    }

    fn with<R>(&self, id: OrchId, f: impl FnOnce(&mut OrchestratorState) -> R) -> Option<R> {
        let mut e = self.lock();
        let i = id.0;
        let r = f(e.get_mut(i)?);
        let c = self.compact_of(&e[i]);
        let mut compact = self.compact.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = compact.0.get_mut(i) {
            *slot = c;
        }
        Some(r)
    }

    /// A successful attempt: `took` for the whole request, `upload` until the response
    /// headers, for a segment of `segment` duration.
    pub fn success(&self, id: OrchId, took: Duration, upload: Duration, segment: Duration) {
        let score = took.as_secs_f64() / segment.as_secs_f64().max(1.5);
        self.with(id, |o| {
            o.latency_score = Some(o.latency_score.map_or(score, |s| s + EWMA * (score - s)));
            o.success_rate += EWMA * (1.0 - o.success_rate);
            let up = upload.as_secs_f64() * 1000.0;
            o.upload_ms = Some(o.upload_ms.map_or(up, |u| u + EWMA * (up - u)));
            o.successes += 1;
            o.failures_in_row = 0;
            o.suspended_until = None;
        });
    }

    /// A failed attempt for `reason`; `suspend` unless the failure was the input's fault.
    /// Returns the suspension applied.
    pub fn failure(&self, id: OrchId, reason: FailureReason, suspend: bool, now: Instant) -> Option<Duration> {
        self.with(id, |o| {
            *o.failures.entry(reason).or_default() += 1;
            o.success_rate -= EWMA * o.success_rate;
            if !suspend {
                return None;
            }
            o.failures_in_row += 1;
            let penalty = BASE_PENALTY.saturating_mul(1 << (o.failures_in_row - 1).min(5)).min(MAX_PENALTY);
            o.suspended_until = Some(now + penalty);
            o.suspensions += 1;
            Some(penalty)
        })
        .flatten()
    }

    /// Records a quoted price and whether it is above the cap. An orchestrator above the
    /// cap is not offered for [`PRICE_RECHECK`]; then it is, so a new session reads its
    /// price again.
    pub fn price(&self, id: OrchId, per_pixel: f64, over_cap: bool, now: Instant) {
        self.with(id, |o| {
            o.price_per_pixel = Some(per_pixel);
            o.over_price = over_cap.then_some(now);
        });
    }

    /// Every orchestrator with its address (for a discovery round).
    pub fn addresses(&self) -> Vec<(OrchId, OrchestratorUri)> {
        self.lock().iter().enumerate().map(|(i, o)| (OrchId(i), o.addr.clone())).collect()
    }

    /// The address of `id`.
    pub fn address(&self, id: OrchId) -> Option<OrchestratorUri> {
        self.lock().get(id.0).map(|o| o.addr.clone())
    }

    /// A discovery round's answer for `uri`: how long `GetOrchestrator` took.
    pub fn discovered(&self, id: OrchId, rpc: Duration) {
        self.with(id, |o| o.discovery_ms = Some(rpc.as_secs_f64() * 1000.0));
    }

    /// What `id`'s last discovery answer says it offers for live video-to-video.
    pub fn set_live_models(&self, id: OrchId, models: Vec<(String, bool)>) {
        self.with(id, |o| o.live_models = models);
    }

    /// Whether `id` can take this gateway's transcoding jobs (its last discovery answer).
    pub fn set_transcodes(&self, id: OrchId, transcodes: bool) {
        self.with(id, |o| o.transcodes = transcodes);
    }

    /// True once every orchestrator has answered (or failed) a discovery round: what
    /// they offer is known.
    pub fn all_discovered(&self) -> bool {
        self.lock().iter().all(|o| o.discovery_ms.is_some() || o.failures_in_row > 0)
    }

    /// The orchestrators offering live video-to-video with `model` and usable now: warm
    /// ones first, each group in the selector's order (spec live §2.2).
    pub fn live_candidates(&self, model: &str, now: Instant) -> Vec<OrchId> {
        let mut out: Vec<(bool, usize, OrchId)> = Vec::new();
        let e = self.lock();
        let compact = self.compact.lock().unwrap_or_else(|e| e.into_inner());
        for (i, o) in e.iter().enumerate() {
            if compact.0.get(i).is_some_and(|c| c.excluded_until.is_some_and(|t| t > now)) {
                continue;
            }
            if let Some((_, warm)) = o.live_models.iter().find(|(m, _)| m == model) {
                // Lower latency score first; unmeasured ones after the measured.
                let rank = o.latency_score.map_or(usize::MAX / 2, |s| (s * 1e6) as usize);
                out.push((!warm, rank, OrchId(i)));
            }
        }
        out.sort();
        out.into_iter().map(|(_, _, id)| id).collect()
    }

    /// A stream opened (+1) or closed (−1) a session with `uri`.
    pub fn session_delta(&self, id: OrchId, delta: i64) {
        self.with(id, |o| o.sessions = o.sessions.saturating_add_signed(delta));
    }

    /// Whether a stream may keep its session with `uri` (spec §7.4): not suspended, not
    /// over the price cap, and not slower than real time. Cheap: called per segment.
    pub fn keep_session(&self, id: OrchId, now: Instant) -> Result<(), String> {
        self.with(id, |o| {
            if let Some(why) = o.exclusion(now) {
                return Err(why);
            }
            match o.latency_score {
                Some(s) if s > 1.0 => Err(format!("slower than real time (latency score {s:.2})")),
                _ => Ok(()),
            }
        })
        .unwrap_or_else(|| Err("no longer known".into()))
    }

    /// The orchestrator's mean upload time, if measured.
    pub fn upload_estimate(&self, id: OrchId) -> Option<Duration> {
        self.with(id, |o| o.upload_ms.map(|ms| Duration::from_secs_f64(ms / 1000.0))).flatten()
    }

    /// Every orchestrator, best first as the selector would rank them now, with why
    /// excluded ones are excluded (control API).
    pub fn ranking(&self, now: Instant) -> Vec<OrchestratorState> {
        let mut out: Vec<OrchestratorState> = self
            .lock()
            .iter()
            .map(|o| {
                let mut o = o.clone();
                o.excluded = o.exclusion(now);
                o.suspended_for_secs =
                    o.suspended_until.map_or(0.0, |t| t.saturating_duration_since(now).as_secs_f64());
                o
            })
            .collect();
        let key = |o: &OrchestratorState| {
            (o.excluded.is_some(), o.latency_score.map_or(f64::MAX / 2.0, |s| s / o.success_rate.max(0.05)))
        };
        out.sort_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
        });
        out
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one real instant as their epoch
mod tests {
    use super::*;

    fn addr(text: &str) -> OrchestratorUri {
        transport::orch_addr::parse_orch_addrs(text).unwrap().remove(0)
    }

    fn pool(n: usize) -> OrchestratorPool {
        OrchestratorPool::new(
            (0..n).map(|i| (addr(&format!("https://o{i}:8935")), None)).collect(),
            Box::new(DefaultSelector::default()),
            vec![],
        )
    }

    #[test]
    fn live_candidates_offer_the_model_warm_first_and_skip_suspended() {
        use transport::live::job_capabilities;
        let p = pool(4);
        let t0 = Instant::now();
        // o0: cold negate; o1: warm negate; o2: transcoding only; o3: warm negate, suspended.
        let mut warm = job_capabilities("negate");
        let cold = warm.clone();
        warm.constraints
            .as_mut()
            .unwrap()
            .per_capability
            .get_mut(&transport::live::CAPABILITY)
            .unwrap()
            .models
            .get_mut("negate")
            .unwrap()
            .warm = true;
        p.set_live_models(OrchId(0), crate::discovery::live_models(&cold));
        p.set_live_models(OrchId(1), crate::discovery::live_models(&warm));
        p.set_live_models(OrchId(2), crate::discovery::live_models(&Default::default()));
        p.set_live_models(OrchId(3), crate::discovery::live_models(&warm));
        p.failure(OrchId(3), FailureReason::Timeout, true, t0);
        assert_eq!(p.live_candidates("negate", t0), vec![OrchId(1), OrchId(0)]);
        assert!(p.live_candidates("edges", t0).is_empty());
        // One that offers live AI only is never chosen for a segment, but stays a live
        // candidate.
        p.set_transcodes(OrchId(1), false);
        for r in [0.0, 0.3, 0.6, 0.99] {
            assert_ne!(p.choose(&[], t0, r).unwrap().0, OrchId(1));
        }
        assert_eq!(p.live_candidates("negate", t0), vec![OrchId(1), OrchId(0)]);
        // The bit without a model list offers the default model.
        let mut bare = warm.clone();
        bare.constraints = None;
        assert_eq!(crate::discovery::live_models(&bare), vec![("noop".to_owned(), false)]);
    }

    #[test]
    fn known_fast_orchestrators_win_and_failures_suspend() {
        let p = pool(3);
        let t0 = Instant::now();
        let seg = Duration::from_secs(2);
        // Untried ones are drawn; with every weight equal the draw follows `random`.
        assert_eq!(p.choose(&[], t0, 0.0).unwrap().0, OrchId(0));
        assert_eq!(p.choose(&[], t0, 0.99).unwrap().0, OrchId(2));
        p.success(OrchId(1), Duration::from_millis(300), Duration::from_millis(5), seg);
        assert_eq!(p.choose(&[], t0, 0.0).unwrap().0, OrchId(1), "known and faster than real time");
        // A failure suspends it: 2 s, then 4 s for the next failure in a row.
        assert_eq!(p.failure(OrchId(1), FailureReason::Timeout, true, t0), Some(Duration::from_secs(2)));
        assert_ne!(p.choose(&[], t0, 0.0).unwrap().0, OrchId(1));
        assert_eq!(p.choose(&[], t0 + Duration::from_secs(3), 0.0).unwrap().0, OrchId(1), "suspension expired");
        assert_eq!(p.failure(OrchId(1), FailureReason::Timeout, true, t0), Some(Duration::from_secs(4)));
        for _ in 0..10 {
            p.failure(OrchId(1), FailureReason::Timeout, true, t0);
        }
        assert_eq!(p.failure(OrchId(1), FailureReason::Timeout, true, t0), Some(MAX_PENALTY));
        // An input error counts but does not suspend.
        assert_eq!(p.failure(OrchId(0), FailureReason::TranscodeError, false, t0), None);
        assert!(p.ranking(t0).iter().find(|o| o.uri == "https://o0:8935").unwrap().excluded.is_none());
        // Exclusions and reasons.
        let err = p.choose(&[OrchId(0), OrchId(2)], t0, 0.0).unwrap_err();
        assert!(err.0.contains("already tried") && err.0.contains("suspended"), "{err:?}");
        let r = p.ranking(t0);
        assert_eq!(r.last().unwrap().uri, "https://o1:8935", "suspended ranks last");
        assert_eq!(r[0].excluded, None);
    }

    #[test]
    fn sessions_are_kept_only_while_healthy() {
        let p = pool(1);
        let (t0, seg) = (Instant::now(), Duration::from_secs(2));
        let o = OrchId(0);
        assert_eq!(p.keep_session(o, t0), Ok(()), "untried: keep");
        p.success(o, Duration::from_millis(500), Duration::ZERO, seg);
        assert_eq!(p.keep_session(o, t0), Ok(()));
        p.failure(o, FailureReason::Http5xx, true, t0);
        assert!(p.keep_session(o, t0).unwrap_err().contains("suspended"));
        let p = pool(1);
        p.success(o, Duration::from_secs(5), Duration::ZERO, seg);
        assert!(p.keep_session(o, t0).unwrap_err().contains("slower than real time"));
        assert!(p.keep_session(OrchId(7), t0).is_err());
    }

    #[test]
    fn price_cap_excludes_until_quoted_under_it() {
        let p = pool(2);
        let t0 = Instant::now();
        p.price(OrchId(0), 5.0, true, t0);
        for r in [0.0, 0.5, 0.99] {
            assert_eq!(p.choose(&[], t0, r).unwrap().0, OrchId(1));
        }
        assert_eq!(p.choose(&[], t0 + PRICE_RECHECK, 0.0).unwrap().0, OrchId(0), "asked again later");
        p.price(OrchId(0), 0.5, false, t0);
        assert_eq!(p.choose(&[], t0, 0.0).unwrap().0, OrchId(0));
    }

    #[test]
    fn preferred_regions_come_first_and_slow_known_ones_yield_to_untried() {
        let p = OrchestratorPool::new(
            vec![(addr("a"), Some("us".into())), (addr("b"), Some("eu".into())), (addr("c"), None)],
            Box::new(DefaultSelector::default()),
            vec!["eu".into()],
        );
        let t0 = Instant::now();
        for r in [0.0, 0.5, 0.99] {
            assert_eq!(p.choose(&[], t0, r).unwrap().0, OrchId(1));
        }
        p.failure(OrchId(1), FailureReason::Http4xx, true, t0);
        assert_ne!(p.choose(&[], t0, 0.5).unwrap().0, OrchId(1));

        let p = pool(2);
        let seg = Duration::from_secs(2);
        // Known but slower than real time (score 2.0): an untried one is preferred.
        p.success(OrchId(0), Duration::from_secs(4), Duration::ZERO, seg);
        assert_eq!(p.choose(&[], t0, 0.0).unwrap().0, OrchId(1));
        p.success(OrchId(1), Duration::from_secs(6), Duration::ZERO, seg);
        assert_eq!(p.choose(&[], t0, 0.0).unwrap().0, OrchId(0), "least bad when all are slow");
    }
}
