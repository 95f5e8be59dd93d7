//! The orchestrator's side of probabilistic micropayments (spec §5.4, §5.5, §5.8): quoting
//! ticket params with a recipientRand only it can rederive, validating and crediting the
//! tickets a gateway sends, and debiting transcoded pixels.

use std::collections::{HashMap, HashSet};

use hmac::{Hmac, Mac};
use num_bigint::{BigInt, BigUint};
use num_rational::BigRational;
use num_traits::Zero;
use sha2::Sha256;
use transport::credentials::{Ticket, keccak256, u256_from_minimal};
use transport::identity::{Address, recover_personal};
use transport::pm::{MAX_SENDER_NONCES, max_win_prob, ticket_ev};
use transport::proto::{Payment, PriceInfo, TicketExpirationParams, TicketParams};

use crate::auth::minimal_be;

/// Default expected value of one ticket (go-livepeer `-ticketEV`), in wei.
pub const DEFAULT_TICKET_EV: u64 = 8_000_000_000;
/// Ticket params expire this many L1 blocks after the last seen one.
pub const EXPIRATION_BLOCKS: u64 = 40;

/// A ticket or payment the orchestrator refuses; the text is go-livepeer's (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// Sender missing or zero.
    #[error("invalid ticket sender")]
    Sender,
    /// Tickets for another recipient.
    #[error("invalid ticket recipient")]
    Recipient,
    /// The params were not quoted by this orchestrator (or were altered).
    #[error("invalid recipientRand for ticket recipientRandHash")]
    RecipientRand,
    /// Past their expiration block.
    #[error("{}", transport::refusal::wire::TICKET_PARAMS_EXPIRED)]
    Expired,
    /// A nonce used before, or too many nonces.
    #[error("invalid ticket senderNonce: already seen or over the limit")]
    Nonce,
    /// A signature that does not recover to the sender.
    #[error("invalid ticket signature")]
    Signature,
    /// Malformed numbers or hashes.
    #[error("malformed ticket params")]
    Malformed,
}

impl TicketError {
    /// True when a gateway cures it by opening a new session (fresh params, nonces
    /// from 1): go-livepeer's gateway retries these on the same orchestrator.
    pub fn cured_by_new_session(&self) -> bool {
        matches!(self, TicketError::RecipientRand | TicketError::Expired | TicketError::Nonce)
    }
}

/// Quotes ticket params, checks tickets and keeps sender balances.
pub struct Recipient {
    address: Address,
    secret: Vec<u8>,
    ticket_ev: BigUint,
    nonces: HashMap<[u8; 32], HashSet<u32>>,
    balances: HashMap<(Address, String), BigRational>,
    highest_nonce: HashMap<[u8; 32], u32>,
    /// Winning tickets seen (for the operator; no chain to redeem on here).
    pub winning_tickets: u64,
    /// Valid tickets received.
    pub tickets_received: u64,
    /// Tickets whose nonce was not above every earlier nonce for the same params.
    pub nonces_out_of_order: u64,
    /// Sum of the expected value of every valid ticket, in wei.
    pub total_credited: BigRational,
    /// Sum of every fee charged, in wei.
    pub total_debited: BigRational,
}

impl Recipient {
    /// A recipient with address `address`, HMAC `secret` and target ticket EV in wei.
    pub fn new(address: Address, secret: &[u8], ticket_ev: u64) -> Self {
        Recipient {
            address,
            secret: secret.to_vec(),
            ticket_ev: BigUint::from(ticket_ev),
            nonces: HashMap::new(),
            balances: HashMap::new(),
            highest_nonce: HashMap::new(),
            winning_tickets: 0,
            tickets_received: 0,
            nonces_out_of_order: 0,
            total_credited: BigRational::zero(),
            total_debited: BigRational::zero(),
        }
    }

