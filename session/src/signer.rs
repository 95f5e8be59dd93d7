//! The remote signer's decisions (spec `livepeer-transcode-protocol.md` §6), without IO:
//! what `POST /sign-orchestrator-info` and `POST /generate-live-payment` answer for a key,
//! a request and `now`. `sluice signer` serves them over HTTP; any gateway that speaks the
//! API (go-livepeer, the Python SDK, Sluice) pays through it.
//!
//! The signer keeps nothing between calls: a caller's balance, nonce and last payment
//! time travel in the `state` it sends back, signed by the signer's own key (so a caller
//! cannot forge credit). Each call:
//! 1. checks the orchestrator's info (ticket params and a price are required; params that
//!    cannot be used or an expired auth token answer 480, "refresh the session");
//! 2. restores the state, if any, after checking its signature;
//! 3. prices the units since the last call at the session's first price (`lv2v`: 720p30
//!    pixels per second, 60 s on the first call; `live`: seconds, 10 s first; `fixed`: 1;
//!    empty: `inPixels`);
//! 4. signs enough tickets to cover the fee from the carried balance (482 while the
//!    balance still covers it, 400 over 100), the `Payment`, and segment credentials for
//!    an empty segment. A ticket's value above the fee stays as credit for the next
//!    calls, so with large tickets most calls answer 482;
//! 5. returns the new state, signed.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{Signed, ToPrimitive, Zero};
use prost::Message;
use serde::{Deserialize, Serialize};
use transport::credentials::{flatten_segment, keccak256};
use transport::identity::{EthSigner, eip55, recover_personal};
use transport::pm::{TicketSender, price_per_pixel};
use transport::proto::{Capabilities, OrchestratorInfo, SegData};

/// Tickets one call may sign.
pub const MAX_TICKETS: u32 = 100;

/// A signer answer other than 200: the HTTP status and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct SignerError {
    /// 400 bad input, 480 refresh the session, 481 price too high, 482 nothing to pay.
    pub status: u16,
    /// What went wrong.
    pub message: String,
    /// With 480: the orchestrator to ask again (`Livepeer-Orchestrator-URL`).
    pub orchestrator: Option<String>,
}

fn err(status: u16, message: impl Into<String>) -> SignerError {
    SignerError { status, message: message.into(), orchestrator: None }
}

/// `{"State": base64, "Sig": base64}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SignedState {
    /// The state's JSON, base64.
    #[serde(rename = "State")]
    pub state: String,
    /// The signer's signature over those JSON bytes, base64.
    #[serde(rename = "Sig")]
    pub sig: String,
}

/// `ceiling`: the highest price the caller accepts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MaxPrice {
    /// Wei per unit.
    pub price: f64,
    /// `wei`.
    #[serde(default)]
    pub currency: String,
    /// `seconds`, `720p-pixel-seconds` or `fixed`.
    #[serde(default)]
    pub unit: String,
}

/// The body of `POST /generate-live-payment`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PaymentRequest {
    /// The orchestrator's `OrchestratorInfo`, base64 protobuf.
    #[serde(default)]
    pub orchestrator: String,
    /// The state from the previous answer.
    #[serde(default)]
    pub state: Option<SignedState>,
    /// The job's manifest id (Go matches the key case-insensitively).
    #[serde(default, rename = "ManifestID", alias = "manifestID", alias = "manifestId", alias = "manifest_id")]
    pub manifest_id: String,
    /// The caller's app name (must match the state's).
    #[serde(default)]
    pub app: String,
    /// Units to pay for when `type` is empty.
    #[serde(default, rename = "inPixels")]
    pub in_pixels: i64,
    /// `""`, `live`, `lv2v` or `fixed`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// A price ceiling.
    #[serde(default, rename = "maxPrice")]
    pub max_price: Option<MaxPrice>,
    /// The job's capabilities, base64 protobuf.
    #[serde(default)]
    pub capabilities: String,
}

