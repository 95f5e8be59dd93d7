//! Load generator: one gateway, N live RTMP streams published in real time, transcoded
//! through K local echo orchestrators (TLS, the real protocol; renditions are the input,
//! so what is measured is the gateway, not x264).
//!
//!   cargo run --release -p bench --bin loadgen -- --streams 200 --orchestrators 2 --seconds 60
//!
//! With `--live`, each stream is a live AI stream instead (`?pipeline=echo`: the local
//! orchestrators' runner returns the input segments undecoded, so what is measured is the
//! gateway's live path): the summary gives the per-frame round trip, the gateway's input
//! and output hand-off times, swaps and the gateway's CPU.
//!
//! Prints a progress line every 10 s and a summary: segments transcoded and failed, the
//! dispatch latency (segment closed → request handed to the HTTP client) p50/p99 from
//! the gateway's histogram, the upload latency p99 (request → orchestrator's response
//! headers), and the process's CPU use. Exits non-zero if any segment failed.
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use engine::publish::{PublishOptions, publish_tags, read_flv};
use engine::{Gateway, GatewayConfig};
use ingest::publisher::RtmpUrl;
use orchestrator::service::{OrchestratorConfig, start};
use orchestrator::transcode::EchoTranscoder;

struct Args {
    streams: usize,
    orchestrators: usize,
    seconds: u64,
    paid: bool,
    /// Kill the busiest orchestrator this many seconds in.
    kill_at: Option<u64>,
    /// Live AI streams (`?pipeline=echo`) instead of transcoded ones.
    live: bool,
    /// Orchestrators elsewhere (other processes) instead of in-process ones, so this
    /// process's memory is the gateway's (and the publishers').
    external: Vec<String>,
}

const HELP: &str = "\
loadgen [--streams N] [--orchestrators K] [--seconds S] [--paid] [--kill-one-at T] [--live]
        [--orch-uri URI[,URI]]
N real-time RTMP streams into one gateway, transcoded by K local echo orchestrators.
  --kill-one-at T  at T seconds, the busiest orchestrator dies (its runtime is dropped)
  --live           live AI streams on the `echo` model instead of transcoded ones
  --orch-uri       orchestrators in other processes (`sluice orchestrator --transcoder echo
                   --live-capacity N`) instead of in-process ones: the memory figure is
                   then the gateway's (with the publishers')";

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        streams: 200,
        orchestrators: 2,
        seconds: 60,
        paid: false,
        kill_at: None,
        live: false,
        external: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |flag: &str| bench::number_arg(&mut it, flag);
        match flag.as_str() {
            "--streams" => a.streams = num("--streams")? as usize,
            "--orchestrators" => a.orchestrators = num("--orchestrators")? as usize,
            "--seconds" => a.seconds = num("--seconds")?,
            "--paid" => a.paid = true,
            "--live" => a.live = true,
            "--kill-one-at" => a.kill_at = Some(num("--kill-one-at")?),
            "--orch-uri" => {
                let list = it.next().context("--orch-uri needs a value")?;
                a.external = list.split(',').map(str::to_owned).collect();
            }
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(a.streams > 0 && a.orchestrators > 0, "--streams and --orchestrators must be positive");
    anyhow::ensure!(a.external.is_empty() || a.kill_at.is_none(), "--kill-one-at needs in-process orchestrators");
    Ok(a)
}

/// The gateway's CPU seconds: its runtime's threads and its ingest threads.
fn gateway_cpu() -> f64 {
    bench::thread_cpu_seconds("gateway") + bench::thread_cpu_seconds("sluice-ingest")
}

const GATEWAY_KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const ORCH_KEY: &str = "8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f";

