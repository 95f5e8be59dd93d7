//! Trickle interop with Livepeer's Python clients, installed by `scripts/setup.sh`: the
//! official SDK (`livepeer-gateway` 1.0.0, `TricklePublisher` and `TrickleSubscriber`) in
//! both directions through the gateway's `/ai/trickle/`, byte-equal per segment; a late
//! SDK subscriber catching up after the segments it asked for left the ring; and
//! `pytrickle` 0.1.6, including the back-to-back publishing that sends several POSTs to
//! one seq; and the SDK's live video-to-video client running a job on `sluice
//! orchestrator` (`interop/lv2v_sdk.py`).

mod common;
use common::{OrchestratorProcess, python};

use std::time::Duration;

use bytes::Bytes;
use engine::Gateway;
use sha2::{Digest, Sha256};
use tokio::process::Command;
use transport::tls::CertPolicy;
use transport::trickle_client::{TrickleClient, TricklePublisher, TrickleSubscriber};

/// What the SDK script writes as segment `i` (see `interop/trickle_sdk.py`).
fn pattern(i: u64) -> Vec<u8> {
    let n = 40_000 + 777 * i as usize;
    (0..n).map(|k| ((i as usize * 31 + k * 7) % 251) as u8).collect()
}

fn sdk(args: &[&str]) -> Command {
    let mut c = Command::new(python());
    c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/trickle_sdk.py")).args(args);
    c.kill_on_drop(true);
    c
}

