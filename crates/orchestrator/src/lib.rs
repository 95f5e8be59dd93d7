//! A Livepeer-compatible orchestrator for local development and tests.
//!
//! Not implemented yet: this crate currently holds nothing but its place in the workspace.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
