//! The segment cutter: access units in, keyframe-aligned MPEG-TS segments out.
//!
//! Rules, in order:
//! * A segment starts with PAT/PMT and, when the stream has video, with a video keyframe;
//!   video frames before the stream's first keyframe cannot be decoded and are dropped.
//! * A segment ends at the first video keyframe whose PTS is at least the target duration
//!   after the segment's start (at the first audio frame past it, for audio-only streams).
//! * A timestamp that jumps backwards by more than `jump_back` or forwards by more than
//!   `jump_forward`, a new publisher ([`Segmenter::mark_discontinuity`]) and a changed
//!   video configuration (new SPS/PPS) start a new segment flagged as a discontinuity, so
//!   no segment ever spans two timelines.
//! * A segment that reaches `max_duration` without a keyframe is closed anyway, so memory
//!   and playlist target durations stay bounded whatever the encoder does.
//!
//! Segment durations follow presentation time: a segment lasts from its first frame to the
//! first frame of the next one (the last one: to its last frame's end).

use std::collections::VecDeque;

use bytes::BytesMut;
use media::{AccessUnit, MediaTime, Segment, Timescale, TrackInfo, TrackKind};

use crate::ts::mux::{TsMuxer, TsTracks};

/// Cutter settings.
#[derive(Debug, Clone)]
pub struct SegmenterConfig {
    /// Target segment duration (go-livepeer's default is 2 s).
    pub target_duration: MediaTime,
    /// Hard limit for a segment without a keyframe.
    pub max_duration: MediaTime,
    /// A DTS this far behind the previous one on a track is a new timeline.
    pub jump_back: MediaTime,
    /// A DTS this far ahead of the previous one on a track is a new timeline.
    pub jump_forward: MediaTime,
}

impl SegmenterConfig {
    /// Settings for a target duration, with the limits derived from it: segments never
    /// exceed max(30 s, 4 × target); a jump of 1 s back or max(10 s, 5 × target) forward
    /// breaks the timeline (an encoder never leaves a gap that long within a timeline).
    pub fn with_target(target: MediaTime) -> Self {
        let t = target.rescale(Timescale::MPEG);
        let ticks = t.ticks().max(1);
        SegmenterConfig {
            target_duration: t,
            max_duration: MediaTime::new((4 * ticks).max(30 * 90_000), Timescale::MPEG),
            jump_back: MediaTime::new(90_000, Timescale::MPEG),
            jump_forward: MediaTime::new((5 * ticks).max(10 * 90_000), Timescale::MPEG),
        }
    }
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self::with_target(MediaTime::new(2, Timescale::new(1)))
    }
}

struct Open {
    seq: u64,
    start: MediaTime,
    discontinuity: bool,
}

/// Counters about what the cutter did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmenterStats {
    /// Access units written into segments.
    pub access_units: u64,
    /// Video frames dropped while waiting for the first keyframe.
    pub dropped_before_keyframe: u64,
    /// Segments closed without a keyframe at `max_duration`.
    pub forced_cuts: u64,
    /// Timeline breaks detected from timestamps.
    pub timestamp_jumps: u64,
}

/// Digests a segment's bytes as they are written, so the digest is ready the moment the
/// segment closes instead of costing a pass over it afterwards (a gateway needs the
/// segment's keccak256 before it can send it to an orchestrator).
pub trait SegmentDigest: Send {
    /// Feeds the next bytes of the open segment.
    fn update(&mut self, bytes: &[u8]);
    /// The digest of everything fed since the last call; starts over.
    fn finish_reset(&mut self) -> [u8; 32];
}

