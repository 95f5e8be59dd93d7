//! One stream's transcode task: performs what its session manager asks (gRPC, HTTP,
//! ticket signing) and feeds the answers back with the time. No decisions here.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use media::Segment;
use session::manager::{SubmitFailure, SubmitReply};
use session::{Action, Event, JobId, JobOutcome, SegmentJob, SegmentJobs};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use transport::proto::VideoProfile;
use transport::refusal::{Failure, FailureReason};
use transport::segment::{SegmentRequest, seg_data, segment_header};

use super::payer::TicketBook;
use super::recorder::Recorder;
use super::{Job, Transcoding};
use crate::output::{RenditionOutcome, StreamOutput};

/// A queued segment as the driver keeps it: its bytes, and the ladder offered for it
/// (`None` for renditions above the source).
struct Pending {
    seg: Segment,
    offered: Vec<Option<VideoProfile>>,
}

pub(super) struct Driver {
    t: Arc<Transcoding>,
    id: String,
    output: Arc<RwLock<StreamOutput>>,
    cmaf: crate::cmaf::SharedCmaf,
    jobs: SegmentJobs,
    pending: HashMap<JobId, Pending>,
    book: Option<TicketBook>,
    ops: JoinSet<Event>,
    recorder: Recorder,
}

impl Driver {
    pub(super) fn new(
        t: Arc<Transcoding>,
        id: &str,
        output: Arc<RwLock<StreamOutput>>,
        cmaf: crate::cmaf::SharedCmaf,
        status: tokio::sync::watch::Sender<crate::status::TranscodeStatus>,
        seed: u64,
    ) -> Self {
        let jobs = SegmentJobs::new(t.link.clone(), t.pool.clone(), seed);
        let book = t.payer.as_ref().map(|p| TicketBook::new(p.signer.clone()));
        let recorder = Recorder::new(t.metrics.clone(), status);
        Driver {
            t,
            id: id.to_owned(),
            output,
            cmaf,
            jobs,
            pending: HashMap::new(),
            book,
            ops: JoinSet::new(),
            recorder,
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        let (mut open, mut ended) = (true, false);
        loop {
            self.perform();
            if !open && self.jobs.is_idle() {
                break;
            }
            let wake = self.jobs.poll_timeout();
            tokio::select! {
                job = rx.recv(), if open => match job {
                    Some(Job::Segment(seg, queued)) => {
                        ended = false;
                        self.queue(seg, queued);
                    }
                    Some(Job::End) => {
                        ended = true;
                        self.jobs.end(Instant::now());
                    }
                    None => {
                        open = false;
                        if !ended {
                            self.jobs.end(Instant::now());
                        }
                    }
                },
                Some(done) = self.ops.join_next(), if !self.ops.is_empty() => {
                    if let Ok(event) = done {
                        self.jobs.handle(Instant::now(), event);
                    }
                }
                _ = sleep_until(wake), if wake.is_some() => self.jobs.handle_timeout(Instant::now()),
            }
        }
        self.perform();
    }

    /// Hands a closed segment, queued at `queued`, to the manager with the ladder this
    /// source gets.
    fn queue(&mut self, seg: Segment, queued: Instant) {
        let offered = {
            let o = self.output.read().unwrap_or_else(|e| e.into_inner());
            let source = o.tracks().video.as_ref().filter(|_| seg.tracks.video).map(|v| v.dimensions);
            crate::ladder::offered(&self.t.profiles, source, o.source_bps())
        };
        let job = SegmentJob {
            seq: seg.seq,
            duration: std::time::Duration::from_secs_f64(seg.duration.as_secs_f64().max(0.0)),
            independent: seg.independent,
            bytes: seg.data.len(),
            profiles: offered.iter().flatten().cloned().collect(),
        };
        // The segment's time in the channel counts toward its deadline and dispatch time.
        let id = self.jobs.push(queued, job);
        self.pending.insert(id, Pending { seg, offered });
    }

    /// Performs every action the manager has queued.
    fn perform(&mut self) {
        while let Some(action) = self.jobs.poll_action() {
            match action {
                Action::OpenSession { op, orch: _, addr, budget } => {
                    let (t, uri) = (self.t.clone(), addr.to_string());
                    self.ops.spawn(async move {
                        let r = t.net.get_orchestrator_within(&uri, t.orchestrator_request(), budget).await;
                        Event::SessionOpened { op, result: r.map_err(|e| e.failure()), unix_now: unix_now() }
                    });
                }
                Action::Pay { op, session, params, price_info, tickets } => {
                    let result = match self.book.as_mut() {
                        Some(b) => b.pay(session, params.as_ref(), &price_info, tickets),
                        None => Err(Failure::new(FailureReason::Payment, "no payer configured")),
                    };
                    self.jobs.handle(Instant::now(), Event::PaymentAnswered { op, result });
                }
                Action::Submit { op, job, transcoder, auth_token, profiles, payment, timeouts, .. } => {
                    let Some(p) = self.pending.get(&job) else { continue };
                    let seg = &p.seg;
                    let sd = seg_data(
                        &SegmentRequest {
                            hash: seg.digest,
                            manifest_id: &self.id,
                            seq: seg.seq,
                            data: &seg.data,
                            duration_ms: (seg.duration.as_secs_f64() * 1000.0).round() as i32,
                            profiles: &profiles,
                            capabilities: &self.t.link.capabilities,
                            auth_token: auth_token.as_ref(),
                        },
                        self.t.payer.as_ref().map(|p| &p.signer),
                    );
                    let header = segment_header(&sd);
                    let payment = payment.unwrap_or_else(|| transport::segment::payment_header(None));
                    let (net, body) = (self.t.net.clone(), seg.data.clone());
                    self.ops.spawn(async move {
                        let r = net.submit(&transcoder, &header, &payment, body, timeouts).await;
                        let result = match r {
                            Ok(s) => Ok(SubmitReply { result: s.result, upload: s.upload }),
                            Err(e) => {
                                Err(SubmitFailure { failure: e.failure(), response_received: e.response_received() })
                            }
                        };
                        Event::SubmitAnswered { op, result }
                    });
                }
                Action::Fetch { op, urls, timeout } => {
                    let net = self.t.net.clone();
                    self.ops.spawn(async move {
                        let mut downloads = JoinSet::new();
                        for (i, url) in urls.into_iter().enumerate() {
                            let net = net.clone();
                            downloads.spawn(async move { (i, net.download(&url, timeout).await) });
                        }
                        let mut out = vec![Bytes::new(); downloads.len()];
                        while let Some(joined) = downloads.join_next().await {
                            match joined {
                                Ok((i, Ok(b))) => out[i] = b,
                                Ok((_, Err(e))) => {
                                    let f = Failure::new(FailureReason::Download, format!("rendition download: {e}"));
                                    return Event::RenditionsFetched { op, result: Err(f) };
                                }
                                Err(e) => {
                                    let f = Failure::new(FailureReason::Download, format!("download task: {e}"));
                                    return Event::RenditionsFetched { op, result: Err(f) };
                                }
                            }
                        }
                        Event::RenditionsFetched { op, result: Ok(out) }
                    });
                }
                Action::EndSession { session, addr, auth_token } => {
                    if let Some(b) = self.book.as_mut() {
                        b.forget(session);
                    }
                    if let Some(token) = auth_token {
                        let (net, uri) = (self.t.net.clone(), addr.to_string());
                        tokio::spawn(async move {
                            match net.end_session(&uri, token).await {
                                Ok(()) => tracing::debug!(orchestrator = %uri, "orchestrator session ended"),
                                Err(e) => {
                                    tracing::debug!(orchestrator = %uri, error = %e, "EndTranscodingSession failed")
                                }
                            }
                        });
                    }
                }
                Action::Deliver { job, outcome, record } => {
                    let Some(p) = self.pending.remove(&job) else { continue };
                    self.deliver(p, outcome);
                    self.recorder.segment_done(record);
                }
                Action::Presign { session, params, count } => {
                    if let Some(b) = self.book.as_mut() {
                        b.presign(session, params.as_ref(), count);
                    }
                }
                Action::Report(r) => self.recorder.report(r),
                Action::Ended => self.output.write().unwrap_or_else(|e| e.into_inner()).end_renditions(),
            }
        }
    }

    /// Stores a finished segment's renditions (or gaps) in the stream's output.
    fn deliver(&mut self, p: Pending, outcome: JobOutcome) {
        let (mut made, gap) = match outcome {
            JobOutcome::Transcoded(r) => (Some(r.into_iter()), RenditionOutcome::Failed),
            JobOutcome::NotSent(_) => (None, RenditionOutcome::NotSent),
            JobOutcome::NothingOffered | JobOutcome::Failed(_) => (None, RenditionOutcome::Failed),
        };
        let outcomes = p
            .offered
            .iter()
            .map(|offered| match (offered, made.as_mut()) {
                (None, _) => RenditionOutcome::NotOffered,
                (Some(_), Some(m)) => m.next().map_or(RenditionOutcome::Failed, RenditionOutcome::Stored),
                (Some(_), None) => gap.clone(),
            })
            .collect::<Vec<_>>();
        // The renditions' CMAF tracks (DASH, LL-HLS) take the same segments, demuxed
        // before the output is locked, and the same gaps.
        let units: Vec<_> = self
            .t
            .profiles
            .iter()
            .zip(&outcomes)
            .map(|(profile, outcome)| match outcome {
                RenditionOutcome::Stored(data) => (profile.name.as_str(), crate::cmaf::rendition_units(data)),
                _ => (profile.name.as_str(), None),
            })
            .collect();
        if !units.is_empty() {
            let mut c = self.cmaf.write().unwrap_or_else(|e| e.into_inner());
            for (name, u) in units {
                match u {
                    Some(u) => c.handle_rendition_segment(name, u, &p.seg),
                    None => c.handle_rendition_gap(name, &p.seg),
                }
            }
        }
        self.output.write().unwrap_or_else(|e| e.into_inner()).add_renditions(&p.seg, outcomes);
    }
}

/// Sleeps until `at` (forever when `None`; the select branch is disabled then).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
