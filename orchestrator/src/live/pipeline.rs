//! The local live runner's GStreamer half: H.264 access units in, decoded, an [`Effect`]
//! applied to each I420 frame, re-encoded with x264 at zero latency without B-frames, and
//! H.264 access units out with the input's timestamps.
//!
//! ```text
//! appsrc (H.264 AUs, PTS/DTS) ! h264parse ! avdec_h264 ! videoconvert ! I420
//!   ! identity (probe: the effect, in place) ! x264enc tune=zerolatency bframes=0
//!   ! h264parse (SPS/PPS before every IDR) ! appsink → [`Encoded`] on a channel
//! ```
//!
//! GStreamer runs it on its own streaming threads: pushing a buffer never waits (the
//! source queues), frames leave through a channel, and [`EffectPipeline::stop`] (which
//! joins those threads) belongs on a blocking thread.
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use media::{AccessUnit, MediaTime, Timescale, TrackKind};
use tokio::sync::mpsc;

use super::effects::{Effect, Effects, Planes};

/// The pipeline, from the decoder on (the source and sink are set up in code).
const DESCRIPTION: &str = "appsrc name=src ! h264parse ! avdec_h264 max-threads=1 ! videoconvert \
     ! video/x-raw,format=I420 ! identity name=fx ! x264enc tune=zerolatency speed-preset=ultrafast \
     bframes=0 key-int-max=30 ! h264parse config-interval=-1 \
     ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false";

/// Why the pipeline could not be built or fed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// GStreamer or one of its elements is missing or failed.
    #[error("GStreamer: {0}")]
    Gst(String),
}

impl From<gst::glib::Error> for PipelineError {
    fn from(e: gst::glib::Error) -> Self {
        PipelineError::Gst(e.to_string())
    }
}

impl From<gst::glib::BoolError> for PipelineError {
    fn from(e: gst::glib::BoolError) -> Self {
        PipelineError::Gst(e.to_string())
    }
}

/// What the pipeline sends out.
#[derive(Debug)]
pub enum Output {
    /// An encoded access unit.
    Frame(AccessUnit),
    /// The pipeline failed; nothing more will come.
    Error(String),
    /// Everything pushed before [`EffectPipeline::finish`] has come out.
    End,
}

/// A running effect pipeline.
pub struct EffectPipeline {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    /// The effect applied from the next frame on.
    pub effect: Arc<Mutex<Effect>>,
}

/// 90 kHz ticks to nanoseconds, rounded (the inverse of [`ns_to_ticks`]).
fn ticks_to_ns(t: MediaTime) -> Option<gst::ClockTime> {
    let ticks = t.rescale(Timescale::MPEG).ticks();
    (ticks >= 0).then(|| gst::ClockTime::from_nseconds(((ticks as u128 * 100_000 + 4) / 9) as u64))
}

fn ns_to_ticks(ns: gst::ClockTime) -> MediaTime {
    MediaTime::new(((ns.nseconds() as u128 * 9 + 50_000) / 100_000) as i64, Timescale::MPEG)
}

