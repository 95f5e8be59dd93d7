//! Per-stream transcoding state for the control API: orchestrator sessions and the
//! outcome of recent segments.
use std::collections::VecDeque;

use serde::Serialize;

/// Segment results kept per stream.
pub const RECENT_RESULTS: usize = 64;
/// Orchestrator sessions kept per stream (current and past).
pub const SESSIONS_KEPT: usize = 8;

/// What a stream's transcoder has done.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TranscodeStatus {
    /// Orchestrator sessions, newest last.
    pub sessions: VecDeque<SessionStatus>,
    /// The latest segment results, newest last.
    pub recent: VecDeque<SegmentResult>,
    /// Segments transcoded.
    pub transcoded: u64,
    /// Segments whose renditions are gaps.
    pub failed: u64,
    /// Payment tickets sent.
    pub tickets_sent: u64,
    /// Expected value of those tickets, in wei.
    pub ev_paid_wei: f64,
}

/// One orchestrator session.
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

impl TranscodeStatus {
    /// Records a segment result.
    pub fn record(&mut self, r: SegmentResult) {
        if r.ok {
            self.transcoded += 1;
        } else {
            self.failed += 1;
        }
        self.recent.push_back(r);
        while self.recent.len() > RECENT_RESULTS {
            self.recent.pop_front();
        }
    }

    /// Records a new session, marking earlier ones ended.
    pub fn session_started(&mut self, s: SessionStatus) {
        for old in &mut self.sessions {
            old.ended = true;
        }
        self.sessions.push_back(s);
        while self.sessions.len() > SESSIONS_KEPT {
            self.sessions.pop_front();
        }
    }
}
