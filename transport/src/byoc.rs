//! BYOC ("bring your own container") generic jobs, without IO (AI gateway spec §5): the
//! `Livepeer` job header, the job token an orchestrator issues for a capability, the
//! gateway's identity header, and the per-second payment arithmetic.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::identity::{Address, EthSigner, eip55};
use crate::proto::{TicketExpirationParams, TicketParams};

/// The job header: base64 of the [`JobRequest`] JSON.
pub const JOB_HEADER: &str = "Livepeer";
/// The gateway's identity on a token request: base64 of [`SenderAddress`] JSON.
pub const ETH_ADDRESS_HEADER: &str = "Livepeer-Eth-Address";
/// The capability a token is asked for.
pub const CAPABILITY_HEADER: &str = "Livepeer-Capability";
/// The orchestrator's view of the sender's credit, on job replies.
pub const BALANCE_HEADER: &str = "Livepeer-Balance";
/// How long the gateway looks for orchestrators (a Go duration, default 1 s).
pub const SEARCH_TIMEOUT_HEADER: &str = "Livepeer-Orch-Search-Timeout";
/// How long one orchestrator may take to answer the token request (default 500 ms).
pub const SEARCH_RESPONSE_TIMEOUT_HEADER: &str = "Livepeer-Orch-Search-Resp-Timeout";
/// The orchestrator that ran the job, on the gateway's reply.
pub const ORCHESTRATOR_URL_HEADER: &str = "X-Orchestrator-Url";
/// Worker metadata passed through to the client.
pub const METADATA_HEADER: &str = "X-Metadata";
/// Path prefix of batch jobs.
pub const REQUEST_PREFIX: &str = "/process/request/";
/// Seconds of compute a gateway's credit should cover before it sends no tickets.
pub const COVERED_SECONDS: u64 = 120;
/// Seconds of compute an orchestrator requires credit for before running a priced job.
pub const REQUIRED_SECONDS: u64 = 60;
/// Most tickets sent with one job.
pub const MAX_TICKETS: u64 = 600;

/// A job request (`byoc/types.go` `JobRequest`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JobRequest {
    /// Optional job id.
    #[serde(default)]
    pub id: String,
    /// The request: itself JSON (may carry `stream_id`).
    #[serde(default)]
    pub request: String,
    /// Parameters: itself JSON ([`JobParameters`]); empty means `{}`.
    #[serde(default)]
    pub parameters: String,
    /// The capability name registered on the orchestrator.
    #[serde(default)]
    pub capability: String,
    /// The gateway's address (set by the gateway).
    #[serde(default)]
    pub sender: String,
    /// The gateway's signature over `request + parameters`, `0x`-hex (set by the gateway).
    #[serde(default)]
    pub sig: String,
    /// Seconds the job may run. Required, non-zero.
    #[serde(default)]
    pub timeout_seconds: i64,
    /// The worker's URL (set by the orchestrator).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub capability_url: String,
}

/// Which orchestrators a job may use.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OrchestratorFilter {
    /// Only these service URLs (empty: any).
    #[serde(default)]
    pub include: Vec<String>,
    /// Never these.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A job's parameters (`JobParameters`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JobParameters {
    /// Orchestrator include and exclude lists.
    #[serde(default)]
    pub orchestrators: OrchestratorFilter,
}

impl OrchestratorFilter {
    /// True when `url` may take the job (compared without a trailing slash).
    pub fn allows(&self, url: &str) -> bool {
        let norm = |u: &str| u.trim_end_matches('/').to_ascii_lowercase();
        let u = norm(url);
        (self.include.is_empty() || self.include.iter().any(|i| norm(i) == u))
            && !self.exclude.iter().any(|e| norm(e) == u)
    }
}

/// Why a job header was refused (each a 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// No `Livepeer` header.
    #[error("missing Livepeer job header")]
    Missing,
    /// Not base64 JSON.
    #[error("invalid Livepeer job header: {0}")]
    Encoding(String),
    /// No capability named.
    #[error("no capability set with request")]
    Capability,
    /// `timeout_seconds` missing or not positive.
    #[error("no timeout_seconds set with request, timeout_seconds is required")]
    Timeout,
    /// `parameters` not JSON.
    #[error("parameters must be a JSON object: {0}")]
    Parameters(String),
    /// `request` not JSON.
    #[error("request must be JSON: {0}")]
    Request(String),
}

