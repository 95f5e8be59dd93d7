//! CMAF (fragmented MP4, ISO/IEC 23000-19) for DASH and fMP4/LL-HLS: one track per
//! file, an init segment (`ftyp` + `moov` with `mvex`) and media segments made of chunks
//! (`moof` + `mdat`), each chunk one LL-HLS part. Boxes are encoded with `mp4-atom`. Each
//! payload byte is copied once, when its access unit arrives, into a buffer the chunks'
//! `mdat` bodies are then cut from as handles: a chunk is its header (`moof` and the
//! `mdat` header) and those handles, a [`Payload`].
//!
//! [`CmafCutter`] is the sans-IO cutter for one track: access units in, [`CmafEvent`]s
//! out. It never reads a clock:
//! - a video segment starts at a keyframe once `segment_target` has passed;
//! - an audio track follows the video's segment starts ([`CmafCutter::cut_at`]), or its
//!   own target when the stream has no video;
//! - a part (chunk) closes before the sample that would take it past `part_target`, so
//!   no part is longer than the target (one sample longer than it aside).
//!
//! A sample's duration is the distance to the next one's decode time, so a chunk holds
//! the samples before the one that closes it. Video samples are the access unit's NAL
//! units with 4-byte lengths (access unit delimiters and parameter sets dropped: they are
//! in the `avcC`); audio samples are the ADTS frames without their headers.
use std::collections::VecDeque;

use bytes::Bytes;
use media::{AccessUnit, MediaTime, NalUnits, Payload, Timescale, TrackKind};

mod boxes;
mod samples;
use boxes::{ChunkScratch, chunk, producer_reference_time};
pub use boxes::{CmafError, TRACK_ID, TrackConfig, init_segment, segment_type};
use samples::{Sample, SampleBytes, write_samples};

/// What the cutter hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum CmafEvent {
    /// A new init segment: at the start, and after a configuration change (a new
    /// timeline for the players: a discontinuity or a new period).
    Init {
        /// The configuration it describes.
        config: TrackConfig,
        /// `ftyp` + `moov`.
        data: Bytes,
    },
    /// A chunk of media segment `msn`: part `part` of it (from 0). The first part of a
    /// segment starts with the segment's `styp`.
    Part {
        /// Media sequence number of its segment.
        msn: u64,
        /// Index of the part in its segment.
        part: u32,
        /// Starts with a sync sample.
        independent: bool,
        /// Its start on the track's timeline, seconds (`tfdt` / timescale).
        start: f64,
        /// Seconds.
        duration: f64,
        /// `[styp] moof mdat`: the header, then the samples as handles into the buffer
        /// they were written to.
        data: Payload,
    },
    /// A video keyframe that will start a new segment arrived: its decode time, for
    /// the audio track to cut there too ([`CmafCutter::cut_at`]). Comes before the parts
    /// of the segment it ends.
    SegmentStart {
        /// When, in 90 kHz ticks.
        at: MediaTime,
    },
    /// A video part after the first of its segment begins with the sample at `at` (90 kHz
    /// ticks): the audio track closes its part there too ([`CmafCutter::part_cut_at`]),
    /// so both tracks' parts end together and players' buffers grow in step.
    PartStart {
        /// When, in 90 kHz ticks.
        at: MediaTime,
    },
    /// Segment `msn` is complete.
    SegmentEnd {
        /// Its media sequence number.
        msn: u64,
        /// Its start, in track ticks (`tfdt` of its first chunk).
        start: u64,
        /// Its earliest presentation time, in track ticks (`tfdt` plus the first
        /// sample's composition offset): where DASH's `SegmentTimeline` places it.
        presented: u64,
        /// Its length in track ticks.
        duration: u64,
        /// Ticks per second.
        timescale: u32,
    },
}

/// Targets for a [`CmafCutter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CmafConfig {
    /// Segment length to reach before cutting (at a keyframe for video).
    pub segment_target: MediaTime,
    /// Part (chunk) length to reach before closing a part.
    pub part_target: MediaTime,
}

