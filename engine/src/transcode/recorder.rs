//! The one place a stream's transcode facts are recorded: metrics, log lines and the
//! stream's status JSON, from the session manager's reports. The status is published
//! through a `watch` channel; the recorder is its only writer.
use std::sync::Arc;

use session::report::{Report, SegmentResult};
use tracing::{debug, info, warn};

use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::status::TranscodeStatus;

pub(super) struct Recorder {
    metrics: Arc<Metrics>,
    status: watch::Sender<TranscodeStatus>,
}

impl Recorder {
    pub(super) fn new(metrics: Arc<Metrics>, status: watch::Sender<TranscodeStatus>) -> Self {
        Recorder { metrics, status }
    }

    fn status(&self, f: impl FnOnce(&mut TranscodeStatus)) {
        self.status.send_modify(f);
    }

    pub(super) fn report(&mut self, r: Report) {
        let m = &self.metrics;
        match r {
            Report::SessionStarted(s) => {
                info!(orchestrator = %s.orchestrator, session = %s.session_id, transcoder = %s.transcoder, "orchestrator session started");
                Metrics::add(&m.orchestrator_sessions_total, 1);
                self.status(|t| t.session_started(s));
            }
            Report::SessionEnded { orchestrator, why } => {
                debug!(%orchestrator, why, "leaving orchestrator session");
                self.status(|t| t.session_ended());
            }
            Report::Unusable { orchestrator, failure } => {
                warn!(%orchestrator, error = %failure.detail, reason = %failure.reason, "orchestrator unusable");
            }
            Report::SegmentSent { bytes, dispatch } => {
                Metrics::add(&m.transcode_bytes_out_total, bytes as u64);
                if let Some(d) = dispatch {
                    m.observe_dispatch(d);
                }
            }
            Report::TicketsSent { count, ev_wei } => {
                Metrics::add(&m.tickets_sent_total, count as u64);
                m.add_ev_paid(ev_wei);
                self.status(|t| {
                    t.tickets_sent += count as u64;
                    t.ev_paid_wei += ev_wei;
                });
            }
            Report::SessionSegment => self.status(|t| t.session_segment()),
            Report::RenditionsReceived { bytes } => Metrics::add(&m.transcode_bytes_in_total, bytes as u64),
            Report::AttemptSucceeded { seq, orchestrator, took, tickets } => {
                m.observe_transcode(&orchestrator, took, true);
                debug!(seq, %orchestrator, ms = took.as_millis() as u64, tickets, "segment transcoded");
            }
            Report::AttemptFailed { seq, orchestrator, attempt, took, failure, suspended_for } => {
                m.observe_transcode(&orchestrator, took, false);
                m.count_failure(failure.reason);
                warn!(seq, %orchestrator, attempt, error = %failure.detail, reason = %failure.reason, next = ?failure.next, suspended_s = suspended_for.map(|p| p.as_secs_f64()), "transcode attempt failed");
            }
            Report::PriceAboveCap { orchestrator, detail } => {
                warn!(%orchestrator, error = %detail, "orchestrator price now above the cap; switching");
            }
            Report::StaleParams { orchestrator } => {
                warn!(%orchestrator, "orchestrator sent no usable ticket params; keeping the ones in force");
            }
            Report::BacklogSkip { seq, waited } => {
                warn!(seq, waited_ms = waited.as_millis() as u64, "transcode backlog: segment skipped");
            }
        }
    }

    /// A segment is finished: its result goes to the status JSON and the counters.
    pub(super) fn segment_done(&mut self, r: SegmentResult) {
        let m = &self.metrics;
        if r.ok {
            Metrics::add(&m.transcoded_total, 1);
        } else if r.sent {
            Metrics::add(&m.transcode_failures_total, 1);
        } else {
            Metrics::add(&m.segments_not_sent_total, 1);
        }
        self.status(|t| t.record(r));
    }
}
