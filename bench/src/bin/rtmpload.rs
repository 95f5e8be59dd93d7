//! Publisher load for ingest comparisons: N concurrent real-time RTMP streams of one FLV
//! file, looped (timestamps keep rising), from one process on its own runtime, with
//! Sluice's own publisher, so any RTMP server gets exactly the same bytes.
//!
//!   cargo run --release -p bench --bin rtmpload -- --clip FILE \
//!       --url-prefix rtmp://127.0.0.1:1935/live/ --streams 50 --seconds 60
//!
//! Stream `i` publishes to `{prefix}s{i}`; starts are spread over `--stagger-ms` so the
//! streams' keyframes do not all land at once. After `--seconds` it stops every stream
//! and prints how many stayed connected throughout and its own CPU time; it exits
//! non-zero if any publish failed. `bench/compare_servers.sh` drives it.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use engine::publish::{PublishOptions, publish_tags, read_flv};
use ingest::publisher::RtmpUrl;

struct Args {
    clip: PathBuf,
    prefix: String,
    streams: usize,
    seconds: u64,
    stagger_ms: u64,
    threads: usize,
}

const HELP: &str = "\
rtmpload --clip FILE --url-prefix rtmp://HOST:PORT/APP/ [--streams N] [--seconds S] [--stagger-ms M] [--threads T]
N real-time RTMP publishers of FILE (FLV, looped), stream i to {prefix}s{i}, for S seconds.
  --streams N      publishers (default 50)
  --seconds S      how long to publish (default 60)
  --stagger-ms M   spread the starts over M ms (default 2000)
  --threads T      runtime worker threads (default 1)
Exits non-zero if any stream's publish failed or ended early.";

fn args() -> anyhow::Result<Args> {
    let mut a =
        Args { clip: PathBuf::new(), prefix: String::new(), streams: 50, seconds: 60, stagger_ms: 2000, threads: 1 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{what} needs a value"));
        match flag.as_str() {
            "--clip" => a.clip = value("--clip")?.into(),
            "--url-prefix" => a.prefix = value("--url-prefix")?,
            "--streams" => a.streams = value("--streams")?.parse().context("--streams")?,
            "--seconds" => a.seconds = value("--seconds")?.parse().context("--seconds")?,
            "--stagger-ms" => a.stagger_ms = value("--stagger-ms")?.parse().context("--stagger-ms")?,
            "--threads" => a.threads = value("--threads")?.parse().context("--threads")?,
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}\n{HELP}"),
        }
    }
    anyhow::ensure!(!a.prefix.is_empty() && !a.clip.as_os_str().is_empty(), "--clip and --url-prefix are required");
    anyhow::ensure!(a.streams > 0 && a.threads > 0, "--streams and --threads must be positive");
    Ok(a)
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some(close) = stat.rfind(')') else { return 0.0 };
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let data = std::fs::read(&a.clip).with_context(|| format!("reading {}", a.clip.display()))?;
    let tags = Arc::new(read_flv(data.into())?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads)
        .thread_name("rtmpload")
        .enable_all()
        .build()?;
    let started = Instant::now();
    let failed = rt.block_on(async {
        let mut tasks = Vec::with_capacity(a.streams);
        for i in 0..a.streams {
            let url = RtmpUrl::parse(&format!("{}s{i}", a.prefix))?;
            let tags = tags.clone();
            let delay = Duration::from_millis(a.stagger_ms * i as u64 / a.streams as u64);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                publish_tags(&tags, &url, &PublishOptions { realtime: true, loops: None }).await
            }));
        }
        let mut last = Instant::now();
        while started.elapsed() < Duration::from_secs(a.seconds) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if last.elapsed() >= Duration::from_secs(10) {
                last = Instant::now();
                let up = tasks.iter().filter(|t| !t.is_finished()).count();
                eprintln!("rtmpload: {:>4.0} s, {up}/{} publishing", started.elapsed().as_secs_f64(), a.streams);
            }
        }
        let mut failed = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            if t.is_finished() {
                failed += 1;
                match t.await {
                    Ok(Err(e)) => eprintln!("rtmpload: stream s{i} failed: {e:#}"),
                    other => eprintln!("rtmpload: stream s{i} ended early: {other:?}"),
                }
            } else {
                t.abort();
            }
        }
        anyhow::Ok(failed)
    })?;
    println!(
        "rtmpload: {} streams for {:.0} s, {} connected throughout, publisher CPU {:.2} s",
        a.streams,
        started.elapsed().as_secs_f64(),
        a.streams - failed,
        cpu_seconds()
    );
    if failed > 0 {
        anyhow::bail!("{failed} of {} streams failed", a.streams);
    }
    Ok(())
}