impl Default for CmafConfig {
    fn default() -> Self {
        CmafConfig {
            segment_target: MediaTime::from_secs_f64(2.0, Timescale::MPEG),
            part_target: MediaTime::from_secs_f64(0.5, Timescale::MPEG),
        }
    }
}

/// The sans-IO CMAF cutter of one track (see the module docs).
#[derive(Debug)]
pub struct CmafCutter {
    cfg: CmafConfig,
    kind: TrackKind,
    config: Option<TrackConfig>,
    /// The configuration's timescale (90 kHz before one arrives).
    timescale: u32,
    /// The segment and part targets in that timescale's ticks.
    segment_ticks: u64,
    part_ticks: u64,
    /// The last sample, waiting for the next one to know its duration.
    pending: Option<Sample>,
    /// Samples of the part being built, and their total duration (ticks).
    part: Vec<Sample>,
    part_duration: u64,
    msn: u64,
    part_index: u32,
    sequence: u32,
    /// Start (ticks) of the open segment, if one is open.
    segment_start: Option<u64>,
    /// Presentation time of the open segment's first sample (its earliest: a segment
    /// starts with a sync sample), ticks.
    segment_presented: u64,
    /// A segment must start at or after this time (audio following video), in ticks of
    /// the 90 kHz clock.
    cut_after: Option<i64>,
    /// End (ticks) of the last sample placed in a finished part.
    last_end: Option<u64>,
    /// An audio track of a stream with video: segments start only where the video's do.
    follow: bool,
    /// The next part starts at the first sample at or after this (90 kHz ticks).
    part_cut: Option<i64>,
    /// A media time (seconds) and the Unix time it reached the gateway, for `prft`.
    clock: Option<(f64, f64)>,
    /// The bytes of the samples held (the part's and the pending one), and of none else.
    bytes: SampleBytes,
    /// Scratch space kept between units: NAL units, and the samples of one unit.
    nals: NalUnits,
    unit_samples: Vec<Sample>,
    /// Scratch space for encoding a `moof`, and for what precedes it.
    scratch: ChunkScratch,
    prefix: Vec<u8>,
    /// The `styp` that opens each segment.
    styp: Bytes,
    events: VecDeque<CmafEvent>,
}

impl CmafCutter {
    /// A cutter for a `kind` track; media sequence numbers start at `first_msn`.
    pub fn new(kind: TrackKind, cfg: CmafConfig, first_msn: u64) -> Self {
        CmafCutter {
            cfg,
            kind,
            config: None,
            timescale: 90_000,
            segment_ticks: cfg.segment_target.rescale(Timescale::MPEG).ticks().max(0) as u64,
            part_ticks: cfg.part_target.rescale(Timescale::MPEG).ticks().max(0) as u64,
            pending: None,
            // Sized for a part of 0.5 s at 60 fps, or of 48 kHz audio: no regrowth later.
            part: Vec::with_capacity(32),
            part_duration: 0,
            msn: first_msn,
            part_index: 0,
            sequence: 1,
            segment_start: None,
            segment_presented: 0,
            cut_after: None,
            last_end: None,
            follow: false,
            part_cut: None,
            clock: None,
            bytes: SampleBytes::default(),
            nals: NalUnits::new(),
            unit_samples: Vec::with_capacity(4),
            scratch: ChunkScratch::default(),
            prefix: Vec::new(),
            styp: segment_type(),
            events: VecDeque::new(),
        }
    }

    /// The track's configuration (from the stream's track info); a change ends the open
    /// segment and emits a new init segment.
    pub fn handle_config(&mut self, config: TrackConfig) {
        if config.kind() != self.kind || self.config.as_ref() == Some(&config) {
            return;
        }
        self.finish_segment();
        match init_segment(&config) {
            Ok(data) => self.events.push_back(CmafEvent::Init { config: config.clone(), data }),
            Err(_) => return,
        }
        self.timescale = config.timescale();
        let ticks = |m: MediaTime| m.rescale(Timescale::new(self.timescale)).ticks().max(0) as u64;
        (self.segment_ticks, self.part_ticks) = (ticks(self.cfg.segment_target), ticks(self.cfg.part_target));
        self.config = Some(config);
    }

