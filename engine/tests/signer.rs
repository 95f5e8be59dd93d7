//! `sluice signer` with a paid `sluice orchestrator`, over plain HTTP and the gateway's own
//! client: the orchestrator-info signature opens a session, the signer's tickets and
//! credentials start a live job and pay for it, and the orchestrator counts the tickets;
//! a forged state is refused.
mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use prost::Message;
use transport::client::OrchestratorNet;
use transport::live::{StartRequest, job_capabilities};
use transport::proto::OrchestratorRequest;
use transport::tls::CertPolicy;

async fn post_json(addr: &str, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let net = OrchestratorNet::new(CertPolicy::AcceptAny);
    let (status, body) =
        net.post_json(&format!("{addr}{path}"), &body.to_string(), Duration::from_secs(5)).await.expect("POST");
    (status.as_u16(), serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test]
async fn a_paid_live_job_started_and_paid_through_the_signer() {
    let (signer_url, mut signer) = start_signer("signer", &format!("{:064x}", 4242)).await;
    let orch_key = key_file("signer-orch", &format!("{:064x}", 777));
    let orch = OrchestratorProcess::start_paid(&orch_key, &["--transcoder", "echo"]).await;

    // The orchestrator-info signature opens a session on the paid orchestrator.
    let (status, sig) = post_json(&signer_url, "/sign-orchestrator-info", &serde_json::json!({})).await;
    assert_eq!(status, 200, "{sig}");
    let address = hex::decode(sig["address"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let signature = hex::decode(sig["signature"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let net = OrchestratorNet::new(CertPolicy::AcceptAny);
    let req = OrchestratorRequest {
        address: address.clone(),
        sig: signature,
        capabilities: Some(job_capabilities("noop")),
        ignore_capacity_check: true,
    };
    let info = net.get_orchestrator(&orch.uri, req).await.expect("the signer's signature is accepted");
    assert!(info.ticket_params.is_some() && info.price_info.is_some(), "a paid quote");
    let b64_info = STANDARD.encode(info.encode_to_vec());

    // The first payment (60 s of 720p30) starts the job.
    let (status, pay) = post_json(
        &signer_url,
        "/generate-live-payment",
        &serde_json::json!({"orchestrator": b64_info, "type": "lv2v"}),
    )
    .await;
    assert_eq!(status, 200, "{pay}");
    let start = StartRequest { model_id: "noop".into(), stream_id: "s".into(), ..Default::default() };
    let reply = net
        .start_live(
            &info.transcoder,
            pay["segCreds"].as_str().unwrap(),
            pay["payment"].as_str().unwrap(),
            &start,
            Duration::from_secs(5),
        )
        .await
        .expect("the paid orchestrator takes the signer's tickets and credentials");

    // The next calls carry the state; the first ticket's value covers a while (482), and
    // a payment that is due goes to /payment.
    let next = serde_json::json!({
        "orchestrator": b64_info, "type": "lv2v", "ManifestID": reply.manifest_id, "state": pay["state"],
    });
    let (status, again) = post_json(&signer_url, "/generate-live-payment", &next).await;
    match status {
        482 => assert!(again["error"]["message"].as_str().is_some()),
        200 => {
            net.live_payment(
                &info.transcoder,
                again["segCreds"].as_str().unwrap(),
                again["payment"].as_str().unwrap(),
                Duration::from_secs(5),
            )
            .await
            .expect("payment accepted");
        }
        other => panic!("unexpected {other}: {again}"),
    }
    // A state someone else made is refused.
    let mut forged = next.clone();
    forged["state"]["Sig"] = serde_json::json!(STANDARD.encode([7u8; 65]));
    assert_eq!(post_json(&signer_url, "/generate-live-payment", &forged).await.0, 400);
    // The orchestrator counted the signer's tickets.
    let st = orch.status().await;
    assert!(st["tickets_received"].as_u64().unwrap() >= 1, "{st}");
    let _ = signer.kill().await;
}
