//! WHIP session resources (RFC 9725 §4.3–§4.4), without IO: creating one for an
//! accepted offer (its id, `Location` and strong `ETag`), `PATCH` with trickle ICE
//! candidates (`If-Match` checked: 428 without, 412 on a mismatch; an ICE restart is
//! refused with 422), `DELETE`, and the timeouts that end sessions whose publisher never
//! connected or went quiet. The shell passes `now` and random bytes in.
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How WHIP sessions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhipLimits {
    /// Sessions at once; more are refused with 503.
    pub max_sessions: usize,
    /// A session whose media has not started within this is ended.
    pub connect_timeout: Duration,
    /// A session without media for this long is ended.
    pub idle_timeout: Duration,
    /// Sessions of one stream at once (a WHEP stream's viewers); more are refused with 503.
    pub max_per_stream: usize,
}

impl Default for WhipLimits {
    fn default() -> Self {
        WhipLimits {
            max_sessions: 100,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_per_stream: usize::MAX,
        }
    }
}

/// A session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Answered; waiting for ICE, DTLS and the first media.
    Connecting { since: Instant },
    /// Media flows; the last packet's time.
    Live { last: Instant },
}

#[derive(Debug, Clone)]
struct Entry {
    stream: String,
    etag: String,
    state: State,
}

/// A created session resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The id (32 hex characters).
    pub id: String,
    /// The `Location`: `/live/{stream}/whip/{id}`.
    pub location: String,
    /// The strong `ETag` (quoted).
    pub etag: String,
}

/// Why a request on the sessions was refused, with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// No such session (404).
    #[error("no WHIP session {0}")]
    NotFound(String),
    /// Full (503, retry later).
    #[error("{0} WHIP sessions already; try again later")]
    Full(usize),
    /// The stream has as many sessions as it may (503, retry later).
    #[error("stream {stream} already has {max} sessions; try again later")]
    StreamFull {
        /// The stream.
        stream: String,
        /// Its limit.
        max: usize,
    },
    /// `PATCH` without `If-Match` (428).
    #[error("PATCH needs If-Match with the session's ETag")]
    PreconditionRequired,
    /// `If-Match` names another version (412).
    #[error("If-Match does not match the session's ETag")]
    PreconditionFailed,
    /// ICE restart asked (`If-Match: "*"`) (422).
    #[error("ICE restarts are not supported; start a new session")]
    RestartUnsupported,
    /// `PATCH` with another body type (415).
    #[error("PATCH takes application/trickle-ice-sdpfrag")]
    MediaType,
}

impl SessionError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            SessionError::NotFound(_) => 404,
            SessionError::Full(_) | SessionError::StreamFull { .. } => 503,
            SessionError::PreconditionRequired => 428,
            SessionError::PreconditionFailed => 412,
            SessionError::RestartUnsupported => 422,
            SessionError::MediaType => 415,
        }
    }
}

/// Why a session ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The publisher never got media through.
    NeverConnected,
    /// Media stopped.
    Idle,
}

/// One ICE candidate of a trickle `PATCH`: the media section (`a=mid`) it belongs to and
/// the `candidate:` attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `a=mid` in force, if any.
    pub mid: Option<String>,
    /// `candidate:…` (without `a=`).
    pub candidate: String,
}

