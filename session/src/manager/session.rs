//! One orchestrator session: admitting a `GetOrchestrator` answer (spec §3.4, §5.4) and
//! judging when the session must be replaced.
use std::time::{Duration, Instant};

use num_rational::BigRational;
use num_traits::ToPrimitive;
use transport::capabilities::compatible;
use transport::identity::Address;
use transport::orch_addr::OrchestratorUri;
use transport::proto::OrchestratorInfo;
use transport::refusal::{Failure, FailureReason};

use super::{LinkConfig, PARAMS_MAX_IDLE, SessionKey, TOKEN_REFRESH_MARGIN, blocked};
use crate::payment::{params_ev, session_price};
use crate::pool::{OrchId, OrchestratorPool};

pub(super) struct Session {
    pub(super) key: SessionKey,
    pub(super) orch: OrchId,
    pub(super) addr: OrchestratorUri,
    pub(super) info: OrchestratorInfo,
    pub(super) recipient: Address,
    pub(super) start_price: Option<BigRational>,
    /// When the ticket params were last refreshed.
    pub(super) info_at: Instant,
    /// When the auth token expires, on the monotonic clock.
    pub(super) token_expires: Option<Instant>,
}

impl Session {
    pub(super) fn session_id(&self) -> &str {
        self.info.auth_token.as_ref().map(|t| t.session_id.as_str()).unwrap_or("")
    }

    /// True when the session should be replaced before the next segment.
    pub(super) fn needs_refresh(&self, paid: bool, now: Instant) -> Option<&'static str> {
        if self.token_expires.is_some_and(|t| t <= now + TOKEN_REFRESH_MARGIN) {
            return Some("auth token expiring");
        }
        (paid && now.saturating_duration_since(self.info_at) > PARAMS_MAX_IDLE).then_some("ticket params idle")
    }
}

/// Where sessions are admitted: the link's settings and the pool that records prices.
pub(super) struct Gate<'a> {
    pub(super) config: &'a LinkConfig,
    pub(super) pool: &'a OrchestratorPool,
}

impl Gate<'_> {
    /// Checks a `GetOrchestrator` answer and makes a session of it.
    pub(super) fn admit(
        &self,
        key: SessionKey,
        now: Instant,
        orch: OrchId,
        addr: &OrchestratorUri,
        info: OrchestratorInfo,
        unix_now: i64,
    ) -> Result<Session, Failure> {
        let bad = |m: &str| Failure::new(FailureReason::BadReply, m);
        if info.transcoder.is_empty() {
            return Err(bad("announced no transcoder URI"));
        }
        let Some(token) = info.auth_token.as_ref() else { return Err(bad("sent no auth token")) };
        if let Some(c) = &info.capabilities
            && !compatible(&self.config.capabilities, c)
        {
            return Err(Failure::new(FailureReason::Incompatible, "incompatible capabilities"));
        }
        if blocked(&self.config.blocklist, &info.address) {
            return Err(Failure::new(FailureReason::Blocklisted, "blocklisted address"));
        }
        let recipient: Address = info
            .ticket_params
            .as_ref()
            .and_then(|tp| tp.recipient.as_slice().try_into().ok())
            .or_else(|| info.address.as_slice().try_into().ok())
            .unwrap_or([0; 20]);
        let start_price = if self.config.paid {
            let price = session_price(&info).map_err(|e| bad(&format!("price: {e}")))?;
            self.check_price(orch, &price, now)?;
            if let Some(tp) = &info.ticket_params {
                params_ev(tp).map_err(|e| bad(&format!("ticket params: {e}")))?;
            }
            Some(price)
        } else {
            None
        };
        let left = token.expiration.saturating_sub(unix_now);
        let token_expires =
            (token.expiration > 0).then(|| now.checked_add(Duration::from_secs(left.max(0) as u64))).flatten();
        Ok(Session { key, orch, addr: addr.clone(), info, recipient, start_price, info_at: now, token_expires })
    }

    /// Records `price` with the pool; above the cap it is a failure that moves the stream
    /// elsewhere (the orchestrator stays out until it quotes under the cap).
    pub(super) fn check_price(&self, orch: OrchId, price: &BigRational, now: Instant) -> Result<(), Failure> {
        let over = self.config.max_price.as_ref().is_some_and(|max| price > max);
        self.pool.price(orch, price.to_f64().unwrap_or(f64::MAX), over, now);
        if over {
            return Err(Failure::new(
                FailureReason::Price,
                format!(
                    "price {} wei/pixel is above --max-price-per-unit/--pixels-per-unit ({})",
                    price.to_f64().unwrap_or(f64::NAN),
                    self.config.max_price.as_ref().and_then(|m| m.to_f64()).unwrap_or(f64::NAN)
                ),
            ));
        }
        Ok(())
    }
}
