//! The session manager's cost per segment: one source segment through
//! `session::SegmentJobs` on a kept session (push, submit, answer, fetch, deliver), off-chain
//! and paid (payment plan, ledger reserve and settle, price checks), with the network
//! answered at once. This is the decision work a stream's transcode task adds to each
//! segment on top of the IO.
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use num_rational::BigRational;
use session::manager::SubmitReply;
use session::pool::{DefaultSelector, OrchestratorPool};
use session::{Action, Event, LinkConfig, SegmentJob, SegmentJobs};
use transport::proto::{
    AuthToken, OrchestratorInfo, PriceInfo, TicketParams, TranscodeData, TranscodeResult, TranscodedSegmentData,
    transcode_result,
};

fn info() -> OrchestratorInfo {
    OrchestratorInfo {
        transcoder: "https://o.bench:8935".into(),
        address: vec![1; 20],
        ticket_params: Some(TicketParams {
            recipient: vec![1; 20],
            face_value: 1_000_000_000_000u64.to_be_bytes().to_vec(),
            win_prob: vec![0x10; 32],
            recipient_rand_hash: vec![2; 32],
            ..Default::default()
        }),
        price_info: Some(PriceInfo { price_per_unit: 1, pixels_per_unit: 1, ..Default::default() }),
        auth_token: Some(AuthToken { token: vec![1], session_id: "s".into(), expiration: i64::MAX / 4 }),
        ..Default::default()
    }
}

/// Runs one segment to delivery, answering every action at once; returns the actions seen.
fn one_segment(m: &mut SegmentJobs, now: Instant, seq: u64, profiles: &[transport::proto::VideoProfile]) -> usize {
    let job = SegmentJob {
        seq,
        duration: Duration::from_secs(2),
        independent: true,
        bytes: 1_500_000,
        profiles: profiles.to_vec(),
    };
    m.push(now, job);
    let mut n = 0;
    while let Some(a) = m.poll_action() {
        n += 1;
        let event = match a {
            Action::OpenSession { op, .. } => Event::SessionOpened { op, result: Ok(info()), unix_now: 0 },
            Action::Pay { op, .. } => Event::PaymentAnswered { op, result: Ok(String::new()) },
            Action::Submit { op, .. } => {
                let data = TranscodeData {
                    segments: (0..profiles.len())
                        .map(|k| TranscodedSegmentData {
                            url: format!("https://o/{seq}/{k}.ts"),
                            pixels: 9_000_000,
                            ..Default::default()
                        })
                        .collect(),
                    sig: vec![],
                };
                let result = TranscodeResult {
                    seq: seq as i64,
                    info: Some(info()),
                    result: Some(transcode_result::Result::Data(data)),
                };
                Event::SubmitAnswered { op, result: Ok(SubmitReply { result, upload: Duration::from_millis(20) }) }
            }
            Action::Fetch { op, urls, .. } => {
                Event::RenditionsFetched { op, result: Ok(urls.iter().map(|_| Bytes::new()).collect()) }
            }
            _ => continue,
        };
        m.handle(now, event);
    }
    n
}

fn session(c: &mut Criterion) {
    let profiles: Vec<_> =
        ["P240p30fps16x9", "P360p30fps16x9"].iter().map(|p| transport::profiles::preset(p).unwrap()).collect();
    let mut g = c.benchmark_group("session_manager");
    for (name, paid) in [("segment_offchain", false), ("segment_paid", true)] {
        let addr = transport::orch_addr::parse_orch_addrs("https://o.bench:8935").unwrap();
        let pool = Arc::new(OrchestratorPool::new(
            addr.into_iter().map(|a| (a, None)).collect(),
            Box::new(DefaultSelector::default()),
            vec![],
        ));
        let config = Arc::new(LinkConfig {
            max_attempts: 3,
            paid,
            max_price: paid.then(|| BigRational::from_integer(10.into())),
            capabilities: transport::capabilities::job_capabilities(&profiles, false, ""),
            blocklist: vec![],
        });
        let mut m = SegmentJobs::new(config, pool, 1);
        let now = Instant::now();
        let mut seq = 0;
        one_segment(&mut m, now, seq, &profiles); // opens the session
        g.bench_function(name, |b| {
            b.iter(|| {
                seq += 1;
                one_segment(&mut m, now, seq, &profiles)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, session);
criterion_main!(benches);
