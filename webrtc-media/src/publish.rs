//! The WHIP side: a publisher's offer answered with receive-only transceivers, its RTP
//! depayloaded into access units (H.264 Annex B with an AUD; Opus decoded and encoded to
//! AAC in ADTS, as MPEG-TS and HLS carry it), keyframes asked for every segment duration.
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use ingest::whip::sdp::Chosen;
use media::{AacConfig, AccessUnit, H264Config, MediaTime, Payload, StreamEvent, Timescale, TrackInfo, TrackKind};
use tokio::sync::mpsc;

use crate::pictures::{Assembler, ClockGuard, KeyframePacer, Picture, access_unit};
use crate::{PeerConfig, PeerError, add_transceiver, gst_err, negotiate, webrtcbin};

/// Events queued between GStreamer's threads and the stream task before frames drop.
pub const QUEUE: usize = 512;

/// A publisher's WebRTC session: its pipeline, stopped when dropped.
pub struct WhipPeer {
    /// Stopped and torn down when this is dropped.
    _pipeline: crate::Pipeline,
    webrtc: gst::Element,
}

impl std::fmt::Debug for WhipPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WhipPeer")
    }
}

/// What a publisher's session yields.
pub struct Accepted {
    /// The SDP answer (every local ICE candidate in it).
    pub answer: String,
    /// The stream's events: track configurations and access units.
    pub events: mpsc::Receiver<StreamEvent>,
    /// The session; dropping it ends the media.
    pub peer: WhipPeer,
}

/// The track configurations seen so far, and the channel they go to.
struct Emitter {
    tx: mpsc::Sender<StreamEvent>,
    /// The configurations announced, and whether the last announcement failed to queue
    /// (it is sent again before any unit).
    tracks: Mutex<(TrackInfo, bool)>,
    /// Where keyframe requests go (the video depayloader's sink pad) and the media time
    /// of the last keyframe seen or asked for.
    keyframes: Mutex<(Option<gst::Pad>, KeyframePacer)>,
    /// The picture being gathered.
    assembler: Mutex<Assembler>,
    /// The video timestamps' rate checked against arrival.
    clock: Mutex<ClockGuard>,
    /// When the session started (arrival times count from here).
    started: std::time::Instant,
}

/// Asks the publisher for a keyframe (an upstream force-key-unit event, which the RTP
/// session turns into a PLI).
fn request_keyframe(pad: &gst::Pad) {
    let ev = gst::event::CustomUpstream::builder(
        gst::Structure::builder("GstForceKeyUnit").field("all-headers", true).build(),
    )
    .build();
    let _ = pad.push_event(ev);
}

impl Emitter {
    /// Announces a changed configuration, then the unit; all under one lock, so the
    /// video and audio threads' announcements cannot overtake each other. A unit whose
    /// track has no configuration yet, or while an announcement could not be queued, is
    /// dropped. Returns false when a video unit was dropped (a keyframe is then needed).
    fn unit(&self, au: AccessUnit, video: Option<H264Config>, audio: Option<AacConfig>) -> bool {
        let mut guard = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        let (t, pending) = &mut *guard;
        if let Some(v) = video
            && t.video.as_ref() != Some(&v)
        {
            t.video = Some(v);
            *pending = true;
        }
        if let Some(a) = audio
            && t.audio.as_ref() != Some(&a)
        {
            t.audio = Some(a);
            *pending = true;
        }
        if *pending {
            *pending = self.tx.try_send(StreamEvent::Tracks(t.clone())).is_err();
        }
        let known = match au.track {
            TrackKind::Video => t.video.is_some(),
            TrackKind::Audio => t.audio.is_some(),
        };
        if !known || *pending {
            return false;
        }
        if self.tx.try_send(StreamEvent::Media(au)).is_err() {
            tracing::debug!("WHIP event queue full or closed; frame dropped");
            return false;
        }
        true
    }
}

