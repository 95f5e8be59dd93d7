//! What a session manager and its driver say to each other: the events it takes, the
//! actions it asks for, and the identifiers both sides use.
use std::time::Duration;

use bytes::Bytes;
use num_rational::BigRational;
use transport::identity::Address;
use transport::orch_addr::OrchestratorUri;
use transport::proto::{
    AuthToken, Capabilities, OrchestratorInfo, PriceInfo, TicketParams, TranscodeResult, VideoProfile,
};
use transport::refusal::Failure;
use transport::segment::SegmentTimeouts;

use crate::pool::OrchId;
use crate::report::{Report, SegmentResult};

/// Gateway-wide settings every stream's manager shares.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Attempts per segment (`--max-attempts`), at least 1.
    pub max_attempts: u32,
    /// True when orchestrators are paid with tickets (an on-chain network).
    pub paid: bool,
    /// Highest acceptable price per pixel, wei.
    pub max_price: Option<BigRational>,
    /// What the job needs of an orchestrator.
    pub capabilities: Capabilities,
    /// Orchestrator addresses never to use.
    pub blocklist: Vec<Address>,
}

/// One network operation the manager waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(pub u64);

/// One queued segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId(pub u64);

/// One orchestrator session of this manager (for the driver's ticket sender and
/// `EndTranscodingSession`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey(pub u64);

/// A closed source segment to transcode. The driver keeps its bytes under the [`JobId`]
/// it gets back from `SegmentJobs::push`.
#[derive(Debug, Clone)]
pub struct SegmentJob {
    /// Segment sequence number.
    pub seq: u64,
    /// Duration.
    pub duration: Duration,
    /// False when the segment does not start with a keyframe.
    pub independent: bool,
    /// Size in bytes.
    pub bytes: usize,
    /// The renditions to make (the ladder offered for this source), in order; empty
    /// when there is nothing to make.
    pub profiles: Vec<VideoProfile>,
}

/// What the driver tells the manager.
#[derive(Debug)]
pub enum Event {
    /// `GetOrchestrator` answered (or failed). `unix_now` is wall-clock seconds, to place
    /// the auth token's expiry on the monotonic clock.
    SessionOpened {
        /// The operation.
        op: OpId,
        /// The answer.
        result: Result<OrchestratorInfo, Failure>,
        /// Unix seconds now.
        unix_now: i64,
    },
    /// The payment for an attempt was signed (the `Livepeer-Payment` header value).
    PaymentAnswered {
        /// The operation.
        op: OpId,
        /// The header, or why it could not be made.
        result: Result<String, Failure>,
    },
    /// The `/segment` POST was answered (or failed).
    SubmitAnswered {
        /// The operation.
        op: OpId,
        /// The decoded result and the upload time, or the failure.
        result: Result<SubmitReply, SubmitFailure>,
    },
    /// The renditions were downloaded (or one failed).
    RenditionsFetched {
        /// The operation.
        op: OpId,
        /// The renditions in URL order.
        result: Result<Vec<Bytes>, Failure>,
    },
}

/// An orchestrator's answer to a segment.
#[derive(Debug, Clone)]
pub struct SubmitReply {
    /// The decoded `TranscodeResult`.
    pub result: TranscodeResult,
    /// From sending the request to the response headers.
    pub upload: Duration,
}

/// A failed `/segment` POST.
#[derive(Debug, Clone)]
pub struct SubmitFailure {
    /// What went wrong.
    pub failure: Failure,
    /// True when response headers arrived, so an attached payment counts as spent.
    pub response_received: bool,
}

/// What the manager asks the driver to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Call `GetOrchestrator` on `addr`, answering within `budget` with
    /// [`Event::SessionOpened`].
    OpenSession {
        /// The operation.
        op: OpId,
        /// The orchestrator.
        orch: OrchId,
        /// Its address.
        addr: OrchestratorUri,
        /// How long to wait.
        budget: Duration,
    },
    /// Sign `tickets` tickets under `params` for session `session` and answer with
    /// [`Event::PaymentAnswered`] (with zero tickets: a payment naming the sender and
    /// the expected price only).
    Pay {
        /// The operation.
        op: OpId,
        /// The session whose ticket sender signs.
        session: SessionKey,
        /// The session's current ticket params.
        params: Option<TicketParams>,
        /// The price the payment expects.
        price_info: PriceInfo,
        /// Tickets to sign.
        tickets: u32,
    },
    /// POST job `job`'s bytes to `{transcoder}/segment` and answer with
    /// [`Event::SubmitAnswered`].
    Submit {
        /// The operation.
        op: OpId,
        /// The segment.
        job: JobId,
        /// Its session (after the answer, the driver may sign the next tickets ahead).
        session: SessionKey,
        /// Where to send it.
        transcoder: String,
        /// The session's auth token (goes into the signed `SegData`).
        auth_token: Option<AuthToken>,
        /// The renditions asked for.
        profiles: Vec<VideoProfile>,
        /// The `Livepeer-Payment` value, if paying.
        payment: Option<String>,
        /// Tickets in that payment.
        tickets: u32,
        /// Header and whole-exchange deadlines.
        timeouts: SegmentTimeouts,
    },
    /// Download each URL (each within `timeout`) and answer with
    /// [`Event::RenditionsFetched`].
    Fetch {
        /// The operation.
        op: OpId,
        /// Rendition URLs in profile order.
        urls: Vec<String>,
        /// Per download.
        timeout: Duration,
    },
    /// Send `EndTranscodingSession` (nobody waits for the answer) and forget the
    /// session's ticket sender.
    EndSession {
        /// The session.
        session: SessionKey,
        /// Its orchestrator.
        addr: OrchestratorUri,
        /// Its auth token.
        auth_token: Option<AuthToken>,
    },
    /// Sign `count` tickets ahead for `session` under `params` (the ones the last result
    /// brought), so the next segment's signatures are off its path to the wire.
    Presign {
        /// The session.
        session: SessionKey,
        /// Its current ticket params.
        params: Option<TicketParams>,
        /// Tickets to sign.
        count: u32,
    },
    /// Job `job` is finished.
    Deliver {
        /// The segment.
        job: JobId,
        /// What became of it.
        outcome: JobOutcome,
        /// Its result for the status JSON.
        record: SegmentResult,
    },
    /// A fact for the recorder.
    Report(Report),
    /// Every segment queued before `SegmentJobs::end` is delivered: the renditions
    /// can be ended.
    Ended,
}

/// What became of a segment job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// The renditions, in the order of [`SegmentJob::profiles`].
    Transcoded(Vec<Bytes>),
    /// Nothing was asked for (no rendition offered for this source).
    NothingOffered,
    /// Not sent to any orchestrator; its renditions are gaps.
    NotSent(String),
    /// Every attempt failed; its renditions are gaps.
    Failed(String),
}
