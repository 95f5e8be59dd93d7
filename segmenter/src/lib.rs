//! Sans-IO segmenting for Sluice: MPEG-TS mux and demux, the keyframe-aligned segment
//! cutter and HLS playlist builders.
//!
//! # Driving the cutter
//!
//! Feed a [`Segmenter`] the stream's [`media::StreamEvent`]s in arrival order
//! ([`Segmenter::handle_tracks`], [`Segmenter::handle_access_unit`]), tell it about a new
//! publisher with [`Segmenter::mark_discontinuity`] and about the end with
//! [`Segmenter::flush`]; after each call drain [`Segmenter::poll_segment`]. It never reads
//! a clock: segment boundaries follow media timestamps only.
//!
//! Depends on `media`, `m3u8-rs` and `mp4-atom` only; never on `ingest` or `transport`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cmaf;
pub mod cutter;
pub mod dash;
pub mod error;
pub mod hls;
pub mod llhls;
pub mod ts;

pub use cutter::{Piece, SegmentDigest, Segmenter, SegmenterConfig};
pub use error::TsError;
