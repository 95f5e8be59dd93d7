//! What a gateway does with an orchestrator's `/segment` reply, on the real path: the
//! body goes through `transport::segment::decode_result`, then into a paying session
//! manager (`session::SegmentJobs`) exactly as the engine's driver hands it over: ticket
//! params and price from its `info`, the credit settled from the reported pixels, the
//! rendition count checked, the renditions fetched and (with a signature) verified, the
//! price re-checked. Then the next segment's payment is planned under the new params and
//! signed with a real ticket sender. All of it is network input.
//! Invariants: no panic, no unbounded work (ticket counts beyond the nonce limit are
//! refused, not signed), and every segment is delivered exactly once.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use num_rational::BigRational;
use session::manager::{SubmitFailure, SubmitReply};
use session::pool::{DefaultSelector, OrchestratorPool};
use session::{Action, Event, LinkConfig, SegmentJob, SegmentJobs};
use transport::identity::EthSigner;
use transport::pm::{MAX_SENDER_NONCES, TicketSender};
use transport::proto::{AuthToken, OrchestratorInfo, PriceInfo, TicketParams};

fn info() -> OrchestratorInfo {
    OrchestratorInfo {
        transcoder: "https://o.fuzz:8935".into(),
        address: vec![1; 20],
        ticket_params: Some(TicketParams {
            recipient: vec![1; 20],
            face_value: vec![0x10, 0],
            win_prob: vec![0xff; 32],
            recipient_rand_hash: vec![2; 32],
            ..Default::default()
        }),
        price_info: Some(PriceInfo { price_per_unit: 1, pixels_per_unit: 1, ..Default::default() }),
        auth_token: Some(AuthToken { token: vec![1], session_id: "s".into(), expiration: i64::MAX / 2 }),
        ..Default::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let profiles: Vec<_> =
        ["P240p30fps16x9", "P360p30fps16x9"].iter().filter_map(|p| transport::profiles::preset(p)).collect();
    let pool = Arc::new(OrchestratorPool::new(
        transport::orch_addr::parse_orch_addrs("https://o.fuzz:8935").unwrap().into_iter().map(|a| (a, None)).collect(),
        Box::new(DefaultSelector::default()),
        vec![],
    ));
    let config = Arc::new(LinkConfig {
        max_attempts: 2,
        paid: true,
        max_price: Some(BigRational::from_integer(1000.into())),
        capabilities: transport::capabilities::job_capabilities(&profiles, false, ""),
        blocklist: vec![],
    });
    let mut m = SegmentJobs::new(config, pool, 1);
    let signer = EthSigner::from_hex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
    let mut sender = TicketSender::new(signer);
    for seq in 0..2u64 {
        m.push(
            now,
            SegmentJob {
                seq,
                duration: Duration::from_secs(2),
                independent: true,
                bytes: 1000,
                profiles: profiles.clone(),
            },
        );
    }
    let mut delivered = 0;
    let mut steps = 0;
    while let Some(a) = m.poll_action() {
        steps += 1;
        assert!(steps < 1000, "unbounded work");
        let event = match a {
            Action::OpenSession { op, .. } => Event::SessionOpened { op, result: Ok(info()), unix_now: 0 },
            Action::Pay { op, params, price_info, tickets, .. } => {
                let result = match params.as_ref().map(|p| sender.update_params(p)) {
                    Some(Err(e)) => {
                        Err(transport::refusal::Failure::new(transport::refusal::FailureReason::Payment, e.to_string()))
                    }
                    _ => {
                        if tickets > MAX_SENDER_NONCES {
                            assert!(sender.payment(tickets, &price_info).is_err());
                        }
                        // Signing is bounded: at most a few tickets per payment here.
                        sender.payment(tickets.min(4), &price_info).map(|_| String::from("payment")).map_err(|e| {
                            transport::refusal::Failure::new(transport::refusal::FailureReason::Payment, e.to_string())
                        })
                    }
                };
                Event::PaymentAnswered { op, result }
            }
            Action::Submit { op, .. } => {
                let result = match transport::segment::decode_result(data) {
                    Ok(result) => Ok(SubmitReply { result, upload: Duration::from_millis(5) }),
                    Err(failure) => Err(SubmitFailure { failure, response_received: true }),
                };
                Event::SubmitAnswered { op, result }
            }
            Action::Fetch { op, urls, .. } => {
                let renditions = urls.iter().map(|u| Bytes::copy_from_slice(u.as_bytes())).collect();
                Event::RenditionsFetched { op, result: Ok(renditions) }
            }
            Action::Deliver { .. } => {
                delivered += 1;
                continue;
            }
            Action::EndSession { .. } | Action::Presign { .. } | Action::Report(_) | Action::Ended => continue,
        };
        m.handle(now, event);
    }
    assert_eq!(delivered, 2, "every segment is delivered exactly once");
});
