//! A stream's access units for WebRTC viewers: [`FrameFeed`] keeps the current GOP (from
//! the last video keyframe) and hands each unit to every viewer's queue without waiting
//! (a full queue makes that viewer skip to the next keyframe); [`ViewerClock`] decides,
//! per viewer, when each unit is sent, so a viewer starts at once on the cached GOP and
//! then follows the live edge.
//!
//! Both are sans-IO: the stream's task (through its CMAF output) and the live AI output
//! feed units in; the WHEP shell pushes what the clock says into `webrtc_media::WhepPeer`.
use std::sync::Mutex;
use std::time::Duration;

use media::{AccessUnit, MediaTime, Timescale, TrackInfo, TrackKind};
use tokio::sync::mpsc;

/// Units kept from the last keyframe (about 20 s of 30 fps video with audio); a longer
/// GOP is not cached past this, and a viewer then starts at the next keyframe.
pub const GOP_LIMIT: usize = 1500;
/// Events queued for one viewer before it skips to the next keyframe.
pub const VIEWER_QUEUE: usize = 512;

/// What a viewer receives after subscribing.
#[derive(Debug, Clone)]
pub enum FeedEvent {
    /// New track configurations.
    Tracks(TrackInfo),
    /// A unit of the stream.
    Unit(AccessUnit),
    /// A new publisher (a new timeline): re-base at the next keyframe.
    Restart,
}

/// Whether a stream can be played over WebRTC now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// No configuration, or video without a keyframe yet.
    NoMedia,
    /// The video has B-frames (presentation order differs from decode order), which a
    /// WebRTC viewer cannot be sent as they are.
    Reordered,
    /// Ready: a viewer can start now.
    Ready,
}

#[derive(Debug)]
struct Viewer {
    tx: mpsc::Sender<FeedEvent>,
    /// Lost a unit to a full queue: nothing more until the next video keyframe.
    skipping: bool,
    /// A `Restart` or `Tracks` could not be queued: sent before the next keyframe.
    owed: Vec<FeedEvent>,
}

#[derive(Debug, Default)]
struct Inner {
    tracks: TrackInfo,
    /// From the last video keyframe: video and audio units in arrival order.
    gop: Vec<AccessUnit>,
    /// The GOP outgrew [`GOP_LIMIT`]: not cached until the next keyframe.
    gop_overflow: bool,
    /// The last video unit's presentation time (90 kHz ticks).
    last_video_pts: Option<i64>,
    reordered: bool,
    viewers: Vec<Viewer>,
}

/// A stream's units for its WebRTC viewers.
#[derive(Debug, Default)]
pub struct FrameFeed {
    inner: Mutex<Inner>,
}

/// A viewer's start: the configurations, the current GOP, then everything after it.
#[derive(Debug)]
pub struct Subscription {
    /// The track configurations in force.
    pub tracks: TrackInfo,
    /// The units from the last video keyframe (video and audio), oldest first.
    pub gop: Vec<AccessUnit>,
    /// What follows.
    pub events: mpsc::Receiver<FeedEvent>,
}

impl FrameFeed {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream's track configurations.
    pub fn handle_tracks(&self, t: &TrackInfo) {
        let mut i = self.lock();
        if i.tracks == *t {
            return;
        }
        i.tracks = t.clone();
        i.broadcast(FeedEvent::Tracks(t.clone()), false);
    }

    /// One unit of the stream, in decode order.
    pub fn handle_access_unit(&self, au: &AccessUnit) {
        let mut i = self.lock();
        let video = au.track == TrackKind::Video;
        if video {
            let pts = au.pts.rescale(Timescale::MPEG).ticks();
            // A picture presented before the one decoded ahead of it is a B-frame; a
            // keyframe stepping back is a timestamp reset, not reordering.
            if !au.keyframe && i.last_video_pts.is_some_and(|last| pts < last) {
                i.reordered = true;
            }
            i.last_video_pts = Some(pts);
            if au.keyframe {
                i.gop.clear();
                i.gop_overflow = false;
            }
        }
        if (video && au.keyframe || !i.gop.is_empty()) && !i.gop_overflow {
            if i.gop.len() < GOP_LIMIT {
                i.gop.push(au.clone());
            } else {
                i.gop.clear();
                i.gop_overflow = true;
            }
        }
        if !i.viewers.is_empty() {
            i.broadcast(FeedEvent::Unit(au.clone()), video && au.keyframe);
        }
    }

