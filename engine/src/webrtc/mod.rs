//! WebRTC on the HTTP port: WHIP publishing ([`whip`], RFC 9725) and WHEP playback
//! ([`whep`]), with GStreamer `webrtcbin` peers from `webrtc_media`; [`feed`] hands a
//! stream's access units to its viewers. The `[webrtc]` settings (ICE servers, UDP
//! ports, session limits) are [`WebrtcConfig`]. See docs/WEBRTC.md.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clap::Args;
use ingest::whip::ice::IceServer;
use ingest::whip::session::{SessionError, WhipLimits, WhipSessions};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::info;

use crate::config::ConfigError;

pub mod client;
pub mod feed;
pub mod whep;
pub mod whip;

/// WHIP publishing sessions at once, by default.
pub const DEFAULT_MAX_PUBLISHERS: usize = 100;
/// WHEP viewers of one stream at once, by default.
pub const DEFAULT_MAX_VIEWERS: usize = 50;
/// WHEP viewers of all streams at once, by default.
pub const DEFAULT_MAX_VIEWERS_TOTAL: usize = 500;
/// Seconds a session may take to connect, or go without media, by default.
pub const DEFAULT_SESSION_TIMEOUT: f64 = 30.0;

/// `[webrtc]`: WHIP publishing and WHEP playback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "WebRTC")]
pub struct WebrtcConfig {
    /// STUN and TURN servers for WHIP and WHEP sessions, also announced to clients in
    /// `Link` headers: `stun:host:port`, `turn:user:password@host:port?transport=udp`.
    /// Repeat or comma-separate. None by default (host candidates only).
    #[arg(long = "webrtc-ice-server", env = "SLUICE_WEBRTC_ICE_SERVERS", value_name = "URI", value_delimiter = ',')]
    pub webrtc_ice_servers: Vec<String>,
    /// UDP ports ICE candidates use, `MIN-MAX` (by default any port the system gives).
    #[arg(long, env = "SLUICE_WEBRTC_UDP_PORTS", value_name = "MIN-MAX")]
    pub webrtc_udp_ports: Option<String>,
    /// Offer host candidates on these addresses only (the interfaces clients reach);
    /// repeat or comma-separate. By default every interface's.
    #[arg(
        long = "webrtc-host-address",
        env = "SLUICE_WEBRTC_HOST_ADDRESSES",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub webrtc_host_addresses: Vec<std::net::IpAddr>,
    /// WHIP publishing sessions at once; more are refused with 503.
    #[arg(long, env = "SLUICE_WEBRTC_MAX_PUBLISHERS", value_name = "N", default_value_t = DEFAULT_MAX_PUBLISHERS)]
    pub webrtc_max_publishers: usize,
    /// WHEP viewers of one stream at once; more are refused with 503.
    #[arg(long, env = "SLUICE_WEBRTC_MAX_VIEWERS", value_name = "N", default_value_t = DEFAULT_MAX_VIEWERS)]
    pub webrtc_max_viewers: usize,
    /// WHEP viewers of all streams at once; more are refused with 503.
    #[arg(long, env = "SLUICE_WEBRTC_MAX_VIEWERS_TOTAL", value_name = "N", default_value_t = DEFAULT_MAX_VIEWERS_TOTAL)]
    pub webrtc_max_viewers_total: usize,
    /// Seconds a WHIP or WHEP session may take to connect (ICE, DTLS, first media), and
    /// a connected one may go without media, before it is ended (1–600).
    #[arg(long, env = "SLUICE_WEBRTC_SESSION_TIMEOUT", value_name = "S", default_value_t = DEFAULT_SESSION_TIMEOUT)]
    pub webrtc_session_timeout: f64,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        WebrtcConfig {
            webrtc_ice_servers: Vec::new(),
            webrtc_udp_ports: None,
            webrtc_host_addresses: Vec::new(),
            webrtc_max_publishers: DEFAULT_MAX_PUBLISHERS,
            webrtc_max_viewers: DEFAULT_MAX_VIEWERS,
            webrtc_max_viewers_total: DEFAULT_MAX_VIEWERS_TOTAL,
            webrtc_session_timeout: DEFAULT_SESSION_TIMEOUT,
        }
    }
}

