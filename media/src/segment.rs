//! A finished media segment.

use std::fmt;

use bytes::Bytes;

use crate::MediaTime;

/// Which tracks a segment carries (and its PMT declares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackSet {
    /// H.264 video.
    pub video: bool,
    /// AAC audio.
    pub audio: bool,
}

/// One finished MPEG-TS segment.
#[derive(Clone, PartialEq)]
pub struct Segment {
    /// Sequence number within its stream (the `{seq}` of the segment URL).
    pub seq: u64,
    /// Presentation time of the first frame.
    pub start: MediaTime,
    /// Duration from the first frame to the first frame of the next segment.
    pub duration: MediaTime,
    /// True when the timeline does not continue from the previous segment (publisher
    /// restart, timestamp jump, new encoder settings): HLS `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// True when the segment decodes on its own: it starts with a video keyframe (SPS and
    /// PPS in front) or carries no video. False only for a segment cut inside a GOP longer
    /// than the cutter's maximum segment duration.
    pub independent: bool,
    /// The tracks the segment's PMT declares: a track is declared only once it has media.
    pub tracks: TrackSet,
    /// The transport stream bytes, starting with PAT and PMT.
    pub data: Bytes,
    /// A digest of `data` computed while the segment was written (see
    /// `segmenter::SegmentDigest`), when the cutter was given one.
    pub digest: Option<[u8; 32]>,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("seq", &self.seq)
            .field("start", &self.start)
            .field("duration", &self.duration)
            .field("discontinuity", &self.discontinuity)
            .field("independent", &self.independent)
            .field("tracks", &self.tracks)
            .field("bytes", &self.data.len())
            .finish()
    }
}
