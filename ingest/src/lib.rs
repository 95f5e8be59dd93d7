//! Live ingest for Sluice.
//!
//! * [`rtmp`]: sans-IO RTMP (handshake, chunk stream, AMF0, publishing session). Cores take
//!   bytes and return bytes and events; they never touch sockets or clocks.
//! * [`flv`]: FLV tag bodies to [`media::AccessUnit`]s (H.264 Annex B, AAC ADTS), zero-copy.
//! * [`server`]: the tokio shell: accepts RTMP connections and hands each published stream
//!   to a [`server::PublishHandler`].
//! * [`publisher`]: an RTMP publishing client (for the demo, tests and load generation).
//! * [`whip`]: WHIP offers and session resources, without IO.
//!
//! Depends on `media` only among Sluice's crates.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod flv;
pub mod publisher;
pub mod redact;
pub mod rtmp;
pub mod server;
pub mod whip;

pub use error::{FlvError, RtmpError};

/// A per-call random 64-bit value (for handshake filler bytes; not for secrets).
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}
