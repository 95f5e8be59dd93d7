//! LL-HLS delivery under load: one stream (the demo clip, looped in real time over RTMP)
//! and N readers, each doing what an LL-HLS player does at the live edge: a blocking
//! playlist reload for the preload-hinted part (`_HLS_msn`/`_HLS_part`), again and
//! again, each on its own keep-alive HTTP/1.1 connection.
//!
//!   cargo run --release -p bench --bin llload -- --readers 1000 --seconds 30
//!
//! The delivery delay of a part is the time from its publication (the moment the
//! gateway's CMAF output listed it, seen in this process) to a reader receiving a
//! playlist that lists it; p50/p99/max over every reader and part are printed, with the
//! requests answered, the failures and the gateway's CPU. The gateway has its own two
//! threads; the readers and the publisher run on one more, and the publication monitor
//! on another (so it is not woken behind the gateway's handlers).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use engine::publish::{PublishOptions, publish_tags, read_flv};
use engine::{Gateway, GatewayConfig};
use ingest::publisher::RtmpUrl;
use segmenter::llhls::{FileName, parse_file_name};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const HELP: &str = "\
llload [--readers N] [--seconds S]
One real-time stream and N LL-HLS readers doing blocking reloads of its video playlist
for S seconds; prints the p50/p99/max delay from a part's publication to its delivery.
  --readers N   concurrent readers (default 1000)
  --seconds S   how long to measure (default 30)";

type Published = Arc<Mutex<HashMap<(u64, u32), Instant>>>;

fn main() -> anyhow::Result<()> {
    let (mut readers, mut seconds) = (1000usize, 30u64);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |flag: &str| bench::number_arg(&mut it, flag);
        match flag.as_str() {
            "--readers" => readers = num("--readers")? as usize,
            "--seconds" => seconds = num("--seconds")?,
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let gw_rt = bench::named_runtime("gateway", 2);
    let client_rt = bench::named_runtime("client", 1);
    let gw = gw_rt.block_on(async {
        let any = "127.0.0.1:0".parse().unwrap();
        let mut config = GatewayConfig::default();
        config.listen.rtmp_addr = any;
        config.listen.http_addr = any;
        config.listen.cli_addr = any;
        Gateway::start(config).await
    })?;
    let tags = Arc::new(read_flv(bench::demo_clip())?);
    let url = RtmpUrl { addr: gw.rtmp_addr.to_string(), app: "live".into(), name: "ll".into() };
    client_rt.spawn(async move { publish_tags(&tags, &url, &PublishOptions { realtime: true, loops: None }).await });

    // Publication times, from the CMAF output's change counter.
    let published: Published = Arc::default();
    let registry = gw.registry().clone();
    let p = published.clone();
    // On a thread of its own, so it wakes with the gateway's handlers, not behind them.
    let monitor_rt = bench::named_runtime("monitor", 1);
    monitor_rt.spawn(async move {
        let c = loop {
            if let Some(c) = registry.cmaf("ll") {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let mut changes = c.read().unwrap().subscribe();
        loop {
            let last = c.read().unwrap().last_part("video");
            if let Some(k) = last {
                p.lock().unwrap().entry(k).or_insert_with(Instant::now);
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
    let addr = gw.http_addr;
    let result = client_rt.block_on(async move {
        // Wait for the playlist, then start every reader.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut c = Client::connect(addr).await?;
            if c.get("/stream/ll/ll/video.m3u8").await.is_ok_and(|(s, b)| s == 200 && b.contains("#EXT-X-PART")) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "no LL-HLS playlist within 20 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("llload: {readers} readers of one stream on {addr}, {seconds} s");
        let (t0, gw0) = (Instant::now(), bench::thread_cpu_seconds("gateway"));
        let until = t0 + Duration::from_secs(seconds);
        let tasks: Vec<_> =
            (0..readers).map(|_| tokio::spawn(reader(addr, until, published.clone()))).collect();
        let (mut delays, mut answered, mut failed) = (Vec::new(), 0u64, 0u64);
        for t in tasks {
            let r = t.await?;
            delays.extend(r.delays);
            answered += r.answered;
            failed += r.failed;
        }
        let cpu = (bench::thread_cpu_seconds("gateway") - gw0) / t0.elapsed().as_secs_f64();
        delays.sort_by(f64::total_cmp);
        let pct = |q: f64| delays.get(((delays.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
        println!(
            "llload: {answered} blocking reloads answered, {failed} failed; {} deliveries; delay from publication p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; gateway cpu {:.0}%",
            delays.len(),
            pct(0.5),
            pct(0.99),
            delays.last().copied().unwrap_or(f64::NAN),
            cpu * 100.0
        );
        anyhow::ensure!(failed == 0, "{failed} requests failed");
        Ok(())
    });
    gw_rt.block_on(gw.shutdown());
    result
}

struct ReaderResult {
    delays: Vec<f64>,
    answered: u64,
    failed: u64,
}

/// One player at the live edge until `until`.
async fn reader(addr: std::net::SocketAddr, until: Instant, published: Published) -> ReaderResult {
    let mut r = ReaderResult { delays: Vec::new(), answered: 0, failed: 0 };
    let Ok(mut c) = Client::connect(addr).await else {
        r.failed += 1;
        return r;
    };
    let mut path = "/stream/ll/ll/video.m3u8".to_owned();
    while Instant::now() < until {
        let Ok((status, body)) = c.get(&path).await else {
            r.failed += 1;
            return r;
        };
        let now = Instant::now();
        if status != 200 {
            r.failed += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        r.answered += 1;
        // The newest part listed, and the hinted one to block for next.
        let part = |line: &str| {
            let uri = line.split("URI=\"").nth(1)?.split('"').next()?;
            match parse_file_name(uri)? {
                FileName::Part(_, msn, part) => Some((msn, part)),
                _ => None,
            }
        };
        let newest = body.lines().rev().filter(|l| l.starts_with("#EXT-X-PART:")).find_map(part);
        if let Some(at) = newest.and_then(|k| published.lock().unwrap().get(&k).copied()) {
            r.delays.push(now.saturating_duration_since(at).as_secs_f64() * 1e3);
        }
        match body.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT")).and_then(part) {
            Some((msn, p)) => path = format!("/stream/ll/ll/video.m3u8?_HLS_msn={msn}&_HLS_part={p}"),
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    r
}

/// A minimal keep-alive HTTP/1.1 client (bodies with `Content-Length`).
struct Client {
    io: BufReader<TcpStream>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Client> {
        Ok(Client { io: BufReader::new(TcpStream::connect(addr).await?) })
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<(u16, String)> {
        self.io.get_mut().write_all(format!("GET {path} HTTP/1.1\r\nHost: sluice\r\n\r\n").as_bytes()).await?;
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        let status: u16 = line.split(' ').nth(1).context("status line")?.parse()?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.io.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse()?;
            }
        }
        let mut body = vec![0; len];
        self.io.read_exact(&mut body).await?;
        Ok((status, String::from_utf8(body)?))
    }
}
