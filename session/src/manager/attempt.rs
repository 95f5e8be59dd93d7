//! One attempt on the current session: payment, submit, the orchestrator's answer and
//! the renditions (spec §4.2–§4.5, §5.6).
use std::time::{Duration, Instant};

use bytes::Bytes;
use num_rational::BigRational;
use num_traits::Signed;
use transport::identity::Address;
use transport::proto::OrchestratorInfo;
use transport::refusal::{Failure, FailureReason, classify_result_error};
use transport::segment::{DOWNLOAD_TIMEOUT, SegmentTimeouts, verify_results};

use super::{
    Action, BACKSTOP_GRACE, JobOutcome, OpId, PRICE_INCREASE_LIMIT, Phase, SegmentJobs, SubmitFailure, SubmitReply,
};
use crate::payment::{PaymentPlan, params_ev, reported_pixels, session_price};
use crate::report::Report;

impl SegmentJobs {
    /// Pays (when paid) and then submits on the current session.
    pub(super) fn send(&mut self, now: Instant) {
        if self.current.as_ref().is_some_and(|c| now >= c.deadline) {
            return self.deadline_passed(now);
        }
        if !self.config.paid {
            return self.submit(now, None, None);
        }
        let (Some(s), Some(c)) = (self.session.as_ref(), self.current.as_ref()) else {
            return self.finish_failed(now);
        };
        let price = match session_price(&s.info) {
            Ok(p) => p,
            Err(e) => return self.attempt_failed(now, Failure::new(FailureReason::BadReply, format!("price: {e}"))),
        };
        if let Some(start) = &s.start_price
            && start.is_positive()
            && price > start * BigRational::from_integer(PRICE_INCREASE_LIMIT.into())
        {
            // Caught after the result that raised it, normally; here only if the price
            // rose another way. Not the orchestrator's failure: a new session re-reads it.
            self.leave_session("price more than doubled");
            return self.open_next(now);
        }
        let ev = match s.info.ticket_params.as_ref().map(params_ev) {
            None => BigRational::from_integer(0.into()),
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                return self.attempt_failed(now, Failure::new(FailureReason::BadReply, format!("ticket params: {e}")));
            }
        };
        let pixels = transport::profiles::estimated_pixels(&c.job.profiles, c.job.duration.as_secs_f64());
        let (recipient, sid) = (s.recipient, s.session_id().to_owned());
        let (session, params, price_info) =
            (s.key, s.info.ticket_params.clone(), s.info.price_info.clone().unwrap_or_default());
        let plan = PaymentPlan::new(&mut self.ledger, recipient, &sid, price, pixels, &ev);
        let op = OpId(self.next());
        let deadline = self.current.as_ref().map_or(now, |c| c.deadline);
        self.actions.push_back(Action::Pay { op, session, params, price_info, tickets: plan.tickets });
        self.set_phase(Phase::Paying { op, plan, deadline });
    }

    pub(super) fn submit(&mut self, now: Instant, plan: Option<PaymentPlan>, payment: Option<String>) {
        let op = OpId(self.next());
        let (Some(s), Some(c)) = (self.session.as_ref(), self.current.as_ref()) else {
            return self.finish_failed(now);
        };
        let mut timeouts = SegmentTimeouts::for_duration(c.job.duration, 1.0);
        // An orchestrator answers with headers as soon as the upload is in (§4.2 step 8).
        // Once its upload time is known, a reply four times later than usual (at least
        // 0.5 s) means it is not coming: fail over well within a segment's duration
        // instead of waiting out the spec's fixed 2 s.
        if let Some(usual) = self.pool.upload_estimate(s.orch) {
            let adaptive = (usual * 4 + Duration::from_millis(200)).max(Duration::from_millis(500));
            timeouts.upload = timeouts.upload.min(adaptive);
        }
        let left = c.deadline.saturating_duration_since(now);
        timeouts.total = timeouts.total.min(left);
        timeouts.upload = timeouts.upload.min(left);
        let dispatch = (c.attempts == 1).then(|| now.saturating_duration_since(c.queued));
        let action = Action::Submit {
            op,
            job: c.id,
            session: s.key,
            transcoder: s.info.transcoder.clone(),
            auth_token: s.info.auth_token.clone(),
            profiles: c.job.profiles.clone(),
            payment,
            tickets: plan.as_ref().map_or(0, |p| p.tickets),
            timeouts,
        };
        self.report(Report::SegmentSent { bytes: c.job.bytes, dispatch });
        self.actions.push_back(action);
        self.set_phase(Phase::Submitting { op, plan, deadline: now + timeouts.total + BACKSTOP_GRACE });
    }

    pub(super) fn on_submitted(
        &mut self,
        now: Instant,
        plan: Option<PaymentPlan>,
        result: Result<SubmitReply, SubmitFailure>,
    ) {
        let tickets = plan.as_ref().map_or(0, |p| p.tickets);
        let reply = match result {
            Ok(r) => r,
            Err(e) => {
                // Headers came back: the credit is spent (§5.6). None: it comes back.
                if let Some(plan) = plan
                    && !e.response_received
                {
                    plan.restore(&mut self.ledger);
                }
                return self.attempt_failed(now, e.failure);
            }
        };
        if let Some(p) = &plan
            && p.tickets > 0
        {
            self.report(Report::TicketsSent { count: p.tickets, ev_wei: p.ev_wei() });
        }
        self.report(Report::SessionSegment);
        let Some(s) = self.session.as_mut() else { return self.finish_failed(now) };
        // Fresh params and price with every result (§5.4); the auth token stays, and so do
        // the params in force when the result brings none or unusable ones.
        if let Some(info) = reply.result.info.clone() {
            let token = s.info.auth_token.clone();
            let fresh = info.ticket_params.as_ref().is_some_and(|tp| params_ev(tp).is_ok());
            let params = if fresh { info.ticket_params.clone() } else { s.info.ticket_params.clone() };
            if !fresh && self.config.paid {
                self.actions.push_back(Action::Report(Report::StaleParams { orchestrator: s.addr.to_string() }));
            }
            s.info = OrchestratorInfo { auth_token: token, ticket_params: params, ..info };
            if fresh {
                s.info_at = now;
            }
        }
        let data = match &reply.result.result {
            Some(transport::proto::transcode_result::Result::Data(d)) => d,
            Some(transport::proto::transcode_result::Result::Error(e)) => {
                return self.attempt_failed(now, classify_result_error(e));
            }
            None => return self.attempt_failed(now, Failure::new(FailureReason::BadReply, "UnknownResponse")),
        };
        if let Some(plan) = plan {
            plan.settle(&mut self.ledger, reported_pixels(data));
        }
        let want = self.current.as_ref().map_or(0, |c| c.job.profiles.len());
        if data.segments.len() != want {
            let detail = format!(
                "{}: {} renditions for {want} profiles",
                transport::refusal::wire::MISMATCHED_SEGMENTS,
                data.segments.len()
            );
            return self.attempt_failed(now, Failure::new(FailureReason::BadReply, detail));
        }
        let urls = data.segments.iter().map(|s| s.url.clone()).collect();
        let op = OpId(self.next());
        self.actions.push_back(Action::Fetch { op, urls, timeout: DOWNLOAD_TIMEOUT });
        if let Some(c) = self.current.as_mut() {
            c.upload = Some(reply.upload);
        }
        self.set_phase(Phase::Fetching {
            op,
            sig: data.sig.clone(),
            upload: reply.upload,
            tickets,
            deadline: now + DOWNLOAD_TIMEOUT + BACKSTOP_GRACE,
        });
    }

    pub(super) fn on_fetched(
        &mut self,
        now: Instant,
        sig: Vec<u8>,
        upload: Duration,
        tickets: u32,
        result: Result<Vec<Bytes>, Failure>,
    ) {
        let renditions = match result {
            Ok(r) => r,
            Err(f) => return self.attempt_failed(now, Failure { reason: FailureReason::Download, ..f }),
        };
        let bytes = renditions.iter().map(Bytes::len).sum();
        self.report(Report::RenditionsReceived { bytes });
        let Some(s) = self.session.as_ref() else { return self.finish_failed(now) };
        if self.config.paid && !sig.is_empty() {
            let signer: Option<Address> =
                s.info.address.as_slice().try_into().ok().or(Some(s.recipient).filter(|r| *r != [0; 20]));
            if let Some(addr) = signer {
                let parts: Vec<&[u8]> = renditions.iter().map(|b| b.as_ref()).collect();
                if let Err(e) = verify_results(&parts, &sig, &addr) {
                    let f = Failure::new(FailureReason::ResultSignature, format!("result signature: {e}"));
                    return self.attempt_failed(now, f);
                }
            }
        }
        let (orch, key) = (s.orch, s.key);
        let params = if tickets > 0 { s.info.ticket_params.clone() } else { None };
        let orchestrator = s.addr.to_string();
        // A mid-stream price change: under the cap the new params simply apply; above it,
        // or more than double the session's starting price, the session ends after this
        // segment and the stream moves on (never dropped, nobody suspended).
        let new_price = if self.config.paid { session_price(&s.info).ok() } else { None };
        let doubled = match (&new_price, &s.start_price) {
            (Some(p), Some(start)) => {
                start.is_positive() && *p > start * BigRational::from_integer(PRICE_INCREASE_LIMIT.into())
            }
            _ => false,
        };
        let Some(c) = self.current.take() else { return };
        let took = now.saturating_duration_since(c.started);
        self.pool.success(orch, took, upload, c.job.duration);
        self.report(Report::AttemptSucceeded { seq: c.job.seq, orchestrator: orchestrator.clone(), took, tickets });
        let record = self.record(&c, now, true, true, tickets);
        let over_cap = new_price.as_ref().and_then(|p| self.gate().check_price(orch, p, now).err());
        if let Some(f) = over_cap {
            self.report(Report::PriceAboveCap { orchestrator, detail: f.detail });
            self.leave_session("price above the cap");
        } else if doubled {
            let detail = "price more than doubled since the session began".to_owned();
            self.report(Report::PriceAboveCap { orchestrator, detail });
            self.leave_session("price more than doubled");
        } else if tickets > 0 {
            // Sign the next segment's tickets now, under the params this result brought,
            // so the signatures are off the next segment's path to the wire.
            self.actions.push_back(Action::Presign { session: key, params, count: tickets });
        }
        self.actions.push_back(Action::Deliver { job: c.id, outcome: JobOutcome::Transcoded(renditions), record });
        self.pump(now);
    }
}
