//! The fault suite: three `sluice orchestrator` processes (echo transcoder, TLS, the real
//! protocol) serve five concurrent real-time streams of a gateway for a minute, while one
//! orchestrator misbehaves. Every scenario runs at once, each with its own gateway and
//! orchestrators. For each: the source has every segment, every rendition lists every
//! segment (transcoded or an explicit gap), no stream stops, failover takes less than a
//! segment's duration, nothing panics. Figures go to `sluice-fault-report.md` in the
//! temp dir (and docs/RELIABILITY.md).
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use engine::publish::{PublishOptions, publish_tags};
use ingest::publisher::RtmpUrl;

const STREAMS: usize = 5;
/// Loops of the 10 s clip per stream.
const LOOPS: u64 = 6;
const SEGMENT_MS: f64 = 2000.0;

static PANICS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Hang,
    Error500,
    BusyAlternate,
    Garbage,
    Price,
    Dns,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "killed with SIGKILL mid-stream",
            Fault::Hang => "stops answering (TCP open, no replies)",
            Fault::Error500 => "answers 500",
            Fault::BusyAlternate => "OrchestratorBusy every other segment",
            Fault::Garbage => "invalid protobuf replies",
            Fault::Price => "price above the cap, then below it (paid)",
            Fault::Dns => "reachable only as localhost (DNS name)",
        }
    }
}

#[derive(Debug, Default)]
struct Report {
    fault: &'static str,
    segments: usize,
    transcoded: usize,
    retried: usize,
    gaps: usize,
    max_failover_ms: f64,
    sessions: usize,
    problems: Vec<String>,
}

