//! WHEP playback on the HTTP port: `POST /live/{stream}/whep` with a viewer's SDP offer
//! (receive-only) plays `stream` over WebRTC, an RTMP or WHIP publisher's stream or a
//! live AI stream's processed output `{stream}-out`; `PATCH` and `DELETE` on the
//! session's `Location` (`/live/{stream}/whep/{id}`) trickle ICE candidates and end it.
//!
//! The video goes out as it came in (H.264, so a stream with B-frames is refused with
//! 422), the AAC audio decoded and encoded to Opus. A viewer starts on the current GOP,
//! sent at once and compressed into the first milliseconds, so the first frame shows
//! without waiting for the next keyframe; it then follows the live edge. A stream
//! without media is waited for [`MEDIA_WAIT`], then refused with 404 and the reason.
//! Each stream takes at most `webrtc_max_viewers` viewers (503 beyond).
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use ingest::whip::sdp::{Role, choose_for, parse_offer};
use ingest::whip::session::WhipSessions;
use media::TrackKind;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};
use webrtc_media::{ConnectionState, Push, WhepPeer};

use super::feed::{Decision, FeedEvent, FrameFeed, Readiness, ViewerClock};
use super::{WebrtcConfig, lock, peer_status, text};
use crate::registry::Registry;

/// How long a request for a stream without media (no publisher yet, or no keyframe)
/// waits before it is refused with 404.
pub const MEDIA_WAIT: Duration = Duration::from_secs(2);

type Whep = super::Endpoint<WhepPeer>;

/// The WHEP routes, with the task that ends sessions that never connected or lost their
/// connection (stops with `stop`).
pub fn router(
    registry: Arc<Registry>,
    keys: Arc<crate::ai::keys::KeyRing>,
    gauges: Arc<super::WebrtcGauges>,
    cfg: &WebrtcConfig,
    stop: watch::Receiver<bool>,
) -> Router {
    let limits = cfg.limits(cfg.webrtc_max_viewers_total, cfg.webrtc_max_viewers);
    let w = Whep::start(registry, keys, gauges, cfg, WhipSessions::for_resource(limits, "whep"), true, stop);
    // go-livepeer's path for a live AI stream's output plays the same.
    w.clone().routes("whep", post(play)).merge(
        Router::new().route("/live/video-to-video/{stream}/whep", post(play).options(w.preflight())).with_state(w),
    )
}

