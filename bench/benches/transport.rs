//! The gateway's per-segment protocol work: hashing and signing the segment credentials,
//! building tickets, protobuf encode/decode, and the whole path from a closed segment to
//! its request's first bytes arriving at an orchestrator on loopback.
//!
//! `segment_to_wire/*` runs a minimal HTTP/1.1 peer on 127.0.0.1 that timestamps the
//! first byte of every request; the time measured is from "segment closed" (the
//! gateway starts its per-segment work) to that timestamp, over a warm pooled
//! connection, as a live stream sees it after its first segment.
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use num_rational::BigRational;
use num_traits::Zero;
use prost::Message;
use transport::capabilities::job_capabilities;
use transport::client::OrchestratorNet;
use transport::identity::EthSigner;
use transport::pm::{TicketSender, price_per_pixel, segment_fee, tickets_needed};
use transport::profiles::{DEFAULT_TRANSCODING_OPTIONS, estimated_pixels, parse_transcoding_options};
use transport::proto::{
    AuthToken, PriceInfo, TicketExpirationParams, TicketParams, TranscodeData, TranscodeResult, TranscodedSegmentData,
    transcode_result,
};
use transport::segment::{SegmentRequest, SegmentTimeouts, payment_header, seg_data, segment_header};
use transport::tls::CertPolicy;

const KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
/// A 2 s segment of a 3 Mb/s 720p stream.
const SEGMENT_BYTES: usize = 750_000;

fn segment() -> Bytes {
    Bytes::from((0..SEGMENT_BYTES).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>())
}

fn ticket_params() -> TicketParams {
    TicketParams {
        recipient: vec![7; 20],
        // go-livepeer's defaults: EV 8e9 wei, face value 100 × EV.
        face_value: 800_000_000_000u64.to_be_bytes().to_vec(),
        win_prob: (transport::pm::max_win_prob() / 100u32).to_bytes_be(),
        recipient_rand_hash: vec![9; 32],
        seed: vec![3; 32],
        expiration_block: 1040u64.to_be_bytes().to_vec(),
        expiration_params: Some(TicketExpirationParams { creation_round: 10, creation_round_block_hash: vec![5; 32] }),
    }
}

fn price() -> PriceInfo {
    PriceInfo { price_per_unit: 1000, pixels_per_unit: 1, ..Default::default() }
}

struct Job {
    signer: Option<EthSigner>,
    tickets: Option<TicketSender>,
    profiles: Vec<transport::proto::VideoProfile>,
    caps: transport::proto::Capabilities,
    token: AuthToken,
}

impl Job {
    fn new(paid: bool) -> Job {
        let profiles = parse_transcoding_options(DEFAULT_TRANSCODING_OPTIONS).unwrap();
        let signer = paid.then(|| EthSigner::from_hex(KEY).unwrap());
        let tickets = signer.clone().map(|s| {
            let mut t = TicketSender::new(s);
            t.update_params(&ticket_params()).unwrap();
            t
        });
        Job {
            caps: job_capabilities(&profiles, false, ""),
            profiles,
            signer,
            tickets,
            token: AuthToken { token: vec![1; 32], session_id: "0a0b0c0d".into(), expiration: 1 << 40 },
        }
    }

    /// What the gateway does when a result brings new ticket params: take them and sign
    /// the next segment's tickets ahead.
    fn next_params(&mut self, seq: u64) {
        if let Some(t) = self.tickets.as_mut() {
            let mut tp = ticket_params();
            tp.recipient_rand_hash[..8].copy_from_slice(&seq.to_be_bytes());
            t.update_params(&tp).unwrap();
            t.presign(3).unwrap();
        }
    }

    /// Everything the gateway computes for one segment: (Livepeer-Segment, Livepeer-Payment).
    fn headers(&mut self, seq: u64, data: &[u8], hash: Option<[u8; 32]>) -> (String, String) {
        let sd = seg_data(
            &SegmentRequest {
                hash,
                manifest_id: "bench",
                seq,
                data,
                duration_ms: 2000,
                profiles: &self.profiles,
                capabilities: &self.caps,
                auth_token: Some(&self.token),
            },
            self.signer.as_ref(),
        );
        let pay = match self.tickets.as_mut() {
            None => payment_header(None),
            Some(t) => {
                if t.ticket_ev().is_zero() {
                    return (segment_header(&sd), payment_header(None));
                }
                let fee = segment_fee(estimated_pixels(&self.profiles, 2.0), &price_per_pixel(&price()).unwrap());
                let n = tickets_needed(&BigRational::zero(), &fee, &t.ticket_ev()).count;
                payment_header(Some(&t.payment(n, &price()).unwrap()))
            }
        };
        (segment_header(&sd), pay)
    }
}

fn result_bytes() -> Vec<u8> {
    TranscodeResult {
        seq: 1,
        result: Some(transcode_result::Result::Data(TranscodeData {
            segments: (0..2)
                .map(|i| TranscodedSegmentData {
                    url: format!("https://127.0.0.1:8935/stream/0a0b0c0d/P{i}/1.ts"),
                    pixels: 12_000_000,
                    ..Default::default()
                })
                .collect(),
            sig: vec![1; 65],
        })),
        info: Some(transport::proto::OrchestratorInfo {
            transcoder: "https://127.0.0.1:8935".into(),
            ticket_params: Some(ticket_params()),
            price_info: Some(price()),
            address: vec![7; 20],
            ..Default::default()
        }),
    }
    .encode_to_vec()
}

