//! WebRTC media for Sluice, with GStreamer `webrtcbin`: [`WhipPeer`] answers a WHIP
//! publisher and turns its RTP into [`media::StreamEvent`]s (H.264 Annex B access units;
//! Opus decoded and encoded to AAC in ADTS, as MPEG-TS and HLS carry it); [`WhepPeer`]
//! answers a WHEP viewer and sends it a stream's access units (AAC decoded and encoded
//! to Opus).
//!
//! The decisions (which codecs, session resources, timeouts, ICE servers) are
//! `ingest::whip`'s; this crate is the media shell. GStreamer runs on its own threads:
//! samples come out of `appsink` callbacks into a bounded channel without blocking, units
//! go into `appsrc` without blocking, and no call here blocks a tokio worker except the
//! wait for an answer, which awaits a oneshot. Dropping a peer stops and tears down its
//! pipeline on a GStreamer thread.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::Mutex;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use ingest::whip::ice::IceServer;
use tokio::sync::oneshot;

mod client;
mod pictures;
mod play;
mod publish;

pub use client::{ClientConfig, WhipClient};

pub use play::{ConnectionState, MAX_QUEUED, Push, WhepPeer};
pub use publish::{Accepted, QUEUE, WhipPeer};

/// Pipelines made by this crate that have not yet been stopped and torn down.
static PIPELINES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Pipelines (peers and publishers) alive in the process: made and not yet torn down.
/// Back at its former value once every session has ended and its teardown has run.
pub fn pipelines() -> usize {
    PIPELINES.load(std::sync::atomic::Ordering::Relaxed)
}

/// A counted pipeline: dropping it stops it on a GStreamer thread (stopping webrtcbin
/// waits for its threads and ICE agent, which must not hold up the caller, a tokio
/// worker), then uncounts it.
pub(crate) struct Pipeline(gst::Pipeline);

impl Pipeline {
    pub(crate) fn new() -> Self {
        PIPELINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Pipeline(gst::Pipeline::new())
    }
}

impl std::ops::Deref for Pipeline {
    type Target = gst::Pipeline;
    fn deref(&self) -> &gst::Pipeline {
        &self.0
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.0.call_async(|p| {
            let _ = p.set_state(gst::State::Null);
            PIPELINES.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
}

/// Longest wait for ICE gathering before answering.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a peer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// GStreamer or one of its plugins is missing.
    #[error("GStreamer: {0}")]
    Gst(String),
    /// The offer was refused by webrtcbin.
    #[error("the offer could not be applied: {0}")]
    Offer(String),
    /// No answer in time.
    #[error("no answer within {0:?} (ICE gathering)")]
    Timeout(Duration),
}

pub(crate) fn gst_err(e: impl std::fmt::Display) -> PeerError {
    PeerError::Gst(e.to_string())
}

/// How peers reach their clients, and how often a publisher is asked for a keyframe.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// STUN and TURN servers (`webrtcbin` gathers server-reflexive and relayed candidates
    /// through them).
    pub ice_servers: Vec<IceServer>,
    /// The UDP ports ICE candidates use (inclusive), if limited.
    pub udp_ports: Option<(u16, u16)>,
    /// A publisher is asked for a keyframe (PLI) when none came for this long: the segment
    /// duration.
    pub keyframe_interval: Duration,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig { ice_servers: Vec::new(), udp_ports: None, keyframe_interval: Duration::from_secs(2) }
    }
}

/// Initialises GStreamer (the plugin registry scan) and makes the DTLS certificate every
/// peer of the process shares (an RSA key: hundreds of milliseconds, which would
/// otherwise fall on the first session's answer): call once at start-up, off any async
/// worker; the peers call it too, cheaply once done.
pub fn init() -> Result<(), PeerError> {
    gst::init().map_err(gst_err)?;
    static CERTIFICATE: std::sync::Once = std::sync::Once::new();
    CERTIFICATE.call_once(|| {
        // A DTLS decoder made without a certificate generates the shared one.
        let _ = gst::ElementFactory::make("dtlsdec").build();
    });
    Ok(())
}

/// Logs the errors and warnings `pipeline`'s elements post (on the thread posting them),
/// with the element and GStreamer's debug text.
pub(crate) fn log_errors(pipeline: &gst::Pipeline, what: &'static str) {
    let Some(bus) = pipeline.bus() else { return };
    bus.set_sync_handler(move |_, msg| {
        match msg.view() {
            gst::MessageView::Error(e) => tracing::warn!(
                element = %msg.src().map(|s| s.path_string()).unwrap_or_default(),
                error = %e.error(),
                debug = ?e.debug(),
                "{what} pipeline error"
            ),
            gst::MessageView::Warning(e) => tracing::debug!(
                element = %msg.src().map(|s| s.path_string()).unwrap_or_default(),
                warning = %e.error(),
                "{what} pipeline warning"
            ),
            _ => {}
        }
        gst::BusSyncReply::Drop
    });
}

/// A `webrtcbin` with one transport for everything (max-bundle), the ICE servers and
/// the UDP port range of `cfg`.
pub(crate) fn webrtcbin(cfg: &PeerConfig) -> Result<gst::Element, PeerError> {
    let webrtc = gst::ElementFactory::make("webrtcbin")
        .property_from_str("bundle-policy", "max-bundle")
        .build()
        .map_err(|_| gst_err("webrtcbin is missing (gstreamer1.0-plugins-bad and gstreamer1.0-nice)"))?;
    let mut stun_set = false;
    for s in &cfg.ice_servers {
        if s.is_turn() {
            if !webrtc.emit_by_name::<bool>("add-turn-server", &[&s.gstreamer_uri()]) {
                tracing::warn!(server = %s.uri(), "webrtcbin refused the TURN server");
            }
        } else if !stun_set {
            // webrtcbin takes one STUN server.
            webrtc.set_property("stun-server", s.gstreamer_uri());
            stun_set = true;
        }
    }
    let agent = webrtc.property::<gst::glib::Object>("ice-agent");
    agent.set_property("ice-tcp", false);
    if let Some((min, max)) = cfg.udp_ports {
        agent.set_property("min-rtp-port", u32::from(min));
        agent.set_property("max-rtp-port", u32::from(max));
    }
    Ok(webrtc)
}

