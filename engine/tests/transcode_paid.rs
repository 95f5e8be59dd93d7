//! Paid transcoding end to end (tickets on, `sluice orchestrator` in paid mode as its own
//! process), the gateway's reaction to stale ticket params, and the wire fixtures: what
//! the gateway sends, captured by the orchestrator after TLS, decodes with the spec's
//! field numbers and keeps the shape of the fixture in `testdata/wire/`.
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use common::*;

async fn paid_orchestrator(extra: &[&str]) -> OrchestratorProcess {
    let okey = key_file("orch", ORCH_KEY);
    let mut args = vec![
        "--network",
        "arbitrum-one-mainnet",
        "--eth-key-file",
        okey.to_str().unwrap(),
        "--price-per-unit",
        "1000",
        "--pixels-per-unit",
        "1",
    ];
    args.extend_from_slice(extra);
    OrchestratorProcess::start(&args).await
}

async fn paid_gateway(orch: &OrchestratorProcess) -> engine::Gateway {
    let gkey = key_file("gateway", GATEWAY_KEY);
    let uri = orch.uri.clone();
    gateway_with(move |c| {
        c.orchestrators.orch_addr = uri;
        c.payment.network = "arbitrum-one-mainnet".into();
        c.payment.eth_key_file = Some(gkey);
    })
    .await
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_stream_with_stale_ticket_params() {
    // 40 blocks of 100 ms: ticket params go stale 4 s after they are quoted.
    let orch = paid_orchestrator(&["--block-time", "0.1"]).await;
    let gw = paid_gateway(&orch).await;
    let tags = fixture_tags("clip.flv");
    let mut p = own_publisher(&gw, "paid").await;
    let pause_at = 3_900;
    for t in tags.iter().filter(|t| t.timestamp < pause_at) {
        p.send_tag(t.tag_type, t.timestamp, &t.body).await.unwrap();
    }
    // Segment 0 is transcoded and paid; the params its result brought go stale while the
    // publisher pauses. Segment 1 then meets `TicketParams expired` (400); the gateway
    // opens a fresh session and sends it again.
    poll_http(&gw, "/stream/paid/P240p30fps16x9.m3u8", 20, |p| p.contains("0.ts")).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for t in tags.iter().filter(|t| t.timestamp >= pause_at) {
        p.send_tag(t.tag_type, t.timestamp, &t.body).await.unwrap();
    }
    p.finish().await.unwrap();
    let source = wait_ended(&gw, "paid").await;
    poll_http(&gw, "/stream/paid/P360p30fps16x9.m3u8", 30, |p| p.contains("#EXT-X-ENDLIST")).await;

    let st: serde_json::Value = serde_json::from_slice(&http_get(gw.cli_addr, "/streams/paid").await.body).unwrap();
    let tr = &st["transcode"];
    assert_eq!(tr["failed"].as_u64(), Some(0), "no segment lost: {tr}");
    assert_eq!(tr["transcoded"].as_u64(), Some(source.segments.len() as u64));
    let seg1 = tr["recent"].as_array().unwrap().iter().find(|r| r["seq"] == 1).unwrap();
    assert_eq!(seg1["attempts"].as_u64(), Some(2), "stale params cost one refused attempt: {seg1}");
    assert!(tr["sessions"].as_array().unwrap().len() >= 2, "a fresh session after the refusal");

    let o = orch.status().await;
    assert_eq!(o["rejected"]["400"].as_u64(), Some(1), "{o}");
    assert!(o["rejected"].get("402").is_none() && o["rejected"].get("403").is_none(), "{o}");
    assert_eq!(o["nonces_out_of_order"].as_u64(), Some(0));
    let (credited, debited) = (o["credited_wei"].as_f64().unwrap(), o["debited_wei"].as_f64().unwrap());
    assert!(debited > 0.0 && credited >= debited, "tickets ({credited} wei) must cover the fees ({debited} wei)");
    let m = http_get(gw.cli_addr, "/metrics").await.text();
    assert_eq!(metric(&m, "sluice_tickets_sent_total") as u64, o["tickets_received"].as_u64().unwrap());
    let ev = metric(&m, "sluice_ev_paid_wei_total");
    assert!((ev - credited).abs() <= credited * 1e-9, "EV paid {ev} vs credited {credited}");
    gw.shutdown().await;
}

/// (field number, wire type) of every top-level field of a protobuf message, in order.
fn fields(b: &[u8]) -> Vec<(u64, u8)> {
    transport::proto::top_level_fields(b).expect("a well-formed protobuf message")
}

fn field_set(b: &[u8]) -> BTreeSet<(u64, u8)> {
    fields(b).into_iter().collect()
}

/// The message inside a one-message gRPC body (1-byte flag, 4-byte length).
fn grpc_message(body: &[u8]) -> &[u8] {
    assert_eq!(body[0], 0, "uncompressed");
    let n = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    assert_eq!(body.len(), 5 + n, "one message");
    &body[5..]
}

fn header<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.split_once(": ").filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        .unwrap_or_else(|| panic!("header {name} missing in:\n{text}"))
}

