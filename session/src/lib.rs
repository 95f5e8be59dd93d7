//! The orchestrator link's decisions, without IO: which orchestrator gets a job, when a
//! session is opened, kept, refreshed or left, what each attempt pays, how failures are
//! retried within a job's deadline, and when an orchestrator is suspended.
//!
//! * [`pool`]: the gateway-wide [`pool::OrchestratorPool`] (measured latency, success,
//!   price, suspensions) and the pluggable [`pool::Selector`] (spec §7).
//! * [`manager`]: [`manager::SegmentJobs`], the per-stream session manager for segment
//!   jobs (transcoding, spec §3–§5). It takes [`manager::Event`]s with `now` and yields
//!   [`manager::Action`]s and a wake-up time; a tokio driver performs the actions.
//! * [`payment`]: the [`payment::PaymentPlan`] for one attempt and the credit ledger
//!   (spec §5.6).
//! * [`selector`]: what a selector sees of a candidate and go-livepeer's default rule.
//! * [`discovery`]: how one `GetOrchestrator` answer of a discovery round is judged.
//! * [`report`]: what the manager reports for metrics, pool statistics and the status JSON.
//! * [`live`]: [`live::LiveJob`], one live video-to-video stream's starts, watchdogs,
//!   swaps and payment schedule (live spec §2.2–§2.5).
//! * [`ai`]: batch AI selection per (pipeline, model), warm before cold, and one request's
//!   retries (AI gateway spec §2).
//! * [`signer`]: the remote signer's answers (`/sign-orchestrator-info`,
//!   `/generate-live-payment`, spec §6), served by `sluice signer`.
//!
//! Nothing here reads the clock (`clippy.toml` bans it) or touches a socket; the
//! simulated fault matrix in `tests/fault_matrix.rs` drives a manager with virtual time.
//! `docs/ARCHITECTURE.md` describes how live video-to-video and batch AI jobs plug in.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ai;
pub mod discovery;
pub mod live;
pub mod manager;
pub mod payment;
pub mod pool;
pub mod report;
pub mod selector;
pub mod signer;

pub use manager::{Action, Event, JobId, JobOutcome, LinkConfig, OpId, SegmentJob, SegmentJobs, SessionKey};
pub use pool::{OrchId, OrchestratorPool};