async fn scenario(fault: Fault) -> Report {
    let mut report = Report { fault: fault.name(), ..Default::default() };
    let okey = key_file("orch", ORCH_KEY);
    let mut args: Vec<String> = ["--transcoder", "echo", "--allow-faults"].iter().map(|s| s.to_string()).collect();
    if fault == Fault::Price {
        for a in
            ["--network", "arbitrum-one-mainnet", "--eth-key-file", okey.to_str().unwrap(), "--price-per-unit", "1"]
        {
            args.push(a.into());
        }
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut orchs = Vec::new();
    let mut addrs = Vec::new();
    if fault == Fault::Dns {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let uri = format!("https://localhost:{port}");
        let mut a = argv.clone();
        a.extend(["--service-uri", &uri]);
        orchs.push(OrchestratorProcess::start_on(&format!("127.0.0.1:{port}"), &a).await);
        addrs.push(uri);
    }
    while orchs.len() < 3 {
        let o = OrchestratorProcess::start(&argv).await;
        addrs.push(o.uri.clone());
        orchs.push(o);
    }
    let gkey = key_file("gateway", GATEWAY_KEY);
    let orch_addr = addrs.join(",");
    let gw = gateway_with(|c| {
        c.orchestrators.orch_addr = orch_addr;
        if fault == Fault::Price {
            c.payment.network = "arbitrum-one-mainnet".into();
            c.payment.eth_key_file = Some(gkey);
            c.payment.max_price_per_unit = 10;
        }
    })
    .await;
    let tags = Arc::new(fixture_tags("clip.flv"));
    let mut publishers = Vec::new();
    for i in 0..STREAMS {
        let tags = tags.clone();
        let url = RtmpUrl::parse(&rtmp_url(&gw, &format!("s{i}"))).unwrap();
        publishers.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i as u64 * 300)).await;
            publish_tags(&tags, &url, &PublishOptions { realtime: true, loops: Some(LOOPS) }).await
        }));
    }
    // Let every stream settle on an orchestrator, then hit the busiest one.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let ranking = gw.registry().orchestrators();
    let busiest = ranking.iter().max_by_key(|o| o.sessions).map(|o| o.uri.clone()).unwrap();
    let target = addrs.iter().position(|a| *a == busiest).unwrap_or(0);
    match fault {
        Fault::Kill => orchs[target].child.start_kill().unwrap(),
        Fault::Hang => orchs[target].fault(r#"{"mode":"hang"}"#).await,
        Fault::Error500 => orchs[target].fault(r#"{"mode":"error500"}"#).await,
        Fault::BusyAlternate => orchs[target].fault(r#"{"mode":"busy_alternate"}"#).await,
        Fault::Garbage => orchs[target].fault(r#"{"mode":"garbage"}"#).await,
        Fault::Price => {
            orchs[target].fault(r#"{"price_per_unit":100}"#).await;
            tokio::time::sleep(Duration::from_secs(15)).await;
            orchs[target].fault(r#"{"price_per_unit":5}"#).await;
        }
        Fault::Dns => {}
    }
    for p in publishers {
        if let Err(e) = p.await.unwrap() {
            report.problems.push(format!("publisher failed: {e}"));
        }
    }
    for i in 0..STREAMS {
        let id = format!("s{i}");
        let source = wait_ended(&gw, &id).await;
        let seqs: Vec<String> =
            source.segments.iter().map(|s| s.uri.trim_start_matches("source/").to_owned()).collect();
        report.segments += seqs.len();
        let expected: Vec<String> = (0..seqs.len()).map(|n| format!("{n}.ts")).collect();
        if seqs != expected {
            report.problems.push(format!("{id}: source segments not contiguous: {seqs:?}"));
        }
        if seqs.len() < (LOOPS as usize * 5) - 1 {
            report.problems.push(format!("{id}: only {} source segments", seqs.len()));
        }
        if source.segments.iter().any(|s| s.discontinuity) {
            report.problems.push(format!("{id}: the stream was interrupted (discontinuity)"));
        }
        for r in ["P240p30fps16x9", "P360p30fps16x9"] {
            let pl = poll_http(&gw, &format!("/stream/{id}/{r}.m3u8"), 40, |p| p.contains("#EXT-X-ENDLIST")).await;
            let pl = media_playlist(pl.as_bytes());
            let got: Vec<String> = pl.segments.iter().map(|s| s.uri.rsplit('/').next().unwrap().to_owned()).collect();
            if got != seqs {
                report.problems.push(format!("{id}/{r}: lists {} segments, source {}", got.len(), seqs.len()));
            }
        }
        let st: serde_json::Value =
            serde_json::from_slice(&http_get(gw.cli_addr, &format!("/streams/{id}")).await.body).unwrap();
        if st["publishers"].as_u64() != Some(1) {
            report.problems.push(format!("{id}: publisher reconnected"));
        }
        let tr = &st["transcode"];
        report.transcoded += tr["transcoded"].as_u64().unwrap_or(0) as usize;
        report.gaps += tr["failed"].as_u64().unwrap_or(0) as usize;
        report.sessions += tr["sessions"].as_array().map_or(0, Vec::len);
        for r in tr["recent"].as_array().unwrap() {
            if r["attempts"].as_u64().unwrap_or(0) > 1 {
                report.retried += 1;
            }
            if let Some(f) = r["failover_ms"].as_f64() {
                report.max_failover_ms = report.max_failover_ms.max(f);
            }
        }
    }
    if report.max_failover_ms > SEGMENT_MS {
        report.problems.push(format!("failover took {:.0} ms, more than a segment", report.max_failover_ms));
    }
    if report.transcoded + report.gaps != report.segments {
        report
            .problems
            .push(format!("{} transcoded + {} gaps != {} segments", report.transcoded, report.gaps, report.segments));
    }
    gw.shutdown().await;
    for o in &orchs {
        if o.log().contains("panicked") {
            report.problems.push(format!("orchestrator {} panicked:\n{}", o.uri, o.log()));
        }
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_suite() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        default_hook(info);
    }));
    let faults =
        [Fault::Kill, Fault::Hang, Fault::Error500, Fault::BusyAlternate, Fault::Garbage, Fault::Price, Fault::Dns];
    let mut set = tokio::task::JoinSet::new();
    for f in faults {
        set.spawn(scenario(f));
    }
    let mut reports = Vec::new();
    while let Some(r) = set.join_next().await {
        reports.push(r.expect("scenario task"));
    }
    reports.sort_by_key(|r| faults.iter().position(|f| f.name() == r.fault));
    let mut table = String::from(
        "| scenario | segments | transcoded | retried | gaps | max failover ms | sessions opened |\n|---|---|---|---|---|---|---|\n",
    );
    for r in &reports {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {} |\n",
            r.fault, r.segments, r.transcoded, r.retried, r.gaps, r.max_failover_ms, r.sessions
        ));
    }
    let path = std::env::temp_dir().join("sluice-fault-report.md");
    std::fs::write(&path, &table).unwrap();
    println!("{table}");
    let problems: Vec<String> =
        reports.iter().flat_map(|r| r.problems.iter().map(move |p| format!("{}: {p}", r.fault))).collect();
    assert!(problems.is_empty(), "{}\n{table}", problems.join("\n"));
    assert_eq!(PANICS.load(Ordering::Relaxed), 0, "a gateway task panicked");
}
