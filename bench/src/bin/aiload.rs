//! What the gateway adds to an AI job: one in-process gateway in front of one in-process
//! orchestrator whose text-to-image answers at once (`ai_instant`) and whose LLM is the
//! echo model, both over real sockets (TLS to the orchestrator, as go-livepeer).
//!
//!   cargo run --release -p bench --bin aiload -- --requests 2000 --clients 32 --seconds 10
//!
//! 1. Latency, one client, `--requests` text-to-image jobs: through the gateway (job,
//!    result download into its store, JSON answer), and the same two exchanges made
//!    straight to the orchestrator with the same credentials. The gateway's share is the
//!    difference, at p50 and p99.
//! 2. Time to the first LLM token (`stream: true`), through the gateway and direct.
//! 3. Throughput: `--clients` concurrent clients for `--seconds`: text-to-image jobs per
//!    second through one gateway, with the gateway's and the orchestrator's CPU.
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::{Gateway, GatewayConfig};
use http_body_util::Full;
use transport::ai::Pipeline;
use transport::client::OrchestratorNet;

const HELP: &str = "\
aiload [--requests N] [--clients C] [--seconds S]
Gateway-added latency of text-to-image jobs (p50/p99, vs. the orchestrator direct), time to
the first LLM token, and jobs per second under C concurrent clients.
  --requests N  sequential jobs per latency run (default 2000)
  --clients C   concurrent clients of the throughput run (default 32)
  --seconds S   length of the throughput run (default 10)";

const T2I: &str = r#"{"prompt":"bench","model_id":"stabilityai/sdxl-turbo","width":64,"height":64}"#;
const LLM: &str =
    r#"{"model":"echo","messages":[{"role":"user","content":"one two three four"}],"stream":true,"max_tokens":16}"#;

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN)
}

fn post(url: &str, body: &'static str, headers: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
    let mut r = http::Request::post(url).header(http::header::CONTENT_TYPE, "application/json");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(Bytes::from_static(body.as_bytes()))).expect("request")
}

/// Sends, reads the whole body, returns it (checking 200).
async fn exchange(net: &OrchestratorNet, req: http::Request<Full<Bytes>>) -> anyhow::Result<Bytes> {
    let resp = net.send(req, Duration::from_secs(10)).await?;
    let status = resp.status();
    let body = OrchestratorNet::read_body(resp.into_body(), 1 << 24, Duration::from_secs(10)).await?;
    anyhow::ensure!(status == 200, "HTTP {status}: {}", String::from_utf8_lossy(&body));
    Ok(body)
}

/// Sends and waits for the first body frame; returns the time to it.
async fn first_frame(net: &OrchestratorNet, req: http::Request<Full<Bytes>>) -> anyhow::Result<Duration> {
    use http_body_util::BodyExt;
    let t = Instant::now();
    let resp = net.send(req, Duration::from_secs(10)).await?;
    anyhow::ensure!(resp.status() == 200, "HTTP {}", resp.status());
    let mut body = resp.into_body();
    let first = t.elapsed().max(Duration::ZERO);
    let took = loop {
        match body.frame().await {
            Some(Ok(f)) if f.data_ref().is_some_and(|d| !d.is_empty()) => break t.elapsed(),
            Some(Ok(_)) => continue,
            Some(Err(e)) => anyhow::bail!("body: {e}"),
            None => break first,
        }
    };
    while body.frame().await.is_some() {}
    Ok(took)
}

