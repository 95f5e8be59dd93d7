//! What one attempt pays and the credit held per orchestrator session (spec §5.6, §5.7).
use num_bigint::BigUint;
use num_rational::BigRational;
use num_traits::{ToPrimitive, Zero};
use transport::identity::Address;
use transport::pm::{Balances, PmError, price_per_pixel, segment_fee, ticket_ev, tickets_needed};
use transport::proto::{OrchestratorInfo, TicketParams};

/// The payment of one attempt: decided by the manager, signed by the driver's ticket
/// sender (a local key today, a remote signer later), settled when the answer comes.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentPlan {
    /// Ticket recipient (the orchestrator's address).
    pub recipient: Address,
    /// The orchestrator's session id (from the auth token): credit is kept per session.
    pub session_id: String,
    /// Price per pixel, wei.
    pub price: BigRational,
    /// What the segment's estimated pixels cost at that price, wei.
    pub fee: BigRational,
    /// Credit reserved from the ledger for this attempt (may be negative).
    pub existing_credit: BigRational,
    /// Tickets to send.
    pub tickets: u32,
    /// Their expected value, wei (tickets × one ticket's EV).
    pub new_credit: BigRational,
}

impl PaymentPlan {
    /// Plans a segment of `pixels` estimated output pixels at `price`, reserving the
    /// session's credit from `ledger` (§5.6 steps 1–5).
    pub fn new(
        ledger: &mut Balances,
        recipient: Address,
        session_id: &str,
        price: BigRational,
        pixels: u64,
        ticket_ev: &BigRational,
    ) -> Self {
        let fee = segment_fee(pixels, &price);
        Self::for_fee(ledger, recipient, session_id, price, fee, ticket_ev)
    }

    /// Plans a job whose fee is already known (an AI job: units × price, no margin, AI
    /// spec §3.4), reserving the session's credit from `ledger`.
    pub fn for_fee(
        ledger: &mut Balances,
        recipient: Address,
        session_id: &str,
        price: BigRational,
        fee: BigRational,
        ticket_ev: &BigRational,
    ) -> Self {
        let existing_credit = ledger.reserve(recipient, session_id);
        let batch = tickets_needed(&existing_credit, &fee, ticket_ev);
        PaymentPlan {
            recipient,
            session_id: session_id.to_owned(),
            price,
            fee,
            existing_credit,
            tickets: batch.count,
            new_credit: batch.new_credit,
        }
    }

    /// The payment never reached the orchestrator (no response headers): only the
    /// reserved credit comes back (§5.6).
    pub fn restore(self, ledger: &mut Balances) {
        ledger.restore(self.recipient, &self.session_id, self.existing_credit);
    }

    /// A result came back reporting `pixels` transcoded: the reserved credit plus the new
    /// tickets, less what the pixels cost, stays with the session.
    pub fn settle(self, ledger: &mut Balances, pixels: u64) {
        let debit = &self.price * BigRational::from_integer(pixels.into());
        ledger.settle(self.recipient, &self.session_id, self.existing_credit, self.new_credit, debit);
    }

    /// The tickets' expected value in wei, as a float for metrics.
    pub fn ev_wei(&self) -> f64 {
        self.new_credit.to_f64().unwrap_or(0.0)
    }
}

/// The session's price per pixel; an orchestrator that quotes none is free.
pub fn session_price(info: &OrchestratorInfo) -> Result<BigRational, PmError> {
    match &info.price_info {
        None => Ok(BigRational::zero()),
        Some(p) if p.price_per_unit == 0 => Ok(BigRational::zero()),
        Some(p) => price_per_pixel(p),
    }
}

/// One ticket's expected value under `tp` (face value × win probability / 2^256), after
/// the same validation the ticket sender applies.
pub fn params_ev(tp: &TicketParams) -> Result<BigRational, PmError> {
    transport::pm::validate_params(tp)?;
    Ok(ticket_ev(&BigUint::from_bytes_be(&tp.face_value), &BigUint::from_bytes_be(&tp.win_prob)))
}

/// Total pixels an orchestrator reports for its renditions. Negative counts are taken as
/// zero and the sum saturates: the figure is network input.
pub fn reported_pixels(data: &transport::proto::TranscodeData) -> u64 {
    data.segments.iter().map(|s| s.pixels.max(0) as u64).fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_sums_saturate_instead_of_overflowing() {
        let seg = |pixels| transport::proto::TranscodedSegmentData { pixels, ..Default::default() };
        let d = transport::proto::TranscodeData {
            segments: vec![seg(i64::MAX), seg(i64::MAX), seg(i64::MAX), seg(-5)],
            ..Default::default()
        };
        assert_eq!(reported_pixels(&d), u64::MAX);
        let d = transport::proto::TranscodeData { segments: vec![seg(10), seg(-3), seg(5)], ..Default::default() };
        assert_eq!(reported_pixels(&d), 15);
    }

    #[test]
    fn a_plan_reserves_then_settles_or_restores_the_credit() {
        let mut ledger = Balances::default();
        let r = [7u8; 20];
        let price = BigRational::from_integer(2.into());
        let ev = BigRational::from_integer(1000.into());
        // 300 pixels × 2 = 600 wei: one ticket of EV 1000 covers it.
        let plan = PaymentPlan::new(&mut ledger, r, "s", price.clone(), 300, &ev);
        assert_eq!(plan.tickets, 1);
        plan.settle(&mut ledger, 300);
        assert_eq!(ledger.get(r, "s"), BigRational::from_integer(400.into()));
        // The next segment is covered by the credit left? 400 < 600: one more ticket.
        let plan = PaymentPlan::new(&mut ledger, r, "s", price, 300, &ev);
        assert_eq!((plan.tickets, plan.existing_credit.clone()), (1, BigRational::from_integer(400.into())));
        assert!(ledger.get(r, "s").is_zero(), "reserved while in flight");
        plan.restore(&mut ledger);
        assert_eq!(ledger.get(r, "s"), BigRational::from_integer(400.into()), "no answer: only the credit returns");
    }
}