    /// A new publisher: its timeline starts afresh (the cache and the B-frame verdict
    /// with it).
    pub fn restart(&self) {
        let mut i = self.lock();
        i.gop.clear();
        i.gop_overflow = false;
        i.last_video_pts = None;
        i.reordered = false;
        i.broadcast(FeedEvent::Restart, false);
    }

    /// Whether a viewer could start now.
    pub fn readiness(&self) -> Readiness {
        let i = self.lock();
        let has_video = i.tracks.video.is_some();
        // A GOP too long to cache still plays: the viewer starts at the next keyframe.
        if i.tracks.video.is_none() && i.tracks.audio.is_none() || has_video && i.gop.is_empty() && !i.gop_overflow {
            Readiness::NoMedia
        } else if i.reordered {
            Readiness::Reordered
        } else {
            Readiness::Ready
        }
    }

    /// The video's H.264 `profile_idc`, if known.
    pub fn video_profile(&self) -> Option<u8> {
        self.lock().tracks.video.as_ref().map(|v| v.profile)
    }

    /// Starts a viewer, if the stream is [`Readiness::Ready`].
    pub fn subscribe(&self) -> Option<Subscription> {
        if self.readiness() != Readiness::Ready {
            return None;
        }
        let mut i = self.lock();
        let (tx, events) = mpsc::channel(VIEWER_QUEUE);
        i.viewers.push(Viewer { tx, skipping: false, owed: Vec::new() });
        Some(Subscription { tracks: i.tracks.clone(), gop: i.gop.clone(), events })
    }

    /// Viewers subscribed (closed ones are counted until the next unit).
    pub fn viewers(&self) -> usize {
        self.lock().viewers.len()
    }
}

