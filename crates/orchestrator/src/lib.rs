//! A Livepeer-compatible orchestrator for local development and tests.
//!
//! So far its pure verification core, checking what spec/livepeer-transcode-protocol.md
//! says a go-livepeer orchestrator checks:
//! * [`auth`]: session auth tokens (HMAC, expiry) (§2.3, §3.4);
//! * [`recipient`]: ticket quotes with a recipientRand only this orchestrator can rederive,
//!   ticket validation, the win test and per-session balances (§5.4, §5.5, §5.8);
//! * [`admission`]: the `POST /segment` checks in go-livepeer's order, each refusal mapped
//!   to its HTTP status in one place (§4.2).
//!
//! The network service (gRPC and HTTP on one TLS port) and CPU transcoding are not built yet.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admission;
pub mod auth;
pub mod recipient;
pub mod service;
pub mod transcode;
