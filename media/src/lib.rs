//! Shared leaf types for Sluice's media pipeline.
//!
//! Every stage crate (`ingest`, `segmenter`, `transport`) speaks in these types and in
//! nothing else of each other's, so the stages stay independent and meet only in `engine`.
//!
//! * [`MediaTime`]: a timestamp or duration that carries its own timescale.
//! * [`AccessUnit`]: one coded frame (video) or one coded audio frame, its payload held as
//!   [`Payload`], a short list of `Bytes` fragments that are never copied on the way through.
//! * [`H264Config`] and [`AacConfig`]: the decoder configuration a track needs, parsed from the
//!   AVC decoder configuration record and the AudioSpecificConfig.
//! * [`Segment`]: a finished MPEG-TS segment as one `Bytes`.
//! * [`StreamEvent`]: what an ingest hands to the engine for one live stream.
//!
//! This crate depends on `bytes` only and never performs I/O.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod annexb;
mod bits;
mod codec;
mod event;
mod frame;
mod segment;
mod time;

pub use annexb::{NalUnit, NalUnits, annexb_nal_units, annexb_sps};
pub use codec::{AacConfig, CodecError, H264Config, VideoDimensions};
pub use event::{StreamEvent, TrackInfo};
pub use frame::{AccessUnit, Payload, TrackKind};
pub use segment::{Segment, TrackSet};
pub use time::{MediaTime, Timescale};