/// The answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PaymentResponse {
    /// `Livepeer-Payment`: base64 `Payment`.
    pub payment: String,
    /// `Livepeer-Segment`: base64 `SegData`.
    #[serde(rename = "segCreds")]
    pub seg_creds: String,
    /// The state to send next time.
    pub state: SignedState,
}

/// What the signer carries between calls, inside the signed state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct State {
    #[serde(rename = "StateID")]
    state_id: String,
    orchestrator_address: String,
    manifest_id: String,
    app: String,
    #[serde(rename = "Type")]
    kind: String,
    /// Unix milliseconds of the last payment.
    last_update: u64,
    /// The nonce of the last ticket under `recipient_rand_hash`.
    sender_nonce: u32,
    recipient_rand_hash: String,
    /// Credit carried, wei, as `numerator/denominator`.
    balance: String,
    initial_price_per_unit: i64,
    initial_pixels_per_unit: i64,
    sequence_number: u64,
}

/// The signer: a key.
pub struct Signer {
    key: EthSigner,
}

/// Units of a call of `kind` covering `elapsed` (or the first call when `None`).
fn units(kind: &str, elapsed: Option<Duration>, in_pixels: i64) -> Result<BigRational, SignerError> {
    let secs = |first: f64| BigRational::from_float(elapsed.map_or(first, |d| d.as_secs_f64())).unwrap_or_default();
    Ok(match kind {
        "lv2v" => secs(60.0) * BigRational::from_integer(BigInt::from(transport::live::PIXELS_PER_SECOND)),
        "live" => secs(10.0),
        "fixed" => BigRational::from_integer(BigInt::from(1)),
        "" if in_pixels >= 0 => BigRational::from_integer(BigInt::from(in_pixels)),
        "" => return Err(err(400, "inPixels is negative")),
        other => return Err(err(400, format!("unknown payment type {other:?}"))),
    })
}

