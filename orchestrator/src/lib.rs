//! A Livepeer-compatible orchestrator for local development and tests.
//!
//! It checks what spec/livepeer-transcode-protocol.md says a go-livepeer orchestrator
//! checks:
//! * [`auth`]: session auth tokens (HMAC, expiry) (§2.3, §3.4);
//! * [`recipient`]: ticket quotes with a recipientRand only this orchestrator can rederive,
//!   ticket validation, the win test and per-session balances (§5.4, §5.5, §5.8);
//! * [`admission`]: the `POST /segment` checks in go-livepeer's order, each refusal mapped
//!   to its HTTP status in one place (§4.2).
//!
//! * [`service`]: the network service, gRPC and HTTP on one TLS port (self-signed
//!   certificate) or cleartext, with a rendition store and a `/status` endpoint;
//! * [`transcode`]: CPU transcoding with GStreamer child processes, or echo for load tests;
//! * [`capture`]: optional wire capture of the gateway's requests;
//! * [`live`]: live video-to-video jobs (`POST /live-video-to-video`, `POST /payment`) run
//!   by a local GStreamer effect runner over the orchestrator's trickle channels;
//! * [`ai`]: batch AI jobs (`POST /<pipeline>`) on CPU stand-ins or an external runner;
//! * [`byoc`]: BYOC capabilities registered by workers, job tokens and jobs.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admission;
pub mod ai;
pub mod auth;
pub mod byoc;
pub mod capture;
pub mod faults;
mod grpc;
pub mod live;
pub mod recipient;
pub mod service;
pub mod sessions;
pub mod transcode;