    /// Media time `media` reached the gateway at `unix` (Unix seconds, the caller's
    /// clock): from now on each segment's first chunk carries a `prft` box mapping its
    /// first sample's presentation time to the wall clock (players measure latency with
    /// it). `prft`'s `utc_time_semantics` is "input": the time the frame came in.
    pub fn set_clock(&mut self, media: MediaTime, unix: f64) {
        self.clock = Some((media.as_secs_f64(), unix));
    }

    /// An audio track of a stream with video cuts only where the video does
    /// ([`CmafCutter::cut_at`]), so the two tracks' segments line up.
    pub fn follow_video(&mut self, follow: bool) {
        self.follow = follow;
    }

    /// Closes the open part before the first sample at or after `at` (the start of a
    /// video part), so the tracks' parts line up. The part target still applies.
    pub fn part_cut_at(&mut self, at: MediaTime) {
        self.part_cut = Some(at.rescale(Timescale::MPEG).ticks());
    }

    /// Starts the next segment at the first sample at or after `at` (the start of a
    /// video segment), unless the open segment starts there or later.
    pub fn cut_at(&mut self, at: MediaTime) {
        self.cut_after = Some(at.rescale(Timescale::MPEG).ticks());
    }

    /// One access unit of this track, in decode order. Units of another track, or before
    /// a configuration, are ignored.
    pub fn handle_access_unit(&mut self, au: &AccessUnit) {
        if au.track != self.kind {
            return;
        }
        if self.config.is_none() {
            return;
        }
        let scale = Timescale::new(self.timescale);
        let (dts, pts) = (au.dts.rescale(scale).ticks().max(0) as u64, au.pts.rescale(scale).ticks().max(0) as u64);
        if self.kind == TrackKind::Video
            && au.keyframe
            && self.segment_start.is_some_and(|start| dts.saturating_sub(start) >= self.segment_ticks)
        {
            self.events.push_back(CmafEvent::SegmentStart { at: au.dts.rescale(Timescale::MPEG) });
        }
        let mut samples = std::mem::take(&mut self.unit_samples);
        write_samples(au, (dts, pts), &mut self.nals, &mut self.bytes, &mut samples);
        for s in samples.drain(..) {
            if let Some(mut prev) = self.pending.take() {
                prev.duration = s.dts.saturating_sub(prev.dts).min(u32::MAX as u64) as u32;
                if prev.duration == 0 {
                    prev.duration = 1;
                }
                self.place(prev);
            }
            self.pending = Some(s);
        }
        self.unit_samples = samples;
        self.debug_check_bytes();
    }

    /// The bytes held are those of the open part's samples and the pending one.
    fn debug_check_bytes(&self) {
        debug_assert_eq!(
            self.bytes.unclaimed(),
            self.part.iter().chain(self.pending.as_ref()).map(|s| s.size).sum::<usize>()
        );
    }

    /// Decides where the complete sample `s` goes: a new segment, a new part, or the
    /// open part.
    fn place(&mut self, s: Sample) {
        let scale = self.timescale as u64;
        let starts_segment = match (self.kind, self.segment_start) {
            (_, None) => true,
            (TrackKind::Video, Some(start)) => s.sync && s.dts.saturating_sub(start) >= self.segment_ticks,
            (TrackKind::Audio, Some(start)) => match self.cut_after {
                // In the common unit (ticks × both rates): the sample at or after the
                // cut, the open segment before it.
                Some(at) => {
                    let cut = at as i128 * scale as i128;
                    s.dts as i128 * 90_000 >= cut && (start as i128 * 90_000) < cut
                }
                None => !self.follow && s.dts.saturating_sub(start) >= self.segment_ticks,
            },
        };
        let at_part_cut = self.part_cut.is_some_and(|at| s.dts as i128 * 90_000 >= at as i128 * scale as i128);
        if starts_segment {
            self.finish_segment();
            self.segment_start = Some(s.dts);
            self.segment_presented = s.dts.saturating_add_signed(s.cts_offset);
            self.cut_after = None;
            self.part_cut = None;
        } else if at_part_cut && !self.part.is_empty() {
            self.finish_part();
            self.part_cut = None;
        } else if !self.part.is_empty() && self.part_duration + s.duration as u64 > self.part_ticks {
            // This sample would take the part past its target (LL-HLS: no part longer
            // than PART-TARGET): it opens the next one.
            self.finish_part();
            if self.kind == TrackKind::Video {
                let at = MediaTime::new(s.dts as i64, Timescale::new(self.timescale)).rescale(Timescale::MPEG);
                self.events.push_back(CmafEvent::PartStart { at });
            }
        }
        self.part_duration += s.duration as u64;
        self.part.push(s);
    }