fn decode<M: Message + Default>(what: &str, b64: &str) -> Result<M, SignerError> {
    let raw = STANDARD.decode(b64).map_err(|e| err(400, format!("{what}: {e}")))?;
    M::decode(raw.as_slice()).map_err(|e| err(400, format!("{what}: {e}")))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn ratio_text(r: &BigRational) -> String {
    format!("{}/{}", r.numer(), r.denom())
}

fn parse_ratio(s: &str) -> Option<BigRational> {
    let (n, d) = s.split_once('/')?;
    let (n, d): (BigInt, BigInt) = (n.parse().ok()?, d.parse().ok()?);
    (!d.is_zero()).then(|| BigRational::new(n, d))
}

impl Signer {
    /// A signer with `key`.
    pub fn new(key: EthSigner) -> Self {
        Signer { key }
    }

    /// `POST /sign-orchestrator-info`: the EIP-55 address and the static signature over
    /// it that `OrchestratorRequest` carries (§3.3), both `0x` hex.
    pub fn orchestrator_info_signature(&self) -> (String, String) {
        let address = eip55(&self.key.address());
        let sig = self.key.sign_message(address.as_bytes());
        (address, format!("0x{}", hex::encode(sig)))
    }

    fn sign_state(&self, s: &State) -> SignedState {
        let json = serde_json::to_vec(s).expect("a state serialises");
        let sig = self.key.sign_message(&json);
        SignedState { state: STANDARD.encode(&json), sig: STANDARD.encode(sig) }
    }

    fn open_state(&self, signed: &SignedState) -> Result<State, SignerError> {
        let json = STANDARD.decode(&signed.state).map_err(|_| err(400, "state is not base64"))?;
        let sig = STANDARD.decode(&signed.sig).map_err(|_| err(400, "state signature is not base64"))?;
        if recover_personal(&keccak256(&json), &sig).ok() != Some(self.key.address()) {
            return Err(err(400, "invalid state signature"));
        }
        serde_json::from_slice(&json).map_err(|e| err(400, format!("state: {e}")))
    }

    /// `POST /generate-live-payment` at `now`.
    pub fn live_payment(&self, req: &PaymentRequest, now: SystemTime) -> Result<PaymentResponse, SignerError> {
        if req.orchestrator.is_empty() {
            return Err(err(400, "missing orchestrator"));
        }
        let info: OrchestratorInfo = decode("orchestrator", &req.orchestrator)?;
        self.pay(req, &info, now).map_err(|mut e| {
            if e.status == 480 {
                e.orchestrator = Some(info.transcoder.clone());
            }
            e
        })
    }

    fn pay(
        &self,
        req: &PaymentRequest,
        info: &OrchestratorInfo,
        now: SystemTime,
    ) -> Result<PaymentResponse, SignerError> {
        let (Some(tp), Some(price)) = (info.ticket_params.as_ref(), info.price_info.as_ref()) else {
            return Err(err(400, "the orchestrator info has no ticket params or price"));
        };
        let now_ms = unix_ms(now);
        if info.auth_token.as_ref().is_some_and(|t| t.expiration > 0 && (t.expiration as u64) * 1000 < now_ms) {
            return Err(err(480, "auth token expired"));
        }
        let mut sender = TicketSender::new(self.key.clone());
        sender.update_params(tp).map_err(|e| err(480, format!("ticket params: {e}")))?;
        let rrh = hex::encode(&tp.recipient_rand_hash);
        let orch_address = hex::encode(&info.address);
        let previous = match &req.state {
            Some(s) if !s.state.is_empty() => {
                let st = self.open_state(s)?;
                if req.manifest_id.is_empty() {
                    return Err(err(400, "ManifestID is required with a state"));
                }
                // The first call comes before the job has an id (the start reply gives it):
                // a state without one takes the caller's.
                let other_job = !st.manifest_id.is_empty() && st.manifest_id != req.manifest_id;
                if other_job || st.app != req.app || st.kind != req.kind {
                    return Err(err(400, "the state is for another job"));
                }
                if st.orchestrator_address != orch_address {
                    return Err(err(400, "the state is for another orchestrator"));
                }
                Some(st)
            }
            _ => None,
        };
        // The session's first price holds for its life (a price rise needs a new one).
        let (ppu, pxpu) = match &previous {
            Some(p) => (p.initial_price_per_unit, p.initial_pixels_per_unit),
            None => (price.price_per_unit, price.pixels_per_unit),
        };
        let initial = transport::proto::PriceInfo { price_per_unit: ppu, pixels_per_unit: pxpu, ..price.clone() };
        let unit_price = price_per_pixel(&initial).map_err(|e| err(400, e.to_string()))?;
        if let Some(m) = &req.max_price
            && BigRational::from_float(m.price).is_some_and(|cap| unit_price > cap)
        {
            return Err(err(481, "price above the ceiling"));
        }
        let elapsed = previous.as_ref().map(|p| Duration::from_millis(now_ms.saturating_sub(p.last_update)));
        let fee = units(&req.kind, elapsed, req.in_pixels)? * &unit_price;
        let balance = previous.as_ref().and_then(|p| parse_ratio(&p.balance)).unwrap_or_else(BigRational::zero);
        if let Some(p) = &previous
            && p.recipient_rand_hash == rrh
        {
            sender.resume_nonce(p.sender_nonce);
        }
        // Tickets while the carried balance does not cover the fee (the balance may end
        // below one ticket's value: time is paid as it passes, not in advance).
        let ev = sender.ticket_ev();
        if !ev.is_positive() {
            return Err(err(400, "the ticket params are worth nothing"));
        }
        if balance >= fee {
            return Err(err(482, "no tickets needed now"));
        }
        let count = ((&fee - &balance) / &ev).ceil().to_integer().to_u32().unwrap_or(u32::MAX).max(1);
        let batch = transport::pm::TicketBatch { count, new_credit: &ev * BigInt::from(count) };
        if batch.count > MAX_TICKETS {
            return Err(err(400, format!("{} tickets needed, more than {MAX_TICKETS}", batch.count)));
        }
        let payment = sender.payment(batch.count, &initial).map_err(|e| err(480, e.to_string()))?;
        // Credentials for an empty segment (seq 0, keccak256 of nothing, no profiles).
        let hash = keccak256(&[]);
        let flat = flatten_segment(req.manifest_id.as_bytes(), 0, &hash, std::iter::empty());
        let capabilities: Option<Capabilities> =
            if req.capabilities.is_empty() { None } else { Some(decode("capabilities", &req.capabilities)?) };
        let seg = SegData {
            manifest_id: req.manifest_id.as_bytes().to_vec(),
            seq: 0,
            hash: hash.to_vec(),
            sig: self.key.sign_message(&flat).to_vec(),
            capabilities,
            auth_token: info.auth_token.clone(),
            ..Default::default()
        };
        let state = State {
            state_id: previous
                .as_ref()
                .map_or_else(|| hex::encode(&keccak256(&now_ms.to_be_bytes())[..8]), |p| p.state_id.clone()),
            orchestrator_address: orch_address,
            manifest_id: req.manifest_id.clone(),
            app: req.app.clone(),
            kind: req.kind.clone(),
            last_update: now_ms,
            sender_nonce: sender.nonce(),
            recipient_rand_hash: rrh,
            balance: ratio_text(&(balance + batch.new_credit - fee)),
            initial_price_per_unit: ppu,
            initial_pixels_per_unit: pxpu,
            sequence_number: previous.as_ref().map_or(0, |p| p.sequence_number + 1),
        };
        Ok(PaymentResponse {
            payment: STANDARD.encode(payment.encode_to_vec()),
            seg_creds: STANDARD.encode(seg.encode_to_vec()),
            state: self.sign_state(&state),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transport::proto::{AuthToken, PriceInfo, TicketExpirationParams, TicketParams};

    fn key(n: u8) -> EthSigner {
        EthSigner::from_private_key(&[n; 32]).unwrap()
    }

    fn info(price: i64) -> OrchestratorInfo {
        OrchestratorInfo {
            transcoder: "https://o:8935".into(),
            address: vec![7; 20],
            ticket_params: Some(TicketParams {
                recipient: vec![7; 20],
                face_value: BigInt::from(1_000_000_000_000u64).to_signed_bytes_be(),
                win_prob: vec![0xff; 32],
                recipient_rand_hash: vec![3; 32],
                seed: vec![1; 32],
                expiration_block: vec![1],
                expiration_params: Some(TicketExpirationParams {
                    creation_round: 1,
                    creation_round_block_hash: vec![2; 32],
                }),
            }),
            price_info: Some(PriceInfo { price_per_unit: price, pixels_per_unit: 1, ..Default::default() }),
            auth_token: Some(AuthToken { token: vec![1], session_id: "s".into(), expiration: 4_000_000_000 }),
            ..Default::default()
        }
    }

    fn request(info: &OrchestratorInfo, state: Option<SignedState>) -> PaymentRequest {
        PaymentRequest {
            orchestrator: STANDARD.encode(info.encode_to_vec()),
            // The first call has no job id yet; later ones carry it.
            manifest_id: if state.is_some() { "mid".into() } else { String::new() },
            state,
            kind: "lv2v".into(),
            ..Default::default()
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn lv2v_payments_cover_elapsed_time_and_carry_credit_and_nonces_in_the_state() {
        let s = Signer::new(key(9));
        let info = info(1);
        // First call: 60 s of 720p30 at 1 wei/pixel = 1,658,880,000 wei; EV 1e12 per
        // ticket (win prob ~1) → one ticket, the rest carried as credit.
        let r1 = s.live_payment(&request(&info, None), at(0)).unwrap();
        let p1: transport::proto::Payment = decode("p", &r1.payment).unwrap();
        assert_eq!(p1.ticket_sender_params.len(), 1);
        assert_eq!(p1.sender, key(9).address().to_vec());
        // The credentials verify as an empty segment signed by the signer.
        let seg: SegData = decode("s", &r1.seg_creds).unwrap();
        let flat = flatten_segment(b"", 0, &keccak256(&[]), std::iter::empty());
        assert_eq!(recover_personal(&keccak256(&flat), &seg.sig).unwrap(), key(9).address());
        assert_eq!(seg.auth_token.unwrap().session_id, "s");
        // Five seconds later the carried credit covers it: nothing to pay (482).
        let e = s.live_payment(&request(&info, Some(r1.state.clone())), at(5)).unwrap_err();
        assert_eq!(e.status, 482);
        // The ticket's 1e12 wei pays for about 36,000 s of 720p30 at 1 wei/pixel: after
        // 40,000 s the credit has run out and one more ticket goes, with the next nonce.
        let e = s.live_payment(&request(&info, Some(r1.state.clone())), at(30_000)).unwrap_err();
        assert_eq!(e.status, 482, "still covered after 30,000 s");
        let r3 = s.live_payment(&request(&info, Some(r1.state.clone())), at(40_000)).unwrap();
        let p3: transport::proto::Payment = decode("p", &r3.payment).unwrap();
        assert!(!p3.ticket_sender_params.is_empty());
        assert!(p3.ticket_sender_params[0].sender_nonce > p1.ticket_sender_params[0].sender_nonce);
    }

    #[test]
    fn forged_states_other_jobs_and_bad_input_are_refused() {
        let s = Signer::new(key(9));
        let info = info(1);
        let r1 = s.live_payment(&request(&info, None), at(0)).unwrap();
        // A state signed by someone else.
        let mut forged = r1.state.clone();
        forged.sig = Signer::new(key(8)).sign_state(&State::default()).sig;
        assert_eq!(s.live_payment(&request(&info, Some(forged)), at(100)).unwrap_err().status, 400);
        // The state of another job: once a call has bound the state to job "mid" (the
        // first call came before the job had an id), it pays for that job only.
        let bound = s.live_payment(&request(&info, Some(r1.state.clone())), at(40_000)).unwrap();
        let mut other = request(&info, Some(bound.state.clone()));
        other.manifest_id = "other".into();
        assert_eq!(s.live_payment(&other, at(80_000)).unwrap_err().status, 400);
        assert_eq!(s.live_payment(&request(&info, Some(bound.state)), at(80_000)).map(|_| ()), Ok(()));
        // No ticket params: 400; unusable ones: 480 (refresh); expired token: 480.
        let mut no_params = info.clone();
        no_params.ticket_params = None;
        assert_eq!(s.live_payment(&request(&no_params, None), at(0)).unwrap_err().status, 400);
        let mut bad = info.clone();
        bad.ticket_params.as_mut().unwrap().recipient_rand_hash = vec![1];
        assert_eq!(s.live_payment(&request(&bad, None), at(0)).unwrap_err().status, 480);
        let mut expired = info.clone();
        expired.auth_token.as_mut().unwrap().expiration = 1;
        assert_eq!(s.live_payment(&request(&expired, None), at(0)).unwrap_err().status, 480);
        let mut unknown = request(&info, None);
        unknown.kind = "per-frame".into();
        assert_eq!(s.live_payment(&unknown, at(0)).unwrap_err().status, 400);
        let mut capped = request(&info, None);
        capped.max_price = Some(MaxPrice { price: 0.5, currency: "wei".into(), unit: "720p-pixel-seconds".into() });
        assert_eq!(s.live_payment(&capped, at(0)).unwrap_err().status, 481);
        // Far too much to pay in one call.
        let pricey = self::tests::info(1_000_000);
        let mut big = request(&pricey, None);
        big.kind = "lv2v".into();
        assert_eq!(s.live_payment(&big, at(0)).unwrap_err().status, 400);
    }

    #[test]
    fn orchestrator_info_signature_is_over_the_eip55_address() {
        let s = Signer::new(key(9));
        let (addr, sig) = s.orchestrator_info_signature();
        assert_eq!(addr, eip55(&key(9).address()));
        let raw = hex::decode(sig.trim_start_matches("0x")).unwrap();
        assert_eq!(raw.len(), 65);
        assert_eq!(recover_personal(&keccak256(addr.as_bytes()), &raw).unwrap(), key(9).address());
    }
}
