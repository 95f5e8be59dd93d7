//! The Sluice gateway: configuration, the stream registry, HTTP playback, the control API,
//! and the commands of the `sluice` binary.
//!
//! Wires the stage crates together: `ingest` hands published streams to the [`registry`],
//! whose per-stream tasks drive a `segmenter::Segmenter` and publish segments for [`http`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ai;
pub mod cmaf;
pub mod cmaf_http;
pub mod config;
pub mod control;
pub mod error;
pub mod gateway;
pub mod http;
pub mod ladder;
pub mod live;
pub mod metrics;
pub mod offline;
pub mod orch_config;
pub mod output;
pub mod publish;
pub mod registry;
pub mod signer;
pub mod status;
pub mod transcode;
pub mod trickle_cli;
pub mod webrtc;

pub use config::GatewayConfig;
pub use gateway::Gateway;

/// The bundled demo clip: 10 s of 640x360 test pattern with a tone (see testdata/README.md).
pub static DEMO_CLIP: &[u8] = include_bytes!("../../testdata/demo720.flv");

/// Where the setup script installs hls.js (relative to the repository root), used for the
/// player page when no `web_dir` is configured.
pub const DEFAULT_WEB_DIR: &str = "web/node_modules";

/// The wall clock, Unix seconds (the IO shells' one reading of it for media times:
/// program dates, MPD times).
#[allow(clippy::disallowed_methods)]
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A random 32-bit value (stream ids for anonymous publishes; not for secrets).
pub(crate) fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish() as u32
}
