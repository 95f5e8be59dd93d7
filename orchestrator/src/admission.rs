//! Admitting a `POST /segment` (spec §4.2), in go-livepeer's order and with its status
//! codes: payment header (402), segment header and its credentials (403), payment
//! processing (400), balance (400), then the body's hash (403).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;
use transport::capabilities::compatible;
use transport::credentials::{flatten_segment, keccak256};
use transport::identity::{Address, recover_personal};
use transport::proto::{Capabilities, Payment, Profile, SegData, VideoCodec, VideoProfile};
use transport::refusal::{FailureReason, wire};

use crate::auth::{AuthError, AuthTokens};
use crate::recipient::{Recipient, TicketError};

/// Longest segment accepted, in milliseconds.
pub const MAX_DURATION_MS: i32 = 300_000;

/// Why a segment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// `Livepeer-Payment` is not base64 protobuf.
    #[error("base64 decode error: {0}")]
    PaymentEncoding(String),
    /// `Livepeer-Segment` is not base64 protobuf.
    #[error("ErrorSegEncoding")]
    SegEncoding,
    /// Duration below 0 or above 300 s.
    #[error("invalid segment duration")]
    Duration,
    /// An enum value outside its range in a profile.
    #[error("invalid profile")]
    Profile,
    /// The segment credentials do not verify against the payment's sender.
    #[error("{}", wire::SEG_SIG)]
    SegSig,
    /// The job needs capabilities this orchestrator lacks.
    #[error("incompatible capabilities")]
    Capabilities,
    /// Auth token missing, forged or expired.
    #[error("{0}")]
    Auth(AuthError),
    /// A ticket problem.
    #[error("{0}")]
    Payment(TicketError),
    /// Not enough credit for a priced session.
    #[error("{}", wire::INSUFFICIENT_BALANCE)]
    InsufficientBalance,
    /// keccak256(body) differs from SegData.hash.
    #[error("Forbidden")]
    Hash,
}

impl Rejection {
    /// The HTTP status go-livepeer answers with. The only place statuses are chosen.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::PaymentEncoding(_) => 402,
            Rejection::Payment(_) | Rejection::InsufficientBalance => 400,
            Rejection::SegEncoding
            | Rejection::Duration
            | Rejection::Profile
            | Rejection::SegSig
            | Rejection::Capabilities
            | Rejection::Auth(_)
            | Rejection::Hash => 403,
        }
    }
}

impl Rejection {
    /// What a gateway makes of this refusal (its `transport::refusal::classify_http`
    /// reads the status and body back into this reason).
    pub fn reason(&self) -> FailureReason {
        match self {
            Rejection::InsufficientBalance => FailureReason::TicketParams,
            Rejection::Payment(e) if e.cured_by_new_session() => FailureReason::TicketParams,
            Rejection::Auth(_) => FailureReason::Auth,
            Rejection::SegSig => FailureReason::SegmentSignature,
            _ => FailureReason::Http4xx,
        }
    }
}

/// A segment whose headers passed; the body is checked next.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The decoded segment metadata.
    pub seg: SegData,
    /// The output profiles (from whichever `fullProfiles*` field carried them).
    pub profiles: Vec<VideoProfile>,
    /// Duration in ms (0 in the request means 2000).
    pub duration_ms: i32,
    /// The paying gateway (zero off-chain).
    pub sender: Address,
    /// The auth token's session id.
    pub session_id: String,
    /// The payment as sent.
    pub payment: Payment,
}

/// The orchestrator's checks for incoming segments.
pub struct SegmentGate {
    /// Token minting and checking.
    pub auth: AuthTokens,
    /// Ticket checking and balances (on-chain mode).
    pub recipient: Option<Recipient>,
    /// What this orchestrator can do.
    pub capabilities: Capabilities,
}

