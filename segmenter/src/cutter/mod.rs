//! The segment cutter: access units in, keyframe-aligned MPEG-TS segments out.
//!
//! Rules, in order:
//! * **Every timeline starts at a keyframe.** At the start of a stream, after a new
//!   publisher ([`Segmenter::mark_discontinuity`]) and after a timestamp break, video frames
//!   before the first keyframe cannot be decoded and are dropped; audio that arrived before
//!   it is held briefly and kept only from the keyframe's time on (less
//!   [`AUDIO_LEAD_TOLERANCE`]), so audio and video start together. A stream that announces video but sends [`SegmenterConfig::video_wait`] of
//!   audio without a single video frame is segmented as audio-only until video comes.
//! * **Tracks are declared once they have media.** The first segment of a timeline is held
//!   until it closes (it could not be published earlier anyway), and its PMT declares the
//!   tracks it actually carries: a sequence header with no frames behind it never leaves an
//!   empty track in the TS or in a master playlist's `CODECS`. A track that appears later
//!   starts a new segment, flagged as a discontinuity, at the next keyframe.
//! * **Cuts.** A segment ends at the first video keyframe whose PTS is at least the target
//!   duration after the segment's start (at the first audio frame past it, for audio-only
//!   streams). A segment that reaches [`SegmenterConfig::max_duration`] without a keyframe is
//!   cut anyway, so the HLS target duration announced up front (`ceil(max_duration)`) holds
//!   for the playlist's whole life (RFC 8216 §6.2.1 forbids changing it); the segment that
//!   follows such a cut is marked not [`Segment::independent`] and counted.
//! * **Timestamp jumps.** A DTS that jumps back by more than `jump_back` or forward by more
//!   than `jump_forward` breaks the publisher's timeline. At a video keyframe (or in an
//!   audio-only stream) the timeline breaks there: a new segment flagged as a discontinuity.
//!   In the middle of a GOP no segment could start there, so the frames from the jump to the
//!   next keyframe are re-timed to continue the old timeline (nothing is dropped) and the
//!   discontinuity comes at that keyframe. A jump on one track alone is a glitch of that
//!   track: it stays re-timed onto the other's timeline. A smaller gap that would still
//!   stretch the open segment past what `ceil(max_duration)` allows is handled the same way.
//! * **Configuration changes** (new SPS/PPS, a new AAC configuration) start a new segment,
//!   flagged as a discontinuity, at the next keyframe.
//!
//! Segment durations follow presentation time: a segment lasts from its first frame to the
//! first frame of the next one (the last one: to its last frame's end).

use std::collections::VecDeque;

use bytes::BytesMut;
use media::{AccessUnit, MediaTime, Segment, Timescale, TrackInfo, TrackKind};

use crate::ts::mux::{TsMuxer, TsTracks};

mod timeline;
mod writer;

/// Cutter settings.
#[derive(Debug, Clone)]
pub struct SegmenterConfig {
    /// Target segment duration (go-livepeer's default is 2 s).
    pub target_duration: MediaTime,
    /// Longest segment: a GOP longer than this is cut without a keyframe. The HLS target
    /// duration is `ceil(max_duration)` seconds, fixed up front.
    pub max_duration: MediaTime,
    /// A DTS this far behind the previous one on a track is a new timeline.
    pub jump_back: MediaTime,
    /// A DTS this far ahead of the previous one on a track is a new timeline.
    pub jump_forward: MediaTime,
    /// Audio a timeline start waits for a first video frame when video is announced.
    pub video_wait: MediaTime,
}

/// Audio held at a timeline start while video frames arrive but no keyframe yet: frames
/// older than this before the newest are dropped (they precede any keyframe still to come
/// by more than encoders interleave).
const AUDIO_HOLD: i64 = 2 * 90_000;
/// Audio this close before a timeline's first keyframe is kept with it: encoders commonly
/// start AAC a frame or two (23–46 ms) ahead of the first picture, and a player plays
/// that as a start, not as audio without video.
pub const AUDIO_LEAD_TOLERANCE: MediaTime = MediaTime::new(9_000, Timescale::MPEG);