/// Checks one captured exchange set against the spec's field numbers (§2).
fn check_spec_fields(dir: &Path) {
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()));
    let b64 = base64::engine::general_purpose::STANDARD;
    // OrchestratorRequest: 1 address (20 bytes), 2 sig (65), 3 capabilities.
    let req = read("get_orchestrator_request.bin");
    let req = grpc_message(&req);
    assert_eq!(fields(req), vec![(1, 2), (2, 2), (3, 2)]);
    // OrchestratorInfo: transcoder, ticket_params, price_info, address, capabilities, auth_token.
    let resp = read("get_orchestrator_response.bin");
    let info = field_set(grpc_message(&resp));
    for f in [(1, 2), (2, 2), (3, 2), (4, 2), (5, 2), (6, 2)] {
        assert!(info.contains(&f), "OrchestratorInfo lacks field {f:?}: {info:?}");
    }
    // /segment: SegData in Livepeer-Segment, Payment in Livepeer-Payment.
    let head = String::from_utf8(read("segment_request_headers.txt")).unwrap();
    let first = head.lines().next().unwrap();
    assert!(first.starts_with("POST ") && first.contains("/segment "), "{head}");
    assert_eq!(header(&head, "content-type"), "video/MP2T");
    let sd = b64.decode(header(&head, "livepeer-segment")).unwrap();
    // manifestId, seq, hash, profiles ("invalid"), sig, duration, capabilities, auth_token,
    // fullProfiles (33) once per profile.
    assert_eq!(fields(&sd), vec![(1, 2), (2, 0), (3, 2), (4, 2), (5, 2), (6, 0), (7, 2), (8, 2), (33, 2), (33, 2)]);
    let pay = b64.decode(header(&head, "livepeer-payment")).unwrap();
    // ticket_params, sender, expiration_params, ticket_sender_params (one per ticket), expected_price.
    let pf = field_set(&pay);
    assert_eq!(pf, [(1, 2), (2, 2), (3, 2), (4, 2), (5, 2)].into_iter().collect());
    // TranscodeResult: seq, data, info.
    let result = read("segment_response.bin");
    assert_eq!(fields(&result), vec![(1, 0), (3, 2), (16, 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_exchange_matches_spec_and_fixture() {
    let capture = std::env::temp_dir().join(format!("sluice-capture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&capture);
    let orch = paid_orchestrator(&["--transcoder", "echo", "--capture-dir", capture.to_str().unwrap()]).await;
    let gw = paid_gateway(&orch).await;
    // clip.flv, 640x360: the default 240p and 360p renditions are both at or below it.
    ffmpeg_publish(&testdata("clip.flv"), &rtmp_url(&gw, "wire"), false).await;
    wait_ended(&gw, "wire").await;
    poll_http(&gw, "/stream/wire/P240p30fps16x9.m3u8", 20, |p| p.contains("#EXT-X-ENDLIST")).await;
    gw.shutdown().await;

    // Pick the first GetOrchestrator and the segment with seq 1 (seq 0 is omitted on the
    // wire as a proto3 default).
    let mut files: Vec<PathBuf> = std::fs::read_dir(&capture).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let find = |suffix: &str, want: &dyn Fn(&Path) -> bool| -> PathBuf {
        files
            .iter()
            .find(|p| p.to_string_lossy().ends_with(suffix) && want(p))
            .cloned()
            .unwrap_or_else(|| panic!("no {suffix} in {files:?}"))
    };
    let fresh = capture.join("fixture");
    std::fs::create_dir_all(&fresh).unwrap();
    let go = find("get_orchestrator.request.bin", &|_| true);
    let prefix = go.to_string_lossy().trim_end_matches(".request.bin").to_owned();
    std::fs::copy(&go, fresh.join("get_orchestrator_request.bin")).unwrap();
    std::fs::copy(format!("{prefix}.response.bin"), fresh.join("get_orchestrator_response.bin")).unwrap();
    let seg_head = find("segment.request-headers.txt", &|p| {
        let text = std::fs::read_to_string(p).unwrap();
        let sd = base64::engine::general_purpose::STANDARD.decode(header(&text, "livepeer-segment")).unwrap();
        fields(&sd).contains(&(2, 0))
    });
    let prefix = seg_head.to_string_lossy().trim_end_matches(".request-headers.txt").to_owned();
    std::fs::copy(&seg_head, fresh.join("segment_request_headers.txt")).unwrap();
    std::fs::copy(format!("{prefix}.response.bin"), fresh.join("segment_response.bin")).unwrap();

    check_spec_fields(&fresh);
    let fixture = testdata("wire");
    let names = [
        "get_orchestrator_request.bin",
        "get_orchestrator_response.bin",
        "segment_request_headers.txt",
        "segment_response.bin",
    ];
    if std::env::var_os("SLUICE_UPDATE_FIXTURES").is_some() {
        for n in names {
            std::fs::copy(fresh.join(n), fixture.join(n)).unwrap();
        }
    }
    // The kept fixture still passes the spec check, and today's exchange has its shape.
    check_spec_fields(&fixture);
    let shape = |dir: &Path| {
        let head = std::fs::read_to_string(dir.join("segment_request_headers.txt")).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let go = std::fs::read(dir.join("get_orchestrator_request.bin")).unwrap();
        (
            field_set(grpc_message(&go)),
            field_set(&b64.decode(header(&head, "livepeer-segment")).unwrap()),
            field_set(&b64.decode(header(&head, "livepeer-payment")).unwrap()),
        )
    };
    assert_eq!(shape(&fresh), shape(&fixture), "the gateway's messages changed shape since the fixture was captured");
    let _ = std::fs::remove_dir_all(&capture);
}
