//! The WHEP side: a viewer's offer answered with send-only transceivers fed from
//! `appsrc`s: H.264 access units payloaded as they are (RTP packetization mode 1,
//! parameter sets before every keyframe), AAC decoded and encoded to Opus.
//!
//! Units are pushed with the running time they are to be sent at ([`WhepPeer::push`]);
//! nothing waits on the clock, so a viewer's start (a burst of the current GOP) goes out
//! at once and live units as they arrive.
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use ingest::whip::sdp::Chosen;
use media::{AccessUnit, TrackKind};
use tokio::sync::watch;

use crate::{PeerConfig, PeerError, add_transceiver, gst_err, negotiate, webrtcbin};

/// Bytes an `appsrc` may hold unsent before [`WhepPeer::push`] answers [`Push::Full`]
/// (several seconds of 720p video: the viewer's pipeline, not the network, is behind).
pub const MAX_QUEUED: u64 = 4 << 20;

/// What became of a pushed unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued for sending.
    Sent,
    /// Not sent: the track's queue is full.
    Full,
    /// Not sent: the viewer did not ask for this track.
    NoTrack,
    /// Not sent: the pipeline has stopped.
    Closed,
}

/// A viewer's WebRTC session: its pipeline, stopped when dropped.
pub struct WhepPeer {
    /// Stopped and torn down when this is dropped.
    _pipeline: crate::Pipeline,
    webrtc: gst::Element,
    video: Option<gst_app::AppSrc>,
    audio: Option<gst_app::AppSrc>,
    state: watch::Receiver<gst_webrtc::WebRTCPeerConnectionState>,
    /// Set when the viewer's RTCP says it left (a BYE) or stopped (its source timed out).
    left: watch::Receiver<Option<&'static str>>,
}

impl std::fmt::Debug for WhepPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WhepPeer")
    }
}

/// The sending chain of one track, from its `appsrc` to the RTP caps of payload `pt`.
fn chain(kind: TrackKind, pt: u8) -> String {
    match kind {
        TrackKind::Video => format!(
            "appsrc name=src format=time is-live=true min-latency=0 \
             caps=\"video/x-h264,stream-format=byte-stream,alignment=au\" \
             ! h264parse config-interval=-1 \
             ! rtph264pay config-interval=-1 aggregate-mode=zero-latency mtu=1200 pt={pt} \
             ! capsfilter caps=\"application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload={pt}\""
        ),
        TrackKind::Audio => format!(
            "appsrc name=src format=time is-live=true min-latency=0 \
             caps=\"audio/mpeg,mpegversion=4,stream-format=adts\" \
             ! aacparse ! avdec_aac ! audioconvert ! audioresample \
             ! audio/x-raw,rate=48000,channels=2 \
             ! opusenc bitrate=96000 frame-size=20 \
             ! rtpopuspay mtu=1200 pt={pt} \
             ! capsfilter caps=\"application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload={pt}\""
        ),
    }
}

/// Builds `kind`'s chain for payload type `pt` and links it to `t`'s sink pad (its
/// media line is known once the answer is made); returns its `appsrc`.
fn add_track(
    pipeline: &gst::Pipeline,
    webrtc: &gst::Element,
    t: &gst_webrtc::WebRTCRTPTransceiver,
    kind: TrackKind,
    pt: u8,
) -> Result<gst_app::AppSrc, PeerError> {
    let mline = t.mlineindex();
    if mline == u32::MAX {
        return Err(PeerError::Offer(format!("the offer has no {kind:?} section for the {kind:?} track")));
    }
    let bin = gst::parse::bin_from_description(&chain(kind, pt), true).map_err(gst_err)?;
    let src = bin
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| gst_err("no appsrc in the chain"))?;
    src.set_max_bytes(MAX_QUEUED * 2);
    pipeline.add(&bin).map_err(gst_err)?;
    // webrtcbin has made the pad of a sending transceiver by now; asked for otherwise.
    let name = format!("sink_{mline}");
    let sink = webrtc
        .static_pad(&name)
        .or_else(|| webrtc.request_pad_simple(&name))
        .ok_or_else(|| PeerError::Offer(format!("webrtcbin gave no pad for media line {mline}")))?;
    bin.static_pad("src").ok_or_else(|| gst_err("no src pad"))?.link(&sink).map_err(gst_err)?;
    bin.sync_state_with_parent().map_err(gst_err)?;
    Ok(src)
}