impl SegmenterConfig {
    /// Settings for a target duration with the default maximum of twice the target (so
    /// keyframe intervals up to twice the target, and irregular scene-cut keyframes, still
    /// give segments that start on a keyframe).
    pub fn with_target(target: MediaTime) -> Self {
        let t = target.rescale(Timescale::MPEG);
        Self::with_limits(t, MediaTime::new(2 * t.ticks().max(1), Timescale::MPEG))
    }

    /// Settings for a target and a maximum duration (raised to the target if below it),
    /// with the other limits derived: a jump of 1 s back or max(10 s, 5 × target) forward
    /// breaks the timeline (an encoder never leaves a gap that long within a timeline), and
    /// a timeline start waits up to 10 s of audio for announced video.
    pub fn with_limits(target: MediaTime, max: MediaTime) -> Self {
        let t = target.rescale(Timescale::MPEG);
        let ticks = t.ticks().max(1);
        let max = max.rescale(Timescale::MPEG).ticks().max(ticks);
        SegmenterConfig {
            target_duration: MediaTime::new(ticks, Timescale::MPEG),
            max_duration: MediaTime::new(max, Timescale::MPEG),
            jump_back: MediaTime::new(90_000, Timescale::MPEG),
            jump_forward: MediaTime::new((5 * ticks).max(10 * 90_000), Timescale::MPEG),
            video_wait: MediaTime::new(10 * 90_000, Timescale::MPEG),
        }
    }

    /// The HLS `EXT-X-TARGETDURATION` these settings guarantee, in whole seconds: no
    /// segment's duration rounds above it.
    pub fn playlist_target_secs(&self) -> u64 {
        (self.max_duration.as_secs_f64().ceil() as u64).max(1)
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
    independent: bool,
    /// The first segment of a timeline: its access units are held in `pending` and written
    /// when it closes, once its tracks are known.
    probing: bool,
    /// The segment is led by video (cuts wait for video keyframes).
    video_led: bool,
}

/// Counters about what the cutter did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmenterStats {
    /// Access units written into segments.
    pub access_units: u64,
    /// Video frames dropped while waiting for a timeline's first keyframe.
    pub dropped_before_keyframe: u64,
    /// Audio frames dropped because they came before a timeline's first keyframe (or
    /// before the keyframe that starts a track the segments did not carry yet).
    pub audio_dropped_before_keyframe: u64,
    /// Frames of an earlier timeline that arrived after the timeline broke, dropped.
    pub dropped_stragglers: u64,
    /// Segments cut without a keyframe at `max_duration`.
    pub forced_cuts: u64,
    /// Timestamp jumps detected (per track).
    pub timestamp_jumps: u64,
    /// Access units re-timed to continue a timeline after a jump.
    pub retimed: u64,
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
    /// Access units of a probing segment, or audio held before a timeline's first keyframe.
    pending: Vec<AccessUnit>,
    next_seq: u64,
    discontinuity_pending: bool,
    /// A new configuration or a newly appearing track: cut at the next keyframe.
    change_pending: bool,
    /// Last DTS per track as the publisher sent it (`[video, audio]`).
    last_raw: [Option<MediaTime>; 2],
    /// Last DTS per track as written.
    last_out: [Option<MediaTime>; 2],
    /// Per track: added to the publisher's timestamps while a jump is being bridged.
    offset: [Option<MediaTime>; 2],
    /// The publisher's DTS that started the current timeline after a break: a track with no
    /// history is checked against it to recognise frames of the old timeline.
    anchor: Option<MediaTime>,
    frame_dur: [MediaTime; 2],
    /// When the first audio of a timeline waiting for video arrived.
    waiting_since: Option<MediaTime>,
    /// A video frame has been seen in the current timeline.
    video_seen: bool,
    /// Announced video never came (the wait ran out): later timelines of this publisher
    /// are cut as audio-only at once instead of waiting again; cleared by a video frame
    /// or new track settings.
    video_absent: bool,
    /// Latest presentation end seen in the open segment.
    end: Option<MediaTime>,
    /// An access unit that cuts the open segment, held until one more access unit arrives:
    /// a stream that ends right after a cut ends with that frame in its last segment rather
    /// than with a one-frame stub. Costs one frame of latency per segment.
    deferred_cut: Option<(AccessUnit, bool)>,
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
    /// Streaming mode ([`Segmenter::streaming`]): bytes leave as they are written.
    streaming: bool,
    /// What streaming mode hands out, in order.
    pieces: VecDeque<Piece>,
    /// Bytes of the open segment handed out so far (streaming mode).
    streamed: usize,
    /// Tracks the next segment declares up front (streaming mode, timeline start).
    declare_next: Option<TsTracks>,
}