/// Waits up to [`MEDIA_WAIT`] for `stream` to have media a viewer can start on.
async fn ready(registry: &Registry, stream: &str) -> Result<Option<u8>, Response> {
    let deadline = tokio::time::Instant::now() + MEDIA_WAIT;
    loop {
        if let Some(c) = registry.cmaf(stream) {
            let frames = c.read().unwrap_or_else(|e| e.into_inner()).frames();
            match frames.readiness() {
                Readiness::Ready => return Ok(frames.video_profile()),
                Readiness::Reordered => {
                    return Err(text(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "stream {stream} has B-frames, which WebRTC does not carry; publish without them \
                             (x264: -bf 0; OBS: the baseline profile) or play its HLS"
                        ),
                    ));
                }
                Readiness::NoMedia => {}
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(text(
                StatusCode::NOT_FOUND,
                format!("stream {stream} has no media to play (no publisher, or no keyframe within {MEDIA_WAIT:?})"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /live/{stream}/whep` (refusals counted).
async fn play(State(w): State<Arc<Whep>>, Path(stream): Path<String>, req: Request) -> Response {
    let r = answer_viewer(&w, stream, req).await;
    if !r.status().is_success() {
        w.table.refused();
    }
    r
}

#[allow(clippy::disallowed_methods)] // IO shell: the session table's clock
async fn answer_viewer(w: &Arc<Whep>, stream: String, req: Request) -> Response {
    // With API keys on, a viewer needs one too: each costs an Opus encoder.
    let offer_text = match super::admitted_offer(&w.keys, req).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let offer = match parse_offer(&offer_text) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), e.to_string()),
    };
    let profile_idc = match ready(&w.registry, &stream).await {
        Ok(p) => p,
        Err(r) => {
            info!(%stream, "WHEP viewer refused: no playable media");
            return r;
        }
    };
    let chosen = match choose_for(&offer, Role::Play { profile_idc }) {
        Ok(c) => c,
        Err(e) => {
            info!(%stream, status = e.status(), reason = %e, "WHEP offer refused");
            return text(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), e.to_string());
        }
    };
    let mids: Vec<Option<String>> = offer.sections.iter().map(|s| s.mid.clone()).collect();
    // Whatever happens from here, a failure (or the client going away) gives the slot back.
    let (created, slot) = match super::Slot::take(&w.table, &stream) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let (answer, peer) = match WhepPeer::answer(&offer_text, &chosen, &w.peer).await {
        Ok(a) => a,
        Err(e) => {
            warn!(%stream, error = %e, "WHEP answer failed");
            return text(peer_status(&e), e.to_string());
        }
    };
    // Subscribed last: the GOP it starts on is the freshest.
    let Some(feed) = w.registry.cmaf(&stream).map(|c| c.read().unwrap_or_else(|e| e.into_inner()).frames()) else {
        return text(StatusCode::NOT_FOUND, format!("stream {stream} ended"));
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let peer = Arc::new(peer);
    if let Err(r) = slot.start(stop_tx, peer.clone(), mids) {
        return *r;
    }
    let span = info_span!("whep", stream_id = %stream, session = %created.id);
    tokio::spawn(relay(w.clone(), created.id.clone(), peer, feed, stop_rx).instrument(span));
    info!(stream_id = %stream, session = %created.id, "WHEP viewer answered");
    tracing::debug!(offer = %offer_text, answer = %answer, "WHEP negotiation");
    w.answer(answer, &created)
}

/// Sends the stream to one viewer until it ends. Nothing is sent before the peer
/// connection is up: the viewer then starts on the freshest GOP, at the live edge.
#[allow(clippy::disallowed_methods)] // IO shell: marks the connection for the idle timeout
async fn relay(w: Arc<Whep>, id: String, peer: Arc<WhepPeer>, feed: Arc<FrameFeed>, mut stop: watch::Receiver<bool>) {
    let started = Instant::now();
    let mut conn = peer.connection();
    let not_connected = loop {
        let state = *conn.borrow_and_update();
        match state {
            ConnectionState::Connected => break None,
            ConnectionState::Failed => break Some("the connection failed"),
            ConnectionState::Closed => break Some("the connection closed"),
            _ => {}
        }
        tokio::select! {
            r = conn.changed() => if r.is_err() { break Some("the peer connection closed") },
            _ = stop.changed() => break Some("the session ended"),
        }
    };
    if let Some(why) = not_connected {
        w.table.finished(&id);
        info!(reason = why, "WHEP session over before it connected");
        return;
    }
    info!(after_ms = started.elapsed().as_millis() as u64, "WHEP viewer connected");
    lock(&w.table.sessions).media(&id, Instant::now());
    let Some(mut sub) = feed.subscribe() else {
        w.table.finished(&id);
        info!("WHEP session over: the stream has no playable media any more");
        return;
    };
    let (mut clock, start) = ViewerClock::start(&sub.tracks, &sub.gop);
    let mut sent = 0u64;
    for (au, at) in &start {
        if peer.push(au, *at) != Push::Sent {
            // The rest of the GOP depends on what was not sent: wait for a keyframe.
            clock.lost();
            break;
        }
        sent += 1;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut left = peer.left();
    let mut connected = true;
    let mut skipped = 0u64;
    let why = loop {
        tokio::select! {
            ev = sub.events.recv() => match ev {
                None => break "the stream ended",
                Some(FeedEvent::Tracks(t)) => clock.tracks(&t),
                Some(FeedEvent::Restart) => clock.restart(),
                Some(FeedEvent::Unit(au)) => match clock.handle_unit(&au) {
                    Decision::Send(at) => match peer.push(&au, at) {
                        Push::Sent => sent += 1,
                        Push::NoTrack => {}
                        Push::Full => {
                            skipped += 1;
                            if au.track == TrackKind::Video {
                                clock.lost();
                            }
                        }
                        Push::Closed => break "the viewer's pipeline stopped",
                    },
                    Decision::Skip => skipped += 1,
                    Decision::Reordered => break "the stream's video has B-frames",
                },
            },
            r = conn.changed() => {
                if r.is_err() {
                    break "the peer connection closed";
                }
                let state = *conn.borrow_and_update();
                match state {
                    ConnectionState::Connected => {
                        connected = true;
                        lock(&w.table.sessions).media(&id, Instant::now());
                    }
                    ConnectionState::Failed => break "the connection failed",
                    ConnectionState::Closed => break "the connection closed",
                    _ => connected = false,
                }
            }
            _ = tick.tick() => if connected {
                lock(&w.table.sessions).media(&id, Instant::now());
            },
            r = left.changed() => match (r, *left.borrow_and_update()) {
                (Ok(()), Some(why)) => break why,
                (Err(_), _) => break "the peer connection closed",
                _ => {}
            },
            _ = stop.changed() => break "the session ended",
        }
    };
    w.table.finished(&id);
    drop(peer);
    info!(reason = why, sent, skipped, "WHEP session over");
}
