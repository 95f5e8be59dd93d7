//! A Livepeer-compatible orchestrator for local development and tests.
//!
//! Not implemented yet: this crate holds its place in the workspace until the local
//! orchestrator is built.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
