//! Writing segments: opening one, muxing access units into it (the one copy), cutting
//! and closing it with its duration, PMT and digest.
use bytes::BytesMut;
use media::{AccessUnit, MediaTime, Segment, Timescale};

use super::*;

impl Segmenter {
    /// Closes the open segment at `au` and opens the next one with it. If the segment
    /// that closed was a timeline's first and its PMT left out `au`'s track (the frame
    /// came after everything else in it), the track starts a new timeline at the next
    /// keyframe instead.
    pub(super) fn cut(&mut self, au: &AccessUnit, independent: bool) {
        let pts = au.pts.rescale(Timescale::MPEG);
        let video_led = self.open.as_ref().is_some_and(|o| o.video_led);
        self.close(pts);
        let declared = self.muxer.as_ref().map(|m| m.tracks()).unwrap_or_default();
        let fits = match au.track {
            TrackKind::Video => declared.video,
            TrackKind::Audio => declared.audio,
        };
        if fits {
            self.open_segment(pts, independent, video_led, false);
            self.write(au, idx(au.track), pts);
        } else {
            match au.track {
                TrackKind::Video => self.stats.dropped_before_keyframe += 1,
                TrackKind::Audio => self.stats.audio_dropped_before_keyframe += 1,
            }
            self.discontinuity_pending = true;
        }
    }

    /// Writes (or, while probing, holds) one access unit of track index `t`.
    pub(super) fn write(&mut self, au: &AccessUnit, t: usize, pts: MediaTime) {
        if self.open.as_ref().is_some_and(|o| o.probing) {
            self.pending.push(au.clone());
        } else {
            let muxer = self.muxer.as_mut().expect("a segment is open, so is its muxer");
            if !muxer.write_access_unit(au, &mut self.buf) {
                // A track the timeline's PMT does not declare (a frame that opens a
                // segment after a cut): the track comes in at the next keyframe.
                self.change_pending = true;
                match au.track {
                    TrackKind::Video => self.stats.dropped_before_keyframe += 1,
                    TrackKind::Audio => self.stats.audio_dropped_before_keyframe += 1,
                }
                return;
            }
            self.feed_digest();
            if let Some(seq) = self.open.as_ref().map(|o| o.seq) {
                self.stream_out(seq);
            }
        }
        self.stats.access_units += 1;
        self.last_out[t] = Some(au.dts.rescale(Timescale::MPEG));
        let frame_end = pts + self.frame_dur[t];
        self.end = Some(self.end.map_or(frame_end, |e| e.max(frame_end)));
    }

    /// Opens a segment at `start`. A timeline's first segment (`probing`) holds its access
    /// units until it closes and then declares the tracks it carries; later ones keep its
    /// PMT.
    pub(super) fn open_segment(&mut self, start: MediaTime, independent: bool, video_led: bool, probing: bool) {
        debug_assert!(self.open.is_none(), "a segment is still open");
        let declare = self.declare_next.take();
        let probing = probing || (self.muxer.is_none() && declare.is_none());
        self.open = Some(Open {
            seq: self.next_seq,
            start,
            discontinuity: self.discontinuity_pending,
            independent,
            probing,
            video_led,
        });
        self.next_seq += 1;
        self.discontinuity_pending = false;
        self.end = None;
        if !probing {
            self.begin_bytes(declare);
            self.stream_out(self.next_seq - 1);
        }
    }

    /// Starts the open segment's bytes: sizes the buffer and writes PAT/PMT, for `tracks`
    /// (a new program) or the current muxer's.
    pub(super) fn begin_bytes(&mut self, tracks: Option<TsTracks>) {
        // Keep continuity counters running across segments when the program is unchanged.
        if let Some(tracks) = tracks
            && self.muxer.as_ref().is_none_or(|m| m.tracks() != tracks)
        {
            self.muxer = Some(TsMuxer::new(tracks));
        }
        if self.buf.capacity() < self.capacity_hint {
            // A recycled buffer with an eighth of headroom over the last segment holds the
            // next one (a stream's segments vary by a few per cent) even when it is under
            // the hint; a fresh buffer costs a page fault per 4 KiB written.
            let fits = self.capacity_hint - self.capacity_hint / 10;
            self.buf = match self.spare.take() {
                Some(b) if b.capacity() >= fits => b,
                _ => BytesMut::with_capacity(self.capacity_hint),
            };
        }
        let muxer = self.muxer.as_mut().expect("set above or by an earlier segment");
        muxer.write_tables(&mut self.buf);
        self.feed_digest();
    }

    pub(super) fn close(&mut self, end: MediaTime) {
        let Some(open) = self.open.take() else { return };
        let mut discontinuity = open.discontinuity;
        if open.probing {
            // The tracks are known now: declare those with media, then write them.
            let held = std::mem::take(&mut self.pending);
            let tracks = TsTracks {
                video: held.iter().any(|a| a.track == TrackKind::Video),
                audio: held.iter().any(|a| a.track == TrackKind::Audio),
            };
            // A new set of tracks is a new timeline for players, whatever started it.
            discontinuity |= self.muxer.as_ref().is_some_and(|m| m.tracks() != tracks);
            self.begin_bytes(Some(tracks));
            let muxer = self.muxer.as_mut().expect("just set");
            for a in &held {
                muxer.write_access_unit(a, &mut self.buf);
            }
            self.feed_digest();
        }
        let mut duration = end - open.start;
        if duration.ticks() <= 0 {
            duration = self.frame_dur[0];
        }
        self.stream_out(open.seq);
        self.feed_digest();
        let digest = self.digest.as_mut().map(|d| d.finish_reset());
        self.digested = 0;
        let data = self.buf.split().freeze();
        let len = data.len() + std::mem::take(&mut self.streamed);
        // A quarter more than this one: segments of a stream vary by a few per cent, and
        // the occasional larger one costs one reallocation.
        self.capacity_hint = (len + len / 4).max(16 * 1024);
        let tracks = self.muxer.as_ref().map(|m| m.tracks()).unwrap_or_default();
        let segment = Segment {
            seq: open.seq,
            start: open.start,
            duration,
            discontinuity,
            independent: open.independent,
            tracks,
            data,
            digest,
        };
        if self.streaming {
            self.pieces.push_back(Piece::End(segment));
        } else {
            self.ready.push_back(segment);
        }
        self.end = None;
    }
}
