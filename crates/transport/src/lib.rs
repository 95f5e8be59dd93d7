//! Livepeer transport for Sluice: the orchestrator protocol (discovery, segment submission,
//! rendition fetch), payments and the trickle protocol.
//!
//! Depends on `media` only; never on `ingest` or `segmenter`. The protocol is not
//! implemented yet: this crate currently holds nothing but its place in the workspace.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