/// A buffer's timestamp (ns, webrtcbin's: from the RTP timestamps, starting near zero) on
/// the 90 kHz clock, rounded to the nearest tick (GStreamer truncates the 90 kHz RTP times
/// to whole nanoseconds; truncating again would put a 2 s keyframe a tick short of 2 s).
fn mpeg_time(t: Option<gst::ClockTime>) -> Option<MediaTime> {
    t.map(|t| MediaTime::new(((t.nseconds() as i128 * 9 + 50_000) / 100_000) as i64, Timescale::MPEG))
}

fn video_sample(e: &Emitter, sample: &gst::Sample) {
    let Some(buf) = sample.buffer() else { return };
    let Ok(map) = buf.map_readable() else { return };
    // The one copy: out of GStreamer's buffer into the access unit.
    let data = Bytes::copy_from_slice(map.as_slice());
    let (Some(pts), dts) = (mpeg_time(buf.pts()), mpeg_time(buf.dts())) else { return };
    let done = e.assembler.lock().unwrap_or_else(|p| p.into_inner()).push(pts, dts, media::annexb_nal_units(&data));
    if let Some(p) = done {
        let arrival = e.started.elapsed().as_nanos() as u64;
        let pictures = e.clock.lock().unwrap_or_else(|p| p.into_inner()).push(p, arrival);
        for p in pictures {
            video_unit(e, p);
        }
    }
}

fn video_unit(e: &Emitter, p: Picture) {
    let known = e.tracks.lock().unwrap_or_else(|p| p.into_inner()).0.video.clone();
    let (au, config) = access_unit(p, known.as_ref());
    let (pts, keyframe) = (au.pts, au.keyframe);
    // A keyframe every interval, so segments can be cut on time whatever the encoder's GOP.
    {
        let mut k = e.keyframes.lock().unwrap_or_else(|p| p.into_inner());
        if k.1.handle_picture(pts.ticks(), keyframe)
            && let Some(pad) = &k.0
        {
            request_keyframe(pad);
        }
    }
    if !e.unit(au, config, None) && !keyframe {
        // A dropped frame breaks the picture until the next keyframe: ask for one.
        let k = e.keyframes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pad) = &k.0 {
            request_keyframe(pad);
        }
    }
}

fn audio_sample(e: &Emitter, sample: &gst::Sample) {
    let Some(buf) = sample.buffer() else { return };
    let Ok(map) = buf.map_readable() else { return };
    let data = map.as_slice();
    let Some(pts) = mpeg_time(buf.pts()) else { return };
    let Ok((config, _)) = AacConfig::from_adts_header(data) else { return };
    let mut payload = Payload::new();
    payload.push(Bytes::copy_from_slice(data));
    let au = AccessUnit { track: TrackKind::Audio, pts, dts: pts, keyframe: true, data: payload };
    let _ = e.unit(au, None, Some(config));
}

fn appsink(name: &str, caps: &str, e: Arc<Emitter>, video: bool) -> Result<gst::Element, PeerError> {
    let sink = gst_app::AppSink::builder()
        .name(name)
        .caps(&caps.parse::<gst::Caps>().map_err(gst_err)?)
        .sync(false)
        .max_buffers(64)
        .drop(true)
        .callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if video {
                        video_sample(&e, &sample);
                    } else {
                        audio_sample(&e, &sample);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        )
        .build();
    Ok(sink.upcast())
}