impl EffectPipeline {
    /// Builds and starts a pipeline applying `effect`; encoded frames go to `out`.
    pub fn start(effect: Effect, out: mpsc::UnboundedSender<Output>) -> Result<Self, PipelineError> {
        gst::init()?;
        let pipeline = gst::parse::launch(DESCRIPTION)?
            .downcast::<gst::Pipeline>()
            .map_err(|_| PipelineError::Gst("not a pipeline".into()))?;
        let by_name = |n: &str| pipeline.by_name(n).ok_or_else(|| PipelineError::Gst(format!("no element {n}")));
        let src = by_name("src")?.downcast::<gst_app::AppSrc>().map_err(|_| PipelineError::Gst("appsrc".into()))?;
        src.set_caps(Some(
            &gst::Caps::builder("video/x-h264").field("stream-format", "byte-stream").field("alignment", "au").build(),
        ));
        src.set_format(gst::Format::Time);
        src.set_is_live(true);
        src.set_block(false);
        src.set_max_bytes(64 << 20);
        // A runner slower than real time drops the oldest queued frames rather than
        // falling ever further behind (GStreamer 1.20+; a queue of one second).
        if src.find_property("leaky-type").is_some() && src.find_property("max-time").is_some() {
            src.set_property_from_str("leaky-type", "downstream");
            src.set_property("max-time", 1_000_000_000u64);
        }
        let sink = by_name("sink")?.downcast::<gst_app::AppSink>().map_err(|_| PipelineError::Gst("appsink".into()))?;
        let frames = out.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(buffer) = sample.buffer_owned() else { return Ok(gst::FlowSuccess::Ok) };
                    // The encoder shifts its output segment (x264enc by 1000 hours, so
                    // that no DTS is negative); running time undoes that: it is the time
                    // pushed in, as the source's segment starts at 0.
                    let segment = sample.segment().and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
                    let running = |t: Option<gst::ClockTime>| match &segment {
                        Some(seg) => t.and_then(|t| seg.to_running_time(t)),
                        None => t,
                    };
                    let (pts, dts) = (running(buffer.pts()), running(buffer.dts().or(buffer.pts())));
                    let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
                    let Ok(mapped) = buffer.into_mapped_buffer_readable() else { return Ok(gst::FlowSuccess::Ok) };
                    let (Some(pts), Some(dts)) = (pts, dts) else { return Ok(gst::FlowSuccess::Ok) };
                    let au = AccessUnit {
                        track: TrackKind::Video,
                        pts: ns_to_ticks(pts),
                        dts: ns_to_ticks(dts),
                        keyframe,
                        // The encoder's memory, handed on without a copy.
                        data: Bytes::from_owner(mapped).into(),
                    };
                    frames.send(Output::Frame(au)).map_err(|_| gst::FlowError::Flushing)?;
                    Ok(gst::FlowSuccess::Ok)
                })
                .eos({
                    let out = out.clone();
                    move |_sink| {
                        let _ = out.send(Output::End);
                    }
                })
                .build(),
        );
        let effect = Arc::new(Mutex::new(effect));
        let fx =
            by_name("fx")?.static_pad("src").ok_or_else(|| PipelineError::Gst("identity has no src pad".into()))?;
        let current = effect.clone();
        // The probe runs on one streaming thread at a time; the lock is never contended.
        let effects = Mutex::new(Effects::default());
        fx.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let e = *current.lock().unwrap_or_else(|p| p.into_inner());
            if e == Effect::Noop {
                return gst::PadProbeReturn::Ok;
            }
            let Some(caps) = pad.current_caps() else { return gst::PadProbeReturn::Ok };
            let Ok(vinfo) = gst_video::VideoInfo::from_caps(&caps) else { return gst::PadProbeReturn::Ok };
            if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
                let buffer = buffer.make_mut();
                if let Ok(mut frame) = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &vinfo) {
                    let (w, h) = (frame.width() as usize, frame.height() as usize);
                    let strides: Vec<usize> = frame.plane_stride().iter().map(|&s| s as usize).collect();
                    let [y, u, v, ..] = frame.planes_data_mut();
                    let mut planes =
                        Planes { y: (y, strides[0]), u: (u, strides[1]), v: (v, strides[2]), width: w, height: h };
                    effects.lock().unwrap_or_else(|p| p.into_inner()).apply(e, &mut planes);
                }
            }
            gst::PadProbeReturn::Ok
        });
        let bus = pipeline.bus().ok_or_else(|| PipelineError::Gst("no bus".into()))?;
        let errors = out;
        bus.set_sync_handler(move |_bus, msg| {
            if let gst::MessageView::Error(e) = msg.view() {
                let _ = errors.send(Output::Error(format!("{}: {}", e.error(), e.debug().unwrap_or_default())));
            }
            gst::BusSyncReply::Drop
        });
        pipeline.set_state(gst::State::Playing).map_err(|e| PipelineError::Gst(e.to_string()))?;
        Ok(EffectPipeline { pipeline, src, effect })
    }

    /// Queues one H.264 access unit (Annex B); never waits. Units before time 0 are
    /// skipped.
    pub fn push(&self, au: &AccessUnit) -> Result<(), PipelineError> {
        let (Some(pts), Some(dts)) = (ticks_to_ns(au.pts), ticks_to_ns(au.dts)) else { return Ok(()) };
        let mut buffer = gst::Buffer::new();
        {
            let b = buffer.get_mut().expect("a new buffer is writable");
            // The payload's parts become the buffer's memories: no copy.
            for part in au.data.parts() {
                b.append_memory(gst::Memory::from_slice(part.clone()));
            }
            b.set_pts(pts);
            b.set_dts(dts);
            if !au.keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        self.src.push_buffer(buffer).map(|_| ()).map_err(|e| PipelineError::Gst(format!("push: {e:?}")))
    }

    /// No more input: what is in flight is encoded, then [`Output::End`] comes.
    pub fn finish(&self) {
        let _ = self.src.end_of_stream();
    }

    /// Tears the pipeline down (joins GStreamer's threads: call from a blocking thread).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for EffectPipeline {
    /// A pipeline must reach NULL before it is freed; dropped without [`Self::stop`] (its
    /// job's task cancelled), it gets there here.
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_survive_the_round_trip_through_nanoseconds() {
        for t in [0i64, 1, 2, 3000, 90_000, 123_456_789, (1 << 33) + 17] {
            let m = MediaTime::new(t, Timescale::MPEG);
            assert_eq!(ns_to_ticks(ticks_to_ns(m).unwrap()), m);
        }
        assert!(ticks_to_ns(MediaTime::new(-1, Timescale::MPEG)).is_none());
    }
}