impl SegmentGate {
    /// Admits a segment: [`SegmentGate::verify`] then [`SegmentGate::pay`].
    pub fn admit(
        &mut self,
        segment_header: &str,
        payment_header: &str,
        now: i64,
        latest_block: u64,
    ) -> Result<Admitted, Rejection> {
        let admitted = self.verify(segment_header, payment_header, now)?;
        self.pay(&admitted, latest_block)?;
        Ok(admitted)
    }

    /// The checks before any payment is taken (§4.2 steps 1–5): the payment header
    /// decodes (402), the segment header decodes and its credentials verify against the
    /// payment's sender, its capabilities are compatible and its auth token is valid at
    /// `now` (403). AI jobs check capacity between this and [`SegmentGate::pay`], so a
    /// job refused for capacity costs the gateway nothing.
    pub fn verify(&self, segment_header: &str, payment_header: &str, now: i64) -> Result<Admitted, Rejection> {
        let payment = if payment_header.is_empty() {
            Payment::default()
        } else {
            let raw = STANDARD.decode(payment_header).map_err(|e| Rejection::PaymentEncoding(e.to_string()))?;
            Payment::decode(raw.as_slice()).map_err(|e| Rejection::PaymentEncoding(e.to_string()))?
        };
        let raw = STANDARD.decode(segment_header).map_err(|_| Rejection::SegEncoding)?;
        let seg = SegData::decode(raw.as_slice()).map_err(|_| Rejection::SegEncoding)?;
        let duration_ms = match seg.duration {
            0 => 2000,
            d if !(0..=MAX_DURATION_MS).contains(&d) => return Err(Rejection::Duration),
            d => d,
        };
        let profiles = [&seg.full_profiles3, &seg.full_profiles2, &seg.full_profiles]
            .into_iter()
            .find(|l| !l.is_empty())
            .cloned()
            .unwrap_or_default();
        for p in &profiles {
            if Profile::try_from(p.profile).is_err() || VideoCodec::try_from(p.encoder).is_err() {
                return Err(Rejection::Profile);
            }
        }
        let sender: Address = payment.sender.as_slice().try_into().unwrap_or([0; 20]);
        if self.recipient.is_some() {
            // Off-chain orchestrators skip signatures (§3.2).
            let hash: [u8; 32] = seg.hash.as_slice().try_into().map_err(|_| Rejection::SegSig)?;
            let flat =
                flatten_segment(&seg.manifest_id, seg.seq as u64, &hash, profiles.iter().map(|p| p.name.as_str()));
            if recover_personal(&keccak256(&flat), &seg.sig) != Ok(sender) || sender == [0; 20] {
                return Err(Rejection::SegSig);
            }
        }
        let job = seg.capabilities.clone().unwrap_or_default();
        if !compatible(&job, &self.capabilities) {
            return Err(Rejection::Capabilities);
        }
        self.auth.verify(seg.auth_token.as_ref(), now).map_err(Rejection::Auth)?;
        let session_id = seg.auth_token.as_ref().map(|t| t.session_id.clone()).unwrap_or_default();
        Ok(Admitted { seg, profiles, duration_ms, sender, session_id, payment })
    }

    /// Takes a verified request's payment (§4.2 step 6): its tickets (400 on a bad one)
    /// and, when priced, enough credit for the session (400).
    pub fn pay(&mut self, admitted: &Admitted, latest_block: u64) -> Result<(), Rejection> {
        if let Some(r) = self.recipient.as_mut() {
            r.receive(&admitted.payment, &admitted.session_id, latest_block).map_err(Rejection::Payment)?;
            let priced = admitted.payment.expected_price.as_ref().is_some_and(|p| p.price_per_unit > 0);
            if priced && !r.has_enough(admitted.sender, &admitted.session_id) {
                return Err(Rejection::InsufficientBalance);
            }
        }
        Ok(())
    }