/// A decoded, checked job header with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The request as sent.
    pub request: JobRequest,
    /// Its parsed parameters.
    pub parameters: JobParameters,
}

/// Reads the `Livepeer` job header.
pub fn decode_job(header: Option<&str>) -> Result<Job, JobError> {
    let raw = header.ok_or(JobError::Missing)?;
    let bytes = STANDARD.decode(raw.trim()).map_err(|e| JobError::Encoding(e.to_string()))?;
    let request: JobRequest = serde_json::from_slice(&bytes).map_err(|e| JobError::Encoding(e.to_string()))?;
    if request.capability.trim().is_empty() {
        return Err(JobError::Capability);
    }
    if request.timeout_seconds <= 0 {
        return Err(JobError::Timeout);
    }
    // go-livepeer refuses a job without `parameters`, though its own documented example
    // and the Python SDK send none (spec open point 7): absent means `{}`.
    let parameters: JobParameters = if request.parameters.trim().is_empty() {
        JobParameters::default()
    } else {
        serde_json::from_str(&request.parameters).map_err(|e| JobError::Parameters(e.to_string()))?
    };
    if !request.request.trim().is_empty() {
        serde_json::from_str::<serde_json::Value>(&request.request).map_err(|e| JobError::Request(e.to_string()))?;
    }
    Ok(Job { request, parameters })
}

/// The `Livepeer` header value for `request`.
pub fn encode_job(request: &JobRequest) -> String {
    STANDARD.encode(serde_json::to_vec(request).expect("job requests serialize"))
}

/// Signs a job as the gateway: `sender` = the EIP-55 address, `sig` = `0x`-hex
/// `personal_sign` over `request + parameters` (§5.4). Without a signer (off-chain) the
/// zero address and `0x`, as go-livepeer sends.
pub fn sign_job(request: &mut JobRequest, signer: Option<&EthSigner>) {
    match signer {
        Some(s) => {
            let msg = format!("{}{}", request.request, request.parameters);
            request.sender = eip55(&s.address());
            request.sig = format!("0x{}", hex::encode(s.sign_message(msg.as_bytes())));
        }
        None => {
            request.sender = eip55(&[0; 20]);
            request.sig = "0x".into();
        }
    }
}

/// Checks a signed job against its sender; a 65-byte signature is `0x`-hex.
pub fn verify_job(request: &JobRequest) -> Option<Address> {
    let sig = hex::decode(request.sig.trim_start_matches("0x")).ok()?;
    let digest = crate::credentials::keccak256(format!("{}{}", request.request, request.parameters).as_bytes());
    let who = crate::identity::recover_personal(&digest, &sig).ok()?;
    (eip55(&who).eq_ignore_ascii_case(&request.sender)).then_some(who)
}

/// The gateway's identity header (`{"addr","sig"}`, §5.3).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SenderAddress {
    /// EIP-55 address.
    pub addr: String,
    /// `0x`-hex signature over the address string.
    pub sig: String,
}

impl SenderAddress {
    /// This gateway's identity (the zero address and `0x` off-chain).
    pub fn of(signer: Option<&EthSigner>) -> Self {
        match signer {
            Some(s) => {
                let addr = eip55(&s.address());
                let sig = format!("0x{}", hex::encode(s.sign_message(addr.as_bytes())));
                SenderAddress { addr, sig }
            }
            None => SenderAddress { addr: eip55(&[0; 20]), sig: "0x".into() },
        }
    }

    /// The header value.
    pub fn header(&self) -> String {
        STANDARD.encode(serde_json::to_vec(self).expect("serializes"))
    }

    /// Reads the header value.
    pub fn decode(value: &str) -> Option<Self> {
        serde_json::from_slice(&STANDARD.decode(value.trim()).ok()?).ok()
    }
}

/// A price per second of compute (`pricePerUnit / pixelsPerUnit` wei).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobPrice {
    /// Wei.
    #[serde(rename = "pricePerUnit", default)]
    pub price_per_unit: i64,
    /// Divisor.
    #[serde(rename = "pixelsPerUnit", default)]
    pub pixels_per_unit: i64,
}

