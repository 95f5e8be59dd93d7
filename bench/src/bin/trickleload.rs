//! Trickle fan-out load: one channel published at a steady bitrate, read by N subscribers on
//! loopback, through Sluice's trickle server (`transport::trickle_http`) and clients.
//!
//!   cargo run --release -p bench --bin trickleload -- --subscribers 100 --seconds 20
//!
//! Every published chunk starts with the time it was handed to the publisher; each
//! subscriber reads those stamps as the bytes arrive, so the added latency is measured from
//! publisher write to subscriber read. Prints delivered bytes/s, latency p50/p99/max, the
//! server's and the clients' CPU, and the memory 1,000 idle channels take. Exits non-zero
//! if a subscriber lost bytes.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use transport::tls::CertPolicy;
use transport::trickle::Limits;
use transport::trickle_client::{TrickleClient, TricklePublisher, TrickleSubscriber};
use transport::trickle_http::TrickleHub;

const HELP: &str = "\
trickleload [--subscribers N] [--seconds S] [--kbps K] [--segment-ms M] [--chunk-kb C]
            [--server-threads T] [--raw]
One channel at K kb/s (default 4000) in segments of M ms (default 1000) written in C KiB
chunks (default 16), read by N subscribers (default 100) for S seconds (default 20); the
server runs on T runtime threads (default 1), the clients on one. --raw measures the floor
instead: the same chunks relayed through plain TCP (one socket in, N out, no HTTP).";

struct Args {
    subscribers: usize,
    seconds: u64,
    kbps: u64,
    segment_ms: u64,
    chunk: usize,
    server_threads: usize,
    raw: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        subscribers: 100,
        seconds: 20,
        kbps: 4000,
        segment_ms: 1000,
        chunk: 16 * 1024,
        server_threads: 1,
        raw: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{what} needs a value"));
        match flag.as_str() {
            "--subscribers" => a.subscribers = value("--subscribers")?.parse()?,
            "--seconds" => a.seconds = value("--seconds")?.parse()?,
            "--kbps" => a.kbps = value("--kbps")?.parse()?,
            "--segment-ms" => a.segment_ms = value("--segment-ms")?.parse()?,
            "--raw" => a.raw = true,
            "--server-threads" => a.server_threads = value("--server-threads")?.parse()?,
            "--chunk-kb" => a.chunk = value("--chunk-kb")?.parse::<usize>()? * 1024,
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}\n{HELP}"),
        }
    }
    anyhow::ensure!(
        a.subscribers > 0 && a.chunk >= 16 && a.server_threads > 0,
        "--subscribers, --chunk-kb and --server-threads > 0"
    );
    Ok(a)
}

