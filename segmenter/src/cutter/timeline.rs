//! Starting a timeline: the first keyframe with its audio aligned, audio held while
//! announced video is awaited, and what happens when it never comes or comes late.
use media::{AccessUnit, MediaTime, Timescale, TrackKind};

use super::{AUDIO_HOLD, AUDIO_LEAD_TOLERANCE, Segmenter};
use crate::ts::mux::TsTracks;

impl Segmenter {
    /// The timeline began with audio before the video configuration arrived (encoders
    /// send the AAC header first): its first segment, not yet published, is started over
    /// so the timeline opens at the first video keyframe with its audio aligned, instead of
    /// a short audio-only segment and a discontinuity.
    pub(super) fn restart_for_video(&mut self) {
        let Some(o) = self.open.take() else { return };
        // The probing segment's units (held, and counted as written) are written again;
        // the unit a cut was waiting on was never counted.
        self.stats.access_units = self.stats.access_units.saturating_sub(self.pending.len() as u64);
        if let Some((au, _)) = self.deferred_cut.take() {
            self.pending.push(au);
        }
        self.next_seq = o.seq;
        self.discontinuity_pending = o.discontinuity;
        self.end = None;
        self.waiting_since = self.pending.first().map(|a| a.pts.rescale(Timescale::MPEG));
    }

    /// Announced video is not coming: the held audio becomes the stream, cut by the usual
    /// rules (not written as one long segment).
    pub(super) fn give_up_on_video(&mut self, then: Option<&AccessUnit>) {
        self.video_absent = true;
        let held = std::mem::take(&mut self.pending);
        for a in held.iter().chain(then) {
            self.apply_deferred_cut();
            self.place(a);
        }
    }

    /// No segment is open: `au` may start the timeline (a video keyframe, or audio when no
    /// video is coming); audio before the first keyframe is held.
    pub(super) fn start_timeline(&mut self, au: &AccessUnit, pts: MediaTime) {
        let is_video = au.track == TrackKind::Video;
        let expect_video = self.tracks.video.is_some() && !self.video_absent;
        if is_video {
            if !au.keyframe {
                self.stats.dropped_before_keyframe += 1;
                return;
            }
            // Audio that came first is kept from the keyframe's time on (give or take
            // AUDIO_LEAD_TOLERANCE); the segment starts at whichever comes first.
            let from = pts - AUDIO_LEAD_TOLERANCE;
            let mut held = std::mem::take(&mut self.pending);
            let before = held.iter().filter(|a| a.pts.rescale(Timescale::MPEG) < from).count();
            self.stats.audio_dropped_before_keyframe += before as u64;
            held.retain(|a| a.pts.rescale(Timescale::MPEG) >= from);
            let start = held.first().map_or(pts, |a| a.pts.rescale(Timescale::MPEG).min(pts));
            // Streaming: the tracks the publisher announced are declared at once, so the
            // timeline's first segment streams too instead of waiting to close.
            let declare = self.streaming && self.tracks.video.is_some();
            if declare {
                self.declare_next = Some(TsTracks { video: true, audio: self.tracks.audio.is_some() });
            }
            self.open_segment(start, true, true, !declare);
            self.write(au, 0, pts);
            for a in &held {
                self.write(a, 1, a.pts.rescale(Timescale::MPEG));
            }
            return;
        }
        if expect_video {
            let since = *self.waiting_since.get_or_insert(pts);
            let gave_up = !self.video_seen && pts - since >= self.config.video_wait;
            if !gave_up {
                self.pending.push(au.clone());
                if !self.video_seen {
                    return; // all of it is the stream if video never comes
                }
                // Video is flowing: drop what is too old to follow any keyframe to come.
                let newest = pts.ticks();
                let keep_from = self
                    .pending
                    .iter()
                    .position(|a| newest - a.pts.rescale(Timescale::MPEG).ticks() <= AUDIO_HOLD)
                    .unwrap_or(self.pending.len());
                self.stats.audio_dropped_before_keyframe += keep_from as u64;
                self.pending.drain(..keep_from);
                return;
            }
        }
        if expect_video {
            // The wait ran out: the held audio is the stream.
            return self.give_up_on_video(Some(au));
        }
        // Audio-only: a segment starts with this frame.
        self.open_segment(pts, true, false, true);
        self.write(au, 1, pts);
    }

    pub(super) fn drop_held_audio(&mut self) {
        if self.open.is_none() && !self.pending.is_empty() {
            self.stats.audio_dropped_before_keyframe += self.pending.len() as u64;
            self.pending.clear();
        }
    }
}
