//! WHIP ingest on the HTTP port (RFC 9725): `POST /live/{stream}/whip` with an SDP offer
//! publishes `stream` as an RTMP publisher would (the same registry, segmenter, HLS and
//! CMAF outputs); `PATCH` and `DELETE` on the session's `Location`
//! (`/live/{stream}/whip/{id}`) trickle ICE candidates and end it.
//!
//! The offer is checked by `ingest::whip::sdp` (400 malformed, 422 no codec Sluice
//! takes, with what was offered), the session resources kept by
//! `ingest::whip::session`, the media received by `whip::WhipPeer` (GStreamer
//! `webrtcbin`). A session ends when its publisher sends `DELETE`, when another
//! publisher takes the stream, when no media came within the session timeout (30 s) of
//! the answer, or after that long without media.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use ingest::server::PublishRequest;
use ingest::whip::sdp::{choose, parse_offer};
use ingest::whip::session::WhipSessions;
use media::StreamEvent;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use super::{WebrtcConfig, lock, peer_status, text};
use crate::registry::Registry;

/// WHIP sessions one stream may have at once (the newest with media is the publisher).
pub const MAX_SESSIONS_PER_STREAM: usize = 3;

type Whip = super::Endpoint<webrtc_media::WhipPeer>;

/// The WHIP routes, with the task that ends timed-out sessions (stops with `stop`).
pub fn router(
    registry: Arc<Registry>,
    keys: Arc<crate::ai::keys::KeyRing>,
    gauges: Arc<super::WebrtcGauges>,
    cfg: &WebrtcConfig,
    stop: watch::Receiver<bool>,
) -> Router {
    // A stream takes a few sessions at once: a publisher reconnecting while its stale
    // session times out gets in, and takes the stream once its media flows.
    let sessions = WhipSessions::new(cfg.limits(cfg.webrtc_max_publishers, MAX_SESSIONS_PER_STREAM));
    let w = Whip::start(registry, keys, gauges, cfg, sessions, false, stop);
    // GStreamer's plugin scan, once and off the async workers.
    tokio::task::spawn_blocking(|| {
        if let Err(e) = webrtc_media::init() {
            warn!(error = %e, "GStreamer unavailable: WHIP and WHEP will refuse sessions");
        }
    });
    w.clone().routes("whip", post(publish)).merge(
        Router::new()
            .route("/live/video-to-video/{stream}/whip", post(publish_live).options(w.preflight()))
            .with_state(w),
    )
}

/// `POST /live/{stream}/whip` (refusals counted).
async fn publish(
    State(w): State<Arc<Whip>>,
    Path(stream): Path<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let r = answer_publisher(&w, stream, None, remote, req).await;
    if !r.status().is_success() {
        w.table.refused();
    }
    r
}

/// `POST /live/video-to-video/{stream}/whip?pipeline=…&params=…&streamId=…` (go-livepeer's
/// live AI WHIP ingest): a live AI stream published over WebRTC, as an RTMP publish with
/// the same query would be. The processed output plays at `/live/{stream}-out/whep`,
/// named in `Livepeer-Playback-URL`.
async fn publish_live(
    State(w): State<Arc<Whip>>,
    Path(stream): Path<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let query = req.uri().query().unwrap_or("").to_owned();
    let live = match crate::live::parse_query("live", &format!("{stream}?{query}")) {
        Err(e) => Err(text(StatusCode::BAD_REQUEST, e.to_string())),
        Ok(None) => Err(text(StatusCode::BAD_REQUEST, "a live AI stream needs ?pipeline= (the model)")),
        Ok(Some(_)) if w.registry.live_ai().is_none() => Err(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "live AI needs orchestrators: start the gateway with --orch-addr",
        )),
        Ok(Some(l)) => Ok(crate::live::LiveRequest { source: "whip", ..l }),
    };
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_owned();
    let mut r = match live {
        Err(r) => r,
        Ok(live) => answer_publisher(&w, stream.clone(), Some(live), remote, req).await,
    };
    if r.status().is_success() {
        if let Ok(v) = HeaderValue::from_str(&format!("http://{host}/live/{stream}-out/whep")) {
            r.headers_mut().insert("livepeer-playback-url", v);
        }
    } else {
        w.table.refused();
    }
    r
}