    /// recipientRand = HMAC-SHA256(secret, seed ‖ sender ‖ faceValue ‖ winProb ‖
    /// expirationBlock ‖ price.num ‖ price.den ‖ auxData) (§5.4), price reduced.
    fn recipient_rand(&self, tp: &TicketParams, sender: &Address, price: &PriceInfo, aux: &[u8]) -> [u8; 32] {
        let mut m = <Hmac<Sha256>>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        let (num, den) = reduced(price);
        for part in [&tp.seed[..], sender, &tp.face_value, &tp.win_prob, &tp.expiration_block, &num, &den, aux] {
            m.update(part);
        }
        m.finalize().into_bytes().into()
    }

    /// Ticket params for `sender` at `price`, quoted at L1 block `block` (§5.5): face value
    /// 100 × ticket EV (no gas price without a chain), win probability making one ticket
    /// worth the EV; zero price quotes zero.
    pub fn quote(
        &self,
        sender: &Address,
        price: &PriceInfo,
        seed: [u8; 32],
        block: u64,
        round: &TicketExpirationParams,
    ) -> TicketParams {
        let (face_value, win_prob) = if price.price_per_unit == 0 {
            (BigUint::zero(), BigUint::zero())
        } else {
            let fv = &self.ticket_ev * 100u32;
            let wp = &self.ticket_ev * div_ceil(&max_win_prob(), &fv);
            (fv, wp.min(max_win_prob()))
        };
        let mut tp = TicketParams {
            recipient: self.address.to_vec(),
            face_value: face_value.to_bytes_be_minimal(),
            win_prob: win_prob.to_bytes_be_minimal(),
            seed: seed.to_vec(),
            expiration_block: minimal_be(block + EXPIRATION_BLOCKS),
            expiration_params: Some(round.clone()),
            ..Default::default()
        };
        let rand = self.recipient_rand(&tp, sender, price, &aux_data(round));
        tp.recipient_rand_hash = keccak256(&rand).to_vec();
        tp
    }

    /// Validates the tickets of `payment` for session `session` at L1 block `latest_block`
    /// and credits their expected value (§5.8). Returns the value credited.
    pub fn receive(&mut self, payment: &Payment, session: &str, latest_block: u64) -> Result<BigRational, TicketError> {
        let Some(tp) = &payment.ticket_params else { return Ok(BigRational::zero()) };
        if payment.ticket_sender_params.is_empty() {
            return Ok(BigRational::zero());
        }
        let sender: Address = payment.sender.as_slice().try_into().map_err(|_| TicketError::Sender)?;
        if sender == [0; 20] {
            return Err(TicketError::Sender);
        }
        if tp.recipient != self.address {
            return Err(TicketError::Recipient);
        }
        let price = payment.expected_price.clone().unwrap_or_default();
        let expiration = payment.expiration_params.clone().unwrap_or_default();
        let rand = self.recipient_rand(tp, &sender, &price, &aux_data(&expiration));
        if keccak256(&rand).as_slice() != tp.recipient_rand_hash.as_slice() {
            return Err(TicketError::RecipientRand);
        }
        if BigUint::from_bytes_be(&tp.expiration_block) <= BigUint::from(latest_block) {
            return Err(TicketError::Expired);
        }
        let fv = u256_from_minimal(&tp.face_value).ok_or(TicketError::Malformed)?;
        let wp = u256_from_minimal(&tp.win_prob).ok_or(TicketError::Malformed)?;
        let mut block_hash = [0u8; 32];
        if expiration.creation_round_block_hash.len() == 32 {
            block_hash.copy_from_slice(&expiration.creation_round_block_hash);
        }
        let rand_hash: [u8; 32] = tp.recipient_rand_hash.as_slice().try_into().map_err(|_| TicketError::Malformed)?;
        let ev = ticket_ev(&BigUint::from_bytes_be(&fv), &BigUint::from_bytes_be(&wp));
        let seen = self.nonces.entry(rand_hash).or_default();
        let mut credited = BigRational::zero();
        for sp in &payment.ticket_sender_params {
            if seen.contains(&sp.sender_nonce) || seen.len() as u32 >= MAX_SENDER_NONCES {
                return Err(TicketError::Nonce);
            }
            let ticket = Ticket {
                recipient: self.address,
                sender,
                face_value: fv,
                win_prob: wp,
                sender_nonce: sp.sender_nonce,
                recipient_rand_hash: rand_hash,
                creation_round: expiration.creation_round,
                creation_round_block_hash: block_hash,
            };
            if recover_personal(&ticket.hash(), &sp.sig) != Ok(sender) {
                return Err(TicketError::Signature);
            }
            seen.insert(sp.sender_nonce);
            let highest = self.highest_nonce.entry(rand_hash).or_insert(0);
            if sp.sender_nonce <= *highest {
                self.nonces_out_of_order += 1;
            }
            *highest = (*highest).max(sp.sender_nonce);
            self.tickets_received += 1;
            // Win test: keccak256(sig ‖ recipientRand) < winProb.
            let mut w = sp.sig.clone();
            w.extend_from_slice(&rand);
            if BigUint::from_bytes_be(&keccak256(&w)) < BigUint::from_bytes_be(&wp) {
                self.winning_tickets += 1;
            }
            credited += &ev;
        }
        *self.balances.entry((sender, session.to_owned())).or_insert_with(BigRational::zero) += &credited;
        self.total_credited += &credited;
        Ok(credited)
    }