/// What a streaming cutter ([`Segmenter::streaming`]) hands out, in order: each segment's
/// bytes as they are written, then its end.
#[derive(Debug, Clone)]
pub enum Piece {
    /// The next bytes of segment `seq`: PAT and PMT first, then one access unit's packets
    /// at a time (a handle on the cutter's buffer: the one copy, no other).
    Bytes {
        /// The segment's sequence number.
        seq: u64,
        /// MPEG-TS packets.
        data: bytes::Bytes,
    },
    /// Segment `seq` is complete: its duration, flags and digest, with `data` empty (the
    /// bytes went out as [`Piece::Bytes`]).
    End(Segment),
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

fn other(t: usize) -> usize {
    1 - t
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
            pending: Vec::new(),
            next_seq: first_seq,
            discontinuity_pending: false,
            change_pending: false,
            last_raw: [None, None],
            last_out: [None, None],
            offset: [None, None],
            anchor: None,
            // Until measured: 30 fps video, 1024-sample AAC at 44.1 kHz.
            frame_dur: [MediaTime::new(3000, Timescale::MPEG), MediaTime::new(2090, Timescale::MPEG)],
            waiting_since: None,
            video_seen: false,
            video_absent: false,
            end: None,
            deferred_cut: None,
            ready: VecDeque::new(),
            stats: SegmenterStats::default(),
            capacity_hint: FIRST_SEGMENT_CAPACITY,
            spare: None,
            digest: None,
            digested: 0,
            streaming: false,
            pieces: VecDeque::new(),
            streamed: 0,
            declare_next: None,
        }
    }

    /// Streaming mode: each segment's bytes are handed out by [`Segmenter::poll_piece`] as
    /// they are written (for a trickle POST that must carry a segment while it is being
    /// cut) instead of whole by [`Segmenter::poll_segment`]. Every segment streams from its
    /// first access unit: a timeline's first one declares the tracks the publisher
    /// announced ([`Segmenter::handle_tracks`]) instead of waiting to see which carry
    /// media, so a track announced but never sent is declared empty. Without announced
    /// video, the first segment waits until it closes, as in whole-segment mode.
    pub fn streaming(mut self) -> Self {
        self.streaming = true;
        self
    }

    /// The next piece in streaming mode (always `None` otherwise).
    pub fn poll_piece(&mut self) -> Option<Piece> {
        self.pieces.pop_front()
    }

    /// Streaming mode: hands out what segment `seq` has written since the last piece.
    pub(super) fn stream_out(&mut self, seq: u64) {
        if !self.streaming || self.buf.is_empty() {
            return;
        }
        self.feed_digest();
        self.digested = 0;
        self.streamed += self.buf.len();
        let data = self.buf.split().freeze();
        self.pieces.push_back(Piece::Bytes { seq, data });
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

    /// The settings in force.
    pub fn config(&self) -> &SegmenterConfig {
        &self.config
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

    /// New track configuration. A changed video or audio configuration cuts at the next
    /// keyframe and marks a discontinuity.
    pub fn handle_tracks(&mut self, tracks: TrackInfo) {
        let video_changed = matches!((&self.tracks.video, &tracks.video),
            (Some(old), Some(new)) if old.sps != new.sps || old.pps != new.pps);
        let audio_changed = matches!((&self.tracks.audio, &tracks.audio), (Some(old), Some(new)) if old != new);
        if (video_changed || audio_changed) && self.open.is_some() {
            self.change_pending = true;
        }
        if tracks != self.tracks {
            self.video_absent = false;
        }
        let video_added = self.tracks.video.is_none() && tracks.video.is_some();
        self.tracks = tracks;
        if video_added && self.open.as_ref().is_some_and(|o| o.probing && !o.video_led) {
            self.restart_for_video();
        }
    }

    /// The timeline breaks here (new publisher): closes the open segment; the next one is
    /// a discontinuity and starts at the new publisher's first keyframe.
    pub fn mark_discontinuity(&mut self) {
        self.new_timeline();
        self.last_raw = [None, None];
        self.anchor = None;
    }

    /// Closes the open segment (end of stream). Audio still held waiting for a keyframe is
    /// dropped: without video it has nothing to align with.
    pub fn flush(&mut self) {
        if let Some((au, _)) = self.deferred_cut.take() {
            // Nothing came after it: it ends this segment instead of starting a stub.
            let pts = au.pts.rescale(Timescale::MPEG);
            self.write(&au, idx(au.track), pts);
        }
        if let Some(end) = self.end {
            self.close(end);
        }
        if self.open.is_none() && !self.pending.is_empty() && !self.video_seen {
            // Announced video never came: what audio there is is the stream.
            self.give_up_on_video(None);
            if let Some((au, _)) = self.deferred_cut.take() {
                let pts = au.pts.rescale(Timescale::MPEG);
                self.write(&au, idx(au.track), pts);
            }
            if let Some(end) = self.end {
                self.close(end);
            }
        }
        self.drop_held_audio();
    }

    /// True when a finished segment is waiting for [`Segmenter::poll_segment`].
    pub fn has_segment(&self) -> bool {
        !self.ready.is_empty()
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

    /// Closes what is open and starts a new timeline (the next segment is a
    /// discontinuity and starts at a keyframe).
    fn new_timeline(&mut self) {
        self.flush();
        self.discontinuity_pending = true;
        self.change_pending = false;
        self.offset = [None, None];
        self.last_out = [None, None];
        self.waiting_since = None;
        self.video_seen = false;
    }

    fn is_jump(&self, delta: MediaTime) -> bool {
        delta.ticks() < -self.config.jump_back.ticks() || delta > self.config.jump_forward
    }

    /// True when `au` (track `t`) would stretch the open segment past what the playlist's
    /// fixed `EXT-X-TARGETDURATION` allows (a duration that rounds above it): a gap in the
    /// publisher's timestamps shorter than a jump but longer than a segment may be. It is
    /// handled as a jump (a new timeline at a keyframe, bridged inside a GOP).
    fn overshoots(&self, t: usize, au: &AccessUnit) -> bool {
        let Some(open) = &self.open else { return false };
        let pts = au.pts.rescale(Timescale::MPEG) + self.offset[t].unwrap_or(MediaTime::new(0, Timescale::MPEG));
        let limit = self.config.playlist_target_secs() as i64 * 90_000 + 45_000;
        (pts - open.start).ticks() >= limit
    }

    /// Makes the cut decided on the previous access unit.
    fn apply_deferred_cut(&mut self) {
        if let Some((cut_au, independent)) = self.deferred_cut.take() {
            if !independent {
                self.stats.forced_cuts += 1;
            }
            self.cut(&cut_au, independent);
        }
    }

    /// Adds one access unit.
    pub fn handle_access_unit(&mut self, au: &AccessUnit) {
        self.apply_deferred_cut();
        let t = idx(au.track);
        let is_video = au.track == TrackKind::Video;
        let raw = au.dts.rescale(Timescale::MPEG);
        match self.last_raw[t] {
            Some(last) => {
                let delta = raw - last;
                if self.is_jump(delta) || self.overshoots(t, au) {
                    self.stats.timestamp_jumps += 1;
                    let video_led = self.open.as_ref().is_some_and(|o| o.video_led);
                    if video_led && !(is_video && au.keyframe) {
                        self.bridge_jump(t, raw);
                    } else {
                        // At a keyframe, or where every frame is one: break here.
                        self.new_timeline();
                        self.last_raw[other(t)] = None;
                        self.anchor = Some(raw);
                    }
                } else if delta.ticks() > 0 && delta.ticks() < 90_000 {
                    self.frame_dur[t] = delta;
                }
            }
            None => {
                // The first frame of this track since the timeline broke: a frame of the
                // old timeline still in flight is dropped, not written into the new one.
                if let Some(anchor) = self.anchor
                    && self.is_jump(raw - anchor)
                {
                    self.stats.dropped_stragglers += 1;
                    return;
                }
            }
        }
        self.last_raw[t] = Some(raw);
        // A video keyframe ends a jump bridged on every track: the discontinuity goes
        // here and the publisher's own timestamps resume. (Video that jumped alone stays
        // re-timed onto the audio's timeline.)
        if is_video && au.keyframe && self.offset[0].is_some() && (self.offset[1].is_some() || !self.declared().audio) {
            self.new_timeline();
        }
        match self.offset[t] {
            Some(off) => {
                self.stats.retimed += 1;
                let mut shifted = au.clone();
                shifted.dts = raw + off;
                shifted.pts = au.pts.rescale(Timescale::MPEG) + off;
                self.place(&shifted);
            }
            None => self.place(au),
        }
    }

    /// A jump inside a GOP: track `t` continues the timeline written so far, re-timed,
    /// until the next video keyframe. A track whose jump matches the other track's uses the
    /// same offset, so the two stay in sync.
    fn bridge_jump(&mut self, t: usize, raw: MediaTime) {
        let expected = match (self.last_out[t], self.last_out[other(t)]) {
            (Some(last), _) => last + self.frame_dur[t],
            (None, Some(last)) => last,
            (None, None) => return,
        };
        let shared =
            self.offset[other(t)].filter(|&off| (raw + off - expected).ticks().abs() <= self.config.jump_back.ticks());
        self.offset[t] = Some(shared.unwrap_or(expected - raw));
    }

    /// The tracks the open segment carries (for a probing one: what it holds so far).
    fn declared(&self) -> TsTracks {
        match &self.open {
            Some(o) if o.probing => TsTracks {
                video: self.pending.iter().any(|a| a.track == TrackKind::Video),
                audio: self.pending.iter().any(|a| a.track == TrackKind::Audio),
            },
            Some(_) => self.muxer.as_ref().map(|m| m.tracks()).unwrap_or_default(),
            None => TsTracks::default(),
        }
    }

    /// Places an access unit (already on the output timeline) into the open segment,
    /// starting or cutting segments as the rules say.
    fn place(&mut self, au: &AccessUnit) {
        let t = idx(au.track);
        let is_video = au.track == TrackKind::Video;
        let pts = au.pts.rescale(Timescale::MPEG);
        if is_video {
            self.video_seen = true;
            self.video_absent = false;
        }
        let Some(open) = &self.open else {
            self.start_timeline(au, pts);
            return;
        };
        // A probing segment takes whatever comes, except video into an audio-only one
        // (video must start at a keyframe, on a new timeline).
        let declared = match (&self.muxer, open.probing) {
            (_, true) => TsTracks { video: open.video_led, audio: true },
            (Some(m), false) => m.tracks(),
            (None, false) => TsTracks::default(),
        };
        let elapsed = pts - open.start;
        let video_led = open.video_led;
        // A track the segments do not carry yet: it starts at the next keyframe.
        let new_track = (is_video && !declared.video) || (!is_video && !declared.audio);
        if new_track {
            if is_video && au.keyframe {
                self.new_timeline();
                self.start_timeline(au, pts);
            } else {
                self.change_pending = true;
                if is_video {
                    self.stats.dropped_before_keyframe += 1;
                } else {
                    self.stats.audio_dropped_before_keyframe += 1;
                }
            }
            return;
        }
        let keyframe = au.keyframe && (is_video || !video_led);
        let leads = is_video == video_led;
        if keyframe && leads && self.change_pending {
            self.new_timeline();
            self.start_timeline(au, pts);
            return;
        }
        if leads && keyframe && elapsed >= self.config.target_duration {
            self.deferred_cut = Some((au.clone(), true));
        } else if elapsed >= self.config.max_duration {
            self.deferred_cut = Some((au.clone(), keyframe && leads));
        } else {
            self.write(au, t, pts);
        }
    }
}