impl WebrtcConfig {
    /// Checks the servers, ports and limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason| Err(ConfigError::Invalid { field, reason });
        if self.ice_servers().is_err() {
            return bad(
                "webrtc_ice_servers",
                "each is stun:host[:port] or turn:user:password@host[:port][?transport=udp|tcp]",
            );
        }
        if self.webrtc_udp_ports.is_some() && self.udp_ports().is_none() {
            return bad("webrtc_udp_ports", "must be MIN-MAX, two ports with MIN <= MAX");
        }
        if self.webrtc_max_publishers == 0 || self.webrtc_max_viewers == 0 || self.webrtc_max_viewers_total == 0 {
            return bad("webrtc_max_publishers", "session limits must be at least 1");
        }
        if !(1.0..=600.0).contains(&self.webrtc_session_timeout) {
            return bad("webrtc_session_timeout", "must be between 1 and 600 seconds");
        }
        Ok(())
    }

    /// The configured ICE servers, parsed.
    pub fn ice_servers(&self) -> Result<Vec<IceServer>, ingest::whip::ice::IceServerError> {
        self.webrtc_ice_servers.iter().filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse()).collect()
    }

    /// The UDP port range, if one is set and well formed.
    pub fn udp_ports(&self) -> Option<(u16, u16)> {
        let (a, b) = self.webrtc_udp_ports.as_deref()?.split_once('-')?;
        let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
        (a > 0 && a <= b).then_some((a, b))
    }

    /// The peers' settings (`keyframe_interval`: the segment duration).
    pub fn peer_config(&self, keyframe_interval: Duration) -> webrtc_media::PeerConfig {
        webrtc_media::PeerConfig {
            ice_servers: self.ice_servers().unwrap_or_default(),
            udp_ports: self.udp_ports(),
            keyframe_interval,
        }
    }

    /// Session limits: `per_stream` sessions of one stream.
    pub fn limits(&self, max_sessions: usize, per_stream: usize) -> WhipLimits {
        let t = Duration::from_secs_f64(self.webrtc_session_timeout);
        WhipLimits { max_sessions, connect_timeout: t, idle_timeout: t, max_per_stream: per_stream }
    }
}

/// WebRTC sessions, for the metrics.
#[derive(Debug, Default)]
pub struct WebrtcGauges {
    /// WHIP sessions (answers in progress included, not yet ended).
    pub whip_sessions: std::sync::atomic::AtomicU64,
    /// WHEP sessions.
    pub whep_sessions: std::sync::atomic::AtomicU64,
    /// WHIP offers refused (4xx, 5xx).
    pub whip_refused_total: std::sync::atomic::AtomicU64,
    /// WHEP offers refused.
    pub whep_refused_total: std::sync::atomic::AtomicU64,
}

