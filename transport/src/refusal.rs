//! Why an orchestrator exchange failed, in one vocabulary for both ends of the link
//! (spec §4.2, §4.3, §3.4).
//!
//! * [`FailureReason`] is the closed set of reasons a gateway records: the label of the
//!   `sluice_transcode_failures_total` metric, the key of the pool's per-orchestrator
//!   failure counts and the `reason` the control API shows.
//! * [`Reaction`] is what a gateway does next.
//! * The gateway direction: [`classify_http`], [`classify_result_error`] and
//!   [`classify_grpc`] turn what came back (an HTTP status and body, a
//!   `TranscodeResult.error`, a gRPC status) into a [`Failure`]. They are the only code
//!   that looks inside refusal text.
//! * The orchestrator direction: [`wire`] holds the exact strings go-livepeer puts on
//!   the wire and [`FailureReason::http_status`] the status each refusal is sent with, so
//!   the local orchestrator answers with what the gateway's parser reads back (a
//!   round-trip test holds the two together).
use std::fmt;

/// The strings go-livepeer's orchestrator uses for its refusals (spec §4.3).
pub mod wire {
    /// `TranscodeResult.error`: the session's queue is full.
    pub const BUSY: &str = "OrchestratorBusy";
    /// `TranscodeResult.error` or gRPC `ResourceExhausted`: no room for another session.
    pub const CAPPED: &str = "OrchestratorCapped";
    /// HTTP 400: the ticket params' expiration block has passed.
    pub const TICKET_PARAMS_EXPIRED: &str = "TicketParams expired";
    /// HTTP 400 (fragment): the ticket's recipientRand is unknown to the orchestrator.
    pub const RECIPIENT_RAND: &str = "recipientRand";
    /// HTTP 400 (fragment): a sender nonce was reused or is out of range.
    pub const SENDER_NONCE: &str = "senderNonce";
    /// HTTP 400: the session's credit does not cover the segment.
    pub const INSUFFICIENT_BALANCE: &str = "Insufficient balance";
    /// HTTP 403 (fragment): the auth token is missing, forged or expired.
    pub const AUTH_TOKEN: &str = "auth token";
    /// HTTP 403: the segment credentials do not verify.
    pub const SEG_SIG: &str = "ErrSegSig";
    /// `TranscodeResult.error`: the renditions do not match the profiles.
    pub const MISMATCHED_SEGMENTS: &str = "MismatchedSegments";
}

/// Why an attempt on an orchestrator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureReason {
    /// No answer in time.
    Timeout,
    /// Connection refused, reset, name not resolved, TLS failure.
    Unreachable,
    /// The orchestrator has no room for another session.
    Capped,
    /// The session's queue at the orchestrator is full.
    Busy,
    /// An answer that is not what the protocol says (undecodable, missing fields, wrong
    /// rendition count).
    BadReply,
    /// It lacks a capability the job needs.
    Incompatible,
    /// Its address is on the operator's block list.
    Blocklisted,
    /// Its price is above the cap, or more than doubled within a session.
    Price,
    /// Ticket params expired, unknown recipientRand, nonce or balance trouble: a fresh
    /// session cures it.
    TicketParams,
    /// The auth token was refused: a fresh session cures it.
    Auth,
    /// The orchestrator could not verify the segment credentials.
    SegmentSignature,
    /// The result signature does not recover to the orchestrator's address.
    ResultSignature,
    /// Any other 4xx.
    Http4xx,
    /// Any 5xx.
    Http5xx,
    /// The orchestrator tried and failed to transcode this input.
    TranscodeError,
    /// A rendition could not be downloaded.
    Download,
    /// The gateway could not make the payment (signing, nonce limit).
    Payment,
}

impl FailureReason {
    /// Every reason, for metrics that list each label up front.
    pub const ALL: [FailureReason; 17] = [
        FailureReason::Timeout,
        FailureReason::Unreachable,
        FailureReason::Capped,
        FailureReason::Busy,
        FailureReason::BadReply,
        FailureReason::Incompatible,
        FailureReason::Blocklisted,
        FailureReason::Price,
        FailureReason::TicketParams,
        FailureReason::Auth,
        FailureReason::SegmentSignature,
        FailureReason::ResultSignature,
        FailureReason::Http4xx,
        FailureReason::Http5xx,
        FailureReason::TranscodeError,
        FailureReason::Download,
        FailureReason::Payment,
    ];

    /// The label used in metrics and JSON (`snake_case`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Unreachable => "unreachable",
            FailureReason::Capped => "capped",
            FailureReason::Busy => "busy",
            FailureReason::BadReply => "bad_reply",
            FailureReason::Incompatible => "incompatible",
            FailureReason::Blocklisted => "blocklisted",
            FailureReason::Price => "price",
            FailureReason::TicketParams => "ticket_params",
            FailureReason::Auth => "auth",
            FailureReason::SegmentSignature => "segment_signature",
            FailureReason::ResultSignature => "signature",
            FailureReason::Http4xx => "http_4xx",
            FailureReason::Http5xx => "http_5xx",
            FailureReason::TranscodeError => "transcode_error",
            FailureReason::Download => "download",
            FailureReason::Payment => "payment",
        }
    }

    /// What a gateway does after this failure (spec §4.3).
    pub fn reaction(self) -> Reaction {
        match self {
            FailureReason::TicketParams | FailureReason::Auth | FailureReason::Payment => Reaction::Refresh,
            FailureReason::SegmentSignature | FailureReason::TranscodeError => Reaction::GiveUp,
            _ => Reaction::Failover,
        }
    }

    /// The HTTP status an orchestrator answers a `/segment` refusal of this kind with
    /// (go-livepeer's choices); `None` for reasons that travel in a 200
    /// `TranscodeResult.error` or never come from the orchestrator.
    pub fn http_status(self) -> Option<u16> {
        match self {
            FailureReason::TicketParams => Some(400),
            FailureReason::Auth | FailureReason::SegmentSignature => Some(403),
            FailureReason::Http4xx => Some(400),
            FailureReason::Http5xx => Some(500),
            _ => None,
        }
    }
}