    fn finish_part(&mut self) {
        let (Some(first), Some(last)) = (self.part.first(), self.part.last()) else { return };
        let (start, independent) = (first.dts, first.sync);
        let end = last.dts + last.duration as u64;
        let duration = std::mem::take(&mut self.part_duration) as f64 / self.timescale as f64;
        let timescale = self.timescale as f64;
        // A segment opens with `styp`, and `prft` when the wall clock is known.
        let prefix = &mut self.prefix;
        prefix.clear();
        if self.part_index == 0 {
            prefix.extend_from_slice(&self.styp);
            let presented = first.dts.saturating_add_signed(first.cts_offset);
            if let Some((media, unix)) = self.clock
                && let Ok(prft) = producer_reference_time(presented, unix + (presented as f64 / timescale - media))
            {
                prefix.extend_from_slice(&prft);
            }
        }
        let written = chunk(self.sequence, &self.part, &mut self.bytes, &self.prefix, &mut self.scratch);
        // The samples' bytes are in the chunk now (or the chunk is lost with them); the
        // part's vector is kept for the next.
        self.part.clear();
        let Ok(data) = written else { return };
        self.sequence = self.sequence.wrapping_add(1);
        self.events.push_back(CmafEvent::Part {
            msn: self.msn,
            part: self.part_index,
            independent,
            start: start as f64 / timescale,
            duration,
            data,
        });
        self.part_index += 1;
        // Keep the segment's running length for its end.
        self.last_end = Some(end);
    }

    fn finish_segment(&mut self) {
        self.finish_part();
        if let (Some(start), Some(end)) = (self.segment_start.take(), self.last_end.take())
            && self.part_index > 0
        {
            self.events.push_back(CmafEvent::SegmentEnd {
                msn: self.msn,
                start,
                presented: self.segment_presented,
                duration: end.saturating_sub(start),
                timescale: self.timescale,
            });
            self.msn += 1;
        }
        self.part_index = 0;
    }

    /// The stream ended: the last sample (with the previous one's duration) and the open
    /// segment go out.
    pub fn flush(&mut self) {
        self.flush_until(None);
    }

    /// Like [`CmafCutter::flush`], for a segment known to end at `end` (decode time): the
    /// last sample lasts until then (if `end` is past its start), so the next segment,
    /// starting at `end`, follows without a gap. Used for transcoded segments, whose
    /// length is the source segment's.
    pub fn flush_until(&mut self, end: Option<MediaTime>) {
        if self.config.is_some()
            && let Some(mut last) = self.pending.take()
        {
            let until = end.map(|e| e.rescale(Timescale::new(self.timescale)).ticks().max(0) as u64);
            last.duration = match until {
                Some(e) if e > last.dts => (e - last.dts).min(u32::MAX as u64) as u32,
                _ => self.part.last().map_or(3000, |p| p.duration).max(1),
            };
            self.place(last);
        }
        self.finish_segment();
        self.debug_check_bytes();
    }

    /// For an audio cutter following the video ([`CmafCutter::follow_video`]): takes one
    /// of the video cutter's events, cutting where the video's segments
    /// ([`CmafEvent::SegmentStart`]) and parts ([`CmafEvent::PartStart`]) start; other
    /// events are ignored.
    pub fn follow_event(&mut self, video: &CmafEvent) {
        match *video {
            CmafEvent::SegmentStart { at } => self.cut_at(at),
            CmafEvent::PartStart { at } => self.part_cut_at(at),
            _ => {}
        }
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<CmafEvent> {
        self.events.pop_front()
    }

    /// The media sequence number the next segment will have.
    pub fn next_msn(&self) -> u64 {
        self.msn
    }
}