impl Inner {
    /// Queues `ev` for every viewer; a viewer whose queue is full skips until a video
    /// keyframe (`keyframe` says `ev` is one); closed viewers are dropped.
    fn broadcast(&mut self, ev: FeedEvent, keyframe: bool) {
        let unit = matches!(ev, FeedEvent::Unit(_));
        self.viewers.retain_mut(|v| {
            if unit && v.skipping && !keyframe {
                return !v.tx.is_closed();
            }
            // What could not be queued before goes first (a restart must not be lost:
            // without it the new timeline would look like reordered frames).
            while let Some(owed) = v.owed.first() {
                match v.tx.try_send(owed.clone()) {
                    Ok(()) => {
                        v.owed.remove(0);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => break,
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            if !v.owed.is_empty() {
                if !unit {
                    v.owed.push(ev.clone());
                }
                v.skipping = true;
                return true;
            }
            match v.tx.try_send(ev.clone()) {
                Ok(()) => {
                    if unit {
                        v.skipping = false;
                    }
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if !unit {
                        v.owed.push(ev.clone());
                    }
                    v.skipping = true;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }
}

/// Spacing of the cached GOP's frames when a viewer starts: they are sent at once and
/// stamped this far apart, so the decoder runs through them and shows the live edge.
pub const CATCH_UP_SPACING: i64 = 90; // 1 ms at 90 kHz

/// What to do with one unit for one viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it at this running time (from the viewer's start).
    Send(Duration),
    /// Leave it out (before the start, or waiting for a keyframe).
    Skip,
    /// The video has turned out to have B-frames: the viewer cannot go on.
    Reordered,
}

/// One viewer's timeline: the stream's 90 kHz times mapped to running time from the
/// viewer's start, the cached GOP compressed into its first milliseconds.
#[derive(Debug, Clone)]
pub struct ViewerClock {
    /// Stream time (ticks) at running time zero.
    base: Option<i64>,
    /// The stream has video: audio waits for the video's base.
    has_video: bool,
    /// Video is left out until a keyframe (after a loss or a restart).
    awaiting_keyframe: bool,
    /// A new timeline: the next keyframe (or audio unit, without video) re-bases.
    rebase: bool,
    last_video_pts: Option<i64>,
    /// The latest running time handed out (ticks).
    last_out: i64,
}

fn running(ticks: i64) -> Duration {
    Duration::from_nanos((ticks.max(0) as u64).saturating_mul(100_000) / 9)
}

fn ticks(t: MediaTime) -> i64 {
    t.rescale(Timescale::MPEG).ticks()
}

impl ViewerClock {
    /// A viewer starting on `sub`'s GOP: returns the clock and the GOP's video units with
    /// their running times (audio of the past is left out: it would play late).
    pub fn start(tracks: &TrackInfo, gop: &[AccessUnit]) -> (Self, Vec<(AccessUnit, Duration)>) {
        let video: Vec<&AccessUnit> = gop.iter().filter(|a| a.track == TrackKind::Video).collect();
        let mut clock = ViewerClock {
            base: None,
            has_video: tracks.video.is_some(),
            awaiting_keyframe: video.is_empty(),
            rebase: false,
            last_video_pts: None,
            last_out: 0,
        };
        let mut out = Vec::with_capacity(video.len());
        if let Some(last) = video.last() {
            let n = video.len() as i64;
            clock.base = Some(ticks(last.pts) - (n - 1) * CATCH_UP_SPACING);
            for (k, au) in video.iter().enumerate() {
                let t = k as i64 * CATCH_UP_SPACING;
                out.push(((*au).clone(), running(t)));
                clock.last_out = t;
            }
            clock.last_video_pts = Some(ticks(last.pts));
        }
        (clock, out)
    }

    /// A new publisher's timeline: picked up at its next keyframe.
    pub fn restart(&mut self) {
        self.rebase = true;
        self.awaiting_keyframe = true;
        self.last_video_pts = None;
    }

    /// New track configurations (a new publisher may bring or drop video).
    pub fn tracks(&mut self, t: &TrackInfo) {
        self.has_video = t.video.is_some();
    }

    /// A video unit could not be sent: the picture is broken until the next keyframe.
    pub fn lost(&mut self) {
        self.awaiting_keyframe = true;
    }

    /// When `au` is to be sent, if at all.
    pub fn handle_unit(&mut self, au: &AccessUnit) -> Decision {
        let pts = ticks(au.pts);
        let video = au.track == TrackKind::Video;
        if video {
            if self.last_video_pts.is_some_and(|last| pts < last) && !self.rebase {
                if !au.keyframe {
                    return Decision::Reordered;
                }
                // Timestamps reset within a publisher: a new timeline from this keyframe.
                self.restart();
            }
            if self.awaiting_keyframe && !au.keyframe {
                return Decision::Skip;
            }
        }
        // The first unit to start (or restart) the timeline: a keyframe, or any audio
        // unit of a stream without video.
        let starts = if self.has_video { video } else { true };
        if (self.base.is_none() || self.rebase) && starts {
            // Continue a frame after the last unit handed out (from zero at the start).
            let next = if self.base.is_none() { 0 } else { self.last_out + 3000 };
            self.base = Some(pts - next);
            self.rebase = false;
        }
        let Some(base) = self.base.filter(|_| !self.rebase) else { return Decision::Skip };
        let t = pts - base;
        if t < 0 {
            return Decision::Skip;
        }
        if video {
            self.awaiting_keyframe = false;
            self.last_video_pts = Some(pts);
        }
        self.last_out = self.last_out.max(t);
        Decision::Send(running(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::{AacConfig, H264Config, Payload};

    fn au(track: TrackKind, ms: i64, keyframe: bool) -> AccessUnit {
        let t = MediaTime::new(ms * 90, Timescale::MPEG);
        AccessUnit { track, pts: t, dts: t, keyframe, data: Payload::new() }
    }

    fn v(ms: i64, key: bool) -> AccessUnit {
        au(TrackKind::Video, ms, key)
    }

    fn a(ms: i64) -> AccessUnit {
        au(TrackKind::Audio, ms, true)
    }

    fn tracks() -> TrackInfo {
        // 1280x720 high profile, as the CMAF tests use.
        let sps = bytes::Bytes::from_static(&[
            0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x6a, 0x02, 0x02, 0x02, 0x80, 0x00, 0x00,
            0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18, 0xcb,
        ]);
        let pps = bytes::Bytes::from_static(&[0x68, 0xeb]);
        TrackInfo {
            video: Some(H264Config::from_parameter_sets(vec![sps], vec![pps], 4).unwrap()),
            audio: Some(AacConfig::from_audio_specific_config(&[0x11, 0x90]).unwrap()),
        }
    }

    #[test]
    fn readiness_and_gop_cache() {
        let f = FrameFeed::default();
        assert_eq!(f.readiness(), Readiness::NoMedia);
        f.handle_tracks(&tracks());
        f.handle_access_unit(&v(0, false));
        f.handle_access_unit(&a(5));
        assert_eq!(f.readiness(), Readiness::NoMedia, "no keyframe yet");
        assert!(f.subscribe().is_none());
        f.handle_access_unit(&v(33, true));
        f.handle_access_unit(&a(40));
        f.handle_access_unit(&v(66, false));
        assert_eq!(f.readiness(), Readiness::Ready);
        let s = f.subscribe().unwrap();
        assert_eq!(s.gop.len(), 3, "from the keyframe: {:?}", s.gop);
        assert!(s.gop[0].keyframe);
        f.handle_access_unit(&v(100, true));
        let s2 = f.subscribe().unwrap();
        assert_eq!(s2.gop.len(), 1, "a new GOP replaces the old");
        assert_eq!(f.viewers(), 2);
        drop(s);
        f.handle_access_unit(&v(133, false));
        assert_eq!(f.viewers(), 1, "a closed viewer is dropped");
    }

    #[test]
    fn b_frames_are_seen() {
        let f = FrameFeed::default();
        f.handle_tracks(&tracks());
        // Decode order I P B: the B frame's presentation time is before the P's.
        let mut b = v(33, false);
        b.dts = MediaTime::new(66 * 90, Timescale::MPEG);
        for u in [v(0, true), v(66, false), b] {
            f.handle_access_unit(&u);
        }
        assert_eq!(f.readiness(), Readiness::Reordered);
        f.restart();
        f.handle_access_unit(&v(0, true));
        f.handle_access_unit(&v(33, false));
        f.handle_access_unit(&v(0, true));
        assert_eq!(f.readiness(), Readiness::Ready, "a keyframe stepping back is a reset, not a B-frame");
        f.restart();
        f.handle_access_unit(&v(0, true));
        assert_eq!(f.readiness(), Readiness::Ready, "a new publisher is judged afresh");
    }

    #[test]
    fn a_slow_viewer_skips_to_the_next_keyframe() {
        let f = FrameFeed::default();
        f.handle_tracks(&tracks());
        f.handle_access_unit(&v(0, true));
        let mut s = f.subscribe().unwrap();
        for k in 0..VIEWER_QUEUE + 10 {
            f.handle_access_unit(&v(33 + k as i64, false));
        }
        let mut got = 0;
        while let Ok(FeedEvent::Unit(_)) = s.events.try_recv() {
            got += 1;
        }
        assert_eq!(got, VIEWER_QUEUE);
        f.handle_access_unit(&v(5000, false));
        assert!(s.events.try_recv().is_err(), "skipping until a keyframe");
        f.handle_access_unit(&v(5033, true));
        assert!(matches!(s.events.try_recv(), Ok(FeedEvent::Unit(u)) if u.keyframe));
    }

    #[test]
    fn a_restart_reaches_a_viewer_whose_queue_was_full() {
        let f = FrameFeed::default();
        f.handle_tracks(&tracks());
        f.handle_access_unit(&v(0, true));
        let mut s = f.subscribe().unwrap();
        for k in 0..VIEWER_QUEUE {
            f.handle_access_unit(&v(33 + k as i64, false));
        }
        f.restart();
        f.handle_access_unit(&v(0, true));
        while let Ok(FeedEvent::Unit(_)) = s.events.try_recv() {}
        // Room again: the owed restart comes before the next keyframe.
        f.handle_access_unit(&v(33, false));
        f.handle_access_unit(&v(66, true));
        assert!(matches!(s.events.try_recv(), Ok(FeedEvent::Restart)));
        assert!(matches!(s.events.try_recv(), Ok(FeedEvent::Unit(u)) if u.keyframe));
    }

    #[test]
    fn a_gop_too_long_to_cache_still_plays() {
        let f = FrameFeed::default();
        f.handle_tracks(&tracks());
        for k in 0..=GOP_LIMIT as i64 {
            f.handle_access_unit(&v(k * 33, k == 0));
        }
        assert_eq!(f.readiness(), Readiness::Ready);
        let s = f.subscribe().unwrap();
        assert!(s.gop.is_empty(), "nothing cached: the viewer waits for the next keyframe");
        let (mut c, start) = ViewerClock::start(&s.tracks, &s.gop);
        assert!(start.is_empty());
        assert_eq!(c.handle_unit(&v(99_000, false)), Decision::Skip);
        assert_eq!(c.handle_unit(&v(99_033, true)), Decision::Send(Duration::ZERO));
    }

    #[test]
    fn the_gop_is_compressed_then_live_follows() {
        let gop = [v(1000, true), a(1010), v(1033, false), v(1066, false)];
        let (mut c, start) = ViewerClock::start(&tracks(), &gop);
        let times: Vec<_> = start.iter().map(|(u, t)| (ticks(u.pts) / 90, t.as_micros())).collect();
        assert_eq!(times, vec![(1000, 0), (1033, 1000), (1066, 2000)], "video only, 1 ms apart");
        // Live: the next frame 33 ms after the last cached one.
        assert_eq!(c.handle_unit(&v(1100, false)), Decision::Send(Duration::from_millis(36)));
        assert_eq!(c.handle_unit(&a(1090)), Decision::Send(Duration::from_millis(26)));
        assert_eq!(c.handle_unit(&a(1050)), Decision::Skip, "audio before the start");
        // B-frames turning up end the viewer.
        assert_eq!(c.handle_unit(&v(1090, false)), Decision::Reordered);
    }

    #[test]
    fn loss_and_restart_resume_at_a_keyframe() {
        let (mut c, _) = ViewerClock::start(&tracks(), &[v(0, true)]);
        assert_eq!(c.handle_unit(&v(33, false)), Decision::Send(Duration::from_millis(33)));
        c.lost();
        assert_eq!(c.handle_unit(&v(66, false)), Decision::Skip);
        assert_eq!(c.handle_unit(&v(100, true)), Decision::Send(Duration::from_millis(100)));
        // A new publisher starting from zero continues a frame after the last unit.
        c.restart();
        assert_eq!(c.handle_unit(&a(0)), Decision::Skip, "audio waits for the video's new base");
        assert_eq!(c.handle_unit(&v(10, false)), Decision::Skip);
        assert_eq!(c.handle_unit(&v(20, true)), Decision::Send(Duration::from_nanos(133_333_333)));
        assert_eq!(c.handle_unit(&a(30)), Decision::Send(Duration::from_nanos(143_333_333)));
    }

    #[test]
    fn audio_only_streams_start_on_any_unit() {
        let t = TrackInfo { video: None, audio: tracks().audio };
        let f = FrameFeed::default();
        f.handle_tracks(&t);
        assert_eq!(f.readiness(), Readiness::Ready);
        let s = f.subscribe().unwrap();
        let (mut c, start) = ViewerClock::start(&s.tracks, &s.gop);
        assert!(start.is_empty());
        assert_eq!(c.handle_unit(&a(500)), Decision::Send(Duration::ZERO));
        assert_eq!(c.handle_unit(&a(521)), Decision::Send(Duration::from_millis(21)));
    }
}
