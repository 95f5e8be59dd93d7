//! `sluice`: the live-media gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use engine::publish::{PublishOptions, publish_tags, read_flv};
use engine::{Gateway, GatewayConfig};
use ingest::publisher::RtmpUrl;
use tracing::{error, info, warn};

/// Sluice: a live-media gateway. RTMP in, MPEG-TS segments, HLS out.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "Sluice: a live-media gateway. RTMP in, MPEG-TS segments, HLS out.", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing EnvFilter syntax, e.g. `info`, `engine=debug,ingest=trace`).
    #[arg(long, global = true, env = "SLUICE_LOG", default_value = "info")]
    log: String,
    /// Log format.
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway: RTMP ingest, HLS playback, control API and metrics.
    Gateway(GatewayArgs),
    /// Run a gateway on loopback and publish the bundled test clip into it, looping, so
    /// there is something to watch right away. Prints the player URL.
    Demo(DemoArgs),
    /// Segment an FLV or MPEG-TS file into a VOD HLS playlist (index.m3u8 + N.ts).
    Segment(SegmentArgs),
    /// Publish an FLV file to an RTMP server (as an encoder would).
    Publish(PublishArgs),
}

/// Settings shared by `gateway` and `demo`; each overrides the config file.
#[derive(Args, Debug, Default)]
struct GatewayArgs {
    /// TOML config file (see README for the keys).
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// RTMP listen address [default: 127.0.0.1:1935].
    #[arg(long, env = "SLUICE_RTMP_ADDR")]
    rtmp_addr: Option<SocketAddr>,
    /// HTTP playback listen address [default: 127.0.0.1:9935].
    #[arg(long, env = "SLUICE_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Control API and /metrics listen address [default: 127.0.0.1:5935].
    #[arg(long, env = "SLUICE_CLI_ADDR")]
    cli_addr: Option<SocketAddr>,
    /// Target segment duration in seconds [default: 2].
    #[arg(long, env = "SLUICE_SEGMENT_DURATION")]
    segment_duration: Option<f64>,
    /// Segments listed in a live playlist; 0 lists all [default: 6].
    #[arg(long, env = "SLUICE_PLAYLIST_WINDOW")]
    playlist_window: Option<usize>,
    /// Seconds an ended stream stays playable and resumable [default: 60].
    #[arg(long, env = "SLUICE_STREAM_GRACE")]
    stream_grace: Option<f64>,
    /// Most concurrent streams [default: 1000].
    #[arg(long, env = "SLUICE_MAX_STREAMS")]
    max_streams: Option<usize>,
    /// Directory with hls.min.js for the player page [default: web/node_modules/hls.js/dist if present].
    #[arg(long, env = "SLUICE_WEB_DIR")]
    web_dir: Option<PathBuf>,
}

impl GatewayArgs {
    fn resolve(&self) -> anyhow::Result<GatewayConfig> {
        let mut c = match &self.config {
            Some(p) => GatewayConfig::from_file(p)?,
            None => GatewayConfig::default(),
        };
        macro_rules! over {
            ($($f:ident),*) => { $(if let Some(v) = self.$f.clone() { c.$f = v; })* };
        }
        over!(rtmp_addr, http_addr, cli_addr, segment_duration, playlist_window, stream_grace, max_streams);
        if let Some(d) = &self.web_dir {
            c.web_dir = Some(d.clone());
        }
        if c.web_dir.is_none() {
            let local = PathBuf::from(engine::DEFAULT_WEB_DIR);
            if local.join("hls.min.js").exists() {
                c.web_dir = Some(local);
            }
        }
        c.validate()?;
        Ok(c)
    }
}

#[derive(Args, Debug)]
struct DemoArgs {
    #[command(flatten)]
    gateway: GatewayArgs,
    /// FLV clip to publish instead of the bundled one.
    #[arg(long)]
    clip: Option<PathBuf>,
    /// Stream name to publish under.
    #[arg(long, default_value = "demo")]
    name: String,
}

#[derive(Args, Debug)]
struct SegmentArgs {
    /// Input file (FLV or MPEG-TS).
    input: PathBuf,
    /// Output directory (created if missing).
    #[arg(long, short)]
    out: PathBuf,
    /// Target segment duration in seconds.
    #[arg(long, default_value_t = 2.0)]
    segment_duration: f64,
}