/// The cutter. See the module docs.
pub struct Segmenter {
    config: SegmenterConfig,
    tracks: TrackInfo,
    muxer: Option<TsMuxer>,
    buf: BytesMut,
    open: Option<Open>,
    next_seq: u64,
    discontinuity_pending: bool,
    config_change_pending: bool,
    last_dts: [Option<MediaTime>; 2],
    frame_dur: [MediaTime; 2],
    /// Latest presentation end seen in the open segment.
    end: Option<MediaTime>,
    ready: VecDeque<Segment>,
    stats: SegmenterStats,
    /// Bytes to reserve for the next segment: a growing `BytesMut` reallocates and copies
    /// what it holds, so the buffer is sized from the previous segment up front.
    capacity_hint: usize,
    /// A finished segment's buffer handed back by [`Segmenter::recycle`].
    spare: Option<BytesMut>,
    digest: Option<Box<dyn SegmentDigest>>,
    /// Bytes of `buf` already fed to `digest`.
    digested: usize,
}

/// Room reserved for a stream's first segment: a 2 s segment at about 4 Mbit/s. Later
/// segments are sized from their predecessor, so only a first segment above this regrows.
const FIRST_SEGMENT_CAPACITY: usize = 1024 * 1024;

fn idx(t: TrackKind) -> usize {
    match t {
        TrackKind::Video => 0,
        TrackKind::Audio => 1,
    }
}

impl Segmenter {
    /// A cutter whose first segment will have sequence number `first_seq`.
    pub fn new(config: SegmenterConfig, first_seq: u64) -> Self {
        Segmenter {
            config,
            tracks: TrackInfo::default(),
            muxer: None,
            buf: BytesMut::new(),
            open: None,
            next_seq: first_seq,
            discontinuity_pending: false,
            config_change_pending: false,
            last_dts: [None, None],
            // Until measured: 30 fps video, 1024-sample AAC at 44.1 kHz.
            frame_dur: [MediaTime::new(3000, Timescale::MPEG), MediaTime::new(2090, Timescale::MPEG)],
            end: None,
            ready: VecDeque::new(),
            stats: SegmenterStats::default(),
            capacity_hint: FIRST_SEGMENT_CAPACITY,
            spare: None,
            digest: None,
            digested: 0,
        }
    }

    /// Digests every segment while it is written; each [`Segment`] then carries it.
    pub fn with_digest(mut self, digest: Box<dyn SegmentDigest>) -> Self {
        self.digest = Some(digest);
        self
    }

    fn feed_digest(&mut self) {
        if let Some(d) = self.digest.as_mut() {
            d.update(&self.buf[self.digested..]);
            self.digested = self.buf.len();
        }
    }

    /// What the cutter has done so far.
    pub fn stats(&self) -> SegmenterStats {
        self.stats
    }

    /// The sequence number the next segment will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The current track configuration.
    pub fn tracks(&self) -> &TrackInfo {
        &self.tracks
    }

    /// New track configuration. A changed video configuration cuts at the next keyframe
    /// and marks a discontinuity.
    pub fn handle_tracks(&mut self, tracks: TrackInfo) {
        if let (Some(old), Some(new)) = (&self.tracks.video, &tracks.video)
            && (old.sps != new.sps || old.pps != new.pps)
        {
            self.config_change_pending = true;
        }
        self.tracks = tracks;
    }

    /// The timeline breaks here (new publisher): closes the open segment; the next one is
    /// a discontinuity.
    pub fn mark_discontinuity(&mut self) {
        self.flush();
        self.discontinuity_pending = true;
        self.last_dts = [None, None];
    }

    /// Closes the open segment (end of stream).
    pub fn flush(&mut self) {
        let end = self.end;
        if let Some(end) = end {
            self.close(end);
        }
    }

    /// The next finished segment.
    pub fn poll_segment(&mut self) -> Option<Segment> {
        self.ready.pop_front()
    }

    /// Hands back the bytes of a segment nobody needs any more (written to disk, say), so a
    /// later segment reuses its memory instead of faulting in fresh pages. Bytes still
    /// shared elsewhere are simply dropped.
    pub fn recycle(&mut self, data: bytes::Bytes) {
        if let Ok(mut b) = data.try_into_mut() {
            b.clear();
            if self.spare.as_ref().is_none_or(|s| s.capacity() < b.capacity()) {
                self.spare = Some(b);
            }
        }
    }

