//! One stream's task: it owns the stream's cutter, takes its publishers in turn (a new
//! one replaces the old after a short drain), and feeds what they send to the TS cutter,
//! the CMAF output, the transcoder and the live AI driver.
use std::sync::{Arc, RwLock};
use std::time::Duration;

use media::StreamEvent;
use segmenter::Segmenter;
use segmenter::cutter::SegmenterStats;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Command, Registry, TAKEOVER_DRAIN};
use crate::metrics::Metrics;
use crate::output::StreamOutput;
use crate::transcode::StreamTranscoder;

pub(super) struct StreamTask {
    pub(super) id: String,
    pub(super) registry: Arc<Registry>,
    pub(super) output: Arc<RwLock<StreamOutput>>,
    pub(super) cmaf: Arc<RwLock<crate::cmaf::CmafOutput>>,
    pub(super) generation: u64,
    pub(super) transcoder: Option<StreamTranscoder>,
    pub(super) live: Option<crate::live::LiveStream>,
}

impl StreamTask {
    fn cmaf_mut(&self) -> std::sync::RwLockWriteGuard<'_, crate::cmaf::CmafOutput> {
        self.cmaf.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) async fn run(self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let cfg = &self.registry.config;
        let metrics = self.registry.metrics.clone();
        let mut seg = match &self.live {
            // Live AI: an IDR once the minimum has passed, each segment's bytes handed out
            // as they are cut.
            Some(_) => {
                let min = media::MediaTime::from_secs_f64(cfg.live.live_min_segment, media::Timescale::MPEG);
                let max = media::MediaTime::from_secs_f64(cfg.live.live_min_segment.max(10.0), media::Timescale::MPEG);
                Segmenter::new(segmenter::SegmenterConfig::with_limits(min, max), 0).streaming()
            }
            None => Segmenter::new(cfg.segmenter_config(), 0),
        };
        if self.transcoder.is_some() {
            seg = seg.with_digest(Box::new(crate::transcode::SegmentKeccak::default()));
        }
        let mut publisher: Option<mpsc::Receiver<StreamEvent>> = None;
        let mut sessions = 0u64;
        let grace = Duration::from_secs_f64(cfg.segmenting.stream_grace);
        let mut idle_since = Some(tokio::time::Instant::now());
        let mut seen = SegmenterStats::default();
        loop {
            let next_event = async {
                match publisher.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let deadline = idle_since.map(|t| t + grace);
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Publisher { rx, remote }) => {
                        // Keep everything the replaced publisher delivers up to its end (an
                        // encoder restarting may still be flushing its last frames); it has
                        // been told to go, so that end comes promptly.
                        if let Some(mut old) = publisher.take() {
                            let deadline = tokio::time::Instant::now() + TAKEOVER_DRAIN;
                            loop {
                                match tokio::time::timeout_at(deadline, old.recv()).await {
                                    Ok(Some(StreamEvent::End) | None) => break,
                                    Ok(Some(ev)) => self.on_media(&mut seg, &metrics, ev, &mut seen),
                                    Err(_) => {
                                        warn!("replaced publisher still sending after {TAKEOVER_DRAIN:?}; dropping the rest");
                                        break;
                                    }
                                }
                            }
                        }
                        sessions += 1;
                        if sessions > 1 {
                            seg.mark_discontinuity();
                            self.cmaf_mut().restart();
                        }
                        info!(%remote, session = sessions, "publisher attached");
                        publisher = Some(rx);
                        idle_since = None;
                        self.publish(&mut seg, &metrics, |o| {
                            o.stats.publishers = sessions;
                            o.set_live(true);
                        });
                    }
                    None => break,
                },
                ev = next_event => match ev {
                    Some(StreamEvent::End) | None => {
                        seg.flush();
                        publisher = None;
                        idle_since = Some(tokio::time::Instant::now());
                        let stats = seg.stats();
                        info!(
                            segments = seg.next_seq(),
                            dropped_video = stats.dropped_before_keyframe,
                            dropped_audio = stats.audio_dropped_before_keyframe,
                            forced_cuts = stats.forced_cuts,
                            "publisher gone; stream ended"
                        );
                        self.publish(&mut seg, &metrics, |o| o.set_live(false));
                        self.cmaf_mut().end();
                        if let Some(t) = &self.transcoder {
                            t.end();
                        }
                        if let Some(l) = &self.live {
                            l.send(crate::live::Input::End);
                        }
                        self.registry.stream_ended.notify_waiters();
                    }
                    Some(ev) => self.on_media(&mut seg, &metrics, ev, &mut seen),
                },
                _ = expired => {
                    if self.registry.remove_if_idle(&self.id, self.generation, &mut commands) {
                        info!("stream removed after grace period");
                        return;
                    }
                    idle_since = None; // a publisher is on its way
                }
            }
        }
        seg.flush();
        self.publish(&mut seg, &metrics, |o| o.set_live(false));
        if let Some(t) = &self.transcoder {
            t.end();
        }
        if let Some(l) = &self.live {
            l.send(crate::live::Input::End);
        }
        self.registry.stream_ended.notify_waiters();
    }

    /// Feeds a track configuration or access unit to the cutter and publishes what it cuts.
    /// (`End` is the caller's business.)
    fn on_media(&self, seg: &mut Segmenter, metrics: &Metrics, ev: StreamEvent, seen: &mut SegmenterStats) {
        match ev {
            StreamEvent::Tracks(t) => {
                debug!(video = ?t.video, audio = ?t.audio, "tracks");
                seg.handle_tracks(t.clone());
                self.cmaf_mut().handle_tracks(&t);
                self.publish(seg, metrics, |o| o.set_tracks(t));
            }
            StreamEvent::Media(au) => {
                Metrics::add(&metrics.ingest_bytes_total, au.data.len() as u64);
                if let Some(l) = &self.live
                    && au.track == media::TrackKind::Video
                {
                    l.frame_in(au.pts.rescale(media::Timescale::MPEG).ticks());
                }
                seg.handle_access_unit(&au);
                self.cmaf_mut().handle_access_unit(&au, crate::unix_now());
                let now = seg.stats();
                if now != *seen {
                    if now.timestamp_jumps > seen.timestamp_jumps {
                        info!(
                            jumps = now.timestamp_jumps,
                            "publisher timestamps jumped; continuing to the next keyframe"
                        );
                    }
                    if now.forced_cuts > seen.forced_cuts && seen.forced_cuts == 0 {
                        warn!(
                            max_segment_secs = seg.config().max_duration.as_secs_f64(),
                            "keyframe interval longer than the longest segment: cutting between keyframes (set the \
                             encoder's keyframe interval to the segment duration)"
                        );
                    }
                    *seen = now;
                }
                if seg.has_segment() || self.live.is_some() {
                    self.publish(seg, metrics, |_| {});
                }
            }
            StreamEvent::End => {}
        }
    }

    /// Moves finished segments into the output, then applies `f`, under one write lock.
    /// The memory of segments that left the output goes back to the cutter.
    fn publish(&self, seg: &mut Segmenter, metrics: &Metrics, f: impl FnOnce(&mut StreamOutput)) {
        if let Some(l) = &self.live {
            #[allow(clippy::disallowed_methods)] // IO shell: when the bytes were cut
            let now = std::time::Instant::now();
            while let Some(p) = seg.poll_piece() {
                if let segmenter::Piece::End(s) = &p {
                    debug!(seq = s.seq, duration = %s.duration, "live input segment");
                    Metrics::add(&metrics.segments_total, 1);
                }
                l.send(crate::live::Input::Piece(p, now));
            }
        }
        let mut dropped = Vec::new();
        let mut o = self.output.write().unwrap_or_else(|e| e.into_inner());
        while let Some(s) = seg.poll_segment() {
            debug!(seq = s.seq, duration = %s.duration, bytes = s.data.len(), discontinuity = s.discontinuity, "segment");
            Metrics::add(&metrics.segments_total, 1);
            // Every discontinuity, whatever caused it (new publisher, timestamp break, new
            // encoder settings, a track appearing), is counted once, where it lands.
            if s.discontinuity {
                Metrics::add(&metrics.discontinuities_total, 1);
            }
            Metrics::add(&metrics.segment_bytes_total, s.data.len() as u64);
            if let Some(t) = &self.transcoder {
                t.submit(&s);
            }
            dropped.extend(o.add_segment(s));
        }
        f(&mut o);
        drop(o);
        for b in dropped {
            seg.recycle(b);
        }
    }
}
