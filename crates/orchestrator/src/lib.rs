//! A Livepeer-compatible orchestrator for local development and tests.
//!
//! So far the pure verification core: session auth tokens ([`auth`]) and the ticket side of
//! payments ([`recipient`]), checking exactly what spec/livepeer-transcode-protocol.md §4.2
//! and §5.8 say a go-livepeer orchestrator checks. The network service and CPU transcoding
//! are not built yet.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod recipient;
