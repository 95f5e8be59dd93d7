//! What an ingest hands to the engine for one live stream.

use crate::{AacConfig, AccessUnit, H264Config};

/// The decoder configuration of the stream's tracks, sent before the first access unit of
/// a track and again whenever it changes (a new SPS/PPS mid-stream, say).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackInfo {
    /// The video track's configuration, if the stream has video.
    pub video: Option<H264Config>,
    /// The audio track's configuration, if the stream has audio.
    pub audio: Option<AacConfig>,
}

/// One event of a live stream, in arrival order.
#[derive(Clone, Debug)]
pub enum StreamEvent {
    /// Track configuration (first, and again on change).
    Tracks(TrackInfo),
    /// A coded frame.
    Media(AccessUnit),
    /// The publisher finished cleanly (unpublish / deleteStream).
    End,
}
