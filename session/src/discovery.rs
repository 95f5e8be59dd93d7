//! Judging a discovery round's answers (spec §7.2): each `GetOrchestrator` answer (or
//! failure) updates the pool before any stream needs the orchestrator. The round itself
//! (who is asked, how long to wait) is the engine's discovery task.
use std::time::{Duration, Instant};

use num_traits::ToPrimitive;
use transport::capabilities::compatible;
use transport::proto::OrchestratorInfo;
use transport::refusal::{Failure, FailureReason};

use crate::manager::{LinkConfig, blocked};
use crate::payment::session_price;
use crate::pool::{OrchId, OrchestratorPool};

/// What one answer did to the pool.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Usable; `over_cap` when its price is above the cap (left out until re-quoted).
    Usable {
        /// Price above the cap.
        over_cap: bool,
    },
    /// Suspended for this reason.
    Suspended(FailureReason),
}

/// Takes orchestrator `id`'s discovery answer, which took `took`, into `pool`:
/// unreachable, incompatible, blocklisted or malformed ones are suspended; priced ones
/// have their price recorded against the cap.
pub fn judge(
    pool: &OrchestratorPool,
    config: &LinkConfig,
    id: OrchId,
    answer: Result<OrchestratorInfo, Failure>,
    took: Duration,
    now: Instant,
) -> Verdict {
    let info = match answer {
        Ok(i) => i,
        Err(f) => {
            let reason = if f.reason == FailureReason::Timeout { f.reason } else { FailureReason::Unreachable };
            pool.failure(id, reason, true, now);
            return Verdict::Suspended(reason);
        }
    };
    pool.discovered(id, took);
    let live = info.capabilities.as_ref().map(live_models).unwrap_or_default();
    let incompatible = info.capabilities.as_ref().is_some_and(|c| !compatible(&config.capabilities, c));
    // One that cannot transcode but offers live AI stays usable for that.
    pool.set_transcodes(id, !incompatible);
    let incompatible = incompatible && live.is_empty();
    pool.set_live_models(id, live);
    let reason = if blocked(&config.blocklist, &info.address) {
        Some(FailureReason::Blocklisted)
    } else if incompatible {
        Some(FailureReason::Incompatible)
    } else if info.transcoder.is_empty() {
        Some(FailureReason::BadReply)
    } else {
        None
    };
    if let Some(reason) = reason {
        pool.failure(id, reason, true, now);
        return Verdict::Suspended(reason);
    }
    let mut over_cap = false;
    if config.paid
        && let Ok(p) = session_price(&info)
    {
        over_cap = config.max_price.as_ref().is_some_and(|m| &p > m);
        pool.price(id, p.to_f64().unwrap_or(f64::MAX), over_cap, now);
    }
    Verdict::Usable { over_cap }
}

/// The live video-to-video models an orchestrator's capabilities offer, with whether each
/// is warm. An orchestrator with the capability bit but no model list offers the default
/// model (go-livepeer: `noop`).
pub fn live_models(caps: &transport::proto::Capabilities) -> Vec<(String, bool)> {
    use transport::live::{CAPABILITY, DEFAULT_MODEL};
    let bit = caps.bitstring.get((CAPABILITY / 64) as usize).is_some_and(|w| w & (1 << (CAPABILITY % 64)) != 0);
    if !bit {
        return Vec::new();
    }
    match caps.constraints.as_ref().and_then(|c| c.per_capability.get(&CAPABILITY)) {
        Some(c) if !c.models.is_empty() => {
            let mut m: Vec<(String, bool)> = c.models.iter().map(|(k, v)| (k.clone(), v.warm)).collect();
            m.sort();
            m
        }
        _ => vec![(DEFAULT_MODEL.to_owned(), false)],
    }
}