/// An orchestrator's answer to `GET /process/token` (`JobToken`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JobToken {
    /// The gateway's identity, echoed.
    #[serde(default)]
    pub sender_address: Option<SenderAddress>,
    /// Ticket params for paying it (protobuf `TicketParams` in Go's JSON; absent off-chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_params: Option<serde_json::Value>,
    /// The sender's credit with it, wei.
    #[serde(default)]
    pub balance: i64,
    /// Price per second.
    #[serde(default)]
    pub price: Option<JobPrice>,
    /// Where jobs go.
    #[serde(default)]
    pub service_addr: String,
    /// Jobs it can take now.
    #[serde(default)]
    pub available_capacity: i64,
    /// The last ticket nonce it saw from this sender.
    #[serde(rename = "LastNonce", default)]
    pub last_nonce: u32,
}

/// `TicketParams` as go-livepeer's `encoding/json` writes them in a job token: the
/// protobuf field names, bytes as standard base64, the round as a number.
pub fn ticket_params_json(tp: &TicketParams) -> serde_json::Value {
    let b = |v: &[u8]| serde_json::Value::String(STANDARD.encode(v));
    let mut v = serde_json::json!({
        "recipient": b(&tp.recipient),
        "face_value": b(&tp.face_value),
        "win_prob": b(&tp.win_prob),
        "recipient_rand_hash": b(&tp.recipient_rand_hash),
        "seed": b(&tp.seed),
        "expiration_block": b(&tp.expiration_block),
    });
    if let Some(e) = &tp.expiration_params {
        v["expiration_params"] = serde_json::json!({
            "creation_round": e.creation_round,
            "creation_round_block_hash": b(&e.creation_round_block_hash),
        });
    }
    v
}

/// Reads [`ticket_params_json`]'s shape (absent keys are empty, as Go's `omitempty` leaves
/// them); `None` when a value has the wrong type or is not base64.
pub fn ticket_params_from_json(v: &serde_json::Value) -> Option<TicketParams> {
    let b = |v: &serde_json::Value, k: &str| -> Option<Vec<u8>> {
        match v.get(k) {
            None | Some(serde_json::Value::Null) => Some(Vec::new()),
            Some(serde_json::Value::String(s)) => STANDARD.decode(s).ok(),
            Some(_) => None,
        }
    };
    let expiration_params = match v.get("expiration_params") {
        None | Some(serde_json::Value::Null) => None,
        Some(e) => Some(TicketExpirationParams {
            creation_round: match e.get("creation_round") {
                None => 0,
                Some(n) => n.as_i64()?,
            },
            creation_round_block_hash: b(e, "creation_round_block_hash")?,
        }),
    };
    Some(TicketParams {
        recipient: b(v, "recipient")?,
        face_value: b(v, "face_value")?,
        win_prob: b(v, "win_prob")?,
        recipient_rand_hash: b(v, "recipient_rand_hash")?,
        seed: b(v, "seed")?,
        expiration_block: b(v, "expiration_block")?,
        expiration_params,
    })
}

/// Tickets to send with a job (§5.4): none while the credit covers
/// [`COVERED_SECONDS`] at `price_per_second`; else enough for `timeout_seconds`, at most
/// [`MAX_TICKETS`] (0 when a ticket is worth nothing).
pub fn tickets_for_job(price_per_second: f64, timeout_seconds: u64, balance: f64, ticket_ev: f64) -> u64 {
    if price_per_second <= 0.0 || balance >= price_per_second * COVERED_SECONDS as f64 || ticket_ev <= 0.0 {
        return 0;
    }
    ((price_per_second * timeout_seconds as f64 / ticket_ev).ceil() as u64).min(MAX_TICKETS)
}