/// The sessions of one gateway: its WHIP publishers' (`/live/{stream}/whip/{id}`) or its
/// WHEP viewers' (`/live/{stream}/whep/{id}`).
#[derive(Debug)]
pub struct WhipSessions {
    limits: WhipLimits,
    /// The path element of session resources: `whip` or `whep`.
    resource: &'static str,
    sessions: HashMap<String, Entry>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl WhipSessions {
    /// No WHIP sessions, within `limits`.
    pub fn new(limits: WhipLimits) -> Self {
        Self::for_resource(limits, "whip")
    }

    /// No sessions, within `limits`, their resources under `/live/{stream}/{resource}/`.
    pub fn for_resource(limits: WhipLimits, resource: &'static str) -> Self {
        WhipSessions { limits, resource, sessions: HashMap::new() }
    }

    /// A session for an accepted offer publishing (or playing) `stream`; `random` makes
    /// its id and ETag.
    pub fn create(&mut self, now: Instant, stream: &str, random: [u8; 24]) -> Result<Created, SessionError> {
        if self.sessions.len() >= self.limits.max_sessions {
            return Err(SessionError::Full(self.limits.max_sessions));
        }
        if self.limits.max_per_stream != usize::MAX
            && self.sessions.values().filter(|e| e.stream == stream).count() >= self.limits.max_per_stream
        {
            return Err(SessionError::StreamFull { stream: stream.to_owned(), max: self.limits.max_per_stream });
        }
        let id = hex(&random[..16]);
        let etag = format!("\"{}\"", hex(&random[16..]));
        let location = format!("/live/{stream}/{}/{id}", self.resource);
        let entry = Entry { stream: stream.to_owned(), etag: etag.clone(), state: State::Connecting { since: now } };
        self.sessions.insert(id.clone(), entry);
        Ok(Created { id, location, etag })
    }

    /// `DELETE`: ends session `id`; returns its stream.
    pub fn delete(&mut self, id: &str) -> Result<String, SessionError> {
        self.sessions.remove(id).map(|e| e.stream).ok_or_else(|| SessionError::NotFound(id.to_owned()))
    }

    /// `PATCH` with `content_type`, `If-Match` and the sdpfrag `body`: the candidates to add.
    pub fn patch(
        &mut self,
        id: &str,
        content_type: Option<&str>,
        if_match: Option<&str>,
        body: &str,
    ) -> Result<Vec<Candidate>, SessionError> {
        let e = self.sessions.get(id).ok_or_else(|| SessionError::NotFound(id.to_owned()))?;
        let ct = content_type.unwrap_or("").split(';').next().unwrap_or("").trim();
        if !ct.eq_ignore_ascii_case("application/trickle-ice-sdpfrag") {
            return Err(SessionError::MediaType);
        }
        // New ICE credentials in the body ask for a restart, whatever the tag.
        let restart = body.lines().any(|l| l.starts_with("a=ice-ufrag:") || l.starts_with("a=ice-pwd:"));
        let Some(if_match) = if_match.map(str::trim) else { return Err(SessionError::PreconditionRequired) };
        if if_match == "*" || restart {
            return Err(SessionError::RestartUnsupported);
        }
        // A list of tags matches if any of them is this one (strong comparison).
        if !if_match.split(',').map(str::trim).any(|t| t == e.etag) {
            return Err(SessionError::PreconditionFailed);
        }
        Ok(parse_sdpfrag(body))
    }

    /// Session `id` was answered at `now`: its connect timeout runs from here (making the
    /// answer may take a while under load). False if there is no such session.
    pub fn answered(&mut self, id: &str, now: Instant) -> bool {
        match self.sessions.get_mut(id) {
            Some(e) => {
                if let State::Connecting { since } = &mut e.state {
                    *since = now;
                }
                true
            }
            None => false,
        }
    }

    /// Media arrived on session `id` at `now`.
    pub fn media(&mut self, id: &str, now: Instant) {
        if let Some(e) = self.sessions.get_mut(id) {
            e.state = State::Live { last: now };
        }
    }

    /// The stream session `id` publishes.
    pub fn stream(&self, id: &str) -> Option<&str> {
        self.sessions.get(id).map(|e| e.stream.as_str())
    }

    /// Sessions at once.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// No sessions.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Removes and returns the sessions that timed out by `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, Expiry)> {
        let limits = self.limits;
        let mut out = Vec::new();
        self.sessions.retain(|id, e| {
            let gone = match e.state {
                State::Connecting { since } => {
                    (now.saturating_duration_since(since) >= limits.connect_timeout).then_some(Expiry::NeverConnected)
                }
                State::Live { last } => {
                    (now.saturating_duration_since(last) >= limits.idle_timeout).then_some(Expiry::Idle)
                }
            };
            if let Some(why) = gone {
                out.push((id.clone(), why));
            }
            gone.is_none()
        });
        out
    }

    /// When the next session could time out, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sessions
            .values()
            .map(|e| match e.state {
                State::Connecting { since } => since + self.limits.connect_timeout,
                State::Live { last } => last + self.limits.idle_timeout,
            })
            .min()
    }
}

