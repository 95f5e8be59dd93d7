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
    /// Run a Livepeer-compatible orchestrator that transcodes on this machine's CPU with
    /// GStreamer (for development, the demo and tests).
    Orchestrator(OrchestratorArgs),
}

#[derive(Args, Debug)]
struct OrchestratorArgs {
    /// Listen address (gRPC and HTTP on one port).
    #[arg(long, env = "SLUICE_ORCH_LISTEN", default_value = "127.0.0.1:8935")]
    listen: SocketAddr,
    /// Service URI announced to gateways [default: https://LISTEN, or http:// with --no-tls].
    #[arg(long)]
    service_uri: Option<String>,
    /// Serve cleartext HTTP/1.1 and h2c instead of TLS.
    #[arg(long)]
    no_tls: bool,
    /// `offchain` (no payments, no signatures) or a network name: quote tickets and check
    /// payments and signatures (needs a key).
    #[arg(long, default_value = "offchain")]
    network: String,
    /// File holding the orchestrator's raw hex private key (paid mode).
    #[arg(long)]
    eth_key_file: Option<PathBuf>,
    /// Keystore file or directory holding the orchestrator's key (paid mode).
    #[arg(long)]
    eth_keystore_path: Option<PathBuf>,
    /// File holding the keystore password.
    #[arg(long)]
    eth_password: Option<PathBuf>,
    /// Price in wei per --pixels-per-unit pixels (paid mode).
    #[arg(long, default_value_t = 1)]
    price_per_unit: i64,
    /// Pixels the price is for.
    #[arg(long, default_value_t = 1)]
    pixels_per_unit: i64,
    /// Target expected value of one ticket, in wei.
    #[arg(long, default_value_t = orchestrator::recipient::DEFAULT_TICKET_EV)]
    ticket_ev: u64,
    /// Sessions served at once before answering OrchestratorCapped.
    #[arg(long, default_value_t = 10)]
    max_sessions: usize,
    /// `gstreamer` (decode, scale, x264) or `echo` (returns the input; for load tests).
    #[arg(long, value_enum, default_value_t = TranscoderKind::Gstreamer)]
    transcoder: TranscoderKind,
    /// GStreamer processes at once [default: number of CPUs].
    #[arg(long)]
    parallel: Option<usize>,
    /// Seconds per block of the local block clock; ticket params expire after 40 blocks.
    #[arg(long, default_value_t = 12.0)]
    block_time: f64,
    /// Scratch directory for GStreamer jobs [default: the system temp dir].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Write every GetOrchestrator and /segment exchange (as received, after TLS) into
    /// this directory.
    #[arg(long)]
    capture_dir: Option<PathBuf>,
    /// Accept `POST /fault` ({"mode": "hang|error500|busy_alternate|garbage|none",
    /// "price_per_unit": N}) to misbehave on purpose. For fault-injection tests only.
    #[arg(long)]
    allow_faults: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TranscoderKind {
    Gstreamer,
    Echo,
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
    /// Longest segment in seconds, also the playlists' fixed EXT-X-TARGETDURATION (rounded
    /// up); a GOP longer than this is cut without a keyframe [default: 2 × segment duration].
    #[arg(long, env = "SLUICE_MAX_SEGMENT_DURATION")]
    max_segment_duration: Option<f64>,
    /// Segments listed in a live playlist; 0 lists all [default: 6].
    #[arg(long, env = "SLUICE_PLAYLIST_WINDOW")]
    playlist_window: Option<usize>,
    /// Seconds an ended stream stays playable and resumable [default: 60].
    #[arg(long, env = "SLUICE_STREAM_GRACE")]
    stream_grace: Option<f64>,
    /// Threads dedicated to RTMP ingest, each a single-threaded runtime; 0 = the main
    /// runtime [default: 1].
    #[arg(long, env = "SLUICE_INGEST_THREADS")]
    ingest_threads: Option<usize>,
    /// Most concurrent streams [default: 1000].
    #[arg(long, env = "SLUICE_MAX_STREAMS")]
    max_streams: Option<usize>,
    /// Directory with hls.min.js for the player page [default: web/node_modules/hls.js/dist if present].
    #[arg(long, env = "SLUICE_WEB_DIR")]
    web_dir: Option<PathBuf>,
    /// Orchestrators to transcode with, comma-separated (host, host:port, https://host:port;
    /// default port 8935). Without any, the source is the only rendition.
    #[arg(long, env = "SLUICE_ORCH_ADDR")]
    orch_addr: Option<String>,
    /// Renditions: preset names (P240p30fps16x9,P360p30fps16x9,P720p30fps16x9,...), a JSON
    /// array of profiles, or a JSON file [default: P240p30fps16x9,P360p30fps16x9].
    #[arg(long, env = "SLUICE_TRANSCODING_OPTIONS")]
    transcoding_options: Option<String>,
    /// `offchain` (no payments) or an Ethereum network name such as
    /// arbitrum-one-mainnet, which turns payment tickets on [default: offchain].
    #[arg(long, env = "SLUICE_NETWORK")]
    network: Option<String>,
    /// Keystore file or directory (go-livepeer style) holding the paying key.
    #[arg(long, env = "SLUICE_ETH_KEYSTORE_PATH")]
    eth_keystore_path: Option<PathBuf>,
    /// File holding the keystore password.
    #[arg(long, env = "SLUICE_ETH_PASSWORD")]
    eth_password: Option<PathBuf>,
    /// Account to use from a keystore directory (hex address).
    #[arg(long, env = "SLUICE_ETH_ADDR")]
    eth_addr: Option<String>,
    /// File holding a raw hex private key (instead of a keystore).
    #[arg(long, env = "SLUICE_ETH_KEY_FILE")]
    eth_key_file: Option<PathBuf>,
    /// Highest price accepted, in wei per --pixels-per-unit pixels [default: no cap].
    #[arg(long, env = "SLUICE_MAX_PRICE_PER_UNIT")]
    max_price_per_unit: Option<i64>,
    /// Pixels the --max-price-per-unit price is for [default: 1].
    #[arg(long, env = "SLUICE_PIXELS_PER_UNIT")]
    pixels_per_unit: Option<i64>,
    /// SHA-256 fingerprint (hex) of an orchestrator certificate to accept; repeat for
    /// several. Without any, every certificate is accepted, as go-livepeer does.
    #[arg(long = "orch-cert-pin", env = "SLUICE_ORCH_CERT_PINS", value_delimiter = ',')]
    orch_cert_pins: Vec<String>,
    /// Attempts per segment, each on another orchestrator after a failure [default: 3].
    #[arg(long, env = "SLUICE_MAX_ATTEMPTS")]
    max_attempts: Option<u32>,
    /// URL listing orchestrators as JSON `[{"address": "https://host:port"}]`, read every
    /// minute (go-livepeer's -orchWebhookUrl).
    #[arg(long, env = "SLUICE_ORCH_WEBHOOK_URL")]
    orch_webhook_url: Option<String>,
    /// Orchestrator ETH addresses never to use, comma-separated.
    #[arg(long, env = "SLUICE_ORCH_BLOCKLIST", value_delimiter = ',')]
    orch_blocklist: Vec<String>,
    /// Regions to prefer, comma-separated (matched against the webhook's `region`).
    #[arg(long, env = "SLUICE_PREFERRED_REGIONS", value_delimiter = ',')]
    preferred_regions: Vec<String>,
    /// Weight of stake when drawing among untried orchestrators [default: 0.7].
    #[arg(long, env = "SLUICE_SELECT_STAKE_WEIGHT")]
    select_stake_weight: Option<f64>,
    /// Weight of price in that draw [default: 0].
    #[arg(long, env = "SLUICE_SELECT_PRICE_WEIGHT")]
    select_price_weight: Option<f64>,
    /// Weight of a uniform random draw [default: 0.3].
    #[arg(long, env = "SLUICE_SELECT_RAND_FREQ")]
    select_rand_freq: Option<f64>,
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
        if let Some(m) = self.max_segment_duration {
            c.max_segment_duration = Some(m);
        }
        over!(
            rtmp_addr,
            http_addr,
            cli_addr,
            segment_duration,
            playlist_window,
            stream_grace,
            max_streams,
            ingest_threads,
            orch_addr,
            transcoding_options,
            network,
            max_price_per_unit,
            pixels_per_unit,
            max_attempts,
            select_stake_weight,
            select_price_weight,
            select_rand_freq
        );
        if self.orch_webhook_url.is_some() {
            c.orch_webhook_url.clone_from(&self.orch_webhook_url);
        }
        for (dst, src) in
            [(&mut c.orch_blocklist, &self.orch_blocklist), (&mut c.preferred_regions, &self.preferred_regions)]
        {
            if !src.is_empty() {
                dst.clone_from(src);
            }
        }
        for (dst, src) in [
            (&mut c.eth_keystore_path, &self.eth_keystore_path),
            (&mut c.eth_password, &self.eth_password),
            (&mut c.eth_key_file, &self.eth_key_file),
        ] {
            if src.is_some() {
                dst.clone_from(src);
            }
        }
        if self.eth_addr.is_some() {
            c.eth_addr.clone_from(&self.eth_addr);
        }
        if !self.orch_cert_pins.is_empty() {
            c.orch_cert_pins.clone_from(&self.orch_cert_pins);
        }
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
    /// Do not start the local orchestrator (and do not transcode, unless --orch-addr
    /// names orchestrators).
    #[arg(long)]
    no_orchestrator: bool,
    /// Address of the local orchestrator.
    #[arg(long, default_value = "127.0.0.1:8935")]
    orchestrator_addr: SocketAddr,
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
        Command::Orchestrator(a) => {
            let o = orchestrator::service::start(orchestrator_config(&a)?).await?;
            println!("Orchestrator: {}  (gRPC and HTTP; status: {}/status)", o.service_uri, o.service_uri);
            if let Some(fp) = o.cert_fingerprint {
                println!("Certificate SHA-256: {}  (for a gateway's --orch-cert-pin)", hex::encode(fp));
            }
            wait_for_signal().await;
            info!("shutting down");
            o.shutdown().await;
            Ok(())
        }
        Command::Segment(_) => unreachable!("handled without a runtime"),
    }
}