impl WebrtcGauges {
    /// The Prometheus exposition: sessions by kind, refusals, and GStreamer pipelines
    /// alive (a session's pipeline is counted until its teardown has run).
    pub fn render(&self) -> String {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP sluice_webrtc_sessions WHIP publishers and WHEP viewers with a session.\n# TYPE sluice_webrtc_sessions gauge\n\
sluice_webrtc_sessions{{kind=\"whip\"}} {}\nsluice_webrtc_sessions{{kind=\"whep\"}} {}",
            self.whip_sessions.load(Relaxed),
            self.whep_sessions.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP sluice_webrtc_refused_total WHIP and WHEP offers refused.\n# TYPE sluice_webrtc_refused_total counter\n\
sluice_webrtc_refused_total{{kind=\"whip\"}} {}\nsluice_webrtc_refused_total{{kind=\"whep\"}} {}",
            self.whip_refused_total.load(Relaxed),
            self.whep_refused_total.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP sluice_webrtc_pipelines GStreamer WebRTC pipelines alive (torn down after their session).\n\
# TYPE sluice_webrtc_pipelines gauge\nsluice_webrtc_pipelines {}",
            webrtc_media::pipelines()
        );
        s
    }
}

/// Headers a page on another origin may read from WHIP and WHEP answers.
const EXPOSE: &str = "Location, ETag, Link, Accept-Patch, Livepeer-Playback-URL";

/// A plain-text answer (the reason), readable from any origin.
fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    m.push('\n');
    let mut r = (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], m).into_response();
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

/// The CORS preflight and discovery answer of WHIP and WHEP endpoints, with the ICE
/// servers' `Link` headers (RFC 9725 §4.6).
fn options(links: &[String]) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type, If-Match"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE));
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    h.insert("accept-patch", HeaderValue::from_static("application/trickle-ice-sdpfrag"));
    add_links(&mut r, links);
    r
}

fn add_links(r: &mut Response, links: &[String]) {
    for l in links {
        if let Ok(v) = HeaderValue::from_str(l) {
            r.headers_mut().append(header::LINK, v);
        }
    }
}

/// `answer` with host candidates on the configured addresses only, if any are set.
fn restrict_candidates(answer: String, cfg_addresses: &[std::net::IpAddr]) -> String {
    if cfg_addresses.is_empty() { answer } else { ingest::whip::ice::keep_host_candidates(&answer, cfg_addresses) }
}

/// A `201 Created` answer: the SDP answer, the session's `Location` and `ETag`, the ICE
/// servers' `Link`s.
fn answered(answer: String, created: &ingest::whip::session::Created, links: &[String]) -> Response {
    let mut r = (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/sdp")], answer).into_response();
    let h = r.headers_mut();
    for (k, v) in [
        (header::LOCATION, created.location.as_str()),
        (header::ETAG, created.etag.as_str()),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE),
    ] {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    h.insert("accept-patch", HeaderValue::from_static("application/trickle-ice-sdpfrag"));
    add_links(&mut r, links);
    r
}

/// The body of a `POST` carrying an SDP offer, or the refusal (415 not SDP, 413 too large).
async fn offer_body(parts: &axum::http::request::Parts, body: axum::body::Body) -> Result<String, Response> {
    let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/sdp") {
        return Err(text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "an offer is Content-Type: application/sdp"));
    }
    let Ok(raw) = axum::body::to_bytes(body, ingest::whip::sdp::MAX_OFFER).await else {
        return Err(text(StatusCode::PAYLOAD_TOO_LARGE, "the offer is larger than 64 KiB"));
    };
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// A `POST`'s key check and offer body: the offer's text, or the refusal.
async fn admitted_offer(keys: &Arc<crate::ai::keys::KeyRing>, req: axum::extract::Request) -> Result<String, Response> {
    let (parts, body) = req.into_parts();
    if let Some(r) = refused(keys, &parts.headers) {
        return Err(r);
    }
    offer_body(&parts, body).await
}

/// The key check of `POST` (API keys on: a key of any scope): the refusal, if refused.
fn refused(keys: &Arc<crate::ai::keys::KeyRing>, headers: &axum::http::HeaderMap) -> Option<Response> {
    keys.admit(headers, crate::ai::keys::Scope::Read).err().map(|d| {
        let mut r = text(d.status, d.reason);
        if d.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = d.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    })
}

/// The status of a peer that could not be set up.
fn peer_status(e: &webrtc_media::PeerError) -> StatusCode {
    match e {
        webrtc_media::PeerError::Offer(_) => StatusCode::BAD_REQUEST,
        webrtc_media::PeerError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
        webrtc_media::PeerError::Gst(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `204 No Content`, readable from any origin.
fn no_content() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

/// `200 OK`, readable from any origin.
fn ok() -> Response {
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

/// What a session's trickled candidates are given to.
trait Peer: Send + Sync + 'static {
    fn add_candidate(&self, mline: u32, candidate: &str);
}

impl Peer for webrtc_media::WhipPeer {
    fn add_candidate(&self, mline: u32, candidate: &str) {
        webrtc_media::WhipPeer::add_candidate(self, mline, candidate)
    }
}

impl Peer for webrtc_media::WhepPeer {
    fn add_candidate(&self, mline: u32, candidate: &str) {
        webrtc_media::WhepPeer::add_candidate(self, mline, candidate)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running session: the stop signal of its task, its peer, and its offer's `mid`s in
/// order (to place trickled candidates).
type Running<P> = (watch::Sender<bool>, Arc<P>, Vec<Option<String>>);

/// What the WHIP and WHEP routes share: the registry, keys, the peers' settings, the ICE
/// servers' `Link` headers, and the session table (with its expiry task).
struct Endpoint<P> {
    registry: Arc<crate::registry::Registry>,
    keys: Arc<crate::ai::keys::KeyRing>,
    peer: webrtc_media::PeerConfig,
    links: Vec<String>,
    /// Host candidates are offered on these only (all when empty).
    host_addresses: Vec<std::net::IpAddr>,
    table: Arc<Table<P>>,
}

impl<P: Peer> Endpoint<P> {
    /// The `201` for a session: the answer (host candidates restricted as configured)
    /// and its headers.
    fn answer(&self, answer: String, created: &ingest::whip::session::Created) -> Response {
        answered(restrict_candidates(answer, &self.host_addresses), created, &self.links)
    }

    /// The `OPTIONS` handler. A preflight carries no key: it is told the STUN servers
    /// only, never TURN credentials (those come with the 201).
    fn preflight(&self) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
        let links: Vec<String> = self.peer.ice_servers.iter().filter(|s| !s.is_turn()).map(|s| s.link()).collect();
        move || std::future::ready(options(&links))
    }

    /// An endpoint keeping `sessions` (`whep`: viewers), whose expiry runs until `stop`.
    fn start(
        registry: Arc<crate::registry::Registry>,
        keys: Arc<crate::ai::keys::KeyRing>,
        gauges: Arc<WebrtcGauges>,
        cfg: &WebrtcConfig,
        sessions: WhipSessions,
        whep: bool,
        stop: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let peer = cfg.peer_config(Duration::from_secs_f64(registry.segment_duration()));
        let e = Arc::new(Endpoint {
            registry,
            keys,
            links: peer.ice_servers.iter().map(|s| s.link()).collect(),
            peer,
            host_addresses: cfg.webrtc_host_addresses.clone(),
            table: Table::new(sessions, gauges, whep),
        });
        tokio::spawn(e.table.clone().expire(if whep { "WHEP" } else { "WHIP" }, stop));
        e
    }

    /// `/live/{stream}/{resource}` (`POST` to `post`, `OPTIONS`) and
    /// `/live/{stream}/{resource}/{id}` (`PATCH`, `DELETE`, `OPTIONS`).
    fn routes(self: Arc<Self>, resource: &str, post: axum::routing::MethodRouter<Arc<Self>>) -> axum::Router {
        let preflight = self.preflight();
        let end = |axum::extract::State(e): axum::extract::State<Arc<Self>>,
                   axum::extract::Path((_, id)): axum::extract::Path<(String, String)>| async move {
            e.table.delete(&id)
        };
        let patch = |axum::extract::State(e): axum::extract::State<Arc<Self>>,
                     axum::extract::Path((_, id)): axum::extract::Path<(String, String)>,
                     headers: HeaderMap,
                     body: String| async move { e.table.patch(&id, &headers, &body) };
        axum::Router::new()
            .route(&format!("/live/{{stream}}/{resource}"), post.options(preflight.clone()))
            .route(
                &format!("/live/{{stream}}/{resource}/{{id}}"),
                axum::routing::delete(end).patch(patch).options(preflight),
            )
            .with_state(self)
    }
}

/// A 503 that says when to try again.
fn unavailable(msg: impl Into<String>, retry_after: &'static str) -> Response {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, msg);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(retry_after));
    r
}

impl<P: Peer> Slot<P> {
    /// Takes a session slot for `stream` (503 with `Retry-After` when full): the
    /// session's resource and the guard that gives it back unless the session starts.
    #[allow(clippy::disallowed_methods)] // IO shell: the session table's clock
    fn take(table: &Arc<Table<P>>, stream: &str) -> Result<(ingest::whip::session::Created, Self), Box<Response>> {
        let created = lock(&table.sessions)
            .create(Instant::now(), stream, crate::ai::results::random_bytes())
            .map_err(|e| Box::new(unavailable(e.to_string(), "10")))?;
        let slot = Slot::new(table, &created.id);
        Ok((created, slot))
    }

    /// Starts the session's task bookkeeping (see [`Table::started`]) and keeps the slot;
    /// a 503 if the session timed out while its answer was made.
    fn start(self, stop: watch::Sender<bool>, peer: Arc<P>, mids: Vec<Option<String>>) -> Result<(), Box<Response>> {
        if !self.table.started(&self.id, stop, peer, mids) {
            tracing::warn!(session = %self.id, "session timed out before its answer");
            return Err(Box::new(unavailable("the session timed out before it was answered; try again", "1")));
        }
        self.keep();
        Ok(())
    }
}

/// A session slot taken while its answer is made: given back (and the gauge recounted)
/// if the request fails or its client goes away before the session starts.
struct Slot<P: Peer> {
    table: Arc<Table<P>>,
    id: String,
    armed: bool,
}

impl<P: Peer> Slot<P> {
    fn new(table: &Arc<Table<P>>, id: &str) -> Self {
        Slot { table: table.clone(), id: id.to_owned(), armed: true }
    }

    /// The session started: its task owns the slot now.
    fn keep(mut self) {
        self.armed = false;
    }
}

impl<P: Peer> Drop for Slot<P> {
    fn drop(&mut self) {
        if self.armed {
            let _ = lock(&self.table.sessions).delete(&self.id);
            self.table.count();
        }
    }
}

/// The sessions of WHIP or WHEP: their resources and their running tasks.
struct Table<P> {
    sessions: Mutex<WhipSessions>,
    running: Mutex<HashMap<String, Running<P>>>,
    gauges: Arc<WebrtcGauges>,
    /// WHIP (publishers) or WHEP (viewers).
    whep: bool,
}

impl<P: Peer> Table<P> {
    fn new(sessions: WhipSessions, gauges: Arc<WebrtcGauges>, whep: bool) -> Arc<Self> {
        Arc::new(Table { sessions: Mutex::new(sessions), running: Mutex::default(), gauges, whep })
    }

    /// Sets the sessions gauge from the table.
    fn count(&self) {
        let n = lock(&self.sessions).len() as u64;
        let g = if self.whep { &self.gauges.whep_sessions } else { &self.gauges.whip_sessions };
        g.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// An offer was refused.
    fn refused(&self) {
        let c = if self.whep { &self.gauges.whep_refused_total } else { &self.gauges.whip_refused_total };
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A session's task is starting: false if the session timed out meanwhile (the
    /// answer took longer than the connect timeout), when the task must not start. Checked
    /// and recorded under the sessions lock, so an expiry either comes first (false) or
    /// finds the task to stop.
    #[must_use]
    #[allow(clippy::disallowed_methods)] // IO shell: the connect timeout runs from the answer
    fn started(&self, id: &str, stop: watch::Sender<bool>, peer: Arc<P>, mids: Vec<Option<String>>) -> bool {
        {
            let mut sessions = lock(&self.sessions);
            if !sessions.answered(id, Instant::now()) {
                return false;
            }
            lock(&self.running).insert(id.to_owned(), (stop, peer, mids));
        }
        self.count();
        true
    }

    /// A session's task has ended (whatever ended it).
    fn finished(&self, id: &str) {
        let _ = lock(&self.sessions).delete(id);
        lock(&self.running).remove(id);
        self.count();
    }

    /// `DELETE` on a session: 200, or 404.
    fn delete(&self, id: &str) -> Response {
        if let Err(e) = lock(&self.sessions).delete(id) {
            return text(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::NOT_FOUND), e.to_string());
        }
        if let Some((stop, _, _)) = lock(&self.running).remove(id) {
            let _ = stop.send(true);
        }
        self.count();
        ok()
    }

    /// A trickle `PATCH` on a session: its candidates to the peer and 204, or the refusal
    /// (404, 412, 415, 422, 428).
    fn patch(&self, id: &str, headers: &HeaderMap, body: &str) -> Response {
        let get = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let r = lock(&self.sessions).patch(
            id,
            get(header::CONTENT_TYPE).as_deref(),
            get(header::IF_MATCH).as_deref(),
            body,
        );
        let candidates = match r {
            Ok(c) => c,
            Err(e) => {
                let mut r = text(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), e.to_string());
                if matches!(e, SessionError::RestartUnsupported | SessionError::MediaType) {
                    r.headers_mut().insert("accept-patch", HeaderValue::from_static("application/trickle-ice-sdpfrag"));
                }
                return r;
            }
        };
        if let Some((_, peer, mids)) = lock(&self.running).get(id) {
            for c in candidates {
                // A candidate names its section by `mid`; one naming none goes to the first.
                let mline = match &c.mid {
                    Some(m) => mids.iter().position(|x| x.as_deref() == Some(m.as_str())),
                    None => Some(0),
                };
                if let Some(mline) = mline {
                    peer.add_candidate(mline as u32, &c.candidate);
                }
            }
        }
        no_content()
    }

    /// Ends sessions that never connected or went quiet, every second until `stop`.
    #[allow(clippy::disallowed_methods)] // IO shell: the session table's clock
    async fn expire(self: Arc<Self>, what: &'static str, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    // Shutting down: every session's task ends.
                    for (_, (stop, _, _)) in lock(&self.running).drain() {
                        let _ = stop.send(true);
                    }
                    return;
                }
                _ = tick.tick() => {
                    let gone = lock(&self.sessions).expire(Instant::now());
                    let expired = !gone.is_empty();
                    for (id, why) in gone {
                        info!(session = %id, reason = ?why, "{what} session timed out");
                        if let Some((stop, _, _)) = lock(&self.running).remove(&id) {
                            let _ = stop.send(true);
                        }
                    }
                    if expired {
                        self.count();
                    }
                }
            }
        }
    }
}
