//! Probabilistic micropayments on the gateway side (spec §5): ticket expected value, how
//! many tickets a segment needs, the credit kept per orchestrator session, and building
//! the `Payment` that rides with a segment. Exact rational arithmetic, as go-livepeer's
//! `big.Rat`; no I/O, no clock.

use std::collections::HashMap;

use num_bigint::{BigInt, BigUint};
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use crate::credentials::{Ticket, u256_from_minimal};
use crate::identity::{Address, EthSigner};
use crate::proto::{Payment, PriceInfo, TicketExpirationParams, TicketParams, TicketSenderParams};

/// Most nonces an orchestrator accepts per recipientRand (`maxSenderNonces`, §5.4).
pub const MAX_SENDER_NONCES: u32 = 600;

/// Why a payment could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PmError {
    /// The orchestrator sent no ticket params but a non-zero price.
    #[error("no ticket params from the orchestrator")]
    NoTicketParams,
    /// A ticket params field is malformed.
    #[error("invalid ticket params: {0}")]
    InvalidParams(&'static str),
    /// A price with zero or negative pixels per unit, or a negative price.
    #[error("invalid price")]
    InvalidPrice,
    /// All nonces of these params are used: fetch new params.
    #[error("ticket params exhausted ({MAX_SENDER_NONCES} nonces)")]
    NoncesExhausted,
}

/// 2^256 − 1, the denominator of win probabilities.
pub fn max_win_prob() -> BigUint {
    (BigUint::one() << 256u32) - BigUint::one()
}

/// Expected value of one ticket: faceValue × winProb / (2^256 − 1) wei (§5.5).
pub fn ticket_ev(face_value: &BigUint, win_prob: &BigUint) -> BigRational {
    BigRational::new(BigInt::from(face_value * win_prob), BigInt::from(max_win_prob()))
}

/// Wei per pixel from a `PriceInfo`.
pub fn price_per_pixel(p: &PriceInfo) -> Result<BigRational, PmError> {
    if p.pixels_per_unit <= 0 || p.price_per_unit < 0 {
        return Err(PmError::InvalidPrice);
    }
    Ok(BigRational::new(BigInt::from(p.price_per_unit), BigInt::from(p.pixels_per_unit)))
}

/// What a segment of `pixels` estimated output pixels costs: pixels × 1.02 × price (§5.6).
pub fn segment_fee(pixels: u64, price: &BigRational) -> BigRational {
    BigRational::new(BigInt::from(pixels) * 51, BigInt::from(50)) * price
}

/// Tickets to send with one segment, and the credit they add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketBatch {
    /// Number of tickets.
    pub count: u32,
    /// count × EV.
    pub new_credit: BigRational,
}

/// §5.6 steps 4–5: with `existing` credit reserved, enough tickets to cover
/// max(fee, one ticket's EV); none if the credit already does, or if EV is zero.
pub fn tickets_needed(existing: &BigRational, fee: &BigRational, ev: &BigRational) -> TicketBatch {
    let min_credit = if fee > ev { fee.clone() } else { ev.clone() };
    if !ev.is_positive() || existing >= &min_credit {
        return TicketBatch { count: 0, new_credit: BigRational::zero() };
    }
    let count = ((&min_credit - existing) / ev).ceil().to_integer().to_u32().unwrap_or(u32::MAX);
    TicketBatch { count, new_credit: ev * BigInt::from(count) }
}

/// Credit per (orchestrator address, orchestrator session id), as go-livepeer's
/// `core/accounting.go` keeps it.
#[derive(Debug, Default)]
pub struct Balances {
    credit: HashMap<(Address, String), BigRational>,
}

impl Balances {
    /// Takes the whole balance for a segment (it may be negative).
    pub fn reserve(&mut self, recipient: Address, session: &str) -> BigRational {
        self.credit.remove(&(recipient, session.to_owned())).unwrap_or_else(BigRational::zero)
    }