    /// Charges `pixels` at `price` to (sender, session).
    pub fn debit(&mut self, sender: Address, session: &str, pixels: u64, price: &PriceInfo) {
        if price.pixels_per_unit <= 0 {
            return;
        }
        let cost = BigRational::new(BigInt::from(pixels) * price.price_per_unit, BigInt::from(price.pixels_per_unit));
        *self.balances.entry((sender, session.to_owned())).or_insert_with(BigRational::zero) -= &cost;
        self.total_debited += cost;
    }

    /// The balance of (sender, session).
    pub fn balance(&self, sender: Address, session: &str) -> BigRational {
        self.balances.get(&(sender, session.to_owned())).cloned().unwrap_or_else(BigRational::zero)
    }

    /// True if (sender, session) holds at least one ticket's EV (§4.2 step 5).
    pub fn has_enough(&self, sender: Address, session: &str) -> bool {
        self.balance(sender, session) >= BigRational::from_integer(BigInt::from(self.ticket_ev.clone()))
    }
}

fn div_ceil(a: &BigUint, b: &BigUint) -> BigUint {
    let (q, r) = (a / b, a % b);
    if r.is_zero() { q } else { q + 1u32 }
}

/// auxData (§5.2): creation round ‖ block hash, empty when both are zero.
fn aux_data(e: &TicketExpirationParams) -> Vec<u8> {
    let zero_hash = e.creation_round_block_hash.iter().all(|&b| b == 0);
    if e.creation_round == 0 && zero_hash {
        return Vec::new();
    }
    let mut v = transport::credentials::u256_from_u64(e.creation_round as u64).to_vec();
    let mut h = [0u8; 32];
    let n = e.creation_round_block_hash.len().min(32);
    h[32 - n..].copy_from_slice(&e.creation_round_block_hash[..n]);
    v.extend_from_slice(&h);
    v
}

/// The price as a reduced fraction, each side as minimal big-endian bytes.
fn reduced(p: &PriceInfo) -> (Vec<u8>, Vec<u8>) {
    if p.pixels_per_unit <= 0 {
        return (minimal_be(p.price_per_unit.max(0) as u64), minimal_be(p.pixels_per_unit.max(0) as u64));
    }
    let r = BigRational::new(BigInt::from(p.price_per_unit), BigInt::from(p.pixels_per_unit));
    (r.numer().magnitude().to_bytes_be_minimal(), r.denom().magnitude().to_bytes_be_minimal())
}

trait MinimalBytes {
    fn to_bytes_be_minimal(&self) -> Vec<u8>;
}

