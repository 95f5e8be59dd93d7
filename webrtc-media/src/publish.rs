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

/// The access unit delimiter an MPEG-TS access unit opens with.
const AUD: &[u8] = &[0, 0, 0, 1, 9, 0xf0];
/// The start code before each NAL unit.
const START_CODE: &[u8] = &[0, 0, 0, 1];

/// `nal`'s type (the low five bits of its header).
fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|h| h & 0x1f)
}

/// When to ask a publisher for a keyframe (PLI) so that one lands just after each segment
/// target: the delay from asking to receiving is measured, and the next request goes out
/// that much ahead. Times in 90 kHz ticks.
#[derive(Debug)]
struct KeyframePacer {
    interval: i64,
    /// The last keyframe's time.
    last: Option<i64>,
    /// When a keyframe was asked for and has not come yet.
    asked: Option<i64>,
    /// The measured delay from asking to receiving (smoothed).
    lead: i64,
}

/// How far past the target a keyframe is aimed (a little late cuts on time; a little
/// early waits a whole interval).
const KEYFRAME_MARGIN: i64 = 9_000;

impl KeyframePacer {
    fn new(interval: i64) -> Self {
        KeyframePacer { interval: interval.max(1), last: None, asked: None, lead: 0 }
    }

    /// A picture at `pts`: true when a keyframe should be asked for now.
    fn handle_picture(&mut self, pts: i64, keyframe: bool) -> bool {
        if keyframe {
            if let Some(a) = self.asked.take() {
                let observed = (pts - a).clamp(0, self.interval / 2);
                self.lead = (3 * self.lead + observed) / 4;
            }
            self.last = Some(pts);
            return false;
        }
        let Some(last) = self.last else {
            self.last = Some(pts);
            return false;
        };
        let ask_at = last + self.interval + KEYFRAME_MARGIN - self.lead;
        // Asked and nothing came within half an interval: ask again.
        let waiting = self.asked.is_some_and(|a| pts - a < self.interval / 2);
        if pts >= ask_at && !waiting {
            self.asked = Some(pts);
            return true;
        }
        false
    }
}

/// Corrects a publisher whose video RTP timestamps run at 1 MHz while its SDP says
/// 90 kHz (iOS WebKit 18.4–18.5; go-livepeer #3603, which compares the first two
/// timestamps): the pictures of the first 300 ms of arrival are held, the timestamps'
/// rate is compared with the arrival rate, and when it is about eleven times too fast
/// every timestamp is scaled by 9/100 from the first picture's. Arrival times in ns.
#[derive(Debug, Default)]
struct ClockGuard {
    /// The first picture's timestamp (ticks) and arrival.
    first: Option<(i64, u64)>,
    held: Vec<Picture>,
    /// Decided: the scale (numerator, denominator).
    scale: Option<(i64, i64)>,
}

/// Arrival time over which the timestamps' rate is measured.
const CLOCK_PROBE_NS: u64 = 300_000_000;

impl ClockGuard {
    /// A picture arrived at `arrival_ns`: the pictures to pass on now (held ones first).
    fn push(&mut self, p: Picture, arrival_ns: u64) -> Vec<Picture> {
        if self.scale.is_some() {
            return vec![self.rescaled(p)];
        }
        let (p0, a0) = *self.first.get_or_insert((p.pts.ticks(), arrival_ns));
        let (pts, elapsed) = (p.pts.ticks(), arrival_ns.saturating_sub(a0));
        self.held.push(p);
        if elapsed < CLOCK_PROBE_NS && self.held.len() < 64 {
            return Vec::new();
        }
        // Timestamp seconds per arrival second, at the 90 kHz the SDP promised.
        let rate = (pts - p0) as f64 / 90_000.0 / (elapsed.max(1) as f64 / 1e9);
        self.scale = Some(if (8.0..15.0).contains(&rate) {
            tracing::warn!(rate, "video timestamps run at 1 MHz, not the 90 kHz announced (iOS WebKit): rescaled");
            (9, 100)
        } else {
            (1, 1)
        });
        let held = std::mem::take(&mut self.held);
        held.into_iter().map(|p| self.rescaled(p)).collect()
    }

    fn rescaled(&self, mut p: Picture) -> Picture {
        if let (Some((n, d)), Some((p0, _))) = (self.scale, self.first)
            && n != d
        {
            let f = |t: MediaTime| MediaTime::new(p0 + (t.ticks() - p0) * n / d, Timescale::MPEG);
            p.pts = f(p.pts);
            p.dts = f(p.dts);
        }
        p
    }
}

/// One picture's NAL units, gathered from the depayloader's buffers.
#[derive(Debug, Default)]
struct Assembler {
    pts: Option<MediaTime>,
    dts: Option<MediaTime>,
    nals: Vec<Bytes>,
    /// A slice (a picture's coded data) is among them.
    slices: bool,
}