/// Segments an SDK subscriber printed: (seq, len, sha256 hex).
fn parse_lines(out: &[u8]) -> Vec<(u64, usize, String)> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            (v["seq"].as_u64().unwrap(), v["len"].as_u64().unwrap() as usize, v["sha256"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// Follows `url` with Sluice's subscriber until the channel ends: (seq, bytes) per segment.
async fn follow(url: String) -> Vec<(u64, Vec<u8>)> {
    let mut sub = TrickleSubscriber::new(TrickleClient::new(CertPolicy::AcceptAny), &url, -1);
    let mut got = Vec::new();
    while let Some(mut seg) = sub.next_segment().await.unwrap() {
        let mut body = Vec::new();
        while let Some(c) = seg.chunk().await.unwrap() {
            body.extend_from_slice(&c);
        }
        got.push((seg.seq, body));
    }
    got
}

async fn gateway_with_channel(name: &str) -> (Gateway, String) {
    let gw = common::gateway().await;
    gw.trickle().create(name, "video/MP2T").unwrap();
    let url = format!("http://{}/ai/trickle/{name}", gw.http_addr);
    (gw, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_publisher_to_sluice_subscriber() {
    let (gw, url) = gateway_with_channel("sdk-in").await;
    let reader = tokio::spawn(follow(url.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = sdk(&["publish", &url, "6"]).output().await.unwrap();
    assert!(out.status.success(), "SDK publisher: {}", String::from_utf8_lossy(&out.stderr));
    let got = tokio::time::timeout(Duration::from_secs(20), reader).await.expect("subscriber ends").unwrap();
    let data: Vec<_> = got.iter().filter(|(_, b)| !b.is_empty()).collect();
    assert_eq!(data.len(), 6, "six segments: {:?}", got.iter().map(|(s, b)| (s, b.len())).collect::<Vec<_>>());
    for (i, (seq, body)) in data.iter().enumerate() {
        assert_eq!(*seq, i as u64);
        assert!(*body == pattern(i as u64), "segment {seq} differs");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sluice_publisher_to_sdk_subscriber() {
    let (gw, url) = gateway_with_channel("sdk-out").await;
    let sub = sdk(&["subscribe", &url, "-1"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut publisher = TricklePublisher::start(TrickleClient::new(CertPolicy::AcceptAny), &url).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..5u64 {
        let body = pattern(i + 10);
        let mut w = publisher.segment();
        // Streamed in pieces, as an encoder produces them.
        for part in body.chunks(9000) {
            w.write(Bytes::copy_from_slice(part)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        w.finish().await.unwrap();
        sent.push(body);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    publisher.close().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), sub.wait_with_output()).await.expect("SDK ends").unwrap();
    let got: Vec<_> = parse_lines(&out.stdout).into_iter().filter(|(_, len, _)| *len > 0).collect();
    assert_eq!(got.len(), 5, "{got:?}");
    for (i, (seq, len, digest)) in got.iter().enumerate() {
        assert_eq!((*seq, *len), (i as u64, sent[i].len()));
        assert_eq!(digest, &sha(&sent[i]), "segment {seq} byte-equal");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn late_sdk_subscriber_catches_up_after_470() {
    let (gw, url) = gateway_with_channel("late").await;
    let mut publisher = TricklePublisher::start(TrickleClient::new(CertPolicy::AcceptAny), &url).await.unwrap();
    for i in 0..8u64 {
        let mut w = publisher.segment();
        w.write(Bytes::from(pattern(i))).await.unwrap();
        w.finish().await.unwrap();
    }
    // Asks for segment 0, long gone from the ring of five: it must land on what exists.
    let sub = sdk(&["subscribe", &url, "0"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 8..10u64 {
        let mut w = publisher.segment();
        w.write(Bytes::from(pattern(i))).await.unwrap();
        w.finish().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    publisher.close().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), sub.wait_with_output()).await.expect("SDK ends").unwrap();
    let got: Vec<_> = parse_lines(&out.stdout).into_iter().filter(|(_, len, _)| *len > 0).collect();
    assert!(!got.is_empty(), "the late subscriber got nothing");
    assert!(got[0].0 >= 3, "it started inside the ring, not at 0: {got:?}");
    for (seq, len, digest) in &got {
        assert_eq!((*len, digest.as_str()), (pattern(*seq).len(), sha(&pattern(*seq)).as_str()), "segment {seq}");
    }
    assert_eq!(got.last().unwrap().0, 9, "and followed to the end: {got:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pytrickle_publisher_paced_and_back_to_back() {
    // Paced: one POST per segment, each byte-equal.
    let (gw, url) = gateway_with_channel("pt").await;
    let reader = tokio::spawn(follow(url.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = sdk(&["pt-publish", &url, "4", "200"]).output().await.unwrap();
    assert!(out.status.success(), "pytrickle: {}", String::from_utf8_lossy(&out.stderr));
    // pytrickle never DELETEs its channel; the owner ends it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.trickle().delete("pt").unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), reader).await.expect("ends").unwrap();
    let data: Vec<_> = got.iter().filter(|(_, b)| !b.is_empty()).collect();
    assert_eq!(data.len(), 4, "{:?}", got.iter().map(|(s, b)| (s, b.len())).collect::<Vec<_>>());
    for (i, (seq, body)) in data.iter().enumerate() {
        assert_eq!((*seq, body.len()), (i as u64, pattern(i as u64).len()));
        assert!(*body == pattern(i as u64), "segment {seq} differs");
    }
    // Back to back: segments share seqs (repeated POSTs append), and nothing is lost or
    // reordered in the bytes the channel carries.
    gw.trickle().create("pt2", "video/MP2T").unwrap();
    let url2 = url.replace("/pt", "/pt2");
    let reader = tokio::spawn(follow(url2.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = sdk(&["pt-publish", &url2, "4", "0"]).output().await.unwrap();
    assert!(out.status.success(), "pytrickle: {}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.trickle().delete("pt2").unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), reader).await.expect("ends").unwrap();
    let all: Vec<u8> = got.iter().flat_map(|(_, b)| b.clone()).collect();
    let want: Vec<u8> = (0..4).flat_map(pattern).collect();
    assert_eq!(all.len(), want.len(), "seqs: {:?}", got.iter().map(|(s, b)| (s, b.len())).collect::<Vec<_>>());
    assert!(all == want, "the channel's bytes in order");
    gw.shutdown().await;
}

/// The official Python SDK's live video-to-video client against `sluice orchestrator`:
/// `start_lv2v` (gRPC over TLS, off-chain credentials, `POST /live-video-to-video`), its
/// `MediaPublish` encoder into the input channel, `MediaOutput` decoding the processed
/// frames, `Control` switching the effect, `Events` and its payment sender
/// (`POST /payment`). Every frame comes back; negated, then plain after the switch.
#[tokio::test]
async fn sdk_live_video_to_video_job_against_sluice_orchestrator() {
    if !python().exists() {
        eprintln!("skipped: {} missing (scripts/setup.sh installs it)", python().display());
        return;
    }
    let orch = OrchestratorProcess::start(&["--transcoder", "echo"]).await;
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lv2v_sdk.py"))
        .args([orch.uri.as_str(), "negate"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await.expect("SDK client finishes").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|_| panic!("a JSON line; stderr:\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{v}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    assert!(v["frames_in"].as_u64().unwrap() >= 150 && v["frames_out"] == v["frames_in"], "{v}");
    assert!(v["luma_out_first"][0].as_f64().unwrap() > 180.0, "negated first: {v}");
    assert!(v["luma_out_last"][0].as_f64().unwrap() < 75.0, "plain after the switch: {v}");
    assert_eq!(v["status_event"]["event"]["inference_status"]["last_params"]["effect"], "noop");
    assert!(v["payments"].as_u64().unwrap() >= 1);
    assert!(orch.status().await["live_payments"].as_u64().unwrap() >= 1, "the orchestrator counted the payment");
}

/// The same SDK client paying through `sluice signer` on a paid orchestrator: the SDK's
/// own remote-signer path signs the orchestrator-info request, the start payment and each
/// periodic payment (482 skips when the credit covers a cycle); the orchestrator counts
/// the tickets.
#[tokio::test]
async fn sdk_live_job_paid_through_sluice_signer() {
    if !python().exists() {
        eprintln!("skipped: {} missing (scripts/setup.sh installs it)", python().display());
        return;
    }
    let (signer_url, mut signer) = common::start_signer("sdk-signer", &format!("{:064x}", 4343)).await;
    let orch_key = common::key_file("sdk-signer-orch", &format!("{:064x}", 778));
    // A price at which the 5 s payment cycles need tickets (at 1 wei/pixel one ticket
    // covers minutes and every cycle is a 482 skip).
    let orch = OrchestratorProcess::start_paid(&orch_key, &["--transcoder", "echo", "--price-per-unit", "100"]).await;
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lv2v_sdk.py"))
        .args([orch.uri.as_str(), "negate", signer_url.as_str()])
        .env("LV2V_SECONDS", "12")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), out).await.expect("SDK client finishes").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("a JSON line; stderr:\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{v}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    assert_eq!(v["frames_out"], v["frames_in"], "{v}");
    assert!(v["signer_payments"].as_u64().unwrap() >= 2, "start and periodic payments signed: {v}");
    assert!(v["orch_status"]["tickets_received"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["orch_status"]["rejected"], serde_json::json!({}), "nothing refused: {v}");
    let _ = signer.kill().await;
}