impl WhepPeer {
    /// Answers a viewer's `offer` (checked by `ingest::whip::sdp::choose_for` with
    /// `Role::Play`, which gave `chosen`): send-only transceivers for the chosen video
    /// and audio, the answer once ICE gathering is complete. Units go out through
    /// [`WhepPeer::push`].
    pub async fn answer(offer: &str, chosen: &Chosen, cfg: &PeerConfig) -> Result<(String, WhepPeer), PeerError> {
        gst::init().map_err(gst_err)?;
        let sdp = gst_sdp::SDPMessage::parse_buffer(offer.as_bytes()).map_err(|e| PeerError::Offer(e.to_string()))?;
        let counted = crate::Pipeline::new();
        let pipeline: gst::Pipeline = (*counted).clone();
        crate::log_errors(&pipeline, "WHEP");
        // Nothing here waits on the clock; a known latency lets the RTP session map
        // running time to NTP for its sender reports.
        pipeline.set_latency(gst::ClockTime::ZERO);
        let webrtc = webrtcbin(cfg)?;
        pipeline.add(&webrtc).map_err(gst_err)?;
        let (state_tx, state) = watch::channel(gst_webrtc::WebRTCPeerConnectionState::New);
        webrtc.connect_notify(Some("connection-state"), move |w, _| {
            let _ = state_tx.send(w.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state"));
        });
        // The viewer's RTCP is its sign of life: a BYE, or its receiver reports stopping
        // (rtpbin times a source out after five report intervals), ends the session even
        // when ICE goes on (webrtcbin here does no consent freshness checks).
        let (left_tx, left) = watch::channel(None);
        let left_tx = std::sync::Arc::new(left_tx);
        if let Some(rtpbin) = crate::rtpbin(&webrtc) {
            let tx = left_tx.clone();
            rtpbin.connect("on-bye-ssrc", false, move |_| {
                let _ = tx.send(Some("the viewer said goodbye (RTCP BYE)"));
                None
            });
            rtpbin.connect("on-timeout", false, move |_| {
                let _ = left_tx.send(Some("the viewer's RTCP stopped"));
                None
            });
        }
        let mut peer = WhepPeer { _pipeline: counted, webrtc: webrtc.clone(), video: None, audio: None, state, left };
        pipeline.set_state(gst::State::Playing).map_err(gst_err)?;
        // Send-only transceivers for what was chosen: the offer's sections are matched to
        // them by kind when the answer is made.
        let send = gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly;
        let video = match &chosen.video {
            Some((_, pt, plid)) => Some((
                add_transceiver(
                    &webrtc,
                    send,
                    &format!(
                        "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload={pt},packetization-mode=(string)1,profile-level-id=(string){plid}"
                    ),
                )?,
                *pt,
            )),
            None => None,
        };
        let audio = match &chosen.audio {
            Some((_, pt)) => Some((
                add_transceiver(
                    &webrtc,
                    send,
                    &format!("application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload={pt}"),
                )?,
                *pt,
            )),
            None => None,
        };
        let answer = negotiate(&webrtc, sdp).await?;
        // The answer names the profile the viewer offered; the units carry the stream's
        // own SPS, which decoders follow. The payloader may then describe them as they are.
        if let Some((t, pt)) = &video {
            let caps = format!("application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload={pt}");
            t.set_property("codec-preferences", caps.parse::<gst::Caps>().map_err(gst_err)?);
        }
        if let Some((t, pt)) = &video {
            peer.video = Some(add_track(&pipeline, &webrtc, t, TrackKind::Video, *pt)?);
        }
        if let Some((t, pt)) = &audio {
            peer.audio = Some(add_track(&pipeline, &webrtc, t, TrackKind::Audio, *pt)?);
        }
        Ok((answer, peer))
    }

    /// Queues `au` to be sent at running time `at` (the viewer's clock, from zero), its
    /// payload wrapped, not copied. Never blocks.
    pub fn push(&self, au: &AccessUnit, at: Duration) -> Push {
        let Some(src) = (match au.track {
            TrackKind::Video => &self.video,
            TrackKind::Audio => &self.audio,
        }) else {
            return Push::NoTrack;
        };
        if src.current_level_bytes() > MAX_QUEUED {
            return Push::Full;
        }
        let mut buf = gst::Buffer::new();
        if let Some(b) = buf.get_mut() {
            for part in au.data.parts() {
                b.append_memory(gst::Memory::from_slice(part.clone()));
            }
            let t = gst::ClockTime::from_nseconds(at.as_nanos() as u64);
            b.set_pts(t);
            b.set_dts(t);
            if !au.keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        match src.push_buffer(buf) {
            Ok(_) => Push::Sent,
            Err(_) => Push::Closed,
        }
    }

    /// Whether the viewer takes `track`.
    pub fn has_track(&self, track: TrackKind) -> bool {
        match track {
            TrackKind::Video => self.video.is_some(),
            TrackKind::Audio => self.audio.is_some(),
        }
    }

    /// The peer connection's state as it changes (ICE and DTLS together).
    pub fn connection(&self) -> watch::Receiver<gst_webrtc::WebRTCPeerConnectionState> {
        self.state.clone()
    }

    /// Why the viewer left, once its RTCP says so (a BYE, or its reports stopping).
    pub fn left(&self) -> watch::Receiver<Option<&'static str>> {
        self.left.clone()
    }

    /// Adds a trickled ICE candidate (`candidate:…`) for media line `mline`.
    pub fn add_candidate(&self, mline: u32, candidate: &str) {
        self.webrtc.emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
    }
}

/// The peer connection states, re-exported for callers that watch them.
pub use gst_webrtc::WebRTCPeerConnectionState as ConnectionState;
