//! Batch AI through the gateway against real `sluice orchestrator` processes (CPU
//! pipelines): Livepeer's Python SDK and the OpenAI client on every route, conformance
//! with plain HTTP and the orchestrator's wire capture, faults (capacity, 500, hang, none
//! left, price over the cap, paid jobs in their units), and API keys.
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use prost::Message;

/// A small PNG made by ffmpeg.
fn png(w: u32, h: u32) -> PathBuf {
    let p = std::env::temp_dir().join(format!("sluice-ai-{w}x{h}-{}.png", std::process::id()));
    let ok = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", &format!("testsrc2=size={w}x{h}"), "-frames:v", "1", "-y"])
        .arg(&p)
        .status()
        .unwrap();
    assert!(ok.success());
    p
}

/// A PCM WAV tone of `secs` seconds (the format go-livepeer refuses, #3918).
fn wav(secs: f64) -> PathBuf {
    let p = std::env::temp_dir().join(format!("sluice-ai-{secs}-{}.wav", std::process::id()));
    let ok = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", &format!("sine=frequency=300:duration={secs}"), "-y"])
        .arg(&p)
        .status()
        .unwrap();
    assert!(ok.success());
    p
}

/// A multipart body with one file part and text fields.
fn multipart(file_field: &str, data: &[u8], fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let b = "testboundary0123456789";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{b}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(b"\r\n");
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

async fn post_json(addr: SocketAddr, path: &str, json: &str, auth: Option<&str>) -> HttpResponse {
    let bearer = auth.map(|k| format!("Bearer {k}"));
    let mut h = vec![("Content-Type", "application/json")];
    if let Some(b) = &bearer {
        h.push(("Authorization", b.as_str()));
    }
    http_request(addr, "POST", path, &h, json.as_bytes()).await
}

fn json(r: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

/// The error message of an error body, checking both shapes are there.
fn error_message(r: &HttpResponse) -> String {
    let v = json(r);
    let m = v["error"]["message"].as_str().unwrap_or_else(|| panic!("no error.message: {v}")).to_owned();
    assert_eq!(v["detail"]["msg"].as_str(), Some(m.as_str()), "both error shapes: {v}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    m
}

async fn ai_gateway(orchs: &[&OrchestratorProcess], f: impl FnOnce(&mut engine::GatewayConfig)) -> engine::Gateway {
    let addrs: Vec<String> = orchs.iter().map(|o| o.uri.clone()).collect();
    gateway_with(|c| {
        c.orchestrators.orch_addr = addrs.join(",");
        f(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livepeer_sdks_every_pipeline() {
    let py = python();
    let ready =
        std::process::Command::new(&py).args(["-c", "import livepeer_ai, openai"]).status().is_ok_and(|s| s.success());
    if !have("ffmpeg", "-version") || !ready {
        eprintln!("skipped: ffmpeg or the Python clients missing (scripts/setup.sh installs them)");
        return;
    }
    let o = OrchestratorProcess::start(&["--transcoder", "echo"]).await;
    let gw = ai_gateway(&[&o], |_| {}).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/ai_sdk.py");
    let out = run(
        tokio::process::Command::new(&py)
            .arg(&script)
            .arg(format!("http://{}", gw.http_addr))
            .arg(png(64, 48))
            .arg(wav(7.4)),
        "ai_sdk.py",
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    eprintln!("{}", serde_json::to_string_pretty(&v).unwrap());
    for (name, magic, mime) in [
        ("text-to-image", "89504e47", "image/png"),
        ("image-to-image", "89504e47", "image/png"),
        ("upscale", "89504e47", "image/png"),
        ("image-to-video", "00000020", "video/mp4"),
        ("text-to-speech", "52494646", "audio/wav"),
    ] {
        let f = &v[name]["file"];
        assert_eq!(f["status"], 200, "{name}: {}", v[name]);
        assert_eq!(f["head"], magic, "{name}");
        assert_eq!(f["type"], mime, "{name}");
    }
    assert!(v["text-to-image"]["url"].as_str().unwrap().starts_with("/stream/"), "the gateway's own URL");
    assert_eq!(v["audio-to-text"]["text"], "Sluice transcript of 7.40 seconds of audio.");
    assert_eq!(v["audio-to-text"]["chunks"], 2);
    assert_eq!(v["segment-anything-2"]["shape"], serde_json::json!([1, 48, 64]));
    assert!(v["image-to-text"]["text"].as_str().unwrap().starts_with("an image of 64x48 pixels"));
    assert_eq!(v["llm"]["text"], "tell me a ");
    assert_eq!(v["llm"]["finish"], "length");
    assert_eq!(v["llm"]["completion_tokens"], 3);
    assert_eq!(v["bad-request"]["raised"], "HTTPError", "the SDK parses the 400: {}", v["bad-request"]);
    assert!(v["bad-request"]["text"].as_str().unwrap().contains("prompt is required"));
    assert_eq!(v["openai"]["text"], "one two three");
    assert_eq!(v["openai"]["total"], 6);
    assert_eq!(v["openai-stream"]["text"], "streamed words here");
    assert_eq!(v["openai-stream"]["chunks"], 3);
    assert_eq!(v["openai-stream"]["finish"], "stop");
    assert_eq!(v["openai-models"]["ids"], serde_json::json!(["echo", "meta-llama/llama-3.1-8B-Instruct"]));
    gw.shutdown().await;
    assert!(!o.log().contains("panicked"), "{}", o.log());
}

/// What the orchestrator captured: (headers text, request body) of every exchange named
/// `name`.
fn captured(dir: &std::path::Path, name: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files {
        let n = f.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(prefix) = n.strip_suffix(&format!("-{name}.request-headers.txt")) {
            let body = std::fs::read(dir.join(format!("{prefix}-{name}.request.bin"))).unwrap();
            out.push((std::fs::read_to_string(&f).unwrap(), body));
        }
    }
    out
}

fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.split_once(": ").filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_the_wire_and_to_clients() {
    if !have("ffmpeg", "-version") {
        eprintln!("skipped: ffmpeg missing");
        return;
    }
    let cap = std::env::temp_dir().join(format!("sluice-ai-capture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cap);
    let o = OrchestratorProcess::start(&["--transcoder", "echo", "--capture-dir", cap.to_str().unwrap()]).await;
    let gw = ai_gateway(&[&o], |_| {}).await;
    let addr = gw.http_addr;

    // Test vector 9: the client's request, the orchestrator's view, the rewritten URL.
    let r = post_json(addr, "/text-to-image", r#"{"prompt":"a cat","model_id":"stabilityai/sdxl-turbo"}"#, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let url = json(&r)["images"][0]["url"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = url.split('/').collect();
    assert_eq!((parts[1], parts[2].len()), ("stream", 32), "an unguessable request id: {url}");
    let file = http_get(addr, &url).await;
    assert_eq!((file.status, file.header("content-type")), (200, Some("image/png")));
    assert_eq!(&file.body[..4], b"\x89PNG");
    let disc = captured(&cap, "get_orchestrator");
    let asked = disc
        .iter()
        .filter_map(|(_, body)| transport::proto::OrchestratorRequest::decode(body.get(5..)?).ok())
        .find(|r| r.capabilities.as_ref().is_some_and(|c| c.bitstring == vec![201_351_167]))
        .expect("a GetOrchestrator with text-to-image's bitstring (test vector 1)");
    let caps = asked.capabilities.unwrap();
    assert_eq!(caps.capacities.get(&27), Some(&1));
    let models = &caps.constraints.as_ref().unwrap().per_capability[&27].models;
    assert!(models.contains_key("stabilityai/sdxl-turbo") && !models["stabilityai/sdxl-turbo"].warm);
    let (head, body) = captured(&cap, "text-to-image").pop().expect("the job was captured");
    assert_eq!(header_of(&head, "authorization"), Some("Livepeer-AI-Worker-1.0"));
    assert_eq!(header_of(&head, "livepeer-payment"), Some(""), "off-chain: empty payment");
    let seg = base64::engine::general_purpose::STANDARD.decode(header_of(&head, "livepeer-segment").unwrap()).unwrap();
    let seg = transport::proto::SegData::decode(seg.as_slice()).unwrap();
    assert_eq!(seg.manifest_id, b"27_stabilityai/sdxl-turbo");
    assert_eq!(hex::encode(&seg.hash), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
    assert!(seg.auth_token.is_some(), "the orchestrator's token is echoed");
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (sent["height"].as_i64(), sent["width"].as_i64(), sent["num_images_per_prompt"].as_i64()),
        (Some(512), Some(512), Some(1))
    );
    // A request without a model still names one to the orchestrator.
    assert_eq!(post_json(addr, "/text-to-image", r#"{"prompt":"no model"}"#, None).await.status, 200);
    let (_, body) = captured(&cap, "text-to-image").pop().unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["model_id"], "stabilityai/sdxl-turbo");

    // Wrong method, bad bodies: real statuses and reasons, never an empty 200.
    let r = http_get(addr, "/text-to-image").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert!(error_message(&r).contains("use POST"));
    let r = post_json(addr, "/text-to-image", "{", None).await;
    assert_eq!(r.status, 400);
    assert!(error_message(&r).contains("invalid JSON body"));
    let r = post_json(addr, "/llm", r#"{"messages":[]}"#, None).await;
    assert_eq!((r.status, error_message(&r)), (400, "missing required fields: messages".into()));
    let img = std::fs::read(png(64, 48)).unwrap();
    for (fields, data, want) in [
        (vec![], &img[..], "prompt is required"),
        (vec![("prompt", "x"), ("strength", "abc")], &img[..], "strength: not a number"),
        (vec![("prompt", "x")], &b"not an image"[..], "image:"),
    ] {
        let (ct, body) = multipart("image", data, &fields);
        let r = http_request(addr, "POST", "/image-to-image", &[("Content-Type", &ct)], &body).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(error_message(&r).contains(want), "{want}: {}", r.text());
    }
    let (ct, body) = multipart("image", &img, &[]);
    let r = http_request(addr, "POST", "/upscale", &[("Content-Type", "text/plain")], &body).await;
    assert_eq!(r.status, 400, "not multipart: {}", r.text());
    let _ = ct;
    // Audio: a PCM WAV is measured (go-livepeer refuses it, #3918); noise is a 400.
    let (ct, body) = multipart("audio", &std::fs::read(wav(2.5)).unwrap(), &[]);
    let r = http_request(addr, "POST", "/audio-to-text", &[("Content-Type", &ct)], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, sent) = captured(&cap, "audio-to-text").pop().unwrap();
    assert!(String::from_utf8_lossy(&sent).contains("{\"duration\":\"2\"}"), "metadata overwritten with the duration");
    let (ct, body) = multipart("audio", b"definitely not audio", &[]);
    let r = http_request(addr, "POST", "/audio-to-text", &[("Content-Type", &ct)], &body).await;
    assert_eq!((r.status, error_message(&r)), (400, "audio duration calculation failed".into()));
    // A runner's 400 is the client's 400, and the orchestrator stays in use.
    let big = std::fs::read(png(1100, 64)).unwrap();
    let (ct, body) = multipart("image", &big, &[("prompt", "x")]);
    let r = http_request(addr, "POST", "/upscale", &[("Content-Type", &ct)], &body).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(error_message(&r).contains("larger than 1024x1024"), "{}", r.text());
    let (ct, body) = multipart("image", &img, &[("prompt", "x")]);
    let r = http_request(addr, "POST", "/upscale", &[("Content-Type", &ct)], &body).await;
    assert_eq!(r.status, 200, "not suspended after the client's 400: {}", r.text());

    // SSE framing: /llm as go-livepeer (no [DONE]); the OpenAI alias with [DONE].
    let r = post_json(
        addr,
        "/llm",
        r#"{"model":"echo","messages":[{"role":"user","content":"a b c"}],"stream":true}"#,
        None,
    )
    .await;
    assert_eq!((r.status, r.header("content-type")), (200, Some("text/event-stream")));
    let text = r.text();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 3, "{text}");
    for e in &events {
        let chunk: serde_json::Value = serde_json::from_str(e.strip_prefix("data: ").expect("data: lines")).unwrap();
        assert!(chunk["choices"][0]["delta"]["content"].is_string());
    }
    assert!(events[2].contains("\"finish_reason\":\"stop\"") && !text.contains("[DONE]"));
    let r = post_json(
        addr,
        "/v1/chat/completions",
        r#"{"model":"echo","messages":[{"role":"user","content":"x y"}],"stream":true}"#,
        None,
    )
    .await;
    assert!(r.text().ends_with("data: [DONE]\n\n"), "{}", r.text());

    // image-to-video's async mode.
    let (ct, body) = multipart("image", &img, &[("width", "128"), ("height", "96")]);
    let r = http_request(addr, "POST", "/image-to-video", &[("Content-Type", &ct), ("Prefer", "respond-async")], &body)
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = json(&r)["request_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let result = loop {
        let r = post_json(addr, "/image-to-video/result", &format!(r#"{{"request_id":"{id}"}}"#), None).await;
        if r.status == 200 {
            break json(&r);
        }
        assert_eq!((r.status, json(&r)["status"].as_str()), (202, Some("processing")));
        assert!(Instant::now() < deadline, "async job never completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(result["status"], "complete");
    let video = http_get(addr, result["result"]["images"][0]["url"].as_str().unwrap()).await;
    assert_eq!((video.status, video.header("content-type")), (200, Some("video/mp4")));
    assert_eq!(ffmpeg_decode_errors("ai-i2v", &video.body), "");
    let r = post_json(addr, "/image-to-video/result", r#"{"request_id":"nope"}"#, None).await;
    assert_eq!((r.status, error_message(&r)), (400, "invalid request ID".into()));

    let metrics = http_get(gw.cli_addr, "/metrics").await.text();
    assert!(metrics.contains("sluice_ai_requests_total{pipeline=\"text-to-image\",outcome=\"ok\"} 2"), "{metrics}");
    gw.shutdown().await;
    assert!(!o.log().contains("panicked"), "{}", o.log());
    let _ = std::fs::remove_dir_all(&cap);
}

fn pool_entry<'a>(pools: &'a serde_json::Value, uri: &str) -> &'a serde_json::Value {
    pools["27_stabilityai/sdxl-turbo"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["orchestrator"] == uri)
        .unwrap_or_else(|| panic!("{uri} in {pools}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_capacity_500_hang_none_left() {
    if !have("ffmpeg", "-version") {
        eprintln!("skipped: ffmpeg missing");
        return;
    }
    let args = ["--transcoder", "echo", "--allow-faults"];
    let (busy, failing, hung, good) = tokio::join!(
        OrchestratorProcess::start(&args),
        OrchestratorProcess::start(&args),
        OrchestratorProcess::start(&args),
        OrchestratorProcess::start(&args)
    );
    let gw = ai_gateway(&[&busy, &failing, &hung, &good], |c| c.ai.ai_image_timeout = 4.0).await;
    // Discovery first (the hung one is asked too), then the faults.
    let r = post_json(gw.http_addr, "/text-to-image", r#"{"prompt":"warm up","width":64,"height":64}"#, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    busy.fault(r#"{"mode":"ai_busy"}"#).await;
    failing.fault(r#"{"mode":"error500"}"#).await;
    hung.fault(r#"{"mode":"hang"}"#).await;
    for i in 0..6 {
        let t = Instant::now();
        let r = post_json(
            gw.http_addr,
            "/text-to-image",
            &format!(r#"{{"prompt":"job {i}","width":64,"height":64}}"#),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "job {i}: {}", r.text());
        assert!(t.elapsed() < Duration::from_secs(4), "job {i} took {:?}", t.elapsed());
    }
    let pools: serde_json::Value = serde_json::from_slice(&http_get(gw.cli_addr, "/ai/pools").await.body).unwrap();
    eprintln!("{pools:#}");
    assert_eq!(pool_entry(&pools, &busy.uri)["suspended_for_secs"], 0.0, "capacity refusals do not suspend");
    assert!(pool_entry(&pools, &failing.uri)["suspended_for_secs"].as_f64().unwrap() > 0.0, "a 500 suspends");
    assert!(pool_entry(&pools, &hung.uri)["suspended_for_secs"].as_f64().unwrap() > 0.0, "a timeout suspends");
    // Nothing left: a 503 with the reasons, and the gateway carries on.
    good.fault(r#"{"mode":"error500"}"#).await;
    let r = post_json(gw.http_addr, "/text-to-image", r#"{"prompt":"none left","width":64,"height":64}"#, None).await;
    assert_eq!(r.status, 503, "{}", r.text());
    let why = error_message(&r);
    assert!(why.starts_with("no orchestrators available"), "{why}");
    assert!(why.contains("suspended") || why.contains("already tried"), "{why}");
    good.fault(r#"{"mode":"none"}"#).await;
    busy.fault(r#"{"mode":"none"}"#).await;
    let r = post_json(
        gw.http_addr,
        "/llm",
        r#"{"model":"echo","messages":[{"role":"user","content":"still here"}]}"#,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "other models carry on: {}", r.text());
    // A model nobody offers.
    let r = post_json(gw.http_addr, "/text-to-image", r#"{"prompt":"x","model_id":"nobody/has-this"}"#, None).await;
    assert_eq!(r.status, 503);
    assert!(error_message(&r).contains("does not offer text-to-image with model nobody/has-this"));
    gw.shutdown().await;
    for o in [&busy, &failing, &hung, &good] {
        assert!(!o.log().contains("panicked"), "{}", o.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_jobs_in_their_units_and_the_price_cap() {
    if !have("ffmpeg", "-version") {
        eprintln!("skipped: ffmpeg missing");
        return;
    }
    let okey = key_file("ai-orch", ORCH_KEY);
    let gkey = key_file("ai-gateway", GATEWAY_KEY);
    let o = OrchestratorProcess::start_paid(&okey, &["--transcoder", "echo", "--price-per-unit", "3"]).await;
    let caps = r#"{"capabilities_prices":[
        {"pipeline":"text-to-image","model_id":"stabilityai/sdxl-turbo","price_per_unit":5,"pixels_per_unit":1},
        {"pipeline":"llm","model_id":"default","price_per_unit":2,"pixels_per_unit":1}]}"#;
    let gw = ai_gateway(&[&o], |c| {
        c.payment.network = "arbitrum-one-mainnet".into();
        c.payment.eth_key_file = Some(gkey.clone());
        c.ai.max_price_per_capability = Some(caps.into());
    })
    .await;
    let r = post_json(
        gw.http_addr,
        "/text-to-image",
        r#"{"prompt":"paid","width":64,"height":32,"num_images_per_prompt":2}"#,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let status: serde_json::Value =
        serde_json::from_slice(&http_get_tls(&o.uri, "/status").await).expect("orchestrator status");
    assert!(status["tickets_received"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(status["debited_wei"].as_f64(), Some((64 * 32 * 2 * 3) as f64), "units × price: {status}");
    // The LLM pays for max_tokens, under its own ceiling of 2 wei per token: 3 is too dear.
    let r = post_json(
        gw.http_addr,
        "/llm",
        r#"{"model":"echo","messages":[{"role":"user","content":"hi"}],"max_tokens":10}"#,
        None,
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(error_message(&r).contains("price 3 wei/unit above the cap of 2 wei/unit"), "{}", r.text());
    gw.shutdown().await;
    assert!(!o.log().contains("panicked"), "{}", o.log());
}

/// `GET {base}{path}` over TLS accepting any certificate (an orchestrator's `/status`).
async fn http_get_tls(base: &str, path: &str) -> Vec<u8> {
    let net = transport::client::OrchestratorNet::new(transport::tls::CertPolicy::AcceptAny);
    net.download(&format!("{base}{path}"), Duration::from_secs(5)).await.unwrap().to_vec()
}

fn write_keys(path: &std::path::Path, alice_revoked: bool) {
    use engine::ai::keys::hash_key;
    let text = format!(
        "[[key]]\nname = \"alice\"\nsha256 = \"{}\"\nrequests_per_minute = 6\nburst = 4\nrevoked = {alice_revoked}\n\n\
         [[key]]\nname = \"bob\"\nsha256 = \"{}\"\nmax_concurrent = 1\n\n\
         [[key]]\nname = \"ops\"\nsha256 = \"{}\"\ncontrol = true\n\n\
         [[key]]\nname = \"carol\"\nsha256 = \"{}\"\nrevoked = true\n",
        hash_key("alice-key"),
        hash_key("bob-key"),
        hash_key("ops-key"),
        hash_key("carol-key"),
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_limits_and_usage() {
    if !have("ffmpeg", "-version") {
        eprintln!("skipped: ffmpeg missing");
        return;
    }
    let keys = std::env::temp_dir().join(format!("sluice-keys-{}.toml", std::process::id()));
    write_keys(&keys, false);
    let o = OrchestratorProcess::start(&["--transcoder", "echo", "--ai-capacity", "4"]).await;
    let gw = ai_gateway(&[&o], |c| c.auth.api_keys = Some(keys.clone())).await;
    let (addr, cli) = (gw.http_addr, gw.cli_addr);
    let t2i = r#"{"prompt":"keyed","width":32,"height":32}"#;

    let r = post_json(addr, "/text-to-image", t2i, None).await;
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Bearer")));
    assert!(error_message(&r).contains("API key is required"));
    let r = post_json(addr, "/text-to-image", t2i, Some("wrong")).await;
    assert_eq!((r.status, error_message(&r)), (403, "unknown API key".into()));
    let r = post_json(addr, "/text-to-image", t2i, Some("carol-key")).await;
    assert_eq!((r.status, error_message(&r)), (403, "API key revoked".into()));

    // alice: a burst of 4, then 6 a minute.
    let mut ok = 0;
    let mut limited = 0;
    for _ in 0..6 {
        let r = post_json(addr, "/text-to-image", t2i, Some("alice-key")).await;
        match r.status {
            200 => ok += 1,
            429 => {
                limited += 1;
                let wait: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
                assert!((1..=10).contains(&wait), "{wait}");
                assert!(error_message(&r).contains("6 requests per minute"));
            }
            s => panic!("{s}: {}", r.text()),
        }
    }
    assert_eq!((ok, limited), (4, 2));

    // bob: one job at once.
    let img = std::fs::read(png(320, 240)).unwrap();
    let (ct, body) = multipart("image", &img, &[("width", "1024"), ("height", "576")]);
    let h = [("Content-Type", ct.as_str()), ("Authorization", "Bearer bob-key")];
    let (a, b) = tokio::join!(http_request(addr, "POST", "/image-to-video", &h, &body), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        post_json(addr, "/text-to-image", t2i, Some("bob-key")).await
    });
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(b.status, 429, "the second job while one runs: {}", b.text());
    assert!(error_message(&b).contains("1 jobs already running"));
    assert_eq!(post_json(addr, "/text-to-image", t2i, Some("bob-key")).await.status, 200, "free again");

    // The control API: ops only.
    assert_eq!(http_get(cli, "/usage").await.status, 401);
    let r = http_request(cli, "GET", "/usage", &[("Authorization", "Bearer alice-key")], b"").await;
    assert_eq!(r.status, 403);
    let r = http_request(cli, "GET", "/usage", &[("Authorization", "Bearer ops-key")], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let usage = json(&r);
    assert_eq!(usage["alice"]["requests"], 4);
    assert_eq!(usage["alice"]["denied"], 2);
    assert_eq!(usage["alice"]["succeeded"], 4);
    assert_eq!(usage["alice"]["pixels"], 4 * 32 * 32);
    assert_eq!(usage["bob"]["requests"], 2);
    assert_eq!(usage["bob"]["pixels"], 1024 * 576 * 25 + 32 * 32, "video frames × size + one image");
    assert_eq!(usage["bob"]["running"], 0);
    assert!(usage["bob"]["seconds"].as_f64().unwrap() > 0.0);
    let metrics = http_get(cli, "/metrics").await.text();
    assert!(metrics.contains("sluice_key_requests_total{key=\"alice\"} 4"), "{metrics}");

    // Revoking alice in the file takes effect without a restart.
    write_keys(&keys, true);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = post_json(
            addr,
            "/llm",
            r#"{"model":"echo","messages":[{"role":"user","content":"x"}]}"#,
            Some("alice-key"),
        )
        .await;
        if r.status == 403 {
            assert_eq!(error_message(&r), "API key revoked");
            break;
        }
        assert!(Instant::now() < deadline, "the revocation was not picked up: {} {}", r.status, r.text());
    }
    gw.shutdown().await;
    let _ = std::fs::remove_file(&keys);
}

/// The `Livepeer` header of a job for `capability` (`parameters` as given, or none).
fn job_header(capability: &str, parameters: Option<&str>, timeout: i64) -> String {
    let mut v =
        serde_json::json!({ "request": "{\"run\":\"echo\"}", "capability": capability, "timeout_seconds": timeout });
    if let Some(p) = parameters {
        v["parameters"] = p.into();
    }
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

/// The BYOC test worker (`interop/byoc_worker.py`) requiring `token`: its URL and child.
async fn byoc_worker(token: &str) -> (String, tokio::process::Child) {
    interop_server("byoc_worker.py", token).await
}

/// A stdlib HTTP server script of `tests/interop` requiring `token`, which prints
/// `Name: URL` first: its URL and the child (killed when dropped).
async fn interop_server(script: &str, token: &str) -> (String, tokio::process::Child) {
    use tokio::io::AsyncBufReadExt;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop").join(script);
    let mut child = tokio::process::Command::new(python())
        .arg(script)
        .arg(token)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the script starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
    (first.split_whitespace().nth(1).unwrap().to_owned(), child)
}

async fn register(orch: &OrchestratorProcess, secret: &str, json: &str) -> (u16, String) {
    let net = transport::client::OrchestratorNet::new(transport::tls::CertPolicy::AcceptAny);
    let (status, body) = net
        .post_json_with(
            &format!("{}/capability/register", orch.uri),
            json,
            &[("Authorization", secret)],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byoc_jobs_through_the_gateway() {
    let py = python();
    if !std::process::Command::new(&py).args(["-c", "import livepeer_gateway.byoc"]).status().is_ok_and(|s| s.success())
    {
        eprintln!("skipped: the Python SDK is missing (scripts/setup.sh installs it)");
        return;
    }
    let (worker, _w) = byoc_worker("wtok").await;
    let o = OrchestratorProcess::start(&["--transcoder", "echo", "--orch-secret", "s3cret"]).await;
    let bare = OrchestratorProcess::start(&["--transcoder", "echo"]).await;
    let cap = |name: &str, capacity: u32, token: &str| {
        format!(r#"{{"name":"{name}","url":"{worker}","capacity":{capacity},"token":"{token}","price_per_unit":0}}"#)
    };
    assert_eq!(register(&o, "wrong", &cap("text-reversal", 1, "wtok")).await, (400, "invalid authorization\n".into()));
    assert_eq!(register(&bare, "", &cap("text-reversal", 1, "wtok")).await.0, 400, "no secret, no registration");
    for c in [cap("text-reversal", 1, "wtok"), cap("reverse-text", 2, "wtok"), cap("bad-token", 1, "nope")] {
        assert_eq!(register(&o, "s3cret", &c).await.0, 200);
    }
    let gw = ai_gateway(&[&bare, &o], |_| {}).await;
    let addr = gw.http_addr;
    let body = br#"{"text":"Hello, Livepeer BYOC!"}"#;
    let send = |path: &'static str, header: String, body: &'static [u8]| async move {
        http_request(addr, "POST", path, &[("Livepeer", header.as_str()), ("Content-Type", "application/json")], body)
            .await
    };

    // Test vector 12, without `parameters` (taken as {}). The documented reply spells the
    // reversal "reepevil"; a reversal of "Livepeer" is "reepeviL".
    let r = send("/process/request/reverse-text", job_header("text-reversal", None, 30), body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r), serde_json::json!({"original": "Hello, Livepeer BYOC!", "reversed": "!COYB reepeviL ,olleH"}));
    assert_eq!(r.header("x-orchestrator-url"), Some(o.uri.as_str()));
    assert_eq!(r.header("livepeer-balance"), Some("0"));
    assert_eq!(r.header("x-metadata"), Some(r#"{"worker": "byoc_worker.py"}"#));
    // Streamed, relayed as it comes.
    let r = send(
        "/process/request/stream-words",
        job_header("text-reversal", Some("{}"), 30),
        br#"{"text":"one two three"}"#,
    )
    .await;
    assert_eq!((r.status, r.header("content-type")), (200, Some("text/event-stream")));
    assert_eq!(
        r.text(),
        "data: {\"word\": \"one\"}\n\ndata: {\"word\": \"two\"}\n\ndata: {\"word\": \"three\"}\n\ndata: [DONE]\n\n"
    );
    // Refusals.
    let r = http_request(addr, "POST", "/process/request/reverse-text", &[], body).await;
    assert_eq!((r.status, error_message(&r)), (400, "missing Livepeer job header".into()));
    let r = send("/process/request/reverse-text", job_header("text-reversal", None, 0), body).await;
    assert_eq!(r.status, 400);
    assert!(error_message(&r).contains("timeout_seconds is required"));
    assert_eq!(http_get(addr, "/process/request/reverse-text").await.status, 405);
    let exclude = format!(r#"{{"orchestrators":{{"exclude":["{}"]}}}}"#, o.uri);
    let r = send("/process/request/reverse-text", job_header("text-reversal", Some(&exclude), 30), body).await;
    assert_eq!(r.status, 503, "{}", r.text());
    let why = error_message(&r);
    assert!(why.contains("excluded by the job's parameters") && why.contains("not registered"), "{why}");
    let r = send("/process/request/x", job_header("nobody-has-it", None, 30), body).await;
    assert_eq!(r.status, 503);
    // A worker refusing its token: the capability is dropped, the job fails over (none left).
    let r = send("/process/request/reverse-text", job_header("bad-token", None, 30), body).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(error_message(&r).contains("worker refused the capability token"), "{}", r.text());
    let r = send("/process/request/reverse-text", job_header("bad-token", None, 30), body).await;
    assert!(error_message(&r).contains("not registered"), "unregistered after the 401: {}", r.text());
    // Capacity 1: a second job while one runs finds no orchestrator with room.
    let (a, b) = tokio::join!(
        send("/process/request/slow", job_header("text-reversal", None, 30), br#"{"seconds":1.5}"#),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            send("/process/request/slow", job_header("text-reversal", None, 30), br#"{"seconds":0.1}"#).await
        }
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(b.status, 503, "{}", b.text());
    assert!(error_message(&b).contains("no capacity for text-reversal"), "{}", b.text());

    // Livepeer's Python SDK, to the gateway and straight to the orchestrator.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/byoc_sdk.py");
    for target in [format!("http://{addr}"), o.uri.clone()] {
        let out = run(
            tokio::process::Command::new(&py).arg(&script).arg(&target).arg("reverse-text").arg("abc def"),
            "byoc_sdk.py",
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v["data"], serde_json::json!({"original": "abc def", "reversed": "fed cba"}), "{target}: {v}");
        assert_eq!(v["status"], 200);
    }
    gw.shutdown().await;
    assert!(!o.log().contains("panicked"), "{}", o.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byoc_paid_by_the_second() {
    let py = python();
    if !std::process::Command::new(&py).args(["-c", "import json"]).status().is_ok_and(|s| s.success()) {
        eprintln!("skipped: python missing");
        return;
    }
    let (worker, _w) = byoc_worker("wtok").await;
    let okey = key_file("byoc-orch", ORCH_KEY);
    let gkey = key_file("byoc-gateway", GATEWAY_KEY);
    let o = OrchestratorProcess::start_paid(&okey, &["--transcoder", "echo", "--orch-secret", "s3cret"]).await;
    let cap = format!(
        r#"{{"name":"paid","url":"{worker}","capacity":1,"token":"wtok","price_per_unit":1000,"price_scaling":1}}"#
    );
    assert_eq!(register(&o, "s3cret", &cap).await.0, 200);
    let gw = ai_gateway(&[&o], |c| {
        c.payment.network = "arbitrum-one-mainnet".into();
        c.payment.eth_key_file = Some(gkey.clone());
    })
    .await;
    let h = job_header("paid", None, 30);
    let r = http_request(
        gw.http_addr,
        "POST",
        "/process/request/slow",
        &[("Livepeer", &h), ("Content-Type", "application/json")],
        br#"{"seconds":1.2}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let balance: i64 = r.header("livepeer-balance").expect("Livepeer-Balance").parse().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&http_get_tls(&o.uri, "/status").await).unwrap();
    eprintln!("{status}");
    assert!(status["tickets_received"].as_u64().unwrap() >= 1, "tickets were sent: {status}");
    let debited = status["debited_wei"].as_f64().unwrap();
    assert!(debited == 2000.0 || debited == 3000.0, "each started second at 1000 wei: {debited}");
    let credited = status["credited_wei"].as_f64().unwrap();
    assert_eq!(balance as f64, (credited - debited).floor(), "the balance header is what is left");
    // A second job is covered by the credit left (two minutes' worth): no new tickets.
    let r = http_request(
        gw.http_addr,
        "POST",
        "/process/request/reverse-text",
        &[("Livepeer", &h), ("Content-Type", "application/json")],
        br#"{"text":"ab"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after: serde_json::Value = serde_json::from_slice(&http_get_tls(&o.uri, "/status").await).unwrap();
    assert_eq!(after["tickets_received"], status["tickets_received"], "{after}");
    // An off-chain gateway cannot prove who it is to a paid orchestrator.
    let free = ai_gateway(&[&o], |_| {}).await;
    let r =
        http_request(free.http_addr, "POST", "/process/request/slow", &[("Livepeer", &h)], br#"{"seconds":0.1}"#).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(error_message(&r).contains("could not verify the sender address signature"), "{}", r.text());
    free.shutdown().await;
    gw.shutdown().await;
    assert!(!o.log().contains("panicked"), "{}", o.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_forwards_to_an_ai_runner() {
    let py = python();
    if !have("ffmpeg", "-version")
        || !std::process::Command::new(&py).args(["-c", "import json"]).status().is_ok_and(|s| s.success())
    {
        eprintln!("skipped: python or ffmpeg missing");
        return;
    }
    let (url, _runner) = interop_server("ai_runner.py", "rtok").await;
    let models = format!(
        r#"[{{"pipeline":"text-to-image","model_id":"gpu/model","warm":true,"capacity":2,"url":"{url}","token":"rtok"}},
            {{"pipeline":"upscale","model_id":"gpu/up","url":"{url}","token":"rtok"}},
            {{"pipeline":"llm","model_id":"gpu/llm","url":"{url}","token":"rtok"}}]"#
    );
    let o = OrchestratorProcess::start(&["--transcoder", "echo", "--ai-models", &models]).await;
    let gw = ai_gateway(&[&o], |_| {}).await;
    let r = post_json(gw.http_addr, "/text-to-image", r#"{"prompt":"x","model_id":"gpu/model"}"#, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let url = json(&r)["images"][0]["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/stream/") && url.ends_with(".png"), "the runner's data URL kept by the gateway: {url}");
    let image = http_get(gw.http_addr, &url).await;
    assert_eq!(image.body, orchestrator::ai::TINY_PNG, "the runner's image, byte for byte");
    // A runner's 400 reaches the client as a 400 with its message.
    let (ct, body) =
        multipart("image", &std::fs::read(png(64, 48)).unwrap(), &[("prompt", "x"), ("model_id", "gpu/up")]);
    let r = http_request(gw.http_addr, "POST", "/upscale", &[("Content-Type", &ct)], &body).await;
    assert_eq!((r.status, error_message(&r)), (400, "runner refuses this image".into()));
    // The runner's stream, [DONE] dropped, relayed chunk by chunk.
    let r = post_json(
        gw.http_addr,
        "/llm",
        r#"{"model":"gpu/llm","messages":[{"role":"user","content":"from the runner"}],"stream":true}"#,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert_eq!(text.matches("data: ").count(), 3, "{text}");
    assert!(!text.contains("[DONE]") && text.contains("\"finish_reason\":\"stop\""), "{text}");
    // The default model is not offered by this orchestrator.
    assert_eq!(post_json(gw.http_addr, "/text-to-image", r#"{"prompt":"x"}"#, None).await.status, 503);
    gw.shutdown().await;
    assert!(!o.log().contains("panicked"), "{}", o.log());
}