fn orchestrator_config(a: &OrchestratorArgs) -> anyhow::Result<orchestrator::service::OrchestratorConfig> {
    use orchestrator::transcode::{EchoTranscoder, GstTranscoder, Transcoder};
    let transcoder: std::sync::Arc<dyn Transcoder> = match a.transcoder {
        TranscoderKind::Echo => std::sync::Arc::new(EchoTranscoder),
        TranscoderKind::Gstreamer => {
            GstTranscoder::check_installed().map_err(anyhow::Error::msg)?;
            let parallel = a.parallel.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let dir = a.work_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("sluice-orchestrator"));
            std::sync::Arc::new(GstTranscoder::new(parallel, dir))
        }
    };
    let mut cfg = orchestrator::service::OrchestratorConfig::new(a.listen, transcoder);
    cfg.service_uri.clone_from(&a.service_uri);
    cfg.tls = !a.no_tls;
    cfg.max_sessions = a.max_sessions;
    cfg.capture_dir.clone_from(&a.capture_dir);
    cfg.allow_faults = a.allow_faults;
    cfg.ticket_ev = a.ticket_ev;
    if !(0.001..=3600.0).contains(&a.block_time) {
        anyhow::bail!("--block-time must be between 0.001 and 3600 seconds");
    }
    cfg.block_time = Duration::from_secs_f64(a.block_time);
    if a.network != "offchain" {
        let signer = if let Some(p) = &a.eth_key_file {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            transport::identity::EthSigner::from_hex(text.trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        } else if let Some(p) = &a.eth_keystore_path {
            let pw = a.eth_password.as_ref().context("--eth-keystore-path needs --eth-password FILE")?;
            let pw = std::fs::read_to_string(pw).with_context(|| format!("reading {}", pw.display()))?;
            transport::keystore::load(p, pw.trim_end_matches(['\n', '\r']), None)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        } else {
            anyhow::bail!("--network {} needs --eth-key-file or --eth-keystore-path", a.network);
        };
        if a.pixels_per_unit <= 0 || a.price_per_unit < 0 {
            anyhow::bail!("--price-per-unit must be >= 0 and --pixels-per-unit >= 1");
        }
        cfg.price = transport::proto::PriceInfo {
            price_per_unit: a.price_per_unit,
            pixels_per_unit: a.pixels_per_unit,
            ..Default::default()
        };
        cfg.signer = Some(signer);
    }
    Ok(cfg)
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let clip = match &args.clip {
        Some(p) => Bytes::from(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => Bytes::from_static(engine::DEMO_CLIP),
    };
    let tags = read_flv(clip)?;
    let mut config = args.gateway.resolve()?;
    let mut local_orch = None;
    if !args.no_orchestrator && config.orch_addr.is_empty() {
        use orchestrator::transcode::GstTranscoder;
        match GstTranscoder::check_installed() {
            Ok(()) => {
                let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
                let t = std::sync::Arc::new(GstTranscoder::new(
                    parallel,
                    std::env::temp_dir().join("sluice-demo-orchestrator"),
                ));
                let t: std::sync::Arc<dyn orchestrator::transcode::Transcoder> = t;
                let cfg = |addr| orchestrator::service::OrchestratorConfig::new(addr, t.clone());
                let o = match orchestrator::service::start(cfg(args.orchestrator_addr)).await {
                    Ok(o) => o,
                    Err(e) => {
                        // The port may belong to a real orchestrator on this machine.
                        warn!(addr = %args.orchestrator_addr, error = %e, "local orchestrator port busy; using an ephemeral port");
                        let any = SocketAddr::from(([127, 0, 0, 1], 0));
                        orchestrator::service::start(cfg(any)).await.context("starting the local orchestrator")?
                    }
                };
                config.orch_addr = o.service_uri.clone();
                local_orch = Some(o);
            }
            Err(e) => warn!(error = %e, "no local orchestrator (GStreamer missing); the demo serves the source only"),
        }
    }
    let gw = Gateway::start(config).await?;
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
    if let Some(o) = &local_orch {
        println!("  Orchestrator: {} (local, GStreamer on CPU; status: {}/status)", o.service_uri, o.service_uri);
    }
    println!("  Streams:      http://{}/streams   Metrics: http://{}/metrics", gw.cli_addr, gw.cli_addr);
    println!("Press Ctrl-C to stop.");
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = wait_for_signal() => break,
            _ = tick.tick() => {
                for s in gw.registry().list() {
                    info!(
                        stream_id = %s.id,
                        segments = s.stats.segments,
                        transcoded = s.transcode.transcoded,
                        failed = s.transcode.failed,
                        media_secs = format!("{:.0}", s.stats.duration_secs),
                        bytes = s.stats.bytes,
                        "progress"
                    );
                }
            }
        }
    }
    publisher.abort();
    gw.shutdown().await;
    if let Some(o) = local_orch {
        o.shutdown().await;
    }
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
