//! Paid mode against the orchestrator over real sockets, with the gateway's own ticket
//! sender: payments credited, nonces increasing, and each refusal the spec lists
//! answered with its status code and text (§4.2, §5.8).
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use num_rational::BigRational;
use num_traits::Zero;
use orchestrator::service::{OrchestratorConfig, OrchestratorHandle, start};
use orchestrator::transcode::EchoTranscoder;
use transport::capabilities::job_capabilities;
use transport::client::{NetError, OrchestratorNet};
use transport::identity::{EthSigner, eip55};
use transport::pm::{TicketSender, price_per_pixel, segment_fee, tickets_needed};
use transport::profiles::{DEFAULT_TRANSCODING_OPTIONS, estimated_pixels, parse_transcoding_options};
use transport::proto::{OrchestratorInfo, OrchestratorRequest, Payment, PriceInfo, VideoProfile};
use transport::segment::{SegmentRequest, SegmentTimeouts, payment_header, seg_data, segment_header};
use transport::tls::CertPolicy;

const GATEWAY_KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const ORCH_KEY: &str = "8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f";

fn profiles() -> Vec<VideoProfile> {
    parse_transcoding_options(DEFAULT_TRANSCODING_OPTIONS).unwrap()
}

mod common;

/// Real segments of the bundled clip, so the orchestrator counts real frames.
fn body(seq: u64) -> Bytes {
    static SEGS: std::sync::OnceLock<Vec<media::Segment>> = std::sync::OnceLock::new();
    let segs = SEGS.get_or_init(|| common::clip_segments(4));
    segs[seq as usize % segs.len()].data.clone()
}

async fn paid_orchestrator(block_time: Duration) -> OrchestratorHandle {
    let mut cfg = OrchestratorConfig::new("127.0.0.1:0".parse().unwrap(), Arc::new(EchoTranscoder));
    cfg.signer = Some(EthSigner::from_hex(ORCH_KEY).unwrap());
    cfg.price = PriceInfo { price_per_unit: 1000, pixels_per_unit: 1, ..Default::default() };
    cfg.block_time = block_time;
    start(cfg).await.unwrap()
}

struct Gw {
    net: OrchestratorNet,
    signer: EthSigner,
    uri: String,
    info: OrchestratorInfo,
    tickets: TicketSender,
}

impl Gw {
    async fn connect(o: &OrchestratorHandle) -> Gw {
        let signer = EthSigner::from_hex(GATEWAY_KEY).unwrap();
        let net = OrchestratorNet::new(CertPolicy::AcceptAny);
        let mut g = Gw {
            net,
            signer: signer.clone(),
            uri: o.service_uri.clone(),
            info: OrchestratorInfo::default(),
            tickets: TicketSender::new(signer),
        };
        g.refresh().await;
        g
    }

    fn request(&self) -> OrchestratorRequest {
        OrchestratorRequest {
            address: self.signer.address().to_vec(),
            sig: self.signer.sign_message(eip55(&self.signer.address()).as_bytes()).to_vec(),
            capabilities: Some(job_capabilities(&profiles(), false, "")),
            ignore_capacity_check: false,
        }
    }

    async fn refresh(&mut self) {
        self.info = self.net.get_orchestrator(&self.uri, self.request()).await.expect("GetOrchestrator");
        self.tickets.update_params(self.info.ticket_params.as_ref().expect("paid mode quotes tickets")).unwrap();
    }

    fn price(&self) -> PriceInfo {
        self.info.price_info.clone().expect("paid mode quotes a price")
    }

    /// Tickets covering one 2 s segment from zero credit (§5.6).
    fn tickets_for_segment(&self) -> u32 {
        let fee = segment_fee(estimated_pixels(&profiles(), 2.0), &price_per_pixel(&self.price()).unwrap());
        tickets_needed(&BigRational::zero(), &fee, &self.tickets.ticket_ev()).count
    }

    fn payment(&mut self, count: u32) -> Payment {
        let price = self.price();
        self.tickets.payment(count, &price).unwrap()
    }

    async fn send(
        &mut self,
        seq: u64,
        payment: &Payment,
        tamper_sig: bool,
    ) -> Result<transport::client::Submitted, NetError> {
        let data = body(seq);
        let profs = profiles();
        let caps = job_capabilities(&profs, false, "");
        let mut sd = seg_data(
            &SegmentRequest {
                hash: None,
                manifest_id: "paid",
                seq,
                data: &data,
                duration_ms: 2000,
                profiles: &profs,
                capabilities: &caps,
                auth_token: self.info.auth_token.as_ref(),
            },
            Some(&self.signer),
        );
        if tamper_sig {
            sd.sig[10] ^= 0x40;
        }
        let r = self
            .net
            .submit(
                &self.info.transcoder,
                &segment_header(&sd),
                &payment_header(Some(payment)),
                data,
                SegmentTimeouts::for_duration(Duration::from_secs(2), 1.0),
            )
            .await;
        if let Ok(s) = &r
            && let Some(info) = &s.result.info
        {
            // Fresh params with every result (§5.4).
            self.tickets.update_params(info.ticket_params.as_ref().unwrap()).unwrap();
            self.info.ticket_params = info.ticket_params.clone();
        }
        r
    }
}

async fn status(o: &OrchestratorHandle, net: &OrchestratorNet) -> serde_json::Value {
    let b = net.download(&format!("{}/status", o.service_uri), Duration::from_secs(4)).await.unwrap();
    serde_json::from_slice(&b).unwrap()
}