impl MinimalBytes for BigUint {
    /// Go's `big.Int.Bytes()`: zero is empty.
    fn to_bytes_be_minimal(&self) -> Vec<u8> {
        if self.is_zero() { Vec::new() } else { self.to_bytes_be() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transport::identity::EthSigner;
    use transport::pm::TicketSender;

    fn setup() -> (Recipient, TicketSender, Address, PriceInfo, TicketParams) {
        let o = EthSigner::from_hex(&"22".repeat(32)).unwrap();
        let b = EthSigner::from_hex(&"33".repeat(32)).unwrap();
        let b_addr = b.address();
        let r = Recipient::new(o.address(), b"o-secret", DEFAULT_TICKET_EV);
        let price = PriceInfo { price_per_unit: 12, pixels_per_unit: 4, ..Default::default() };
        let round = TicketExpirationParams { creation_round: 7, creation_round_block_hash: vec![5; 32] };
        let tp = r.quote(&b_addr, &price, [9; 32], 1000, &round);
        let mut s = TicketSender::new(b);
        s.update_params(&tp).unwrap();
        (r, s, b_addr, price, tp)
    }

    #[test]
    fn quoted_tickets_are_accepted_and_credited() {
        let (mut r, mut s, b, price, _) = setup();
        // One ticket is worth the target EV (within the ceil of the win probability).
        let ev = s.ticket_ev();
        let target = BigRational::from_integer(BigInt::from(DEFAULT_TICKET_EV));
        assert!(ev >= target && ev < target.clone() * BigRational::new(BigInt::from(1001), BigInt::from(1000)));
        let p = s.payment(3, &price).unwrap();
        let credited = r.receive(&p, "sess", 1010).unwrap();
        assert_eq!(credited, ev.clone() * BigInt::from(3));
        assert!(r.has_enough(b, "sess"));
        r.debit(b, "sess", 1000, &price);
        assert_eq!(r.balance(b, "sess"), ev * BigInt::from(3) - BigRational::from_integer(BigInt::from(3000)));
    }

    #[test]
    fn rejections() {
        let (mut r, mut s, _, price, _) = setup();
        let p = s.payment(1, &price).unwrap();
        assert_eq!(r.receive(&p, "sess", 1040), Err(TicketError::Expired), "expiration block reached");
        r.receive(&p, "sess", 1000).unwrap();
        assert_eq!(r.receive(&p, "sess", 1000), Err(TicketError::Nonce), "replayed nonce");
        // A gateway that changes the price it claims breaks the recipientRand.
        let mut other_price = s.payment(1, &price).unwrap();
        other_price.expected_price = Some(PriceInfo { price_per_unit: 1, pixels_per_unit: 4, ..Default::default() });
        assert_eq!(r.receive(&other_price, "sess", 1000), Err(TicketError::RecipientRand));
        // The same ratio written differently is fine (the price is reduced).
        let mut same_ratio = s.payment(1, &price).unwrap();
        same_ratio.expected_price = Some(PriceInfo { price_per_unit: 3, pixels_per_unit: 1, ..Default::default() });
        assert!(r.receive(&same_ratio, "sess", 1000).is_ok());
        // A tampered signature.
        let mut bad = s.payment(1, &price).unwrap();
        bad.ticket_sender_params[0].sig[10] ^= 1;
        assert_eq!(r.receive(&bad, "sess", 1000), Err(TicketError::Signature));
        // Tickets for someone else.
        let mut elsewhere = s.payment(1, &price).unwrap();
        elsewhere.ticket_params.as_mut().unwrap().recipient = vec![1; 20];
        assert_eq!(r.receive(&elsewhere, "sess", 1000), Err(TicketError::Recipient));
        // No tickets: nothing to check, nothing credited.
        assert_eq!(r.receive(&s.payment(0, &price).unwrap(), "sess", 1000), Ok(BigRational::zero()));
    }

    #[test]
    fn free_orchestrator_quotes_zero() {
        let r = Recipient::new([1; 20], b"s", DEFAULT_TICKET_EV);
        let tp = r.quote(
            &[2; 20],
            &PriceInfo { price_per_unit: 0, pixels_per_unit: 1, ..Default::default() },
            [0; 32],
            1,
            &Default::default(),
        );
        assert!(tp.face_value.is_empty() && tp.win_prob.is_empty());
    }
}