    /// Checks the body against the admitted metadata (§4.2 step 7).
    pub fn check_body(admitted: &Admitted, body: &[u8]) -> Result<(), Rejection> {
        if keccak256(body).as_slice() == admitted.seg.hash.as_slice() { Ok(()) } else { Err(Rejection::Hash) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_refusal_reads_back_as_its_reason() {
        use crate::auth::AuthError;
        let all = [
            Rejection::PaymentEncoding("x".into()),
            Rejection::SegEncoding,
            Rejection::Duration,
            Rejection::Profile,
            Rejection::SegSig,
            Rejection::Capabilities,
            Rejection::Auth(AuthError::Expired),
            Rejection::Auth(AuthError::Missing),
            Rejection::Payment(TicketError::Expired),
            Rejection::Payment(TicketError::RecipientRand),
            Rejection::Payment(TicketError::Nonce),
            Rejection::Payment(TicketError::Signature),
            Rejection::InsufficientBalance,
            Rejection::Hash,
        ];
        for r in all {
            let read = transport::refusal::classify_http(r.status(), &r.to_string());
            assert_eq!(read.reason, r.reason(), "{r:?} sent as {} {r}", r.status());
        }
    }

    use super::*;
    use crate::recipient::DEFAULT_TICKET_EV;
    use transport::capabilities::job_capabilities;
    use transport::identity::EthSigner;
    use transport::pm::{TicketSender, price_per_pixel, segment_fee, tickets_needed};
    use transport::profiles::{DEFAULT_TRANSCODING_OPTIONS, estimated_pixels, parse_transcoding_options};
    use transport::proto::{PriceInfo, TicketExpirationParams};
    use transport::segment::{SegmentRequest, payment_header, seg_data, segment_header};

    const NOW: i64 = 1_700_000_000;
    const BLOCK: u64 = 5_000;

    struct World {
        gate: SegmentGate,
        gw: EthSigner,
        sender: TicketSender,
        price: PriceInfo,
        token: transport::proto::AuthToken,
    }

    fn world(priced: bool) -> World {
        let o = EthSigner::from_hex(&"44".repeat(32)).unwrap();
        let gw = EthSigner::from_hex(&"55".repeat(32)).unwrap();
        let recipient = Recipient::new(o.address(), b"secret", DEFAULT_TICKET_EV);
        let price =
            PriceInfo { price_per_unit: if priced { 1000 } else { 0 }, pixels_per_unit: 1, ..Default::default() };
        let round = TicketExpirationParams { creation_round: 3, creation_round_block_hash: vec![8; 32] };
        let tp = recipient.quote(&gw.address(), &price, [1; 32], BLOCK, &round);
        let mut sender = TicketSender::new(gw.clone());
        sender.update_params(&tp).unwrap();
        let auth = AuthTokens::new(b"auth-secret");
        let token = auth.mint([1, 2, 3, 4], NOW);
        let caps = Capabilities { bitstring: vec![u64::MAX], ..Default::default() };
        World { gate: SegmentGate { auth, recipient: Some(recipient), capabilities: caps }, gw, sender, price, token }
    }

    /// What a gateway sends for `body`: headers built by the transport crate, paying for
    /// the default profiles as go-livepeer would.
    fn request(w: &mut World, seq: u64, body: &[u8], underpay: bool) -> (String, String) {
        let profiles = parse_transcoding_options(DEFAULT_TRANSCODING_OPTIONS).unwrap();
        let caps = job_capabilities(&profiles, false, "");
        let req = SegmentRequest {
            hash: None,
            manifest_id: "stream",
            seq,
            data: body,
            duration_ms: 2000,
            profiles: &profiles,
            capabilities: &caps,
            auth_token: Some(&w.token),
        };
        let sd = seg_data(&req, Some(&w.gw));
        let fee = segment_fee(estimated_pixels(&profiles, 2.0), &price_per_pixel(&w.price).unwrap());
        let mut batch = tickets_needed(&Default::default(), &fee, &w.sender.ticket_ev());
        if underpay {
            batch.count = 0;
        }
        let payment = w.sender.payment(batch.count, &w.price).unwrap();
        (segment_header(&sd), payment_header(Some(&payment)))
    }

    #[test]
    fn a_paid_segment_is_admitted() {
        let mut w = world(true);
        let (seg, pay) = request(&mut w, 0, b"segment bytes", false);
        let a = w.gate.admit(&seg, &pay, NOW, BLOCK).unwrap();
        assert_eq!(a.session_id, "01020304");
        assert_eq!(a.profiles.len(), 2);
        assert_eq!(a.sender, w.gw.address());
        assert_eq!(SegmentGate::check_body(&a, b"segment bytes"), Ok(()));
        assert_eq!(SegmentGate::check_body(&a, b"other bytes").map_err(|e| e.status()), Err(403));
    }

    #[test]
    fn each_failure_gets_the_spec_status() {
        let mut w = world(true);
        // Tampered segment signature: 403.
        let (seg, pay) = request(&mut w, 1, b"x", false);
        let mut sd = SegData::decode(STANDARD.decode(&seg).unwrap().as_slice()).unwrap();
        sd.sig[5] ^= 1;
        let r = w.gate.admit(&segment_header(&sd), &pay, NOW, BLOCK).unwrap_err();
        assert_eq!((r.clone(), r.status()), (Rejection::SegSig, 403));
        // Stale ticket params (expiration block passed): 400.
        let (seg, pay) = request(&mut w, 2, b"x", false);
        let r = w.gate.admit(&seg, &pay, NOW, BLOCK + 100).unwrap_err();
        assert_eq!((r.clone(), r.status()), (Rejection::Payment(TicketError::Expired), 400));
        // Underpayment on a fresh session: 400 Insufficient balance.
        let (seg, pay) = request(&mut w, 3, b"x", true);
        let r = w.gate.admit(&seg, &pay, NOW, BLOCK).unwrap_err();
        assert_eq!((r.clone(), r.status()), (Rejection::InsufficientBalance, 400));
        // Expired auth token: 403.
        let (seg, pay) = request(&mut w, 4, b"x", false);
        let r = w.gate.admit(&seg, &pay, NOW + 3600, BLOCK).unwrap_err();
        assert_eq!((r.clone(), r.status()), (Rejection::Auth(AuthError::Expired), 403));
        // Garbage headers.
        assert_eq!(w.gate.admit("%%%", "", NOW, BLOCK).unwrap_err().status(), 403);
        assert_eq!(w.gate.admit(&seg, "not base64!", NOW, BLOCK).unwrap_err().status(), 402);
        // A job this orchestrator cannot do.
        w.gate.capabilities = Capabilities { bitstring: vec![0b11], ..Default::default() };
        let (seg, pay) = request(&mut w, 5, b"x", false);
        assert_eq!(w.gate.admit(&seg, &pay, NOW, BLOCK).unwrap_err(), Rejection::Capabilities);
    }

    #[test]
    fn off_chain_needs_no_signature_or_payment() {
        let mut w = world(false);
        w.gate.recipient = None;
        let profiles = parse_transcoding_options(DEFAULT_TRANSCODING_OPTIONS).unwrap();
        let caps = job_capabilities(&profiles, false, "");
        let req = SegmentRequest {
            hash: None,
            manifest_id: "s",
            seq: 0,
            data: b"abc",
            duration_ms: 0,
            profiles: &profiles,
            capabilities: &caps,
            auth_token: Some(&w.token),
        };
        let sd = seg_data(&req, None);
        let a = w.gate.admit(&segment_header(&sd), &payment_header(None), NOW, BLOCK).unwrap();
        assert_eq!(a.duration_ms, 2000, "0 means 2 s");
        assert_eq!(SegmentGate::check_body(&a, b"abc"), Ok(()));
    }
}