/// The `rtpbin` inside a `webrtcbin` (made when the webrtcbin is).
pub(crate) fn rtpbin(webrtc: &gst::Element) -> Option<gst::Element> {
    webrtc
        .downcast_ref::<gst::Bin>()?
        .iterate_recurse()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "rtpbin"))
}

/// Adds a transceiver of `direction` whose codec is `caps`.
pub(crate) fn add_transceiver(
    webrtc: &gst::Element,
    direction: gst_webrtc::WebRTCRTPTransceiverDirection,
    caps: &str,
) -> Result<gst_webrtc::WebRTCRTPTransceiver, PeerError> {
    let caps: gst::Caps = caps.parse().map_err(gst_err)?;
    let t = webrtc.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>("add-transceiver", &[&direction, &caps]);
    t.set_property("codec-preferences", &caps);
    // Lost packets are asked for again (NACK) and resent (RTX) where the peer offers it.
    t.set_property("do-nack", true);
    Ok(t)
}

/// Applies the remote `offer`, then makes, applies and returns the answer once ICE
/// gathering is complete (every local candidate in it) or [`GATHER_TIMEOUT`] passed. The
/// offer's sections are matched, by kind, to the transceivers added before.
pub(crate) async fn negotiate(webrtc: &gst::Element, offer: gst_sdp::SDPMessage) -> Result<String, PeerError> {
    let gathered = gathering_complete(webrtc);
    let t0 = std::time::Instant::now();
    let remote = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, offer);
    promise(webrtc, "set-remote-description", Some(&remote)).await?;
    let reply = promise(webrtc, "create-answer", None).await?.ok_or_else(|| PeerError::Offer("no answer".into()))?;
    let answer = reply
        .get::<gst_webrtc::WebRTCSessionDescription>("answer")
        .map_err(|_| PeerError::Offer("webrtcbin made no answer".into()))?;
    promise(webrtc, "set-local-description", Some(&answer)).await?;
    let t_local = t0.elapsed();
    let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered).await;
    tracing::debug!(local_ms = t_local.as_millis() as u64, gathered_ms = t0.elapsed().as_millis() as u64, "negotiated");
    let local = webrtc
        .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
        .ok_or_else(|| PeerError::Offer("no local description".into()))?;
    local.sdp().as_text().map_err(gst_err)
}

/// Makes and applies an offer; returns it once ICE gathering is complete (every local
/// candidate in it) or [`GATHER_TIMEOUT`] passed.
pub(crate) async fn offer(webrtc: &gst::Element) -> Result<String, PeerError> {
    let gathered = gathering_complete(webrtc);
    let reply = promise(webrtc, "create-offer", None).await?.ok_or_else(|| PeerError::Offer("no offer".into()))?;
    let offer = reply
        .get::<gst_webrtc::WebRTCSessionDescription>("offer")
        .map_err(|_| PeerError::Offer("webrtcbin made no offer".into()))?;
    promise(webrtc, "set-local-description", Some(&offer)).await?;
    let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered).await;
    let local = webrtc
        .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
        .ok_or_else(|| PeerError::Offer("no local description".into()))?;
    local.sdp().as_text().map_err(gst_err)
}

/// Resolves once `webrtc`'s ICE gathering is complete.
fn gathering_complete(webrtc: &gst::Element) -> oneshot::Receiver<()> {
    let (gathered_tx, gathered) = oneshot::channel::<()>();
    let gathered_tx = Mutex::new(Some(gathered_tx));
    webrtc.connect_notify(Some("ice-gathering-state"), move |w, _| {
        let state = w.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state");
        if state == gst_webrtc::WebRTCICEGatheringState::Complete
            && let Some(tx) = gathered_tx.lock().unwrap_or_else(|e| e.into_inner()).take()
        {
            let _ = tx.send(());
        }
    });
    gathered
}

/// Emits `signal` on `webrtc` with a promise and awaits its reply.
pub(crate) async fn promise(
    webrtc: &gst::Element,
    signal: &str,
    arg: Option<&gst_webrtc::WebRTCSessionDescription>,
) -> Result<Option<gst::Structure>, PeerError> {
    let (tx, rx) = oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let p = gst::Promise::with_change_func(move |reply| {
        let r = match reply {
            Ok(Some(s)) => Ok(Some(s.to_owned())),
            Ok(None) => Ok(None),
            Err(e) => Err(format!("{e:?}")),
        };
        if let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(r);
        }
    });
    match arg {
        Some(d) => webrtc.emit_by_name::<()>(signal, &[d, &p]),
        None => webrtc.emit_by_name::<()>(signal, &[&None::<gst::Structure>, &p]),
    }
    match tokio::time::timeout(GATHER_TIMEOUT, rx).await {
        Ok(Ok(Ok(s))) => {
            if let Some(err) = s.as_ref().and_then(|s| s.get::<gst::glib::Error>("error").ok()) {
                return Err(PeerError::Offer(err.to_string()));
            }
            Ok(s)
        }
        Ok(Ok(Err(e))) => Err(PeerError::Offer(e)),
        Ok(Err(_)) => Err(PeerError::Offer(format!("{signal}: no reply"))),
        Err(_) => Err(PeerError::Timeout(GATHER_TIMEOUT)),
    }
}