fn main() -> anyhow::Result<()> {
    let (mut requests, mut clients, mut seconds) = (2000u64, 32u64, 10u64);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |flag: &str| bench::number_arg(&mut it, flag);
        match flag.as_str() {
            "--requests" => requests = num("--requests")?,
            "--clients" => clients = num("--clients")?,
            "--seconds" => seconds = num("--seconds")?,
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let orch_rt = bench::named_runtime("orchestrator", 1);
    let gw_rt = bench::named_runtime("gateway", 2);
    let client_rt = bench::named_runtime("client", 1);
    let orch = orch_rt.block_on(async {
        let mut cfg = orchestrator::service::OrchestratorConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            std::sync::Arc::new(orchestrator::transcode::EchoTranscoder),
        );
        cfg.ai_models = orchestrator::ai::AiModel::cpu_defaults(10_000);
        cfg.ai_instant = true;
        orchestrator::service::start(cfg).await
    })?;
    let orch_uri = orch.service_uri.clone();
    let gw = gw_rt.block_on(async {
        let any = "127.0.0.1:0".parse().unwrap();
        let mut c = GatewayConfig::default();
        c.listen.rtmp_addr = any;
        c.listen.http_addr = any;
        c.listen.cli_addr = any;
        c.orchestrators.orch_addr = orch_uri.clone();
        Gateway::start(c).await
    })?;
    let gw_url = format!("http://{}", gw.http_addr);
    let result = client_rt.block_on(async move {
        let net = OrchestratorNet::new(transport::tls::CertPolicy::AcceptAny);
        // Credentials for the direct runs, as the gateway gets them.
        let caps = transport::ai::job_capabilities(Pipeline::TextToImage, "stabilityai/sdxl-turbo", "");
        let info = net
            .get_orchestrator(&orch_uri, transport::proto::OrchestratorRequest { address: vec![0; 20], capabilities: Some(caps.clone()), ..Default::default() })
            .await?;
        let seg = |p: Pipeline, model: &str| {
            let caps = transport::ai::job_capabilities(p, model, "");
            transport::segment::segment_header(&transport::ai::seg_data(p, model, &caps, info.auth_token.as_ref(), None))
        };
        let (t2i_seg, llm_seg) = (seg(Pipeline::TextToImage, "stabilityai/sdxl-turbo"), seg(Pipeline::Llm, "echo"));
        let direct_headers = |s: &str| {
            vec![("Livepeer-Segment", s.to_owned()), ("Livepeer-Payment", String::new()), ("Authorization", "Livepeer-AI-Worker-1.0".to_owned())]
        };
        let as_refs = |v: &Vec<(&'static str, String)>| v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
        // Warm both paths (discovery, connections).
        for _ in 0..20 {
            exchange(&net, post(&format!("{gw_url}/text-to-image"), T2I, &[])).await?;
            first_frame(&net, post(&format!("{gw_url}/llm"), LLM, &[])).await?;
        }
        println!("aiload: gateway {gw_url} -> orchestrator {orch_uri} (TLS), {requests} sequential jobs per run");

        let (mut via, mut direct) = (Vec::new(), Vec::new());
        let dh = direct_headers(&t2i_seg);
        for i in 0..requests * 2 {
            let t = Instant::now();
            if i % 2 == 0 {
                exchange(&net, post(&format!("{gw_url}/text-to-image"), T2I, &[])).await?;
                via.push(t.elapsed().as_secs_f64() * 1000.0);
            } else {
                let h = as_refs(&dh);
                let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let body = exchange(&net, post(&format!("{orch_uri}/text-to-image"), T2I, &h)).await?;
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                let url = v["images"][0]["url"].as_str().unwrap_or_default().to_owned();
                net.download(&url, Duration::from_secs(5)).await?;
                direct.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let (v50, v99, d50, d99) = (pct(&mut via, 0.5), pct(&mut via, 0.99), pct(&mut direct, 0.5), pct(&mut direct, 0.99));
        println!(
            "aiload: text-to-image via gateway p50 {v50:.3} ms p99 {v99:.3} ms; direct (job + result download) p50 {d50:.3} ms p99 {d99:.3} ms; gateway adds p50 {:.3} ms p99 {:.3} ms",
            v50 - d50,
            v99 - d99
        );

        let (mut via, mut direct) = (Vec::new(), Vec::new());
        let lh = direct_headers(&llm_seg);
        for i in 0..requests * 2 {
            if i % 2 == 0 {
                via.push(first_frame(&net, post(&format!("{gw_url}/llm"), LLM, &[])).await?.as_secs_f64() * 1000.0);
            } else {
                let h = as_refs(&lh);
                let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
                direct.push(first_frame(&net, post(&format!("{orch_uri}/llm"), LLM, &h)).await?.as_secs_f64() * 1000.0);
            }
        }
        let (v50, v99, d50, d99) = (pct(&mut via, 0.5), pct(&mut via, 0.99), pct(&mut direct, 0.5), pct(&mut direct, 0.99));
        println!(
            "aiload: LLM first token via gateway p50 {v50:.3} ms p99 {v99:.3} ms; direct p50 {d50:.3} ms p99 {d99:.3} ms; gateway adds p50 {:.3} ms p99 {:.3} ms",
            v50 - d50,
            v99 - d99
        );

        let (g0, o0, t0) = (bench::thread_cpu_seconds("gateway"), bench::thread_cpu_seconds("orchestrator"), Instant::now());
        let until = t0 + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (net, url) = (net.clone(), format!("{gw_url}/text-to-image"));
                tokio::spawn(async move {
                    let (mut ok, mut failed) = (0u64, 0u64);
                    while Instant::now() < until {
                        match exchange(&net, post(&url, T2I, &[])).await {
                            Ok(_) => ok += 1,
                            Err(_) => failed += 1,
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        let (mut ok, mut failed) = (0u64, 0u64);
        for t in tasks {
            let (a, b) = t.await?;
            ok += a;
            failed += b;
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "aiload: {clients} clients {seconds} s: {ok} text-to-image jobs ({:.0}/s), {failed} failed; gateway cpu {:.0}%, orchestrator cpu {:.0}%",
            ok as f64 / secs,
            (bench::thread_cpu_seconds("gateway") - g0) / secs * 100.0,
            (bench::thread_cpu_seconds("orchestrator") - o0) / secs * 100.0
        );
        anyhow::ensure!(failed == 0, "{failed} jobs failed");
        Ok::<_, anyhow::Error>(())
    });
    gw_rt.block_on(gw.shutdown());
    orch_rt.block_on(orch.shutdown());
    result
}