/// Links a new webrtcbin source pad to its depayloading chain.
fn link_pad(pipeline: &gst::Pipeline, pad: &gst::Pad, e: &Arc<Emitter>) -> Result<(), PeerError> {
    let caps = pad.current_caps().or_else(|| pad.allowed_caps()).ok_or_else(|| gst_err("pad without caps"))?;
    let media = caps.structure(0).and_then(|s| s.get::<&str>("media").ok()).unwrap_or("").to_owned();
    let (desc, sink) = match media.as_str() {
        "video" => (
            // Access units straight from the depayloader (h264parse here splits pictures
            // of several slices from the parameter sets sent ahead of them).
            "rtph264depay request-keyframe=true wait-for-keyframe=true",
            appsink("video", "video/x-h264,stream-format=byte-stream,alignment=au", e.clone(), true)?,
        ),
        "audio" => (
            "rtpopusdepay ! opusdec ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 ! avenc_aac bitrate=128000 ! aacparse",
            appsink("audio", "audio/mpeg,mpegversion=4,stream-format=adts", e.clone(), false)?,
        ),
        other => return Err(gst_err(format!("unexpected {other} pad"))),
    };
    let bin = gst::parse::bin_from_description(desc, true).map_err(gst_err)?;
    pipeline.add_many([bin.upcast_ref::<gst::Element>(), &sink]).map_err(gst_err)?;
    bin.link(&sink).map_err(gst_err)?;
    bin.sync_state_with_parent().map_err(gst_err)?;
    sink.sync_state_with_parent().map_err(gst_err)?;
    let sinkpad = bin.static_pad("sink").ok_or_else(|| gst_err("no sink pad"))?;
    pad.link(&sinkpad).map_err(gst_err)?;
    // A keyframe now, so the stream starts without waiting for the next GOP; and later
    // ones from here.
    if media == "video" {
        request_keyframe(&sinkpad);
        e.keyframes.lock().unwrap_or_else(|p| p.into_inner()).0 = Some(sinkpad.clone());
    }
    tracing::info!(%media, "WHIP track linked");
    Ok(())
}

impl WhipPeer {
    /// Answers `offer` (already checked by `ingest::whip::sdp::choose`, which gave
    /// `chosen`): receive-only transceivers for the chosen video and audio, the answer
    /// once ICE gathering is complete, and the stream's events from then on.
    pub async fn answer(offer: &str, chosen: &Chosen, cfg: &PeerConfig) -> Result<Accepted, PeerError> {
        gst::init().map_err(gst_err)?;
        let sdp = gst_sdp::SDPMessage::parse_buffer(offer.as_bytes()).map_err(|e| PeerError::Offer(e.to_string()))?;
        let counted = crate::Pipeline::new();
        let pipeline: gst::Pipeline = (*counted).clone();
        crate::log_errors(&pipeline, "WHIP");
        let webrtc = webrtcbin(cfg)?;
        pipeline.add(&webrtc).map_err(gst_err)?;
        // From here every exit, an error or the caller giving up, stops the pipeline.
        let peer = WhipPeer { _pipeline: counted, webrtc: webrtc.clone() };
        let (tx, events) = mpsc::channel(QUEUE);
        let emitter = Arc::new(Emitter {
            tx,
            tracks: Mutex::new((TrackInfo::default(), false)),
            keyframes: Mutex::new((None, KeyframePacer::new((cfg.keyframe_interval.as_secs_f64() * 90_000.0) as i64))),
            assembler: Mutex::default(),
            clock: Mutex::default(),
            started: std::time::Instant::now(),
        });
        // Timestamps from the sender's RTP clock (synchronised through its sender reports,
        // not smoothed by arrival times), so a publisher's keyframe interval stays what its
        // encoder made it. (`none` dropped most of a loaded browser's frames as late.)
        if let Some(rtpbin) = crate::rtpbin(&webrtc) {
            rtpbin.set_property_from_str("buffer-mode", "synced");
        }
        let weak = pipeline.downgrade();
        webrtc.connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            if let Some(p) = weak.upgrade()
                && let Err(e) = link_pad(&p, pad, &emitter)
            {
                tracing::warn!(error = %e, "WHIP track not linked");
            }
        });
        // Receive-only transceivers for what was chosen, before the answer is made.
        if let Some((_, pt, plid)) = &chosen.video {
            let caps = format!(
                "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload={pt},packetization-mode=(string)1,profile-level-id=(string){plid}"
            );
            add_transceiver(&webrtc, gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &caps)?;
        }
        if let Some((_, pt)) = &chosen.audio {
            add_transceiver(
                &webrtc,
                gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly,
                &format!("application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload={pt}"),
            )?;
        }
        pipeline.set_state(gst::State::Playing).map_err(gst_err)?;
        let answer = negotiate(&webrtc, sdp).await?;
        Ok(Accepted { answer, events, peer })
    }

    /// Adds a trickled ICE candidate (`candidate:…`) for media line `mline`.
    pub fn add_candidate(&self, mline: u32, candidate: &str) {
        self.webrtc.emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
    }
}
