//! WHIP ingest on the HTTP port (RFC 9725): `POST /live/{stream}/whip` with an SDP offer
//! publishes `stream` as an RTMP publisher would (the same registry, segmenter, HLS and
//! CMAF outputs); `PATCH` and `DELETE` on the session's `Location`
//! (`/live/{stream}/whip/{id}`) trickle ICE candidates and end it.
//!
//! The offer is checked by `ingest::whip::sdp` (400 malformed, 422 no codec Sluice
//! takes, with what was offered), the session resources kept by
//! `ingest::whip::session`, the media received by `whip::WhipPeer` (GStreamer
//! `webrtcbin`). A session ends when its publisher sends `DELETE`, when another
//! publisher takes the stream, when no media came within 30 s of the answer, or after 30 s
//! without media.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ingest::server::PublishRequest;
use ingest::whip::sdp::{choose, parse_offer};
use ingest::whip::session::{SessionError, WhipLimits, WhipSessions};
use media::StreamEvent;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use crate::registry::Registry;

/// Headers a page on another origin may read from WHIP answers.
const EXPOSE: &str = "Location, ETag, Link, Accept-Patch";

/// A running session: the stop signal of its task, its peer, and its offer's `mid`s in
/// order (to place trickled candidates).
type Running = (watch::Sender<bool>, Arc<whip::WhipPeer>, Vec<Option<String>>);

struct Whip {
    registry: Arc<Registry>,
    keys: Arc<crate::ai::keys::KeyRing>,
    sessions: Mutex<WhipSessions>,
    running: Mutex<HashMap<String, Running>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The WHIP routes, with the task that ends timed-out sessions (stops with `stop`).
pub fn router(registry: Arc<Registry>, keys: Arc<crate::ai::keys::KeyRing>, stop: watch::Receiver<bool>) -> Router {
    let w = Arc::new(Whip {
        registry,
        keys,
        sessions: Mutex::new(WhipSessions::new(WhipLimits::default())),
        running: Mutex::default(),
    });
    tokio::spawn(expiry(w.clone(), stop));
    // GStreamer's plugin scan, once and off the async workers.
    tokio::task::spawn_blocking(|| {
        if let Err(e) = whip::init() {
            warn!(error = %e, "GStreamer unavailable: WHIP ingest will refuse publishers");
        }
    });
    Router::new()
        .route("/live/{stream}/whip", post(publish).options(options))
        .route("/live/{stream}/whip/{id}", axum::routing::delete(end).patch(patch).options(options))
        .with_state(w)
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    m.push('\n');
    let mut r = (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], m).into_response();
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

async fn options() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type, If-Match"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE));
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    h.insert("accept-patch", HeaderValue::from_static("application/trickle-ice-sdpfrag"));
    r
}