fn expect_status(r: Result<transport::client::Submitted, NetError>, code: u16, text: &str) {
    match r {
        Err(NetError::Status { status, body }) => {
            assert_eq!(status.as_u16(), code, "{body}");
            assert!(body.contains(text), "body {body:?} lacks {text:?}");
        }
        other => panic!("expected {code} {text:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_segments_are_credited_and_nonces_increase() {
    let o = paid_orchestrator(Duration::from_secs(12)).await;
    let mut g = Gw::connect(&o).await;
    assert_eq!(g.info.address, EthSigner::from_hex(ORCH_KEY).unwrap().address().to_vec());
    let n = g.tickets_for_segment();
    assert!(n >= 2, "price 1000 wei/pixel needs several tickets per segment, got {n}");
    let mut sent = 0;
    let mut last_rand = g.info.ticket_params.as_ref().unwrap().recipient_rand_hash.clone();
    for seq in 0..4 {
        let p = g.payment(n);
        let nonces: Vec<u32> = p.ticket_sender_params.iter().map(|t| t.sender_nonce).collect();
        assert_eq!(nonces, (1..=n).collect::<Vec<_>>(), "new params restart the nonce at 1");
        sent += n as u64;
        let r = g.send(seq, &p, false).await.expect("paid segment accepted");
        assert!(r.outcome().is_ok(), "{:?}", r.result.result);
        let rand = g.info.ticket_params.as_ref().unwrap().recipient_rand_hash.clone();
        assert_ne!(rand, last_rand, "every result carries fresh ticket params");
        last_rand = rand;
    }
    // Same params twice: nonces continue rather than restart.
    let p1 = g.payment(1);
    let p2 = g.payment(1);
    assert_eq!(p2.ticket_sender_params[0].sender_nonce, p1.ticket_sender_params[0].sender_nonce + 1);

    let st = status(&o, &g.net).await;
    assert_eq!(st["tickets_received"].as_u64(), Some(sent));
    assert_eq!(st["nonces_out_of_order"].as_u64(), Some(0));
    assert_eq!(st["segments_transcoded"].as_u64(), Some(4));
    assert!(st["rejected"].as_object().unwrap().is_empty(), "{st}");
    let (credited, debited) = (st["credited_wei"].as_f64().unwrap(), st["debited_wei"].as_f64().unwrap());
    assert!(debited > 0.0 && credited >= debited, "tickets ({credited} wei) must cover the fees ({debited} wei)");
    o.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_signatures_are_refused() {
    let o = paid_orchestrator(Duration::from_secs(12)).await;
    let mut g = Gw::connect(&o).await;
    let n = g.tickets_for_segment();
    // SegData signature: 403 ErrSegSig (§4.2 step 2).
    let p = g.payment(n);
    expect_status(g.send(0, &p, true).await, 403, "ErrSegSig");
    // A ticket signature: 400 invalid ticket signature (§5.8).
    let mut p = g.payment(n);
    p.ticket_sender_params[0].sig[5] ^= 1;
    expect_status(g.send(1, &p, false).await, 400, "invalid ticket signature");
    // A replayed nonce: 400.
    let mut g2 = Gw::connect(&o).await;
    let p = g2.payment(n);
    g2.send(2, &p, false).await.expect("first use of the nonces");
    g2.tickets.update_params(p.ticket_params.as_ref().unwrap()).unwrap();
    let mut replay = p.clone();
    replay.ticket_params = p.ticket_params.clone();
    expect_status(g2.send(3, &replay, false).await, 400, "senderNonce");
    // GetOrchestrator with a forged request signature is refused.
    let mut req = g.request();
    req.sig[3] ^= 1;
    match g.net.get_orchestrator(&g.uri, req).await {
        Err(NetError::Grpc { code, .. }) => assert_eq!(code, tonic::Code::PermissionDenied),
        other => panic!("forged request accepted: {other:?}"),
    }
    let st = status(&o, &g.net).await;
    assert_eq!(st["rejected"]["403"].as_u64(), Some(1));
    assert_eq!(st["rejected"]["400"].as_u64(), Some(2));
    o.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_ticket_params_and_underpayment_are_400() {
    // 40 blocks of 10 ms: params expire 0.4 s after they are quoted.
    let o = paid_orchestrator(Duration::from_millis(10)).await;
    let mut g = Gw::connect(&o).await;
    let n = g.tickets_for_segment();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let p = g.payment(n);
    expect_status(g.send(0, &p, false).await, 400, "TicketParams expired");
    // What the gateway does next (§5.7): a fresh session, and the segment goes through.
    g.refresh().await;
    let p = g.payment(n);
    g.send(0, &p, false).await.expect("fresh params accepted");

    // Underpayment: no tickets for a priced segment on a new session.
    let mut g = Gw::connect(&o).await;
    let p = g.payment(0);
    assert!(p.ticket_sender_params.is_empty() && !p.sender.is_empty());
    expect_status(g.send(1, &p, false).await, 400, "Insufficient balance");
    // Params quoted for another price: recipientRand no longer matches.
    let mut g = Gw::connect(&o).await;
    let mut p = g.payment(n);
    p.expected_price.as_mut().unwrap().price_per_unit = 1;
    expect_status(g.send(2, &p, false).await, 400, "recipientRand");
    let st = status(&o, &g.net).await;
    assert_eq!(st["rejected"]["400"].as_u64(), Some(3));
    o.shutdown().await;
}
