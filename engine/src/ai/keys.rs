//! API keys, rate limits and usage metering for the AI, live AI and control endpoints.
//!
//! Keys live in a TOML file (`--api-keys`) as SHA-256 hashes, never in clear:
//!
//! ```toml
//! [[key]]
//! name = "alice"
//! sha256 = "…64 hex…"          # sha256 of the key (`sluice key` prints both)
//! requests_per_minute = 60      # token bucket refill; 0 = no limit
//! burst = 10                    # bucket size [default: requests_per_minute, at least 1]
//! max_concurrent = 2            # jobs at once; 0 = no limit
//! control = false               # may use the control API
//! revoked = false               # refused with 403, kept for its usage
//! ```
//!
//! The file is reread when it changes and on SIGHUP; a file that does not parse leaves
//! the keys as they were (logged). The decisions ([`Limits::admit`]) take `now` as an
//! argument; the shell passes the clock.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use transport::ai::{UnitKind, Units};

/// One key's entry in the file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Who holds it (metrics label, usage key).
    pub name: String,
    /// SHA-256 of the key, hex.
    pub sha256: String,
    /// Requests per minute (token bucket refill); 0 = unlimited.
    #[serde(default)]
    pub requests_per_minute: f64,
    /// Bucket size; defaults to `requests_per_minute` (at least 1).
    #[serde(default)]
    pub burst: Option<f64>,
    /// Jobs at once; 0 = unlimited.
    #[serde(default)]
    pub max_concurrent: u32,
    /// May use the control API.
    #[serde(default)]
    pub control: bool,
    /// Refused (403) but kept, with its usage.
    #[serde(default)]
    pub revoked: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML for the schema, or a bad entry.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Parses a key file's text.
pub fn parse_keys(text: &str, path: &Path) -> Result<Vec<KeyEntry>, KeyFileError> {
    let invalid = |reason: String| KeyFileError::Invalid { path: path.to_owned(), reason };
    let f: KeyFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut names = std::collections::HashSet::new();
    for k in &f.key {
        if k.sha256.len() != 64 || !k.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid(format!("key {:?}: sha256 must be 64 hex characters", k.name)));
        }
        if k.name.is_empty() || !names.insert(k.name.clone()) {
            return Err(invalid(format!("key names must be unique and non-empty ({:?})", k.name)));
        }
        if !(k.requests_per_minute >= 0.0 && k.requests_per_minute.is_finite()) {
            return Err(invalid(format!("key {:?}: requests_per_minute must be >= 0", k.name)));
        }
    }
    Ok(f.key)
}

/// SHA-256 of a key, lower-case hex.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key (`sk-` and 32 bytes of hex).
pub fn new_key() -> String {
    format!("sk-{}", hex::encode(super::results::random_bytes::<32>()))
}

/// A refusal: 401, 403 or 429, with the reason and, for 429, when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Denied {
    /// 401, 403 or 429.
    pub status: StatusCode,
    /// Why.
    pub reason: String,
    /// `Retry-After`, seconds (429 only).
    pub retry_after: Option<u64>,
}

/// The request's key name, once admitted (`None` when keys are off).
pub type KeyName = Option<String>;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The admission decisions for one key set, without IO: token buckets and concurrent
/// jobs per key.
#[derive(Debug, Default)]
pub struct Limits {
    keys: HashMap<String, KeyEntry>,
    buckets: HashMap<String, Bucket>,
    running: HashMap<String, u32>,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// AI and live AI jobs: rate-limited, counted as running, metered.
    Jobs,
    /// Reading what jobs left (results, model lists): rate-limited only.
    Read,
    /// The control API.
    Control,
}

impl Limits {
    /// Replaces the key set (buckets and running counts of kept keys stay).
    pub fn set_keys(&mut self, keys: Vec<KeyEntry>) {
        self.keys = keys.into_iter().map(|k| (k.sha256.to_ascii_lowercase(), k)).collect();
        let names: std::collections::HashSet<&str> = self.keys.values().map(|k| k.name.as_str()).collect();
        self.buckets.retain(|n, _| names.contains(n.as_str()));
    }

