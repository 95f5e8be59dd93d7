//! Livepeer transport for Sluice: the orchestrator protocol's messages and the hashes that
//! bind them (segment credentials, tickets), per spec/livepeer-transcode-protocol.md.
//!
//! * [`proto`]: the `net` protobuf messages (prost, field numbers from spec §2).
//! * [`credentials`]: SegData flattening, ticket hashing, `personal_sign` digests (§3, §5).
//! * [`identity`]: the Ethereum key, address (EIP-55) and low-S `personal_sign` (§3.1).
//! * [`keystore`]: go-livepeer / geth keystore files (scrypt or PBKDF2, AES-128-CTR).
//! * [`profiles`]: go-livepeer presets and JSON profiles (§8.4), the pixel estimate (§5.6).
//! * [`ai`], [`ai_types`]: batch AI pipelines, job capabilities, price ceilings, refusal
//!   classes, units, credentials and the request/response bodies (AI gateway spec).
//! * [`byoc`]: BYOC job headers, job tokens and per-second payments (AI gateway spec §5).
//! * [`capabilities`]: job capability bitstrings and the compatibility test (§2.8).
//! * [`orch_addr`]: `--orch-addr` normalisation (§1).
//! * [`pm`]: ticket EV, tickets per segment, credit balances, payments with signed tickets (§5).
//! * [`segment`]: the signed `SegData`, request headers, timeouts, result signatures (§4).
//! * [`refusal`]: failure reasons and reactions, and the refusal strings on the wire (§4.3).
//! * [`trickle`]: trickle channels, segments and their ring, without IO (trickle spec §1);
//!   `trickle_http` (feature `net`) is the axum shell serving them.
//! * `client`, `tls` (feature `net`, on by default): the gRPC and HTTP clients toward
//!   orchestrators and their TLS policy.
//!
//! Without the `net` feature the crate builds without tokio, hyper, tonic or rustls, and
//! like the other protocol cores it never reads the clock (`clippy.toml`).
//!
//! Depends on `media` only among Sluice's crates; never on `ingest` or `segmenter`. The
//! network side (gRPC discovery, segment submission, payments state) builds on these.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ai;
pub mod ai_types;
pub mod byoc;
pub mod capabilities;
#[cfg(feature = "net")]
pub mod client;
pub mod credentials;
pub mod identity;
pub mod keystore;
pub mod live;
pub mod orch_addr;
pub mod pm;
pub mod profiles;
pub mod proto;
pub mod refusal;
pub mod segment;
#[cfg(feature = "net")]
pub mod tls;
pub mod trickle;
#[cfg(feature = "net")]
pub mod trickle_client;
#[cfg(feature = "net")]
pub mod trickle_http;