    /// After a transcode result: the reserved credit and the new tickets, less what the
    /// returned pixels cost.
    pub fn settle(
        &mut self,
        recipient: Address,
        session: &str,
        existing: BigRational,
        new_credit: BigRational,
        debit: BigRational,
    ) {
        *self.credit.entry((recipient, session.to_owned())).or_insert_with(BigRational::zero) +=
            existing + new_credit - debit;
    }

    /// No response at all (transport error before headers): only the reserved credit comes
    /// back; the new tickets' value does not (§5.6).
    pub fn restore(&mut self, recipient: Address, session: &str, existing: BigRational) {
        *self.credit.entry((recipient, session.to_owned())).or_insert_with(BigRational::zero) += existing;
    }

    /// The current balance.
    pub fn get(&self, recipient: Address, session: &str) -> BigRational {
        self.credit.get(&(recipient, session.to_owned())).cloned().unwrap_or_else(BigRational::zero)
    }
}

/// The fixed-width fields of well-formed ticket params.
struct Checked {
    recipient: Address,
    face_value: [u8; 32],
    win_prob: [u8; 32],
    recipient_rand_hash: [u8; 32],
}

fn check_params(tp: &TicketParams) -> Result<Checked, PmError> {
    let fixed =
        |b: &[u8], what| -> Result<[u8; 32], PmError> { b.try_into().map_err(|_| PmError::InvalidParams(what)) };
    let recipient: Address = tp.recipient.as_slice().try_into().map_err(|_| PmError::InvalidParams("recipient"))?;
    let face_value = u256_from_minimal(&tp.face_value).ok_or(PmError::InvalidParams("face_value"))?;
    let win_prob = u256_from_minimal(&tp.win_prob).ok_or(PmError::InvalidParams("win_prob"))?;
    let recipient_rand_hash = fixed(&tp.recipient_rand_hash, "recipient_rand_hash")?;
    let expiration = tp.expiration_params.as_ref();
    if expiration.is_some_and(|e| !e.creation_round_block_hash.is_empty() && e.creation_round_block_hash.len() != 32) {
        return Err(PmError::InvalidParams("creation_round_block_hash"));
    }
    Ok(Checked { recipient, face_value, win_prob, recipient_rand_hash })
}

/// Checks that ticket params are well formed (20-byte recipient, face value and win
/// probability within 256 bits, 32-byte recipientRandHash and block hash), as
/// [`TicketSender::update_params`] does before using them.
pub fn validate_params(tp: &TicketParams) -> Result<(), PmError> {
    check_params(tp).map(|_| ())
}

/// The ticket parameters of the current orchestrator session, with their nonce counter.
#[derive(Debug, Clone)]
struct ActiveParams {
    wire: TicketParams,
    recipient: Address,
    face_value: [u8; 32],
    win_prob: [u8; 32],
    recipient_rand_hash: [u8; 32],
    expiration: TicketExpirationParams,
    nonce: u32,
}

/// Builds payments for one orchestrator: tracks its ticket params and nonces (§5.4, §5.7).
///
/// Tickets can be signed ahead ([`TicketSender::presign`]) as soon as new params arrive,
/// so the signatures are not on the path from a closed segment to its request. Signed
/// tickets left unused when the params change are dropped; their nonces are simply never
/// sent, which the orchestrator does not mind (it only refuses a nonce seen twice).
#[derive(Debug)]
pub struct TicketSender {
    signer: EthSigner,
    active: Option<ActiveParams>,
    /// Tickets signed ahead under the active params, lowest nonce first.
    presigned: std::collections::VecDeque<TicketSenderParams>,
}

impl TicketSender {
    /// A sender signing as `signer`.
    pub fn new(signer: EthSigner) -> Self {
        TicketSender { signer, active: None, presigned: Default::default() }
    }