/// An access unit's parts.
#[derive(Debug, PartialEq)]
struct Picture {
    pts: MediaTime,
    dts: MediaTime,
    nals: Vec<Bytes>,
}

impl Assembler {
    /// Adds one buffer's NAL units at `pts`: returns the picture before it when this
    /// buffer starts the next one. A picture is its slices and everything with their
    /// timestamp, plus what came ahead of them (parameter sets at the next timestamp start
    /// the next picture), so pictures of several slices sent with parameter sets between
    /// them, and parameter sets sent ahead, stay whole (one picture of delay).
    fn push(&mut self, pts: MediaTime, dts: Option<MediaTime>, nals: Vec<Bytes>) -> Option<Picture> {
        let slices = nals.iter().any(|n| matches!(nal_type(n), Some(1..=5)));
        // Another timestamp after slices: a new picture (parameter sets sent ahead of the
        // next picture included).
        let next_picture = self.slices && self.pts.is_some_and(|p| p.ticks() != pts.ticks());
        let done = if next_picture { self.take() } else { None };
        if slices || self.pts.is_none() {
            self.pts = Some(pts);
            self.dts = dts;
        }
        self.slices |= slices;
        // A runaway of parameter sets without pictures is bounded.
        if self.nals.len() < 512 {
            self.nals.extend(nals);
        }
        done
    }

    /// The picture gathered so far, if it has slices.
    fn take(&mut self) -> Option<Picture> {
        let a = std::mem::take(self);
        let pts = a.pts?;
        a.slices.then(|| Picture { pts, dts: a.dts.unwrap_or(pts), nals: a.nals })
    }
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

/// The access unit of a whole picture (H.264 §7.4.1.2.3 order): an AUD, each parameter
/// set once, the SEI and other non-picture units, then the slices; and its configuration
/// when it is a keyframe. A sender may repeat parameter sets before every slice, which a
/// decoder would take for the start of another picture. NAL units are sliced, not copied.
fn access_unit(p: Picture, known: Option<&H264Config>) -> (AccessUnit, Option<H264Config>) {
    let (mut sps, mut pps, mut other, mut slices, mut end) = (vec![], vec![], vec![], vec![], vec![]);
    for nal in p.nals {
        let list = match nal_type(&nal) {
            Some(9) | Some(12) | None => continue, // delimiters (one is added), filler
            Some(7) => &mut sps,
            Some(8) => &mut pps,
            Some(1..=5) => &mut slices,
            Some(10 | 11) => &mut end,
            _ => &mut other,
        };
        if !(matches!(nal_type(&nal), Some(7 | 8)) && list.contains(&nal)) {
            list.push(nal);
        }
    }
    // A keyframe is a picture with an IDR slice (whatever the depayloader flagged).
    let keyframe = slices.iter().any(|n| nal_type(n) == Some(5));
    // A keyframe whose parameter sets were lost (or never sent in band) gets the last
    // ones, so every segment starting on it decodes.
    if keyframe && let Some(k) = known {
        if sps.is_empty() {
            sps = k.sps.clone();
        }
        if pps.is_empty() {
            pps = k.pps.clone();
        }
    }
    let config = (keyframe && !sps.is_empty() && !pps.is_empty())
        .then(|| H264Config::from_parameter_sets(sps.clone(), pps.clone(), 4).ok())
        .flatten();
    let mut payload = Payload::with_capacity(1 + 2 * (sps.len() + pps.len() + other.len() + slices.len() + end.len()));
    payload.push(Bytes::from_static(AUD));
    for nal in sps.into_iter().chain(pps).chain(other).chain(slices).chain(end) {
        payload.push(Bytes::from_static(START_CODE));
        payload.push(nal);
    }
    (AccessUnit { track: TrackKind::Video, pts: p.pts, dts: p.dts, keyframe, data: payload }, config)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1280x720 high-profile SPS.
    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x6a, 0x02, 0x02, 0x02, 0x80, 0x00, 0x00,
        0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18, 0xcb,
    ];

    fn nal(t: u8, n: u8) -> Bytes {
        if t == 0x67 { Bytes::from_static(SPS) } else { Bytes::from(vec![t, n, n]) }
    }

    fn t(ticks: i64) -> MediaTime {
        MediaTime::new(ticks, Timescale::MPEG)
    }

