//! Per-stream transcoding state for the control API: orchestrator sessions and the
//! outcome of recent segments.
use std::collections::VecDeque;

use serde::Serialize;
pub use session::report::{SegmentResult, SessionStatus};

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
    /// Segments sent whose transcode failed (their renditions are gaps).
    pub failed: u64,
    /// Segments never sent (cut between keyframes, or skipped as backlog); their
    /// renditions are gaps too, but no orchestrator failed.
    pub not_sent: u64,
    /// Payment tickets sent.
    pub tickets_sent: u64,
    /// Expected value of those tickets, in wei.
    pub ev_paid_wei: f64,
}

impl TranscodeStatus {
    /// Records a segment result.
    pub fn record(&mut self, r: SegmentResult) {
        if r.ok {
            self.transcoded += 1;
        } else if r.sent {
            self.failed += 1;
        } else {
            self.not_sent += 1;
        }
        self.recent.push_back(r);
        while self.recent.len() > RECENT_RESULTS {
            self.recent.pop_front();
        }
    }

    /// The current session ended.
    pub fn session_ended(&mut self) {
        if let Some(last) = self.sessions.back_mut() {
            last.ended = true;
        }
    }

    /// The current session answered one more segment.
    pub fn session_segment(&mut self) {
        if let Some(last) = self.sessions.back_mut() {
            last.segments += 1;
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