    /// Admits a request carrying `authorization` at `now`: the key must be known, not
    /// revoked, allowed `scope`, under its rate and (for jobs) its concurrency. An
    /// admitted job counts as running until [`Limits::finish`].
    pub fn admit(&mut self, authorization: Option<&str>, scope: Scope, now: Instant) -> Result<String, Denied> {
        let deny = |status, reason: &str, retry_after| Err(Denied { status, reason: reason.into(), retry_after });
        let Some(value) = authorization else {
            return deny(StatusCode::UNAUTHORIZED, "an API key is required: Authorization: Bearer <key>", None);
        };
        let Some(key) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim) else {
            return deny(StatusCode::UNAUTHORIZED, "the Authorization header must be: Bearer <key>", None);
        };
        let Some(entry) = self.keys.get(&hash_key(key)) else {
            return deny(StatusCode::FORBIDDEN, "unknown API key", None);
        };
        if entry.revoked {
            return deny(StatusCode::FORBIDDEN, "API key revoked", None);
        }
        if scope == Scope::Control && !entry.control {
            return deny(StatusCode::FORBIDDEN, "this API key may not use the control API", None);
        }
        let name = entry.name.clone();
        if entry.requests_per_minute > 0.0 {
            let rate = entry.requests_per_minute / 60.0;
            let burst = entry.burst.unwrap_or(entry.requests_per_minute).max(1.0);
            let b = self.buckets.entry(name.clone()).or_insert(Bucket { tokens: burst, at: now });
            b.tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate).min(burst);
            b.at = now;
            if b.tokens < 1.0 {
                let wait = ((1.0 - b.tokens) / rate).ceil().max(1.0) as u64;
                return deny(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!("rate limit of {} requests per minute exceeded", entry.requests_per_minute),
                    Some(wait),
                );
            }
            b.tokens -= 1.0;
        }
        if scope == Scope::Jobs {
            let running = self.running.entry(name.clone()).or_default();
            if entry.max_concurrent > 0 && *running >= entry.max_concurrent {
                return deny(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!("{} jobs already running, the most this key may run at once", entry.max_concurrent),
                    Some(1),
                );
            }
            *running += 1;
        }
        Ok(name)
    }

    /// A job of key `name` ended.
    pub fn finish(&mut self, name: &str) {
        if let Some(n) = self.running.get_mut(name) {
            *n = n.saturating_sub(1);
        }
    }

    /// Keys known.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What one key used.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Usage {
    /// Requests admitted.
    pub requests: u64,
    /// Requests refused (rate, concurrency).
    pub denied: u64,
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Jobs that failed.
    pub failed: u64,
    /// Pixels paid for (image and video jobs).
    pub pixels: u64,
    /// Milliseconds of audio paid for.
    pub audio_ms: u64,
    /// LLM tokens produced.
    pub tokens: u64,
    /// Bytes of text spoken.
    pub characters: u64,
    /// Seconds of job time (request to answer).
    pub seconds: f64,
    /// Wei paid to orchestrators (ticket face value × win probability).
    pub wei: f64,
    /// Jobs running now.
    pub running: u32,
}

/// The key set and its usage, shared by the HTTP handlers.
#[derive(Debug, Default)]
pub struct KeyRing {
    path: Option<PathBuf>,
    limits: Mutex<Limits>,
    usage: Mutex<HashMap<String, Usage>>,
    loaded: RwLock<Option<std::time::SystemTime>>,
}

/// An admitted request; a job counts as running until its permit is dropped, whatever
/// ends it (an answer, an error, the client going away).
#[derive(Debug)]
pub struct Permit {
    ring: Arc<KeyRing>,
    /// The key's name (`None` when keys are off).
    pub key: KeyName,
    /// Counted as a running job.
    job: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let (Some(name), true) = (&self.key, self.job) {
            self.ring.limits.lock().unwrap_or_else(|e| e.into_inner()).finish(name);
            if let Some(u) = self.ring.usage.lock().unwrap_or_else(|e| e.into_inner()).get_mut(name) {
                u.running = u.running.saturating_sub(1);
            }
        }
    }
}

impl KeyRing {
    /// Keys from `path` (read now), or none (every request admitted) without one.
    pub fn load(path: Option<PathBuf>) -> Result<Arc<Self>, KeyFileError> {
        let ring = Arc::new(KeyRing { path, ..Default::default() });
        ring.reload()?;
        Ok(ring)
    }

    /// True when requests need a key.
    pub fn enabled(&self) -> bool {
        self.path.is_some()
    }