/// `POST /live/{stream}/whip`.
#[allow(clippy::disallowed_methods)] // IO shell: the session table's clock
async fn publish(
    State(w): State<Arc<Whip>>,
    Path(stream): Path<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    // With API keys on, publishing needs one (as the AI and live AI endpoints do); the
    // session's Location is then its own capability for PATCH and DELETE.
    if let Err(d) = w.keys.admit(&parts.headers, crate::ai::keys::Scope::Read) {
        let mut r = text(d.status, d.reason);
        if d.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = d.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        return r;
    }
    let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/sdp") {
        return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "a WHIP offer is Content-Type: application/sdp");
    }
    let Ok(raw) = axum::body::to_bytes(body, ingest::whip::sdp::MAX_OFFER).await else {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "the offer is larger than 64 KiB");
    };
    let offer_text = String::from_utf8_lossy(&raw).into_owned();
    let chosen = match parse_offer(&offer_text).and_then(|o| choose(&o).map(|c| (o, c))) {
        Ok(c) => c,
        Err(e) => {
            info!(%stream, status = e.status(), reason = %e, "WHIP offer refused");
            return text(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), e.to_string());
        }
    };
    let (offer, chosen) = chosen;
    let mids: Vec<Option<String>> = offer.sections.iter().map(|s| s.mid.clone()).collect();
    // The name and a session slot first: a refused request must not disturb the stream.
    let stream_id = match crate::registry::stream_id_for("live", &stream) {
        Ok(id) => id,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let created = match lock(&w.sessions).create(Instant::now(), &stream_id, crate::ai::results::random_bytes()) {
        Ok(c) => c,
        Err(e) => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            return r;
        }
    };
    // Whatever happens from here, a failure gives the slot back.
    let forget = |w: &Whip| {
        let _ = lock(&w.sessions).delete(&created.id);
    };
    let cfg = whip::PeerConfig {
        keyframe_interval: Duration::from_secs_f64(w.registry.segment_duration()),
        ..Default::default()
    };
    let accepted = match whip::WhipPeer::answer(&offer_text, &chosen, &cfg).await {
        Ok(a) => a,
        Err(e) => {
            forget(&w);
            warn!(%stream, error = %e, "WHIP answer failed");
            let status = match e {
                whip::PeerError::Offer(_) => StatusCode::BAD_REQUEST,
                whip::PeerError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
                whip::PeerError::Gst(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return text(status, e.to_string());
        }
    };
    let req = PublishRequest { conn_id: 0, remote, app: "live".into(), name: stream.clone() };
    let publisher = match w.registry.publish(&req) {
        Ok(p) => p,
        Err(e) => {
            forget(&w);
            let status =
                if e.code.ends_with("BadName") { StatusCode::BAD_REQUEST } else { StatusCode::SERVICE_UNAVAILABLE };
            return text(status, e.reason);
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let peer = Arc::new(accepted.peer);
    lock(&w.running).insert(created.id.clone(), (stop_tx, peer.clone(), mids));
    let span = info_span!("whip", stream_id = %publisher.stream_id, session = %created.id);
    tokio::spawn(relay(w.clone(), created.id.clone(), accepted.events, publisher, stop_rx, peer).instrument(span));
    info!(stream_id = %stream, session = %created.id, %remote, "WHIP publisher answered");
    let mut r = (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/sdp")], accepted.answer).into_response();
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
    r
}

/// Moves a session's events into its stream until it ends.
#[allow(clippy::disallowed_methods)] // IO shell: marks media arrival for the idle timeout
async fn relay(
    w: Arc<Whip>,
    id: String,
    mut events: tokio::sync::mpsc::Receiver<StreamEvent>,
    publisher: ingest::server::PublishAccepted,
    mut stop: watch::Receiver<bool>,
    peer: Arc<whip::WhipPeer>,
) {
    let ingest::server::PublishAccepted { sink, mut kick, .. } = publisher;
    let mut last_mark: Option<Instant> = None;
    let why = loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            r = &mut kick => break if r.is_ok() { "replaced by a new publisher" } else { "the stream ended" },
            _ = stop.changed() => break "the session ended",
        };
        let Some(ev) = ev else { break "the media ended" };
        if matches!(ev, StreamEvent::Media(_)) && last_mark.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            let now = Instant::now();
            last_mark = Some(now);
            lock(&w.sessions).media(&id, now);
        }
        // A stalled stream task must not keep the session from ending.
        tokio::select! {
            sent = sink.send(ev) => if sent.is_err() { break "the stream went away" },
            r = &mut kick => break if r.is_ok() { "replaced by a new publisher" } else { "the stream ended" },
            _ = stop.changed() => break "the session ended",
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(StreamEvent::End)).await;
    let _ = lock(&w.sessions).delete(&id);
    lock(&w.running).remove(&id);
    drop(peer);
    info!(reason = why, "WHIP session over");
}

/// `DELETE /live/{stream}/whip/{id}`.
async fn end(State(w): State<Arc<Whip>>, Path((_, id)): Path<(String, String)>) -> Response {
    if let Err(e) = lock(&w.sessions).delete(&id) {
        return text(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::NOT_FOUND), e.to_string());
    }
    if let Some((stop, _, _)) = lock(&w.running).remove(&id) {
        let _ = stop.send(true);
    }
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

/// `PATCH /live/{stream}/whip/{id}`: trickled candidates.
async fn patch(
    State(w): State<Arc<Whip>>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let get = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let r = lock(&w.sessions).patch(&id, get(header::CONTENT_TYPE).as_deref(), get(header::IF_MATCH).as_deref(), &body);
    let candidates = match r {
        Ok(c) => c,
        Err(e @ SessionError::RestartUnsupported) | Err(e @ SessionError::MediaType) => {
            let mut r = text(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), e.to_string());
            r.headers_mut().insert("accept-patch", HeaderValue::from_static("application/trickle-ice-sdpfrag"));
            return r;
        }
        Err(e) => return text(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), e.to_string()),
    };
    if let Some((_, peer, mids)) = lock(&w.running).get(&id) {
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
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

/// Ends sessions that never got media or went quiet, until `stop`.
#[allow(clippy::disallowed_methods)] // IO shell: the session table's clock
async fn expiry(w: Arc<Whip>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                let gone = lock(&w.sessions).expire(Instant::now());
                for (id, why) in gone {
                    info!(session = %id, reason = ?why, "WHIP session timed out");
                    if let Some((stop, _, _)) = lock(&w.running).remove(&id) {
                        let _ = stop.send(true);
                    }
                }
            }
        }
    }
}