/// The candidates of a trickle-ICE sdpfrag (RFC 8840): `a=candidate:` lines, each with the
/// `a=mid` before it; `a=end-of-candidates` and other lines are skipped.
pub fn parse_sdpfrag(body: &str) -> Vec<Candidate> {
    let mut mid = None;
    let mut out = Vec::new();
    for line in body.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.to_owned());
        } else if let Some(c) = line.strip_prefix("a=")
            && c.starts_with("candidate:")
        {
            out.push(Candidate { mid: mid.clone(), candidate: c.to_owned() });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one real instant as the epoch
mod tests {
    use super::*;

    #[test]
    fn create_patch_delete() {
        let now = Instant::now();
        let mut s = WhipSessions::new(WhipLimits { max_sessions: 2, ..Default::default() });
        let c = s.create(now, "cam", [7; 24]).unwrap();
        assert_eq!(c.id, "07".repeat(16));
        assert_eq!(c.location, format!("/live/cam/whip/{}", c.id));
        assert_eq!(c.etag, format!("\"{}\"", "07".repeat(8)));
        let frag = "a=mid:0\r\na=candidate:1 1 udp 2122 10.0.0.1 5000 typ host\r\na=end-of-candidates\r\n";
        let ct = Some("application/trickle-ice-sdpfrag");
        assert_eq!(s.patch(&c.id, ct, None, frag), Err(SessionError::PreconditionRequired));
        assert_eq!(s.patch(&c.id, ct, Some("\"nope\""), frag), Err(SessionError::PreconditionFailed));
        assert_eq!(s.patch(&c.id, ct, Some("*"), frag).unwrap_err().status(), 422);
        assert_eq!(s.patch(&c.id, Some("application/sdp"), Some(&c.etag), frag).unwrap_err().status(), 415);
        let restart = format!("a=ice-ufrag:new\r\na=ice-pwd:newpassword\r\n{frag}");
        assert_eq!(
            s.patch(&c.id, ct, Some(&c.etag), &restart).unwrap_err().status(),
            422,
            "new credentials: a restart"
        );
        assert!(s.patch(&c.id, ct, Some(&format!("\"a\", {}", c.etag)), frag).is_ok(), "a list of tags");
        let got = s.patch(&c.id, ct, Some(&c.etag), frag).unwrap();
        assert_eq!(
            got,
            vec![Candidate {
                mid: Some("0".into()),
                candidate: "candidate:1 1 udp 2122 10.0.0.1 5000 typ host".into()
            }]
        );
        assert_eq!(s.patch("unknown", ct, Some(&c.etag), frag).unwrap_err().status(), 404);
        s.create(now, "b", [1; 24]).unwrap();
        assert_eq!(s.create(now, "c", [2; 24]).unwrap_err().status(), 503);
        assert_eq!(s.delete(&c.id), Ok("cam".into()));
        assert_eq!(s.delete(&c.id).unwrap_err().status(), 404);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn viewers_per_stream() {
        let now = Instant::now();
        let limits = WhipLimits { max_per_stream: 2, ..Default::default() };
        let mut s = WhipSessions::for_resource(limits, "whep");
        let a = s.create(now, "cam", [1; 24]).unwrap();
        assert_eq!(a.location, format!("/live/cam/whep/{}", a.id));
        s.create(now, "cam", [2; 24]).unwrap();
        let e = s.create(now, "cam", [3; 24]).unwrap_err();
        assert_eq!((e.status(), e.to_string()), (503, "stream cam already has 2 sessions; try again later".into()));
        s.create(now, "other", [4; 24]).unwrap();
        s.delete(&a.id).unwrap();
        s.create(now, "cam", [5; 24]).unwrap();
    }

    #[test]
    fn timeouts() {
        let t0 = Instant::now();
        let limits = WhipLimits {
            max_sessions: 10,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(3),
            ..Default::default()
        };
        let mut s = WhipSessions::new(limits);
        let quiet = s.create(t0, "a", [1; 24]).unwrap().id;
        let live = s.create(t0, "b", [2; 24]).unwrap().id;
        assert!(s.answered(&quiet, t0) && !s.answered("nope", t0));
        s.media(&live, t0 + Duration::from_secs(1));
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(4)));
        assert_eq!(s.expire(t0 + Duration::from_secs(2)), vec![]);
        s.media(&live, t0 + Duration::from_secs(3));
        assert_eq!(s.expire(t0 + Duration::from_secs(5)), vec![(quiet, Expiry::NeverConnected)]);
        assert_eq!(s.expire(t0 + Duration::from_secs(6)), vec![(live, Expiry::Idle)]);
        assert!(s.is_empty());
    }
}