/// A Go duration (`1s`, `500ms`, `1m30s`, `1.5s`) as seconds.
pub fn parse_go_duration(s: &str) -> Option<f64> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vector 12: the documented header decodes, though it has no `parameters`.
    #[test]
    fn documented_header() {
        let doc = STANDARD
            .encode(r#"{"request": "{\"run\":\"echo\"}", "capability": "text-reversal", "timeout_seconds": 30}"#);
        assert_eq!(decode_job(Some(&doc)).unwrap().parameters, JobParameters::default());
        let ok = STANDARD.encode(
            r#"{"request": "{\"run\":\"echo\"}", "parameters": "{}", "capability": "text-reversal", "timeout_seconds": 30}"#,
        );
        let job = decode_job(Some(&ok)).unwrap();
        assert_eq!(job.request.capability, "text-reversal");
        assert_eq!(job.request.timeout_seconds, 30);
        assert_eq!(job.parameters, JobParameters::default());
    }

    #[test]
    fn refusals() {
        let enc = |s: &str| STANDARD.encode(s);
        assert_eq!(decode_job(None), Err(JobError::Missing));
        assert!(matches!(decode_job(Some("%%%")), Err(JobError::Encoding(_))));
        assert_eq!(decode_job(Some(&enc(r#"{"parameters":"{}","timeout_seconds":3}"#))), Err(JobError::Capability));
        assert_eq!(decode_job(Some(&enc(r#"{"parameters":"{}","capability":"x"}"#))), Err(JobError::Timeout));
        assert!(matches!(
            decode_job(Some(&enc(r#"{"parameters":"{","capability":"x","timeout_seconds":1}"#))),
            Err(JobError::Parameters(_))
        ));
        assert!(matches!(
            decode_job(Some(&enc(r#"{"parameters":"{}","request":"nope","capability":"x","timeout_seconds":1}"#))),
            Err(JobError::Request(_))
        ));
    }

    #[test]
    fn filters() {
        let f = OrchestratorFilter { include: vec!["https://a:1/".into()], exclude: vec![] };
        assert!(f.allows("https://A:1") && !f.allows("https://b:1"));
        let f = OrchestratorFilter { include: vec![], exclude: vec!["https://b:1".into()] };
        assert!(f.allows("https://a:1") && !f.allows("https://b:1/"));
    }

    #[test]
    fn signing_round_trip() {
        let s = EthSigner::from_hex("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
        let mut r = JobRequest { request: "{}".into(), parameters: "{}".into(), ..Default::default() };
        sign_job(&mut r, Some(&s));
        assert_eq!(verify_job(&r), Some(s.address()));
        r.parameters = r#"{"orchestrators":{}}"#.into();
        assert_eq!(verify_job(&r), None, "tampered");
        sign_job(&mut r, None);
        assert_eq!((r.sender.as_str(), r.sig.as_str()), ("0x0000000000000000000000000000000000000000", "0x"));
        let id = SenderAddress::of(Some(&s));
        assert_eq!(SenderAddress::decode(&id.header()), Some(id));
    }

    #[test]
    fn ticket_counts_and_durations() {
        assert_eq!(tickets_for_job(0.0, 30, 0.0, 10.0), 0, "free");
        assert_eq!(tickets_for_job(10.0, 30, 1200.0, 100.0), 0, "credit covers 120 s");
        assert_eq!(tickets_for_job(10.0, 30, 0.0, 100.0), 3);
        assert_eq!(tickets_for_job(1e9, 30, 0.0, 1.0), MAX_TICKETS);
        assert_eq!(parse_go_duration("1s"), Some(1.0));
        assert_eq!(parse_go_duration("500ms"), Some(0.5));
        assert_eq!(parse_go_duration("1m30s"), Some(90.0));
        assert_eq!(parse_go_duration("1.5s"), Some(1.5));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn ticket_params_round_trip() {
        let tp = TicketParams {
            recipient: vec![7; 20],
            face_value: vec![1, 2],
            win_prob: vec![3],
            recipient_rand_hash: vec![9; 32],
            seed: vec![4; 32],
            expiration_block: vec![5, 6],
            expiration_params: Some(TicketExpirationParams {
                creation_round: 42,
                creation_round_block_hash: vec![8; 32],
            }),
        };
        let j = ticket_params_json(&tp);
        assert_eq!(j["recipient"], STANDARD.encode([7u8; 20]));
        assert_eq!(j["expiration_params"]["creation_round"], 42);
        assert_eq!(ticket_params_from_json(&j), Some(tp));
        assert_eq!(ticket_params_from_json(&serde_json::json!({"seed": 5})), None);
        assert_eq!(ticket_params_from_json(&serde_json::json!({"seed": "%%"})), None);
    }

    #[test]
    fn token_json_keys() {
        let t: JobToken = serde_json::from_str(
            r#"{"sender_address":{"addr":"0xab","sig":"0x"},"balance":5,"price":{"pricePerUnit":3,"pixelsPerUnit":1},"service_addr":"https://o:1","available_capacity":2,"LastNonce":7}"#,
        )
        .unwrap();
        assert_eq!((t.balance, t.available_capacity, t.last_nonce), (5, 2, 7));
        assert_eq!(t.price, Some(JobPrice { price_per_unit: 3, pixels_per_unit: 1 }));
    }
}