impl serde::Serialize for FailureReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Same orchestrator, fresh session (stale params, token, balance).
    Refresh,
    /// Another orchestrator; this one is suspended.
    Failover,
    /// Give up on this segment: the input itself is the problem.
    GiveUp,
}

/// One failed attempt: the reason, what to do next, and the detail for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Failure {
    /// The category.
    pub reason: FailureReason,
    /// What to do next (usually `reason.reaction()`).
    pub next: Reaction,
    /// What happened, for logs and the control API.
    pub detail: String,
}

impl Failure {
    /// A failure for `reason` with its usual reaction.
    pub fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        Failure { reason, next: reason.reaction(), detail: detail.into() }
    }
}

/// A non-200 answer to a `/segment` POST (spec §4.3).
pub fn classify_http(status: u16, body: &str) -> Failure {
    let reason = match status {
        400 if body.contains(wire::TICKET_PARAMS_EXPIRED)
            || body.contains(wire::RECIPIENT_RAND)
            || body.contains(wire::SENDER_NONCE)
            || body.contains(wire::INSUFFICIENT_BALANCE) =>
        {
            FailureReason::TicketParams
        }
        403 if body.contains(wire::AUTH_TOKEN) => FailureReason::Auth,
        403 if body.contains(wire::SEG_SIG) => FailureReason::SegmentSignature,
        500..=599 => FailureReason::Http5xx,
        _ => FailureReason::Http4xx,
    };
    Failure::new(reason, format!("HTTP {status}: {body}"))
}

/// `TranscodeResult.error`: the orchestrator answered 200 but did not transcode.
pub fn classify_result_error(error: &str) -> Failure {
    let reason = if error.contains(wire::BUSY) {
        FailureReason::Busy
    } else if error.contains(wire::CAPPED) {
        FailureReason::Capped
    } else {
        FailureReason::TranscodeError
    };
    Failure::new(reason, format!("orchestrator: {error}"))
}

/// A gRPC status from `GetOrchestrator` (numeric code, as `tonic::Code as i32`).
/// `ResourceExhausted` (8) is go-livepeer's session cap; anything else means the
/// orchestrator is not usable now.
pub fn classify_grpc(code: i32, message: &str) -> Failure {
    const RESOURCE_EXHAUSTED: i32 = 8;
    const DEADLINE_EXCEEDED: i32 = 4;
    let reason = match code {
        RESOURCE_EXHAUSTED => FailureReason::Capped,
        DEADLINE_EXCEEDED => FailureReason::Timeout,
        _ => FailureReason::Unreachable,
    };
    Failure::new(reason, format!("gRPC status {code}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_the_spec_reactions() {
        let r = |s, b| classify_http(s, b).next;
        assert_eq!(r(400, "TicketParams expired"), Reaction::Refresh);
        assert_eq!(r(400, "invalid recipientRand for ticket recipientRandHash"), Reaction::Refresh);
        assert_eq!(r(400, "Insufficient balance"), Reaction::Refresh);
        assert_eq!(r(403, "expired auth token"), Reaction::Refresh);
        assert_eq!(r(403, "ErrSegSig"), Reaction::GiveUp);
        assert_eq!(r(403, "Forbidden"), Reaction::Failover);
        assert_eq!(r(500, "Internal Server Error"), Reaction::Failover);
        assert_eq!(classify_http(502, "").reason, FailureReason::Http5xx);
        assert_eq!(classify_http(402, "x").reason, FailureReason::Http4xx);
        assert_eq!(classify_result_error("OrchestratorBusy").reason, FailureReason::Busy);
        assert_eq!(classify_result_error("OrchestratorCapped").reason, FailureReason::Capped);
        assert_eq!(classify_result_error("TranscoderInvalidVideo").next, Reaction::GiveUp);
        assert_eq!(classify_grpc(8, "OrchestratorCapped").reason, FailureReason::Capped);
        assert_eq!(classify_grpc(14, "unavailable").reason, FailureReason::Unreachable);
    }

    #[test]
    fn every_reason_has_a_distinct_label() {
        let mut labels: Vec<&str> = FailureReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), FailureReason::ALL.len());
        for r in FailureReason::ALL {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
    }

    #[test]
    fn wire_statuses_read_back_as_the_same_reason() {
        for (reason, body) in [
            (FailureReason::TicketParams, wire::TICKET_PARAMS_EXPIRED),
            (FailureReason::TicketParams, wire::INSUFFICIENT_BALANCE),
            (FailureReason::Auth, "expired auth token"),
            (FailureReason::SegmentSignature, wire::SEG_SIG),
            (FailureReason::Http5xx, "Internal Server Error"),
        ] {
            let status = reason.http_status().expect("sent with a status");
            assert_eq!(classify_http(status, body).reason, reason, "{body}");
        }
    }
}
