//! The live AI admission and refusal paths, end to end against a real `sluice
//! orchestrator`:
//! - the auth webhook (go-livepeer's `-liveAIAuthWebhookUrl` contract), served here by a
//!   plain HTTP server that records what it is asked: it admits one RTMP stream and
//!   overrides its pipeline, and refuses another, whose publisher is disconnected;
//! - the media-server hook `POST /live/video-to-video/{stream}/start`, called with curl
//!   as MediaMTX's `runOnReady` does: the gateway pulls the stream from an RTMP server
//!   (ffmpeg listening) and processes it; bad forms get go-livepeer's 400s, and a
//!   webhook refusal a 403;
//! - payments the orchestrator refuses end the stream with a clear status;
//! - an HTTPS webhook must have a publicly trusted certificate.
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A 512x512 30 fps test picture with AAC, 1 s GOPs, in real time, to `url` (`extra`
/// flags before the URL, e.g. `-listen 1` to serve it).
fn source(url: &str, secs: u32, extra: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=512x512:rate=30:duration={secs}"))
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:duration={secs}")])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0", "-g", "30"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv"])
        .args(extra)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg starts")
}

type Seen = Arc<Mutex<Vec<(axum::http::HeaderMap, serde_json::Value)>>>;

/// The webhook: `denied` (or a query with `token=bad`) gets 403, `ok` an override,
/// anything else `{}`.
async fn webhook() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/auth",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                record.lock().unwrap().push((headers, v.clone()));
                let bad_token = v["query_params"].as_str().is_some_and(|q| q.contains("token=bad"));
                match v["stream"].as_str() {
                    _ if bad_token => (axum::http::StatusCode::FORBIDDEN, "bad token".to_owned()),
                    Some("denied") => (axum::http::StatusCode::FORBIDDEN, "no such key".to_owned()),
                    Some("ok") => (
                        axum::http::StatusCode::OK,
                        r#"{"pipeline": "negate", "pipeline_id": "p-1", "pipeline_parameters": {"effect": "hue"}}"#
                            .to_owned(),
                    ),
                    _ => (axum::http::StatusCode::OK, "{}".to_owned()),
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/auth", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, seen)
}

/// `curl -sS -F k=v … URL`: the status and body.
async fn curl_form(url: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}"]);
    for (k, v) in fields {
        cmd.arg("-F").arg(format!("{k}={v}"));
    }
    let out = cmd.arg(url).output().await.expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

async fn poll_until<F, Fut>(secs: u64, what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_webhook_and_the_media_server_hook() {
    if !have("ffmpeg", "-version") || !have("gst-inspect-1.0", "--version") || !have("curl", "--version") {
        eprintln!("skipped: ffmpeg, GStreamer or curl missing (scripts/setup.sh installs them)");
        return;
    }
    let (hook_url, seen) = webhook().await;
    let orch = OrchestratorProcess::start(&["--transcoder", "echo"]).await;
    let gw = gateway_with(|c| {
        c.orchestrators.orch_addr = orch.uri.clone();
        c.live.live_auth_webhook_url = Some(hook_url.clone());
        c.live.live_auth_api_key = Some("k3y".into());
    })
    .await;
    poll_until(20, "discovery", || async { http_get(gw.cli_addr, "/orchestrators").await.text().contains("negate") })
        .await;
    let status = |id: &'static str| {
        let addr = gw.http_addr;
        async move {
            let r = http_get(addr, &format!("/live/video-to-video/{id}/status")).await;
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap_or_default()
        }
    };

    // Admitted, with the webhook's pipeline and params instead of the query's.
    let mut ok = source(&format!("{}?pipeline=noop&params=%7B%7D", rtmp_url(&gw, "ok")), 8, &[]);
    poll_until(15, "the admitted stream runs", || async {
        let s = status("ok").await;
        s["gateway_status"]["state"] == "running" && s["gateway_status"]["output_segments"].as_u64() >= Some(1)
    })
    .await;
    let s = status("ok").await;
    assert_eq!(s["gateway_status"]["pipeline"], "negate", "{s}");
    assert_eq!(s["gateway_status"]["pipeline_id"], "p-1", "{s}");
    {
        let seen = seen.lock().unwrap();
        let (headers, asked) = seen.iter().find(|(_, v)| v["stream"] == "ok").expect("the webhook was asked");
        assert_eq!(headers["x-api-key"], "k3y");
        assert_eq!(headers["authorization"], "k3y");
        assert_eq!(asked["stream_key"], "ok");
        assert_eq!(asked["type"], "rtmp");
        assert!(asked["query_params"].as_str().unwrap().contains("pipeline=noop"), "{asked}");
        assert_eq!(asked["gateway_host"], gw.http_addr.to_string());
        assert_eq!(asked["update_url"], format!("http://{}/live/video-to-video/ok/update", gw.http_addr));
        assert_eq!(asked["status_url"], format!("http://{}/live/video-to-video/ok/status", gw.http_addr));
    }

    // A publisher taking the running stream over is asked about too: refused, it is
    // disconnected and the stream's AI side ends.
    let mut intruder = source(&format!("{}?pipeline=negate&token=bad", rtmp_url(&gw, "ok")), 20, &[]);
    let exit = tokio::time::timeout(Duration::from_secs(10), intruder.wait()).await.expect("intruder disconnected");
    assert!(!exit.unwrap().success());
    let s = status("ok").await;
    assert_eq!(s["gateway_status"]["state"], "ended", "{s}");
    assert!(s["gateway_status"]["error"].as_str().unwrap_or_default().contains("bad token"), "{s}");

    // Refused: the publisher is disconnected and the status says why.
    let mut denied = source(&format!("{}?pipeline=negate", rtmp_url(&gw, "denied")), 20, &[]);
    let exit = tokio::time::timeout(Duration::from_secs(10), denied.wait()).await.expect("publisher disconnected");
    assert!(!exit.unwrap().success());
    let s = status("denied").await;
    assert_eq!(s["gateway_status"]["state"], "ended", "{s}");
    let why = s["gateway_status"]["error"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("refused") && why.contains("403") && why.contains("no such key"), "{why}");
    let asked = seen.lock().unwrap().iter().filter(|(_, v)| v["stream"] == "denied").count();
    assert_eq!(asked, 1, "the refused publisher's remaining input asks nothing more");
    let _ = ok.wait().await;

    // The media-server hook: the gateway pulls the stream from an RTMP server.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let src_url = format!("rtmp://127.0.0.1:{port}/live/src");
    let mut served = source(&src_url, 8, &["-listen", "1"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = |id: &str| format!("http://{}/live/video-to-video/{id}/start", gw.http_addr);
    let (code, body) = curl_form(
        &start("pulled"),
        &[("source_id", "conn-7"), ("source_type", "rtmpConn"), ("query", "pipeline=negate"), ("rtmp_url", &src_url)],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["stream_id"], "pulled");
    poll_until(15, "the pulled stream is processed", || async {
        let s = status("pulled").await;
        s["gateway_status"]["state"] == "running" && s["gateway_status"]["output_segments"].as_u64() >= Some(2)
    })
    .await;
    let pl = http_get(gw.http_addr, "/stream/pulled-out/source.m3u8").await;
    assert_eq!(pl.status, 200);
    assert!(!media_playlist(&pl.body).segments.is_empty());
    assert!(seen.lock().unwrap().iter().any(|(_, v)| v["stream"] == "pulled" && v["type"] == "rtmp"));
    // A second hook for a stream that exists does not take it over.
    let (code, body) =
        curl_form(&start("pulled"), &[("source_id", "c2"), ("source_type", "rtmpconn"), ("rtmp_url", &src_url)]).await;
    assert_eq!(code, 409, "{body}");

    // go-livepeer's refusals, and a processed output ignored.
    let form = |extra: &'static [(&'static str, &'static str)]| {
        let mut f = vec![("source_id", "c"), ("source_type", "rtmpconn")];
        f.extend_from_slice(extra);
        f
    };
    let (code, body) = curl_form(&start("x"), &[("source_type", "rtmpconn")]).await;
    assert_eq!((code, body.contains("Missing source_id")), (400, true), "{body}");
    let (code, body) = curl_form(&start("x"), &[("source_id", "c"), ("source_type", "srtConn")]).await;
    assert_eq!((code, body.contains("unknown media source")), (400, true), "{body}");
    let (code, body) = curl_form(&start("x"), &form(&[("query", "pipeline=negate&params=%7Bnope")])).await;
    assert_eq!((code, body.contains("Invalid model params")), (400, true), "{body}");
    let (code, _) = curl_form(&start("x-out"), &form(&[("query", "pipeline=negate")])).await;
    assert_eq!(code, 200);
    assert!(http_get(gw.http_addr, "/live/video-to-video/x-out/status").await.status == 404, "nothing started");
    let (code, body) = curl_form(&start("fresh"), &form(&[("query", "pipeline=negate&token=bad")])).await;
    assert_eq!((code, body.contains("Forbidden")), (403, true), "{body}");
    // Only RTMP is pulled (no files, no other protocols), and never for a web page.
    let (code, body) = curl_form(&start("x"), &form(&[("rtmp_url", "file:///etc/passwd")])).await;
    assert_eq!((code, body.contains("rtmp://")), (400, true), "{body}");
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Origin: https://example.com"])
        .args(["-F", "source_id=c", "-F", "source_type=rtmpconn", &start("x")])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    // A prefixed path (the stream is `gone`; the prefix is where the media server has
    // it), URL-encoded form, pulling from nowhere: accepted, then the stream ends when
    // ffmpeg cannot connect; the gateway carries on.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--data-urlencode", "source_id=c", "--data-urlencode", "source_type=rtmpconn"])
        .args(["--data-urlencode", "query=pipeline=negate", "--data-urlencode", "rtmp_url=rtmp://127.0.0.1:1/none"])
        .arg(format!("http://{}/live/video-to-video/app/gone/start", gw.http_addr))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    poll_until(15, "the unreachable pull ends", || async {
        status("gone").await["gateway_status"]["state"] == "ended"
    })
    .await;
    assert!(seen.lock().unwrap().iter().any(|(_, v)| v["stream"] == "gone"), "asked about the stream it made");
    assert!(status("pulled").await["gateway_status"]["state"] == "running");
    let _ = served.wait().await;
    drop(orch);
}

/// A priced orchestrator that refuses every live payment: after three refusals in a row
/// the gateway gives it up for the stream, and with no other orchestrator the stream
/// ends with a status saying so and its publisher is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_payments_end_the_stream_with_a_clear_status() {
    if !have("ffmpeg", "-version") || !have("gst-inspect-1.0", "--version") {
        eprintln!("skipped: ffmpeg or GStreamer missing (scripts/setup.sh installs them)");
        return;
    }
    let orch_key = key_file("live-refuse-orch", &format!("{:064x}", 981));
    let gw_key = key_file("live-refuse-gw", &format!("{:064x}", 982));
    let orch = OrchestratorProcess::start_paid(
        &orch_key,
        &["--transcoder", "echo", "--price-per-unit", "100", "--allow-faults"],
    )
    .await;
    let gw = gateway_with(|c| {
        c.orchestrators.orch_addr = orch.uri.clone();
        c.payment.network = "arbitrum-one-mainnet".into();
        c.payment.eth_key_file = Some(gw_key);
    })
    .await;
    poll_until(20, "discovery", || async { http_get(gw.cli_addr, "/orchestrators").await.text().contains("negate") })
        .await;
    orch.fault(r#"{"mode":"refuse_payments"}"#).await;
    let started = Instant::now();
    let mut ff = source(&format!("{}?pipeline=negate", rtmp_url(&gw, "unpaid")), 60, &[]);
    let exit = tokio::time::timeout(Duration::from_secs(40), ff.wait()).await.expect("publisher disconnected");
    assert!(!exit.unwrap().success());
    // Three 5 s payment cycles, then the end: well before the input's 60 s.
    assert!(started.elapsed() < Duration::from_secs(40));
    let r = http_get(gw.http_addr, "/live/video-to-video/unpaid/status").await;
    let s: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(s["gateway_status"]["state"], "ended", "{s}");
    let why = s["gateway_status"]["error"].as_str().unwrap_or_default();
    assert!(why.contains("refused the stream's payments"), "{s}");
    assert!(s["gateway_status"]["output_segments"].as_u64() >= Some(5), "it ran until then: {s}");
    let m = http_get(gw.cli_addr, "/metrics").await.text();
    let failures = m.lines().find_map(|l| l.strip_prefix("sluice_live_payment_failures_total ")).unwrap_or("0");
    assert!(failures.trim().parse::<u64>().unwrap() >= 3, "{m}");
}

/// An `https://` webhook must show a certificate a public root vouches for: the
/// orchestrator's self-signed one is refused before anything is sent, while the same
/// server through an accept-any client answers (with something that is no admission).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_needs_a_publicly_trusted_certificate() {
    use engine::live::auth::{AuthError, AuthRequest, AuthWebhook};
    use transport::client::OrchestratorNet;
    use transport::tls::CertPolicy;
    let orch = OrchestratorProcess::start(&["--transcoder", "echo"]).await;
    let hook = AuthWebhook { url: format!("{}/auth", orch.uri), api_key: Some("k".into()) };
    let req = AuthRequest {
        stream: "s".into(),
        stream_key: "s".into(),
        kind: "rtmp".into(),
        query_params: String::new(),
        gateway_host: "gw".into(),
        whep_url: String::new(),
        status_url: String::new(),
        update_url: String::new(),
    };
    let verified = hook.ask(&OrchestratorNet::new(CertPolicy::PublicRoots), &req).await;
    assert!(matches!(verified, Err(AuthError::Unreachable(_))), "{verified:?}");
    let any = hook.ask(&OrchestratorNet::new(CertPolicy::AcceptAny), &req).await;
    assert!(matches!(any, Err(AuthError::Denied { .. } | AuthError::BadReply(_))), "it answered: {any:?}");
}