/// The floor under the trickle figures on this machine: the same chunks, at the same
/// pace, from one publisher socket through a relay that writes each to N subscriber
/// sockets in turn (what any fan-out server must do at least), with no HTTP and no ring.
fn raw_floor(
    a: &Args,
    server_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
    epoch: Instant,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (chunk, n) = (a.chunk, a.subscribers);
    let addr = server_rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let (mut input, _) = l.accept().await?;
            let mut outs = Vec::with_capacity(n);
            for _ in 0..n {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                outs.push(s);
            }
            let mut buf = vec![0u8; chunk];
            while input.read_exact(&mut buf).await.is_ok() {
                for o in &mut outs {
                    o.write_all(&buf).await?;
                }
            }
            anyhow::Ok(())
        });
        anyhow::Ok(addr)
    })?;
    let pause = Duration::from_secs_f64(chunk as f64 * 8.0 / (a.kbps as f64 * 1000.0));
    let cpu0 = (bench::thread_cpu_seconds("trickle-server"), bench::thread_cpu_seconds("trickle-clients"));
    let latencies = client_rt.block_on(async {
        let mut publisher = tokio::net::TcpStream::connect(addr).await?;
        publisher.set_nodelay(true)?;
        let mut subs = Vec::new();
        for _ in 0..n {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            subs.push(tokio::spawn(async move {
                let (mut stamps, mut mine, mut buf) = (Stamps::new(chunk), Vec::new(), vec![0u8; 64 * 1024]);
                while let Ok(got @ 1..) = s.read(&mut buf).await {
                    stamps.feed(&buf[..got], epoch.elapsed().as_micros() as u64, &mut mine);
                }
                mine
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let until = Instant::now() + Duration::from_secs(a.seconds);
        let mut tick = tokio::time::interval(pause);
        while Instant::now() < until {
            tick.tick().await;
            let mut body = vec![0u8; chunk];
            body[..8].copy_from_slice(&(epoch.elapsed().as_micros() as u64).to_be_bytes());
            publisher.write_all(&body).await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(publisher);
        let mut all = Vec::new();
        for s in subs {
            all.extend(s.await?);
        }
        anyhow::Ok(all)
    })?;
    let wall = a.seconds as f64;
    let cpu =
        (bench::thread_cpu_seconds("trickle-server") - cpu0.0, bench::thread_cpu_seconds("trickle-clients") - cpu0.1);
    let mut l = latencies;
    l.sort_unstable();
    println!("--- raw TCP relay (the floor) ---");
    println!(
        "{} kb/s in {} KiB chunks, {} subscribers, {:.0} s, {} chunks measured",
        a.kbps,
        chunk / 1024,
        n,
        wall,
        l.len()
    );
    println!(
        "added latency publisher write → subscriber read: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    println!("CPU: relay {:.0}% of a core, clients {:.0}%", cpu.0 / wall * 100.0, cpu.1 / wall * 100.0);
    Ok(())
}

/// Reads the publish-time stamps that sit at every `chunk` bytes of a stream, and only
/// them (copying whole chunks would measure this loop, not the transport).
struct Stamps {
    chunk: usize,
    /// Bytes seen.
    pos: usize,
    next: usize,
    stamp: [u8; 8],
    have: usize,
}

impl Stamps {
    fn new(chunk: usize) -> Self {
        Stamps { chunk, pos: 0, next: 0, stamp: [0; 8], have: 0 }
    }

    /// Feeds bytes read at `now` (µs); pushes the latency of each stamp completed.
    fn feed(&mut self, c: &[u8], now: u64, out: &mut Vec<u64>) {
        let mut i = 0;
        while i < c.len() {
            let at = self.pos + i;
            if at < self.next {
                i += self.next - at;
                continue;
            }
            let take = (8 - self.have).min(c.len() - i);
            self.stamp[self.have..self.have + take].copy_from_slice(&c[i..i + take]);
            (self.have, i) = (self.have + take, i + take);
            if self.have == 8 {
                out.push(now.saturating_sub(u64::from_be_bytes(self.stamp)));
                (self.have, self.next) = (0, self.next + self.chunk);
            }
        }
        self.pos += c.len();
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let epoch = Instant::now();
    let server_rt = bench::named_runtime("trickle-server", a.server_threads);
    let client_rt = bench::named_runtime("trickle-clients", 1);
    if a.raw {
        return raw_floor(&a, &server_rt, &client_rt, epoch);
    }
    let hub = TrickleHub::new(Limits::default(), false);
    hub.create("load", "video/MP2T").map_err(anyhow::Error::msg)?;
    let addr = server_rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let app = axum::Router::new().nest("/ai/trickle", transport::trickle_http::router(hub.clone()));
        let l = axum::serve::ListenerExt::tap_io(l, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(l, app).await });
        anyhow::Ok(addr)
    })?;
    let url = format!("http://{addr}/ai/trickle/load");
    let chunk = a.chunk;
    let chunks_per_segment = ((a.kbps * 1000 / 8 * a.segment_ms / 1000) as usize).div_ceil(chunk).max(1);
    let pause = Duration::from_secs_f64(chunk as f64 * 8.0 / (a.kbps as f64 * 1000.0));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let received = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let (cpu_server0, cpu_clients0) =
        (bench::thread_cpu_seconds("trickle-server"), bench::thread_cpu_seconds("trickle-clients"));
    let published = client_rt.block_on(async {
        let mut subs = Vec::new();
        for _ in 0..a.subscribers {
            let (url, latencies, received, lost) = (url.clone(), latencies.clone(), received.clone(), lost.clone());
            subs.push(tokio::spawn(async move {
                let mut sub = TrickleSubscriber::new(TrickleClient::new(CertPolicy::AcceptAny), &url, -1);
                let mut mine = Vec::new();
                while let Ok(Some(mut seg)) = sub.next_segment().await {
                    let mut stamps = Stamps::new(chunk);
                    while let Ok(Some(c)) = seg.chunk().await {
                        let now = epoch.elapsed().as_micros() as u64;
                        received.fetch_add(c.len() as u64, Ordering::Relaxed);
                        stamps.feed(&c, now, &mut mine);
                    }
                    let pos = stamps.pos;
                    if pos != chunk * chunks_per_segment && pos != 0 {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies.lock().unwrap().extend(mine);
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut publisher = TricklePublisher::start(TrickleClient::new(CertPolicy::AcceptAny), &url).await?;
        let until = Instant::now() + Duration::from_secs(a.seconds);
        let mut segments = 0u64;
        let mut tick = tokio::time::interval(pause);
        while Instant::now() < until {
            let mut w = publisher.segment();
            for _ in 0..chunks_per_segment {
                tick.tick().await;
                let mut body = vec![0u8; chunk];
                body[..8].copy_from_slice(&(epoch.elapsed().as_micros() as u64).to_be_bytes());
                w.write(Bytes::from(body)).await?;
            }
            w.finish().await?;
            segments += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        publisher.close().await?;
        for s in subs {
            let _ = s.await;
        }
        anyhow::Ok(segments)
    })?;
    let wall = a.seconds as f64;
    let (cpu_server, cpu_clients) = (
        bench::thread_cpu_seconds("trickle-server") - cpu_server0,
        bench::thread_cpu_seconds("trickle-clients") - cpu_clients0,
    );
    let mut l = latencies.lock().unwrap().clone();
    l.sort_unstable();
    let bytes = received.load(Ordering::Relaxed);
    println!("--- trickle fan-out ---");
    println!(
        "1 channel at {} kb/s, {} segments of {} chunks × {} KiB, {} subscribers, {:.0} s",
        a.kbps,
        published,
        chunks_per_segment,
        chunk / 1024,
        a.subscribers,
        wall
    );
    println!("delivered {:.1} MB/s in total ({} chunks measured)", bytes as f64 / wall / 1e6, l.len());
    println!(
        "added latency publisher write → subscriber read: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    println!(
        "CPU: server {:.0}% of a core, clients (publisher + subscribers) {:.0}%",
        cpu_server / wall * 100.0,
        cpu_clients / wall * 100.0
    );
    // Memory of idle channels: created and left alone.
    let before = bench::rss();
    for i in 0..1000 {
        hub.create(&format!("idle{i}"), "video/MP2T").map_err(anyhow::Error::msg)?;
    }
    let after = bench::rss();
    println!(
        "1,000 idle channels: {:.1} KiB resident in all ({} B each)",
        after.saturating_sub(before) as f64 / 1024.0,
        after.saturating_sub(before) / 1000
    );
    let lost = lost.load(Ordering::Relaxed);
    anyhow::ensure!(lost == 0, "{lost} segments arrived incomplete");
    Ok(())
}
