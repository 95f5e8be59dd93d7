//! Discovery: orchestrators from a webhook (go-livepeer's JSON shape, with regions), the
//! preferred region winning the selection, and a blocklisted orchestrator never used.
mod common;

use std::time::Duration;

use common::*;

const OTHER_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// A one-route HTTP server answering `body` on 127.0.0.1; returns its URL.
async fn webhook(body: String) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = axum::Router::new().route("/orchestrators", axum::routing::get(move || async move { body.clone() }));
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/orchestrators")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_orchestrators_preferred_region_and_blocklist() {
    let (k1, k2) = (key_file("o1", ORCH_KEY), key_file("o2", OTHER_KEY));
    let paid = |k: &std::path::Path| {
        vec![
            "--transcoder".to_owned(),
            "echo".into(),
            "--network".into(),
            "arbitrum-one-mainnet".into(),
            "--eth-key-file".into(),
            k.to_string_lossy().into_owned(),
        ]
    };
    let (a1, a2, a3) = (paid(&k1), paid(&k2), paid(&k2));
    let us = OrchestratorProcess::start(&a1.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let eu = OrchestratorProcess::start(&a2.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let blocked = OrchestratorProcess::start(&a3.iter().map(String::as_str).collect::<Vec<_>>()).await;
    // The webhook lists all three. `eu` and `blocked` share a key whose address is
    // blocklisted, so although `eu` is in the preferred region, only `us` may be used.
    let list = format!(
        r#"[{{"address":"{}","score":1,"region":"us"}},{{"address":"{}","score":1,"region":"eu"}},{{"address":"{}","region":"eu"}}]"#,
        us.uri, eu.uri, blocked.uri
    );
    let hook = webhook(list).await;
    let other_addr = transport::identity::EthSigner::from_hex(OTHER_KEY).unwrap().address();
    let gkey = key_file("gw", GATEWAY_KEY);
    let gw = gateway_with(|c| {
        c.orchestrators.orch_webhook_url = Some(hook);
        c.payment.network = "arbitrum-one-mainnet".into();
        c.payment.eth_key_file = Some(gkey);
        c.selection.preferred_regions = vec!["eu".into()];
        c.orchestrators.orch_blocklist = vec![format!("0x{}", hex_lower(&other_addr))];
    })
    .await;
    // The webhook is read at start: the three join the pool.
    let mut known = Vec::new();
    for _ in 0..50 {
        known = gw.registry().orchestrators();
        if known.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(known.len(), 3, "{known:?}");
    // clip.flv, 640x360: the default renditions are not above it (short.flv is below them).
    ffmpeg_publish(&testdata("clip.flv"), &rtmp_url(&gw, "hooked"), false).await;
    wait_ended(&gw, "hooked").await;
    poll_http(&gw, "/stream/hooked/P240p30fps16x9.m3u8", 20, |p| p.contains("#EXT-X-ENDLIST")).await;
    let st: serde_json::Value = serde_json::from_slice(&http_get(gw.cli_addr, "/streams/hooked").await.body).unwrap();
    assert_eq!(st["transcode"]["failed"].as_u64(), Some(0), "{st}");
    for r in st["transcode"]["recent"].as_array().unwrap() {
        assert_eq!(r["orchestrator"].as_str(), Some(us.uri.as_str()), "only the unblocked orchestrator: {r}");
    }
    let ranking: serde_json::Value =
        serde_json::from_slice(&http_get(gw.cli_addr, "/orchestrators").await.body).unwrap();
    let by_uri = |u: &str| ranking.as_array().unwrap().iter().find(|o| o["uri"] == u).cloned().unwrap();
    assert_eq!(by_uri(&eu.uri)["region"], "eu");
    assert!(by_uri(&eu.uri)["failures"]["blocklisted"].as_u64().unwrap() >= 1, "{ranking}");
    assert!(by_uri(&blocked.uri)["failures"]["blocklisted"].as_u64().unwrap() >= 1);
    assert!(by_uri(&us.uri)["successes"].as_u64().unwrap() >= 1);
    assert_eq!(ranking[0]["uri"], us.uri.as_str(), "the usable one ranks first: {ranking}");
    gw.shutdown().await;
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_region_wins_among_healthy_orchestrators() {
    let a = OrchestratorProcess::start(&["--transcoder", "echo"]).await;
    let b = OrchestratorProcess::start(&["--transcoder", "echo"]).await;
    let hook =
        webhook(format!(r#"[{{"address":"{}","region":"us"}},{{"address":"{}","region":"eu"}}]"#, a.uri, b.uri)).await;
    let gw = gateway_with(|c| {
        c.orchestrators.orch_webhook_url = Some(hook);
        c.selection.preferred_regions = vec!["eu".into()];
    })
    .await;
    for _ in 0..50 {
        if gw.registry().orchestrators().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..3 {
        let id = format!("r{i}");
        ffmpeg_publish(&testdata("clip.flv"), &rtmp_url(&gw, &id), false).await;
        wait_ended(&gw, &id).await;
        poll_http(&gw, &format!("/stream/{id}/P240p30fps16x9.m3u8"), 20, |p| p.contains("#EXT-X-ENDLIST")).await;
        let st: serde_json::Value =
            serde_json::from_slice(&http_get(gw.cli_addr, &format!("/streams/{id}")).await.body).unwrap();
        for r in st["transcode"]["recent"].as_array().unwrap() {
            assert_eq!(r["orchestrator"].as_str(), Some(b.uri.as_str()), "the eu orchestrator: {r}");
        }
    }
    gw.shutdown().await;
}