    /// Takes new ticket params (from `GetOrchestrator` or a `TranscodeResult.info`). New
    /// params (a new recipientRandHash) restart the nonce at 1; the same params keep it.
    pub fn update_params(&mut self, tp: &TicketParams) -> Result<(), PmError> {
        let Checked { recipient, face_value, win_prob, recipient_rand_hash } = check_params(tp)?;
        let expiration = tp.expiration_params.clone().unwrap_or_default();
        let nonce = match &self.active {
            Some(a) if a.recipient_rand_hash == recipient_rand_hash => a.nonce,
            _ => {
                self.presigned.clear();
                0
            }
        };
        self.active = Some(ActiveParams {
            wire: tp.clone(),
            recipient,
            face_value,
            win_prob,
            recipient_rand_hash,
            expiration,
            nonce,
        });
        Ok(())
    }

    /// The nonce of the last ticket signed under the current params (0 before any).
    pub fn nonce(&self) -> u32 {
        self.active.as_ref().map_or(0, |a| a.nonce)
    }

    /// Continues the current params' nonces after `nonce` (a sender restored from state
    /// kept elsewhere, as a remote signer's caller keeps it). Never goes back.
    pub fn resume_nonce(&mut self, nonce: u32) {
        if let Some(a) = self.active.as_mut()
            && nonce > a.nonce
        {
            a.nonce = nonce;
            self.presigned.clear();
        }
    }

    /// Expected value of one ticket under the current params (zero without params).
    pub fn ticket_ev(&self) -> BigRational {
        match &self.active {
            Some(a) => ticket_ev(&BigUint::from_bytes_be(&a.face_value), &BigUint::from_bytes_be(&a.win_prob)),
            None => BigRational::zero(),
        }
    }

    /// The `Payment` for a segment with `count` tickets (§2.11, §5.7). `sender` and
    /// `expected_price` are always set; ticket fields only when `count` > 0.
    pub fn payment(&mut self, count: u32, expected_price: &PriceInfo) -> Result<Payment, PmError> {
        let mut p = Payment {
            sender: self.signer.address().to_vec(),
            expected_price: Some(expected_price.clone()),
            ..Default::default()
        };
        if count == 0 {
            return Ok(p);
        }
        let from_presigned = (count as usize).min(self.presigned.len());
        p.ticket_sender_params.extend(self.presigned.drain(..from_presigned));
        let fresh = self.sign(count - from_presigned as u32)?;
        p.ticket_sender_params.extend(fresh);
        let a = self.active.as_ref().ok_or(PmError::NoTicketParams)?;
        // The O's params echoed, fields 1–6; the expiration params travel separately.
        p.ticket_params = Some(TicketParams { expiration_params: None, ..a.wire.clone() });
        p.expiration_params = Some(a.expiration.clone());
        Ok(p)
    }

    /// Signs `count` tickets under the current params now, for the next payments.
    pub fn presign(&mut self, count: u32) -> Result<(), PmError> {
        let have = self.presigned.len() as u32;
        if count > have {
            let more = self.sign(count - have)?;
            self.presigned.extend(more);
        }
        Ok(())
    }

    /// Tickets signed ahead and not yet sent.
    pub fn presigned(&self) -> usize {
        self.presigned.len()
    }