#[derive(Args, Debug)]
struct PublishArgs {
    /// FLV file to send.
    input: PathBuf,
    /// Destination, e.g. rtmp://127.0.0.1:1935/live/mystream
    url: String,
    /// Send as fast as possible instead of in real time.
    #[arg(long)]
    fast: bool,
    /// Times to send the file (0 = forever).
    #[arg(long, default_value_t = 1)]
    loops: u64,
}

fn init_logging(filter: &str, format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_format);
    match cli.command {
        Command::Segment(a) => {
            let r = engine::offline::segment_file(&a.input, &a.out, a.segment_duration)?;
            let secs = r.elapsed.as_secs_f64().max(1e-9);
            println!(
                "{} segments, {:.2} s of media, {} -> {} bytes in {:.3} s ({:.0} MB/s); playlist {}",
                r.segments,
                r.duration_secs,
                r.input_bytes,
                r.output_bytes,
                secs,
                r.input_bytes as f64 / secs / 1e6,
                a.out.join("index.m3u8").display()
            );
            Ok(())
        }
        command => tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(command)),
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Gateway(args) => {
            let gw = Gateway::start(args.resolve()?).await?;
            println!("RTMP ingest:  rtmp://{}/live/{{stream}}", gw.rtmp_addr);
            println!("HLS playback: http://{}/stream/{{stream}}.m3u8", gw.http_addr);
            println!("Control API:  http://{}/streams  metrics: http://{}/metrics", gw.cli_addr, gw.cli_addr);
            wait_for_signal().await;
            info!("shutting down");
            gw.shutdown().await;
            Ok(())
        }
        Command::Demo(args) => demo(args).await,
        Command::Publish(a) => {
            let data = Bytes::from(std::fs::read(&a.input).with_context(|| format!("reading {}", a.input.display()))?);
            let tags = read_flv(data)?;
            let url = RtmpUrl::parse(&a.url)?;
            let opts = PublishOptions { realtime: !a.fast, loops: (a.loops > 0).then_some(a.loops) };
            let sent = tokio::select! {
                r = publish_tags(&tags, &url, &opts) => r?,
                _ = wait_for_signal() => return Ok(()),
            };
            println!("sent {sent} tags to {}", a.url);
            Ok(())
        }
        Command::Segment(_) => unreachable!("handled without a runtime"),
    }
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let clip = match &args.clip {
        Some(p) => Bytes::from(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => Bytes::from_static(engine::DEMO_CLIP),
    };
    let tags = read_flv(clip)?;
    let gw = Gateway::start(args.gateway.resolve()?).await?;
    let url = RtmpUrl { addr: gw.rtmp_addr.to_string(), app: "live".into(), name: args.name.clone() };
    let name = args.name.clone();
    let publisher = tokio::spawn(async move {
        let opts = PublishOptions { realtime: true, loops: None };
        loop {
            if let Err(err) = publish_tags(&tags, &url, &opts).await {
                warn!(%err, "demo publisher stopped; restarting");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    println!();
    println!("Sluice demo is running. Publishing the bundled clip as stream '{name}'.");
    println!(
        "  RTMP ingest:  rtmp://{}/live/{name}   (publish your own: ffmpeg -re -i FILE -c copy -f flv rtmp://{}/live/NAME)",
        gw.rtmp_addr, gw.rtmp_addr
    );
    println!("  HLS playback: http://{}/stream/{name}.m3u8", gw.http_addr);
    println!("  Player:       http://{}/player/{name}", gw.http_addr);
    println!("  Streams:      http://{}/streams   Metrics: http://{}/metrics", gw.cli_addr, gw.cli_addr);
    println!("Press Ctrl-C to stop.");
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = wait_for_signal() => break,
            _ = tick.tick() => {
                for s in gw.registry().list() {
                    info!(stream_id = %s.id, segments = s.stats.segments, media_secs = format!("{:.0}", s.stats.duration_secs), bytes = s.stats.bytes, "progress");
                }
            }
        }
    }
    publisher.abort();
    gw.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