    #[test]
    fn pictures_of_several_slices_and_repeated_parameter_sets_stay_whole() {
        let mut a = Assembler::default();
        // Parameter sets ahead of the picture, then an IDR in two buffers (parameter sets
        // repeated before the second slice), then a P picture.
        assert_eq!(a.push(t(0), None, vec![nal(0x67, 1), nal(0x68, 1)]), None);
        assert_eq!(a.push(t(0), None, vec![nal(0x09, 0), nal(0x65, 1)]), None);
        assert_eq!(a.push(t(0), None, vec![nal(0x67, 1), nal(0x68, 1), nal(0x65, 2)]), None);
        let idr = a.push(t(3000), None, vec![nal(0x09, 0), nal(0x41, 3), nal(0x41, 4)]).unwrap();
        assert_eq!(idr.pts.ticks(), 0);
        assert_eq!(idr.nals.len(), 7);
        let (au, config) = access_unit(idr, None);
        assert!(au.keyframe);
        let c = config.unwrap_or_else(|| panic!("parameter sets: {:?}", au.data));
        assert_eq!((c.sps.len(), c.pps.len()), (1, 1), "each once");
        let bytes = au.data.to_contiguous();
        let types: Vec<u8> = media::annexb_nal_units(&bytes).iter().map(|n| n[0] & 0x1f).collect();
        assert_eq!(types, [9, 7, 8, 5, 5], "AUD, parameter sets once, then the slices");
        let p = a.take().unwrap();
        assert_eq!(p.pts.ticks(), 3000);
        let (au, config) = access_unit(p, None);
        assert!(!au.keyframe && config.is_none());
        // An IDR whose parameter sets were lost gets the known ones.
        a.push(t(6000), None, vec![nal(0x65, 5)]);
        let (au, _) = access_unit(a.take().unwrap(), Some(&c));
        let types: Vec<u8> = media::annexb_nal_units(&au.data.to_contiguous()).iter().map(|n| n[0] & 0x1f).collect();
        assert_eq!(types, [9, 7, 8, 5]);
        assert_eq!(a.take(), None);
    }

    #[test]
    fn parameter_sets_at_the_next_timestamp_go_with_the_next_picture() {
        let mut a = Assembler::default();
        assert_eq!(a.push(t(0), None, vec![nal(0x41, 1)]), None);
        // New parameter sets with the next picture's timestamp, then its IDR.
        let p = a.push(t(3000), None, vec![nal(0x67, 2), nal(0x68, 2)]).unwrap();
        assert_eq!(p.nals.len(), 1, "the P picture alone");
        assert_eq!(a.push(t(3000), None, vec![nal(0x65, 2)]), None);
        let idr = a.take().unwrap();
        let types: Vec<u8> = idr.nals.iter().map(|n| n[0] & 0x1f).collect();
        assert_eq!(types, [7, 8, 5]);
    }

    #[test]
    fn keyframes_are_asked_ahead_by_the_measured_delay() {
        // 2 s segments, 30 fps (3000 ticks a frame), a publisher answering in 300 ms.
        let mut p = KeyframePacer::new(180_000);
        let mut asked_at = vec![];
        let mut keyframes = vec![0i64];
        let mut pending: Option<i64> = None;
        p.handle_picture(0, true);
        for f in 1..600i64 {
            let pts = f * 3000;
            let key = pending.is_some_and(|a| pts >= a + 27_000);
            if key {
                pending = None;
                keyframes.push(pts);
            }
            if p.handle_picture(pts, key) {
                asked_at.push(pts);
                pending = Some(pts);
            }
        }
        let gaps: Vec<i64> = keyframes.windows(2).map(|w| w[1] - w[0]).collect();
        // The first lands 100 ms + 300 ms late; the delay is learnt and the rest land
        // within a frame or two of 2.1 s.
        assert!(gaps[0] >= 180_000 + 27_000, "{gaps:?}");
        for g in &gaps[4..] {
            assert!((180_000..=180_000 + 9_000 + 9_000).contains(g), "{gaps:?}");
        }
    }

    fn picture(ticks: i64) -> Picture {
        Picture { pts: t(ticks), dts: t(ticks), nals: vec![] }
    }

    #[test]
    fn microsecond_video_timestamps_are_rescaled() {
        // 30 fps for 0.43 s, timestamps at 1 MHz (33,333 ticks a frame read as 90 kHz).
        let mut g = ClockGuard::default();
        let mut out = vec![];
        for f in 0..13u64 {
            out.extend(g.push(picture(1_000 + f as i64 * 33_333), f * 33_333_333));
        }
        assert_eq!(out.len(), 13, "held for 300 ms, then passed on");
        let gaps: Vec<i64> = out.windows(2).map(|w| w[1].pts.ticks() - w[0].pts.ticks()).collect();
        assert!(gaps.iter().all(|g| (2_999..=3_000).contains(g)), "{gaps:?}");
        assert_eq!(out[0].pts.ticks(), 1_000);
        // A normal publisher is left alone.
        let mut g = ClockGuard::default();
        let mut out = vec![];
        for f in 0..13u64 {
            out.extend(g.push(picture(f as i64 * 3_000), f * 33_333_333));
        }
        assert_eq!(
            out.iter().map(|p| p.pts.ticks()).collect::<Vec<_>>(),
            (0..13).map(|f| f * 3_000).collect::<Vec<_>>()
        );
    }

    #[test]
    fn parameter_sets_alone_are_no_picture() {
        let mut a = Assembler::default();
        assert_eq!(a.push(t(0), None, vec![nal(0x67, 1), nal(0x68, 1)]), None);
        assert_eq!(a.take(), None);
    }
}
