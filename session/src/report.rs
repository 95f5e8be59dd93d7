//! What a session manager reports as it works: one stream of facts that the engine's
//! recorder turns into metrics, log lines and the stream's status JSON, so an attempt is
//! described once.
use std::time::Duration;

use serde::Serialize;
use transport::refusal::Failure;

/// One orchestrator session, as the control API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionStatus {
    /// The orchestrator as configured (`--orch-addr`).
    pub orchestrator: String,
    /// Its transcoder URI (where segments go).
    pub transcoder: String,
    /// The orchestrator's session id (from the auth token).
    pub session_id: String,
    /// Unix seconds when it began.
    pub started_unix: u64,
    /// True once ended or replaced.
    pub ended: bool,
    /// Segments sent in it.
    pub segments: u64,
    /// Price per pixel in wei (paid mode).
    pub price_per_pixel_wei: Option<f64>,
}

/// One segment's transcode.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentResult {
    /// Segment sequence number.
    pub seq: u64,
    /// Orchestrator of the last attempt.
    pub orchestrator: Option<String>,
    /// True when every rendition was stored.
    pub ok: bool,
    /// False when the segment was never sent (cut between keyframes, or skipped as
    /// backlog): its renditions are gaps but no orchestrator failed.
    pub sent: bool,
    /// Why not.
    pub error: Option<String>,
    /// Attempts made (1 = first try).
    pub attempts: u32,
    /// Milliseconds until the orchestrator's response headers (upload).
    pub upload_ms: Option<f64>,
    /// Milliseconds from handing the segment over to renditions stored.
    pub total_ms: f64,
    /// Tickets attached.
    pub tickets: u32,
    /// With retries: milliseconds from the first attempt's start to the successful
    /// attempt's start (the failover time).
    pub failover_ms: Option<f64>,
}

/// A fact worth recording.
#[derive(Debug, Clone)]
pub enum Report {
    /// A session was opened.
    SessionStarted(SessionStatus),
    /// The current session ended (replaced, refreshed, stream over).
    SessionEnded {
        /// Orchestrator.
        orchestrator: String,
        /// Why it was left.
        why: String,
    },
    /// An orchestrator could not give a session.
    Unusable {
        /// Orchestrator.
        orchestrator: String,
        /// What was wrong.
        failure: Failure,
    },
    /// A segment went out on the wire.
    SegmentSent {
        /// Its size.
        bytes: usize,
        /// On its first attempt, how long it waited between closing and going out.
        dispatch: Option<Duration>,
    },
    /// Tickets were attached to a segment and the orchestrator answered.
    TicketsSent {
        /// How many.
        count: u32,
        /// Their expected value, wei.
        ev_wei: f64,
    },
    /// The orchestrator answered a segment in the current session.
    SessionSegment,
    /// Renditions were downloaded.
    RenditionsReceived {
        /// Their total size.
        bytes: usize,
    },
    /// An attempt succeeded.
    AttemptSucceeded {
        /// Segment.
        seq: u64,
        /// Orchestrator.
        orchestrator: String,
        /// From the attempt's start to renditions in hand.
        took: Duration,
        /// Tickets attached.
        tickets: u32,
    },
    /// An attempt failed.
    AttemptFailed {
        /// Segment.
        seq: u64,
        /// Orchestrator.
        orchestrator: String,
        /// Attempt number (1 = first).
        attempt: u32,
        /// From the attempt's start to the failure.
        took: Duration,
        /// What went wrong and what comes next.
        failure: Failure,
        /// The suspension the pool applied.
        suspended_for: Option<Duration>,
    },
    /// The orchestrator's price rose above the cap mid-session: the stream moves on.
    PriceAboveCap {
        /// Orchestrator.
        orchestrator: String,
        /// The price and the cap.
        detail: String,
    },
    /// A result brought no usable ticket params; the ones in force are kept.
    StaleParams {
        /// Orchestrator.
        orchestrator: String,
    },
    /// A segment waited too long behind others and was not sent.
    BacklogSkip {
        /// Segment.
        seq: u64,
        /// How long it waited.
        waited: Duration,
    },
}