    /// Signs `count` tickets with the next nonces.
    fn sign(&mut self, count: u32) -> Result<Vec<TicketSenderParams>, PmError> {
        let sender = self.signer.address();
        let a = self.active.as_mut().ok_or(PmError::NoTicketParams)?;
        if a.nonce.saturating_add(count) > MAX_SENDER_NONCES {
            return Err(PmError::NoncesExhausted);
        }
        let mut block_hash = [0u8; 32];
        if a.expiration.creation_round_block_hash.len() == 32 {
            block_hash.copy_from_slice(&a.expiration.creation_round_block_hash);
        }
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            a.nonce += 1;
            let ticket = Ticket {
                recipient: a.recipient,
                sender,
                face_value: a.face_value,
                win_prob: a.win_prob,
                sender_nonce: a.nonce,
                recipient_rand_hash: a.recipient_rand_hash,
                creation_round: a.expiration.creation_round,
                creation_round_block_hash: block_hash,
            };
            let sig = self.signer.personal_sign(&ticket.hash());
            out.push(TicketSenderParams { sender_nonce: a.nonce, sig: sig.to_vec() });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::recover_personal;

    fn rat(n: i64, d: i64) -> BigRational {
        BigRational::new(BigInt::from(n), BigInt::from(d))
    }

    #[test]
    fn expected_value_uses_two_to_the_256_minus_one() {
        assert_eq!(ticket_ev(&BigUint::from(1000u32), &max_win_prob()), rat(1000, 1));
        // 2^256 − 1 is divisible by 3 (2^256 ≡ 1 mod 3).
        assert_eq!(ticket_ev(&BigUint::from(3u32), &(max_win_prob() / 3u32)), rat(1, 1));
        assert_eq!(ticket_ev(&BigUint::from(5u32), &BigUint::zero()), rat(0, 1));
    }

    #[test]
    fn fee_of_the_spec_example() {
        // §5.6: 19 958 400 pixels × 1.02 = 20 357 568 × price.
        let price =
            price_per_pixel(&PriceInfo { price_per_unit: 3, pixels_per_unit: 2, ..Default::default() }).unwrap();
        assert_eq!(segment_fee(19_958_400, &price), rat(20_357_568 * 3, 2));
        assert!(price_per_pixel(&PriceInfo { price_per_unit: 1, pixels_per_unit: 0, ..Default::default() }).is_err());
    }

    #[test]
    fn ticket_counts() {
        let ev = rat(100, 1);
        assert_eq!(tickets_needed(&rat(0, 1), &rat(250, 1), &ev), TicketBatch { count: 3, new_credit: rat(300, 1) });
        assert_eq!(tickets_needed(&rat(300, 1), &rat(250, 1), &ev).count, 0, "credit covers it");
        assert_eq!(tickets_needed(&rat(0, 1), &rat(10, 1), &ev).count, 1, "at least one ticket's EV");
        assert_eq!(tickets_needed(&rat(-50, 1), &rat(250, 1), &ev).count, 3, "a debt is paid off too");
        assert_eq!(tickets_needed(&rat(0, 1), &rat(250, 1), &rat(0, 1)).count, 0, "EV 0: free");
    }

    #[test]
    fn balances_follow_go_livepeer() {
        let o = [7u8; 20];
        let mut b = Balances::default();
        let existing = b.reserve(o, "s1");
        assert_eq!(existing, rat(0, 1));
        b.settle(o, "s1", existing, rat(300, 1), rat(250, 1));
        assert_eq!(b.get(o, "s1"), rat(50, 1));
        let existing = b.reserve(o, "s1");
        assert_eq!(b.get(o, "s1"), rat(0, 1), "reserved");
        b.restore(o, "s1", existing);
        assert_eq!(b.get(o, "s1"), rat(50, 1));
        assert_eq!(b.get(o, "s2"), rat(0, 1), "sessions are separate");
    }

    fn params(seed: u8) -> TicketParams {
        TicketParams {
            recipient: vec![9; 20],
            face_value: vec![0x03, 0xe8],
            win_prob: vec![0xff; 31],
            recipient_rand_hash: vec![seed; 32],
            seed: vec![seed],
            expiration_block: vec![1, 0],
            expiration_params: Some(TicketExpirationParams {
                creation_round: 5,
                creation_round_block_hash: vec![2; 32],
            }),
        }
    }

    #[test]
    fn payments_carry_signed_tickets_with_rising_nonces() {
        let signer = EthSigner::from_hex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
        let me = signer.address();
        let mut s = TicketSender::new(signer);
        let price = PriceInfo { price_per_unit: 1, pixels_per_unit: 1, ..Default::default() };
        assert_eq!(s.payment(1, &price), Err(PmError::NoTicketParams));
        let zero = s.payment(0, &price).unwrap();
        assert_eq!((zero.sender.as_slice(), zero.ticket_params.is_none()), (&me[..], true));

        s.update_params(&params(1)).unwrap();
        let p = s.payment(3, &price).unwrap();
        let nonces: Vec<u32> = p.ticket_sender_params.iter().map(|t| t.sender_nonce).collect();
        assert_eq!(nonces, [1, 2, 3]);
        let tp = p.ticket_params.as_ref().unwrap();
        assert!(tp.expiration_params.is_none(), "nested field 7 is not echoed");
        assert_eq!(p.expiration_params.as_ref().unwrap().creation_round, 5);
        for t in &p.ticket_sender_params {
            let ticket = Ticket {
                recipient: [9; 20],
                sender: me,
                face_value: u256_from_minimal(&[0x03, 0xe8]).unwrap(),
                win_prob: u256_from_minimal(&[0xff; 31]).unwrap(),
                sender_nonce: t.sender_nonce,
                recipient_rand_hash: [1; 32],
                creation_round: 5,
                creation_round_block_hash: [2; 32],
            };
            assert_eq!(recover_personal(&ticket.hash(), &t.sig), Ok(me));
        }
        // The same params again keep counting; new params start over at 1.
        s.update_params(&params(1)).unwrap();
        assert_eq!(s.payment(1, &price).unwrap().ticket_sender_params[0].sender_nonce, 4);
        s.update_params(&params(2)).unwrap();
        assert_eq!(s.payment(1, &price).unwrap().ticket_sender_params[0].sender_nonce, 1);
        assert_eq!(s.payment(MAX_SENDER_NONCES, &price), Err(PmError::NoncesExhausted));
        assert!(s.ticket_ev() > rat(0, 1));
    }

    #[test]
    fn malformed_params_are_refused() {
        let mut s = TicketSender::new(EthSigner::from_hex(&"11".repeat(32)).unwrap());
        let mut p = params(1);
        p.recipient = vec![1; 19];
        assert_eq!(s.update_params(&p), Err(PmError::InvalidParams("recipient")));
        let mut p = params(1);
        p.face_value = vec![1; 33];
        assert_eq!(s.update_params(&p), Err(PmError::InvalidParams("face_value")));
    }

    #[test]
    fn presigned_tickets_are_used_first_and_dropped_with_their_params() {
        let signer = EthSigner::from_hex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
        let tp = |r: u8| TicketParams {
            recipient: vec![1; 20],
            face_value: vec![1, 0],
            win_prob: vec![1],
            recipient_rand_hash: vec![r; 32],
            ..Default::default()
        };
        let price = PriceInfo { price_per_unit: 1, pixels_per_unit: 1, ..Default::default() };
        let mut s = TicketSender::new(signer.clone());
        s.update_params(&tp(1)).unwrap();
        s.presign(3).unwrap();
        assert_eq!(s.presigned(), 3);
        let p = s.payment(2, &price).unwrap();
        assert_eq!(p.ticket_sender_params.iter().map(|t| t.sender_nonce).collect::<Vec<_>>(), [1, 2]);
        let p = s.payment(3, &price).unwrap();
        assert_eq!(p.ticket_sender_params.iter().map(|t| t.sender_nonce).collect::<Vec<_>>(), [3, 4, 5]);
        // Presigned tickets carry valid signatures for their nonce.
        let t = Ticket {
            recipient: [1; 20],
            sender: signer.address(),
            face_value: u256_from_minimal(&[1, 0]).unwrap(),
            win_prob: u256_from_minimal(&[1]).unwrap(),
            sender_nonce: 3,
            recipient_rand_hash: [1; 32],
            creation_round: 0,
            creation_round_block_hash: [0; 32],
        };
        assert_eq!(recover_personal(&t.hash(), &p.ticket_sender_params[0].sig), Ok(signer.address()));
        // New params: leftovers dropped, nonces restart.
        s.presign(2).unwrap();
        s.update_params(&tp(2)).unwrap();
        assert_eq!(s.presigned(), 0);
        let p = s.payment(1, &price).unwrap();
        assert_eq!(p.ticket_sender_params[0].sender_nonce, 1);
    }
}
