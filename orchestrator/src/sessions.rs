//! The orchestrator's transcoding sessions, without IO: admission against the session cap
//! and the per-session queue (`OrchestratorCapped`, `OrchestratorBusy`, spec §4.3), the
//! rendition store the download URLs point at, and idle expiry. Time comes in as `now`.
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use transport::refusal::wire;

/// Rendition segments kept per session and rendition for download (go-livepeer's memory
/// store keeps 12).
pub const STORE_DEPTH: usize = 12;
/// Segments a session may have queued or in progress before `OrchestratorBusy`.
pub const SESSION_QUEUE: usize = 4;
/// A session with nothing in flight is dropped after this long without a segment.
pub const SESSION_IDLE: Duration = Duration::from_secs(70);

struct Session {
    in_flight: usize,
    last_seen: Instant,
    /// Rendition name → last [`STORE_DEPTH`] (seq, bytes).
    store: HashMap<String, VecDeque<(i64, Bytes)>>,
}

/// Why a segment is not taken now: the `TranscodeResult.error` to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A new session while `max_sessions` are served.
    Capped,
    /// The session already has [`SESSION_QUEUE`] segments in flight.
    Busy,
}

impl Refused {
    /// The wire string (go-livepeer's).
    pub fn as_wire(self) -> &'static str {
        match self {
            Refused::Capped => wire::CAPPED,
            Refused::Busy => wire::BUSY,
        }
    }
}

/// Every session this orchestrator serves.
pub struct SessionTable {
    max_sessions: usize,
    sessions: HashMap<String, Session>,
}

impl SessionTable {
    /// A table serving at most `max_sessions` sessions at once.
    pub fn new(max_sessions: usize) -> Self {
        SessionTable { max_sessions, sessions: HashMap::new() }
    }

    /// True when no new session can be opened (`GetOrchestrator` answers
    /// `ResourceExhausted`).
    pub fn is_full(&self) -> bool {
        self.sessions.len() >= self.max_sessions
    }

    /// Sessions served now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is served.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Takes a segment of session `id` in: counts it in flight, or says why not.
    pub fn admit(&mut self, id: &str, now: Instant) -> Result<(), Refused> {
        if !self.sessions.contains_key(id) && self.is_full() {
            return Err(Refused::Capped);
        }
        let s = self.sessions.entry(id.to_owned()).or_insert_with(|| Session {
            in_flight: 0,
            last_seen: now,
            store: HashMap::new(),
        });
        s.last_seen = now;
        if s.in_flight >= SESSION_QUEUE {
            return Err(Refused::Busy);
        }
        s.in_flight += 1;
        Ok(())
    }

    /// A segment of session `id` is done; `renditions` (name, bytes) are kept for
    /// download under `seq` (an empty list when it failed).
    pub fn finish(&mut self, id: &str, seq: i64, renditions: Vec<(String, Bytes)>, now: Instant) {
        let s = self.sessions.entry(id.to_owned()).or_insert_with(|| Session {
            in_flight: 1,
            last_seen: now,
            store: HashMap::new(),
        });
        for (name, data) in renditions {
            let dir = s.store.entry(name).or_default();
            dir.push_back((seq, data));
            while dir.len() > STORE_DEPTH {
                dir.pop_front();
            }
        }
        s.in_flight = s.in_flight.saturating_sub(1);
        s.last_seen = now;
    }

    /// A stored rendition segment.
    pub fn rendition(&self, id: &str, rendition: &str, seq: i64) -> Option<Bytes> {
        let dir = self.sessions.get(id)?.store.get(rendition)?;
        dir.iter().find(|(q, _)| *q == seq).map(|(_, b)| b.clone())
    }

    /// The gateway ended session `id`.
    pub fn end(&mut self, id: &str) {
        self.sessions.remove(id);
    }

    /// Drops sessions idle for [`SESSION_IDLE`] with nothing in flight; returns their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut gone = Vec::new();
        self.sessions.retain(|id, s| {
            let keep = s.in_flight > 0 || now.saturating_duration_since(s.last_seen) < SESSION_IDLE;
            if !keep {
                gone.push(id.clone());
            }
            keep
        });
        gone
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one real instant as their epoch
mod tests {
    use super::*;

    #[test]
    fn cap_queue_store_and_expiry() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(2);
        assert_eq!(t.admit("a", t0), Ok(()));
        assert_eq!(t.admit("b", t0), Ok(()));
        assert!(t.is_full());
        assert_eq!(t.admit("c", t0), Err(Refused::Capped), "a third session");
        for _ in 1..SESSION_QUEUE {
            assert_eq!(t.admit("a", t0), Ok(()), "known sessions are not capped");
        }
        assert_eq!(t.admit("a", t0), Err(Refused::Busy));
        assert_eq!(Refused::Busy.as_wire(), "OrchestratorBusy");
        t.finish("a", 7, vec![("P240p".into(), Bytes::from_static(b"ts"))], t0);
        assert_eq!(t.admit("a", t0), Ok(()), "room again");
        assert_eq!(t.rendition("a", "P240p", 7).as_deref(), Some(&b"ts"[..]));
        assert_eq!(t.rendition("a", "P240p", 8), None);
        for seq in 0..20 {
            t.finish("b", seq, vec![("P240p".into(), Bytes::new())], t0);
        }
        assert!(t.rendition("b", "P240p", 19 - STORE_DEPTH as i64).is_none(), "only the last {STORE_DEPTH} kept");
        assert!(t.rendition("b", "P240p", 19).is_some());
        // Idle expiry keeps sessions with work in flight.
        let later = t0 + SESSION_IDLE;
        assert_eq!(t.expire(later), vec!["b".to_owned()]);
        assert_eq!(t.len(), 1);
        t.end("a");
        assert!(t.is_empty());
    }
}