    /// Rereads the file; on error the keys stay as they were.
    pub fn reload(&self) -> Result<usize, KeyFileError> {
        let Some(path) = &self.path else { return Ok(0) };
        let read = |source| KeyFileError::Read { path: path.clone(), source };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).map_err(read)?;
        let text = std::fs::read_to_string(path).map_err(read)?;
        let keys = parse_keys(&text, path)?;
        let n = keys.len();
        self.limits.lock().unwrap_or_else(|e| e.into_inner()).set_keys(keys);
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(modified);
        Ok(n)
    }

    /// Rereads the file if it changed since the last read.
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.path else { return };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified.is_some() && modified != *self.loaded.read().unwrap_or_else(|e| e.into_inner()) {
            match self.reload() {
                Ok(n) => tracing::info!(path = %path.display(), keys = n, "API keys reloaded"),
                Err(e) => tracing::warn!(error = %e, "API key file not reloaded; keeping the previous keys"),
            }
        }
    }

    /// Admits a request for `scope` (always, when keys are off).
    #[allow(clippy::disallowed_methods)] // IO shell: passes the clock to the limits
    pub fn admit(self: &Arc<Self>, headers: &HeaderMap, scope: Scope) -> Result<Permit, Denied> {
        if !self.enabled() {
            return Ok(Permit { ring: self.clone(), key: None, job: false });
        }
        let auth = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let r = self.limits.lock().unwrap_or_else(|e| e.into_inner()).admit(auth, scope, Instant::now());
        match r {
            Ok(name) => {
                if scope == Scope::Jobs {
                    let mut u = self.usage.lock().unwrap_or_else(|e| e.into_inner());
                    let e = u.entry(name.clone()).or_default();
                    e.requests += 1;
                    e.running += 1;
                }
                Ok(Permit { ring: self.clone(), key: Some(name), job: scope == Scope::Jobs })
            }
            Err(d) => {
                if d.status == StatusCode::TOO_MANY_REQUESTS
                    && let Some(name) = self.name_of(auth)
                {
                    self.usage.lock().unwrap_or_else(|e| e.into_inner()).entry(name).or_default().denied += 1;
                }
                tracing::info!(status = d.status.as_u16(), reason = %d.reason, "request refused");
                Err(d)
            }
        }
    }

    fn name_of(&self, auth: Option<&str>) -> Option<String> {
        let auth = auth?;
        let key = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer "))?.trim();
        let l = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        l.keys.get(&hash_key(key)).map(|k| k.name.clone())
    }

    /// Records how a job of `permit` ended: its units, LLM tokens produced, time and fee
    /// (a job whose client went away before it ended is neither succeeded nor failed).
    pub fn record(&self, permit: &Permit, outcome: Outcome) {
        let Some(name) = &permit.key else { return };
        let mut u = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let e = u.entry(name.clone()).or_default();
        if !outcome.ok {
            e.failed += 1;
            return;
        }
        e.succeeded += 1;
        e.seconds += outcome.took.as_secs_f64();
        e.wei += outcome.fee_wei;
        match outcome.units.map(|u| (u.kind(), u.count())) {
            Some((UnitKind::Pixels, n)) => e.pixels += n,
            Some((UnitKind::Milliseconds, n)) => e.audio_ms += n,
            Some((UnitKind::Characters, n)) => e.characters += n,
            Some((UnitKind::Tokens, _)) | None => {}
        }
        e.tokens += outcome.tokens;
    }

    /// Usage by key name.
    pub fn usage(&self) -> std::collections::BTreeMap<String, Usage> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Starts rereading the file when it changes (polled every second) and on SIGHUP,
    /// until `stop`.
    pub fn watch(
        self: &Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.path.as_ref()?;
        let ring = self.clone();
        Some(tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                #[cfg(unix)]
                let hup_recv = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hup_recv = std::future::pending::<Option<()>>();
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tick.tick() => ring.reload_if_changed(),
                    _ = hup_recv => match ring.reload() {
                        Ok(n) => tracing::info!(keys = n, "API keys reloaded (SIGHUP)"),
                        Err(e) => tracing::warn!(error = %e, "API key file not reloaded; keeping the previous keys"),
                    },
                }
            }
        }))
    }

    /// Usage as Prometheus metrics, labelled by key.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let usage = self.usage();
        let mut s = String::new();
        type Series = (&'static str, &'static str, fn(&Usage) -> f64);
        let metrics: [Series; 8] = [
            ("sluice_key_requests_total", "Requests admitted per API key.", |u| u.requests as f64),
            ("sluice_key_denied_total", "Requests refused for rate or concurrency per API key.", |u| u.denied as f64),
            ("sluice_key_pixels_total", "Pixels paid for per API key.", |u| u.pixels as f64),
            ("sluice_key_audio_ms_total", "Milliseconds of audio paid for per API key.", |u| u.audio_ms as f64),
            ("sluice_key_tokens_total", "LLM tokens produced per API key.", |u| u.tokens as f64),
            ("sluice_key_characters_total", "Bytes of text spoken per API key.", |u| u.characters as f64),
            ("sluice_key_seconds_total", "Seconds of job time per API key.", |u| u.seconds),
            ("sluice_key_wei_total", "Wei paid to orchestrators per API key.", |u| u.wei),
        ];
        for (name, help, f) in metrics {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
            for (key, u) in &usage {
                let _ = writeln!(s, "{name}{{key=\"{}\"}} {}", key.replace(['"', '\\', '\n'], "_"), f(u));
            }
        }
        s
    }
}