    /// Adds one access unit.
    pub fn handle_access_unit(&mut self, au: &AccessUnit) {
        let t = idx(au.track);
        let pts = au.pts.rescale(Timescale::MPEG);
        let dts = au.dts.rescale(Timescale::MPEG);
        if let Some(last) = self.last_dts[t] {
            let delta = dts - last;
            if delta.ticks() < -self.config.jump_back.ticks() || delta > self.config.jump_forward {
                self.stats.timestamp_jumps += 1;
                self.mark_discontinuity();
            } else if delta.ticks() > 0 && delta.ticks() < 90_000 {
                self.frame_dur[t] = delta;
            }
        }
        let has_video = self.tracks.video.is_some();
        let is_video = au.track == TrackKind::Video;
        match &self.open {
            None => {
                if has_video && is_video && !au.keyframe {
                    self.stats.dropped_before_keyframe += 1;
                    return;
                }
                self.open_segment(pts);
            }
            Some(open) => {
                let elapsed = pts - open.start;
                let cut = if !has_video || is_video {
                    let key_cut = (!has_video || au.keyframe)
                        && (elapsed >= self.config.target_duration || (self.config_change_pending && is_video));
                    let forced = elapsed >= self.config.max_duration;
                    if forced && !key_cut {
                        self.stats.forced_cuts += 1;
                    }
                    key_cut || forced
                } else {
                    false
                };
                if cut {
                    if self.config_change_pending && au.keyframe && is_video {
                        self.config_change_pending = false;
                        self.discontinuity_pending = true;
                    }
                    self.close(pts);
                    self.open_segment(pts);
                }
            }
        }
        let muxer = self.muxer.as_mut().expect("a segment is open, so is its muxer");
        if !muxer.write_access_unit(au, &mut self.buf) {
            // A track appeared that the open segment's PMT does not declare.
            self.discontinuity_pending = true;
            self.close(pts);
            self.open_segment(pts);
            let muxer = self.muxer.as_mut().expect("just opened");
            muxer.write_access_unit(au, &mut self.buf);
        }
        self.feed_digest();
        self.stats.access_units += 1;
        self.last_dts[t] = Some(dts);
        let frame_end = pts + self.frame_dur[t];
        self.end = Some(self.end.map_or(frame_end, |e| e.max(frame_end)));
    }

    fn open_segment(&mut self, start: MediaTime) {
        let tracks = TsTracks {
            video: self.tracks.video.is_some(),
            audio: self.tracks.audio.is_some() || self.tracks.video.is_none(),
        };
        // Keep continuity counters running across segments when the program is unchanged.
        if self.muxer.as_ref().is_none_or(|m| m.tracks() != tracks) {
            self.muxer = Some(TsMuxer::new(tracks));
        }
        if self.buf.capacity() < self.capacity_hint {
            self.buf = match self.spare.take() {
                Some(b) if b.capacity() >= self.capacity_hint => b,
                _ => BytesMut::with_capacity(self.capacity_hint),
            };
        }
        let muxer = self.muxer.as_mut().expect("set above");
        muxer.write_tables(&mut self.buf);
        self.feed_digest();
        self.open = Some(Open { seq: self.next_seq, start, discontinuity: self.discontinuity_pending });
        self.next_seq += 1;
        self.discontinuity_pending = false;
        self.end = None;
    }

    fn close(&mut self, end: MediaTime) {
        let Some(open) = self.open.take() else { return };
        let mut duration = end - open.start;
        if duration.ticks() <= 0 {
            duration = self.frame_dur[0];
        }
        self.feed_digest();
        let digest = self.digest.as_mut().map(|d| d.finish_reset());
        self.digested = 0;
        let data = self.buf.split().freeze();
        // A quarter more than this one: segments of a stream vary by a few per cent, and
        // the occasional larger one costs one reallocation.
        self.capacity_hint = (data.len() + data.len() / 4).max(16 * 1024);
        self.ready.push_back(Segment {
            seq: open.seq,
            start: open.start,
            duration,
            discontinuity: open.discontinuity,
            data,
            digest,
        });
        self.end = None;
    }
}
