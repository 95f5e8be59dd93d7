//! A WHIP publisher made with GStreamer (Debian's 1.22 has no `whipclientsink`): a test
//! pattern and a tone, encoded once (x264 constrained baseline without B-frames, Opus),
//! sent by one or more `webrtcbin`s, each its own WHIP session. The HTTP exchange is the
//! caller's: [`WhipClient::start`] gives the offers, [`WhipClient::answer`] takes the
//! answers.
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use tokio::sync::watch;

use crate::{PeerConfig, PeerError, gst_err, webrtcbin};

/// What the publisher sends.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Picture width and height.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames a second.
    pub fps: u32,
    /// Video bit rate, kbit/s.
    pub video_kbps: u32,
    /// Sessions sending the same encoded media (load tests): one encoder, this many
    /// `webrtcbin`s.
    pub sessions: usize,
    /// ICE servers and ports, as the gateway's peers take them.
    pub peer: PeerConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig { width: 640, height: 360, fps: 30, video_kbps: 1000, sessions: 1, peer: PeerConfig::default() }
    }
}

/// A running publisher: its pipeline, stopped when dropped.
pub struct WhipClient {
    /// Stopped and torn down when this is dropped.
    _pipeline: crate::Pipeline,
    peers: Vec<gst::Element>,
    states: Vec<watch::Receiver<gst_webrtc::WebRTCPeerConnectionState>>,
}

impl std::fmt::Debug for WhipClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WhipClient({} sessions)", self.peers.len())
    }
}

/// The encoders, ending in tees named `v` and `a`.
fn sources(cfg: &ClientConfig) -> String {
    let (w, h, fps, kbps) = (cfg.width, cfg.height, cfg.fps, cfg.video_kbps);
    format!(
        "videotestsrc is-live=true pattern=smpte ! video/x-raw,width={w},height={h},framerate={fps}/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={gop} bframes=0 \
         ! video/x-h264,profile=constrained-baseline ! h264parse \
         ! rtph264pay config-interval=-1 aggregate-mode=zero-latency mtu=1200 pt=96 \
         ! capsfilter caps=\"application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96\" ! tee name=v \
         audiotestsrc is-live=true wave=sine freq=440 volume=0.3 ! audioconvert ! audioresample \
         ! audio/x-raw,rate=48000,channels=2 ! opusenc bitrate=64000 frame-size=20 ! rtpopuspay mtu=1200 pt=111 \
         ! capsfilter caps=\"application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111\" ! tee name=a",
        gop = 2 * fps,
    )
}

impl WhipClient {
    /// Starts the encoders and `cfg.sessions` senders; returns the publisher and each
    /// session's offer (every local ICE candidate in it).
    pub async fn start(cfg: &ClientConfig) -> Result<(WhipClient, Vec<String>), PeerError> {
        crate::init()?;
        let counted = crate::Pipeline::new();
        let pipeline: gst::Pipeline = (*counted).clone();
        let bin = gst::parse::bin_from_description(&sources(cfg), false).map_err(gst_err)?;
        pipeline.add(&bin).map_err(gst_err)?;
        crate::log_errors(&pipeline, "WHIP client");
        let mut client = WhipClient { _pipeline: counted, peers: Vec::new(), states: Vec::new() };
        for _ in 0..cfg.sessions.max(1) {
            let webrtc = webrtcbin(&cfg.peer)?;
            pipeline.add(&webrtc).map_err(gst_err)?;
            for (tee, prefs) in [
                (
                    "v",
                    "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96,packetization-mode=(string)1",
                ),
                ("a", "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111"),
            ] {
                let queue = gst::ElementFactory::make("queue").build().map_err(gst_err)?;
                pipeline.add(&queue).map_err(gst_err)?;
                let tee = bin.by_name(tee).ok_or_else(|| gst_err("no tee"))?;
                tee.link(&queue).map_err(gst_err)?;
                let sink = webrtc.request_pad_simple("sink_%u").ok_or_else(|| gst_err("no webrtcbin pad"))?;
                queue.static_pad("src").ok_or_else(|| gst_err("no queue pad"))?.link(&sink).map_err(gst_err)?;
                let t = sink.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
                t.set_property("direction", gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly);
                t.set_property("do-nack", true);
                t.set_property("codec-preferences", prefs.parse::<gst::Caps>().map_err(gst_err)?);
            }
            let (tx, rx) = watch::channel(gst_webrtc::WebRTCPeerConnectionState::New);
            webrtc.connect_notify(Some("connection-state"), move |w, _| {
                let _ = tx.send(w.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state"));
            });
            client.peers.push(webrtc);
            client.states.push(rx);
        }
        pipeline.set_state(gst::State::Playing).map_err(gst_err)?;
        let mut offers = Vec::with_capacity(client.peers.len());
        for webrtc in &client.peers {
            offers.push(crate::offer(webrtc).await?);
        }
        Ok((client, offers))
    }

    /// Applies session `i`'s answer.
    pub async fn answer(&self, i: usize, sdp: &str) -> Result<(), PeerError> {
        let webrtc = self.peers.get(i).ok_or_else(|| PeerError::Offer(format!("no session {i}")))?;
        let sdp = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes()).map_err(|e| PeerError::Offer(e.to_string()))?;
        let answer = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, sdp);
        crate::promise(webrtc, "set-remote-description", Some(&answer)).await?;
        // Sent media is described by the stream's own SPS; the answer's profile no longer
        // constrains the payloader.
        for k in 0.. {
            let Some(t) = webrtc.emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&k])
            else {
                break;
            };
            if let Some(c) = t.property::<Option<gst::Caps>>("codec-preferences")
                && c.structure(0).and_then(|s| s.get::<&str>("media").ok()) == Some("video")
            {
                let caps = "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96";
                t.set_property("codec-preferences", caps.parse::<gst::Caps>().map_err(gst_err)?);
            }
        }
        Ok(())
    }

    /// Waits until every session is connected (ICE and DTLS), or `timeout`; returns how
    /// many are.
    pub async fn connected(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut n = 0;
        for s in &self.states {
            let mut s = s.clone();
            let ok = tokio::time::timeout_at(
                deadline,
                s.wait_for(|c| *c == gst_webrtc::WebRTCPeerConnectionState::Connected),
            )
            .await
            .is_ok_and(|r| r.is_ok());
            n += usize::from(ok);
        }
        n
    }

    /// Sessions whose connection failed or closed.
    pub fn failed(&self) -> usize {
        self.states
            .iter()
            .filter(|s| {
                matches!(
                    *s.borrow(),
                    gst_webrtc::WebRTCPeerConnectionState::Failed | gst_webrtc::WebRTCPeerConnectionState::Closed
                )
            })
            .count()
    }
}