/// A finished job, for the usage figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// It succeeded.
    pub ok: bool,
    /// What it paid for.
    pub units: Option<Units>,
    /// LLM tokens produced.
    pub tokens: u64,
    /// Request to answer.
    pub took: Duration,
    /// Paid to the orchestrator, wei.
    pub fee_wei: f64,
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one real instant as the epoch
mod tests {
    use super::*;

    fn entry(name: &str, key: &str) -> KeyEntry {
        KeyEntry {
            name: name.into(),
            sha256: hash_key(key),
            requests_per_minute: 0.0,
            burst: None,
            max_concurrent: 0,
            control: false,
            revoked: false,
        }
    }

    #[test]
    fn unknown_missing_revoked_and_scopes() {
        let now = Instant::now();
        let mut l = Limits::default();
        l.set_keys(vec![
            entry("a", "ka"),
            KeyEntry { revoked: true, ..entry("r", "kr") },
            KeyEntry { control: true, ..entry("c", "kc") },
        ]);
        assert_eq!(l.admit(None, Scope::Jobs, now).unwrap_err().status, 401);
        assert_eq!(l.admit(Some("Basic x"), Scope::Jobs, now).unwrap_err().status, 401);
        assert_eq!(l.admit(Some("Bearer nope"), Scope::Jobs, now).unwrap_err().reason, "unknown API key");
        assert_eq!(l.admit(Some("Bearer kr"), Scope::Jobs, now).unwrap_err().reason, "API key revoked");
        assert_eq!(l.admit(Some("Bearer ka"), Scope::Jobs, now).unwrap(), "a");
        assert_eq!(l.admit(Some("Bearer ka"), Scope::Control, now).unwrap_err().status, 403);
        assert_eq!(l.admit(Some("Bearer kc"), Scope::Control, now).unwrap(), "c");
    }

    #[test]
    fn token_bucket_refills_with_time() {
        let t0 = Instant::now();
        let mut l = Limits::default();
        l.set_keys(vec![KeyEntry { requests_per_minute: 60.0, burst: Some(2.0), ..entry("a", "k") }]);
        assert!(l.admit(Some("Bearer k"), Scope::Read, t0).is_ok());
        assert!(l.admit(Some("Bearer k"), Scope::Read, t0).is_ok());
        let d = l.admit(Some("Bearer k"), Scope::Read, t0).unwrap_err();
        assert_eq!((d.status.as_u16(), d.retry_after), (429, Some(1)));
        assert!(d.reason.contains("60 requests per minute"));
        assert!(l.admit(Some("Bearer k"), Scope::Read, t0 + Duration::from_millis(1000)).is_ok());
        assert!(l.admit(Some("Bearer k"), Scope::Read, t0 + Duration::from_millis(1100)).is_err());
    }

    #[test]
    fn concurrency_counts_running_jobs() {
        let now = Instant::now();
        let mut l = Limits::default();
        l.set_keys(vec![KeyEntry { max_concurrent: 1, ..entry("a", "k") }]);
        assert!(l.admit(Some("Bearer k"), Scope::Jobs, now).is_ok());
        let d = l.admit(Some("Bearer k"), Scope::Jobs, now).unwrap_err();
        assert_eq!((d.status.as_u16(), d.retry_after), (429, Some(1)));
        l.finish("a");
        assert!(l.admit(Some("Bearer k"), Scope::Jobs, now).is_ok());
        // Reloading keeps the running count.
        l.set_keys(vec![KeyEntry { max_concurrent: 1, ..entry("a", "k") }]);
        assert!(l.admit(Some("Bearer k"), Scope::Jobs, now).is_err());
    }

    #[test]
    fn key_file_checks() {
        let p = Path::new("keys.toml");
        let good = format!("[[key]]\nname = \"a\"\nsha256 = \"{}\"\nmax_concurrent = 2\n", hash_key("k"));
        assert_eq!(parse_keys(&good, p).unwrap()[0].max_concurrent, 2);
        assert!(parse_keys("[[key]]\nname = \"a\"\nsha256 = \"abc\"\n", p).is_err());
        let dup = format!("{good}{good}");
        assert!(parse_keys(&dup, p).is_err());
        assert!(parse_keys("[[key]]\nname = \"a\"\nsha = \"x\"\n", p).is_err(), "unknown field");
        assert!(new_key().starts_with("sk-") && new_key().len() == 67);
    }
}