fn per_segment_work(c: &mut Criterion) {
    let data = segment();
    let mut g = c.benchmark_group("per_segment");
    g.throughput(Throughput::Bytes(data.len() as u64));
    // keccak256 of the segment: paid while the segment is written (SegmentDigest), not
    // after it closes.
    g.bench_function("keccak256_750k", |b| b.iter(|| transport::credentials::keccak256(&data)));
    let mut inc = transport::credentials::IncrementalKeccak::default();
    g.bench_function("keccak256_750k_in_7k_chunks", |b| {
        b.iter(|| {
            for c in data.chunks(7 * 1024) {
                inc.update(c);
            }
            inc.finish_reset()
        })
    });
    g.finish();
    let hash = Some(transport::credentials::keccak256(&data));
    let mut g = c.benchmark_group("per_segment_after_close");
    let mut job = Job::new(false);
    let mut seq = 0;
    g.bench_function("segdata_offchain", |b| {
        b.iter(|| {
            seq += 1;
            job.headers(seq, &data, hash)
        })
    });
    // Paid, everything signed after the segment closes (no presigning).
    let mut job = Job::new(true);
    g.bench_function("segdata_signed_and_3_tickets", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                seq += 1;
                let mut tp = ticket_params();
                tp.recipient_rand_hash[..8].copy_from_slice(&seq.to_be_bytes());
                job.tickets.as_mut().unwrap().update_params(&tp).unwrap();
                let t = Instant::now();
                std::hint::black_box(job.headers(seq, &data, hash));
                total += t.elapsed();
            }
            total
        })
    });
    // Paid, tickets presigned when the previous result arrived (what the gateway does).
    g.bench_function("segdata_signed_tickets_presigned", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                seq += 1;
                job.next_params(seq);
                let t = Instant::now();
                std::hint::black_box(job.headers(seq, &data, hash));
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();

    let mut g = c.benchmark_group("protobuf");
    let mut job = Job::new(true);
    job.next_params(1);
    let (seg_h, pay_h) = job.headers(1, &data, None);
    g.bench_function("segdata_decode_base64", |b| {
        b.iter(|| transport::segment::decode_segment_header(&seg_h).unwrap())
    });
    g.bench_function("payment_decode_base64", |b| {
        b.iter(|| {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD.decode(&pay_h).unwrap();
            transport::proto::Payment::decode(&raw[..]).unwrap()
        })
    });
    let res = result_bytes();
    g.bench_function("transcode_result_decode", |b| b.iter(|| TranscodeResult::decode(&res[..]).unwrap()));
    let decoded = TranscodeResult::decode(&res[..]).unwrap();
    g.bench_function("transcode_result_encode", |b| b.iter(|| decoded.encode_to_vec()));
    let mut sender = TicketSender::new(EthSigner::from_hex(KEY).unwrap());
    sender.update_params(&ticket_params()).unwrap();
    let mut n = 0u32;
    g.bench_function("one_ticket_signed", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let mut tp = ticket_params();
            tp.recipient_rand_hash[..4].copy_from_slice(&n.to_be_bytes());
            sender.update_params(&tp).unwrap();
            sender.payment(1, &price()).unwrap()
        })
    });
    g.finish();
}

/// A keep-alive HTTP/1.1 peer: for each request, reports when its first byte arrived,
/// reads it whole and answers 200 with a `TranscodeResult`.
fn wire_peer() -> (String, mpsc::Receiver<Instant>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let body = result_bytes();
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let tx = tx.clone();
            let body = body.clone();
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 1 << 20];
                let mut have = 0usize;
                loop {
                    // Wait for the first byte of the next request.
                    if have == 0 {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                let _ = tx.send(Instant::now());
                                have = n;
                            }
                        }
                    }
                    let head_end = loop {
                        if let Some(p) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                        match s.read(&mut buf[have..]) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => have += n,
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let total = head_end + len;
                    if buf.len() < total {
                        buf.resize(total, 0);
                    }
                    while have < total {
                        match s.read(&mut buf[have..]) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => have += n,
                        }
                    }
                    buf.copy_within(total..have, 0);
                    have -= total;
                    let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                    if s.write_all(resp.as_bytes()).and_then(|_| s.write_all(&body)).is_err() {
                        return;
                    }
                    if have > 0 {
                        let _ = tx.send(Instant::now());
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), rx)
}

fn segment_to_wire(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (uri, arrivals) = wire_peer();
    let net = OrchestratorNet::new(CertPolicy::AcceptAny);
    let data = segment();
    let timeouts = SegmentTimeouts::for_duration(Duration::from_secs(2), 1.0);
    let hash = Some(transport::credentials::keccak256(&data));
    let mut g = c.benchmark_group("segment_to_wire");
    g.sample_size(200).measurement_time(Duration::from_secs(10));
    for paid in [false, true] {
        let mut job = Job::new(paid);
        let mut seq = 0u64;
        // Warm the pooled connection.
        job.next_params(0);
        let (s, p) = job.headers(0, &data, hash);
        rt.block_on(net.submit(&uri, &s, &p, data.clone(), timeouts)).unwrap();
        while arrivals.try_recv().is_ok() {}
        g.bench_function(BenchmarkId::from_parameter(if paid { "paid" } else { "offchain" }), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    seq += 1;
                    job.next_params(seq);
                    let closed = Instant::now();
                    let (s, p) = job.headers(seq, &data, hash);
                    let r = rt.block_on(async {
                        let submit = net.submit(&uri, &s, &p, data.clone(), timeouts);
                        submit.await
                    });
                    r.unwrap();
                    let first_byte = arrivals.recv().unwrap();
                    total += first_byte - closed;
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, per_segment_work, segment_to_wire);
criterion_main!(benches);