fn main() -> anyhow::Result<()> {
    let a = args()?;
    // Logs only when asked (SLUICE_LOG=info, say): a load run prints its own summary.
    if let Ok(filter) = std::env::var("SLUICE_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    }
    // The gateway gets its own two threads; the orchestrators and the publishers (the
    // rest of the world) run on theirs, so their work does not delay the gateway's tasks
    // and the gateway's CPU can be told apart.
    // One runtime per orchestrator, so one can die abruptly: dropping its runtime drops
    // every task and socket it has, as a crash would.
    let mut orch_rts = Vec::new();
    let mut uris = Vec::new();
    uris.extend(a.external.iter().cloned());
    for _ in 0..if a.external.is_empty() { a.orchestrators } else { 0 } {
        let rt = bench::named_runtime("orch", 1);
        let o = rt.block_on(orchestrator(&a))?;
        uris.push(o.service_uri.clone());
        orch_rts.push(Some((rt, o)));
    }
    let orch_rts = std::sync::Mutex::new(orch_rts);
    let pub_rt = bench::named_runtime("pub", 1);
    let gw_rt = bench::named_runtime("gateway", 2);
    let kill = |uri: &str| {
        let mut rts = orch_rts.lock().unwrap();
        for slot in rts.iter_mut() {
            if slot.as_ref().is_some_and(|(_, o)| o.service_uri == uri) {
                let (rt, _o) = slot.take().unwrap();
                rt.shutdown_background();
                println!("killed orchestrator {uri}");
            }
        }
    };
    let result = gw_rt.block_on(run(&a, uris, &pub_rt, &kill));
    for (rt, o) in orch_rts.into_inner().unwrap().into_iter().flatten() {
        rt.block_on(o.shutdown());
    }
    result
}

async fn orchestrator(a: &Args) -> anyhow::Result<orchestrator::service::OrchestratorHandle> {
    let mut cfg = OrchestratorConfig::new("127.0.0.1:0".parse()?, Arc::new(EchoTranscoder));
    cfg.max_sessions = a.streams * 2;
    cfg.live_capacity = if a.live { a.streams } else { 0 };
    if a.paid {
        cfg.signer = Some(transport::identity::EthSigner::from_hex(ORCH_KEY).map_err(anyhow::Error::msg)?);
        cfg.price = transport::proto::PriceInfo { price_per_unit: 1000, pixels_per_unit: 1, ..Default::default() };
    }
    Ok(start(cfg).await?)
}

async fn run(
    a: &Args,
    orch_uris: Vec<String>,
    pub_rt: &tokio::runtime::Runtime,
    kill: &dyn Fn(&str),
) -> anyhow::Result<()> {
    let any = "127.0.0.1:0".parse()?;
    let mut config = GatewayConfig::default();
    config.listen.rtmp_addr = any;
    config.listen.http_addr = any;
    config.listen.cli_addr = any;
    config.listen.max_streams = a.streams + 16;
    config.segmenting.stream_grace = 5.0;
    config.orchestrators.orch_addr = orch_uris.join(",");
    if a.paid {
        let key = std::env::temp_dir().join(format!("loadgen-{}.key", std::process::id()));
        std::fs::write(&key, GATEWAY_KEY)?;
        config.payment.network = "arbitrum-one-mainnet".into();
        config.payment.eth_key_file = Some(key);
    }
    let gw = Gateway::start(config).await?;
    let tags = Arc::new(read_flv(bench::demo_clip())?);
    println!(
        "loadgen: {} streams → gateway {} → {} echo orchestrators{}, {} s",
        a.streams,
        gw.rtmp_addr,
        a.orchestrators,
        if a.paid { " (paid)" } else { "" },
        a.seconds
    );
    let rss0 = bench::rss();
    let mut publishers = Vec::new();
    for i in 0..a.streams {
        let tags = tags.clone();
        let name = if a.live { format!("load{i}?pipeline=echo") } else { format!("load{i}") };
        let url = RtmpUrl { addr: gw.rtmp_addr.to_string(), app: "live".into(), name };
        publishers.push(pub_rt.spawn(async move {
            // Spread the streams' keyframes over the first two seconds.
            tokio::time::sleep(Duration::from_millis((i as u64 * 2000) / 200)).await;
            publish_tags(&tags, &url, &PublishOptions { realtime: true, loops: None }).await
        }));
    }
    if a.live {
        // Discovery has to have seen the orchestrators' live models before streams start.
        let deadline = Instant::now() + Duration::from_secs(20);
        while gw.registry().orchestrators().iter().any(|o| o.live_models.is_empty()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (t0, cpu0, gw0) = (Instant::now(), bench::thread_cpu_seconds(""), gateway_cpu());
    let (orch0, pub0) = (bench::thread_cpu_seconds("orch"), bench::thread_cpu_seconds("pub"));
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    let mut killed = false;
    while t0.elapsed() < Duration::from_secs(a.seconds) {
        match a.kill_at {
            Some(k) if !killed => {
                let until = t0 + Duration::from_secs(k);
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {
                        let busiest = gw.registry().orchestrators().into_iter().max_by_key(|o| o.sessions);
                        if let Some(o) = busiest {
                            kill(&o.uri);
                        }
                        killed = true;
                        continue;
                    }
                }
            }
            _ => {
                tick.tick().await;
            }
        }
        let m = gw.metrics();
        let live = gw.registry().list().iter().filter(|s| s.stats.live).count();
        let d = m.dispatch_quantile(0.99).map_or("-".into(), |(b, ..)| format!("{:.3} ms", b * 1e3));
        println!(
            "[{:>4.0} s] live {live}  segments {}  transcoded {}  failed {}  dispatch p99 ≤ {d}  gateway cpu {:.0}%",
            t0.elapsed().as_secs_f64(),
            m.segments_total.load(std::sync::atomic::Ordering::Relaxed),
            m.transcoded_total.load(std::sync::atomic::Ordering::Relaxed),
            m.transcode_failures_total.load(std::sync::atomic::Ordering::Relaxed),
            (gateway_cpu() - gw0) / t0.elapsed().as_secs_f64() * 100.0,
        );
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = bench::thread_cpu_seconds("") - cpu0;
    let gw_cpu = gateway_cpu() - gw0;
    let rss1 = bench::rss();
    // The live AI jobs' states while their publishers still send.
    let live_states: Vec<Option<String>> = (0..if a.live { a.streams } else { 0 })
        .map(|i| gw.registry().live(&format!("load{i}")).map(|l| l.status().gateway.state.to_owned()))
        .collect();
    for p in &publishers {
        p.abort();
    }
    let m = gw.metrics();
    let transcoded = m.transcoded_total.load(std::sync::atomic::Ordering::Relaxed);
    let failed = m.transcode_failures_total.load(std::sync::atomic::Ordering::Relaxed);
    // One figure of every stream's recent segment results, sorted.
    let streams = gw.registry().list();
    let figures = |f: fn(&engine::status::SegmentResult) -> Option<f64>| {
        let mut v: Vec<f64> = streams.iter().flat_map(|s| s.transcode.recent.iter().filter_map(f)).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let failovers = figures(|r| r.failover_ms);
    let retried = failovers.len();
    let uploads = figures(|r| r.upload_ms);
    let pct = |v: &[f64], q: f64| {
        v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN)
    };
    let (p50, ..) = m.dispatch_quantile(0.5).unwrap_or((f64::NAN, 0, f64::NAN));
    let (p99, n, mean) = m.dispatch_quantile(0.99).unwrap_or((f64::NAN, 0, f64::NAN));
    println!("--- summary ---");
    println!("streams {}  orchestrators {}  wall {:.1} s", a.streams, a.orchestrators, wall);
    println!("segments transcoded {transcoded}  failed {failed}  retried on another orchestrator {retried}");
    if retried > 0 {
        println!(
            "extra latency of retried segments (first attempt → successful attempt): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            pct(&failovers, 0.5),
            pct(&failovers, 0.99),
            failovers.last().copied().unwrap_or(0.0)
        );
    }
    println!(
        "dispatch (closed → request to HTTP client): n {n}  mean {:.3} ms  p50 ≤ {:.3} ms  p99 ≤ {:.3} ms",
        mean * 1e3,
        p50 * 1e3,
        p99 * 1e3
    );
    println!(
        "upload (request → response headers, last 64 per stream): p50 {:.2} ms  p99 {:.2} ms",
        pct(&uploads, 0.5),
        pct(&uploads, 0.99)
    );
    println!("gateway CPU {:.1} s over {:.1} s = {:.0}% of one core", gw_cpu, wall, gw_cpu / wall * 100.0);
    println!("whole process CPU (gateway + publishers + orchestrators) {:.0}% of one core", cpu / wall * 100.0);
    println!(
        "process memory grew {:.0} MiB over the run: {:.0} KiB a stream ({})",
        rss1.saturating_sub(rss0) as f64 / (1 << 20) as f64,
        rss1.saturating_sub(rss0) as f64 / 1024.0 / a.streams as f64,
        if a.external.is_empty() { "gateway, orchestrators and publishers together" } else { "gateway and publishers" }
    );
    if a.external.is_empty() {
        println!(
            "orchestrator threads {:.0}% of one core each (one thread per orchestrator), publisher thread {:.0}%",
            (bench::thread_cpu_seconds("orch") - orch0) / wall * 100.0 / a.orchestrators as f64,
            (bench::thread_cpu_seconds("pub") - pub0) / wall * 100.0
        );
    }
    if a.live {
        use engine::metrics::LiveTiming;
        let q = |t: LiveTiming, p: f64| m.live_quantile(t, p).map_or(f64::NAN, |(b, ..)| b * 1e3);
        let mut running = 0;
        for (i, state) in live_states.iter().enumerate() {
            match state.as_deref() {
                Some("running") => running += 1,
                other => println!("load{i}: {}", other.unwrap_or("no live AI job")),
            }
        }
        let n = m.live_quantile(LiveTiming::RoundTrip, 0.5).map_or(0, |(_, n, _)| n);
        println!("live AI streams running at the end {running} of {}", a.streams);
        println!(
            "per-frame round trip (echo runner, bucket bounds): n {n}  p50 ≤ {:.0} ms  p99 ≤ {:.0} ms",
            q(LiveTiming::RoundTrip, 0.5),
            q(LiveTiming::RoundTrip, 0.99)
        );
        println!(
            "gateway-added: input hand-off p99 ≤ {:.3} ms  output hand-off p99 ≤ {:.3} ms",
            q(LiveTiming::InputHandoff, 0.99),
            q(LiveTiming::OutputHandoff, 0.99)
        );
        println!(
            "swaps {}  start failures {}",
            m.live_swaps_total.load(std::sync::atomic::Ordering::Relaxed),
            m.live_start_failures_total.load(std::sync::atomic::Ordering::Relaxed)
        );
        gw.shutdown().await;
        anyhow::ensure!(running == a.streams, "{} live streams were not running", a.streams - running);
        return Ok(());
    }
    gw.shutdown().await;
    if failed > 0 {
        anyhow::bail!("{failed} segments failed to transcode");
    }
    Ok(())
}