#[allow(clippy::disallowed_methods)] // IO shell: the session table's clock
async fn answer_publisher(
    w: &Arc<Whip>,
    stream: String,
    live: Option<crate::live::LiveRequest>,
    remote: SocketAddr,
    req: Request,
) -> Response {
    // With API keys on, publishing needs one (as the AI and live AI endpoints do); the
    // session's Location is then its own capability for PATCH and DELETE.
    let offer_text = match super::admitted_offer(&w.keys, req).await {
        Ok(t) => t,
        Err(r) => return r,
    };
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
    // Whatever happens from here, a failure (or the client going away) gives the slot back.
    let (created, slot) = match super::Slot::take(&w.table, &stream_id) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let accepted = match webrtc_media::WhipPeer::answer(&offer_text, &chosen, &w.peer).await {
        Ok(a) => a,
        Err(e) => {
            warn!(%stream, error = %e, "WHIP answer failed");
            return text(peer_status(&e), e.to_string());
        }
    };
    let req = PublishRequest { conn_id: 0, remote, app: "live".into(), name: stream.clone() };
    let (stop_tx, stop_rx) = watch::channel(false);
    let peer = Arc::new(accepted.peer);
    if let Err(r) = slot.start(stop_tx, peer.clone(), mids) {
        return *r;
    }
    let span = info_span!("whip", %stream_id, session = %created.id);
    tokio::spawn(relay(w.clone(), created.id.clone(), accepted.events, req, live, stop_rx, peer).instrument(span));
    info!(stream_id = %stream, session = %created.id, %remote, "WHIP publisher answered");
    tracing::debug!(offer = %offer_text, answer = %accepted.answer, "WHIP negotiation");
    w.answer(accepted.answer, &created)
}

/// Moves a session's events into its stream until it ends. The stream is taken (a
/// publisher already on it replaced) only once media flows: an offer whose peer never
/// connects takes nothing over and holds no stream.
#[allow(clippy::disallowed_methods)] // IO shell: marks media arrival for the idle timeout
async fn relay(
    w: Arc<Whip>,
    id: String,
    mut events: tokio::sync::mpsc::Receiver<StreamEvent>,
    req: PublishRequest,
    live: Option<crate::live::LiveRequest>,
    mut stop: watch::Receiver<bool>,
    peer: Arc<webrtc_media::WhipPeer>,
) {
    let first = tokio::select! {
        ev = events.recv() => ev,
        _ = stop.changed() => None,
    };
    let Some(first) = first else {
        w.table.finished(&id);
        info!("WHIP session over before any media");
        return;
    };
    let published = match live {
        Some(l) => w.registry.publish_live(&req, l),
        None => w.registry.publish(&req),
    };
    let publisher = match published {
        Ok(p) => p,
        Err(e) => {
            w.table.finished(&id);
            warn!(code = %e.code, reason = %e.reason, "WHIP stream refused; session ended");
            return;
        }
    };
    let ingest::server::PublishAccepted { sink, mut kick, .. } = publisher;
    let mut last_mark: Option<Instant> = None;
    let mut next = Some(first);
    let why = loop {
        let ev = match next.take() {
            Some(ev) => Some(ev),
            None => tokio::select! {
                ev = events.recv() => ev,
                r = &mut kick => break if r.is_ok() { "replaced by a new publisher" } else { "the stream ended" },
                _ = stop.changed() => break "the session ended",
            },
        };
        let Some(ev) = ev else { break "the media ended" };
        if matches!(ev, StreamEvent::Media(_)) && last_mark.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            let now = Instant::now();
            last_mark = Some(now);
            lock(&w.table.sessions).media(&id, now);
        }
        // A stalled stream task must not keep the session from ending.
        tokio::select! {
            sent = sink.send(ev) => if sent.is_err() { break "the stream went away" },
            r = &mut kick => break if r.is_ok() { "replaced by a new publisher" } else { "the stream ended" },
            _ = stop.changed() => break "the session ended",
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(StreamEvent::End)).await;
    w.table.finished(&id);
    drop(peer);
    info!(reason = why, "WHIP session over");
}
