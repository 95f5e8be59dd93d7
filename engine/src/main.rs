//! `sluice`: the live-media gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use engine::orch_config::OrchestratorSettings;
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
    /// Publish a test pattern and tone over WebRTC to a WHIP endpoint (GStreamer
    /// webrtcbin, no browser): for trying WHIP ingest, lossy links and load.
    WhipPublish(WhipPublishArgs),
    /// Run a Livepeer-compatible orchestrator that transcodes on this machine's CPU with
    /// GStreamer (for development, the demo and tests).
    Orchestrator(OrchestratorArgs),
    /// Trickle tools: a standalone trickle server, and a publisher and subscriber for
    /// piping media through live-AI channels.
    #[command(subcommand)]
    Trickle(TrickleCommand),
    /// Run a remote signer: holds an Ethereum key and signs orchestrator-info and live
    /// payments for gateways that pay without the key (the Livepeer Python SDK,
    /// go-livepeer's -remoteSignerUrl). Serves POST /sign-orchestrator-info and POST
    /// /generate-live-payment.
    Signer(SignerArgs),
    /// Make an API key: prints the key (give it to its holder; it is not stored) and the
    /// `[[key]]` entry, with only its SHA-256, to append to the --api-keys file.
    Key(KeyArgs),
}

#[derive(Args, Debug)]
struct KeyArgs {
    /// Who holds the key (usage and metrics are reported under this name).
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Requests per minute (token bucket refill); 0 for no limit.
    #[arg(long, value_name = "N", default_value_t = 0.0)]
    requests_per_minute: f64,
    /// Requests allowed at once above the rate [default: the rate].
    #[arg(long, value_name = "N")]
    burst: Option<f64>,
    /// Jobs at once; 0 for no limit.
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_concurrent: u32,
    /// The key may use the control API.
    #[arg(long)]
    control: bool,
}

#[derive(Args, Debug)]
struct SignerArgs {
    /// Listen address (loopback unless --allow-no-auth).
    #[arg(long, env = "SLUICE_SIGNER_ADDR", value_name = "HOST:PORT", default_value = "127.0.0.1:7936")]
    addr: SocketAddr,
    /// Raw hex private key file.
    #[arg(long, env = "SLUICE_SIGNER_ETH_KEY_FILE", value_name = "FILE")]
    eth_key_file: Option<PathBuf>,
    /// Keystore file or directory (go-livepeer / geth v3 JSON).
    #[arg(long, env = "SLUICE_SIGNER_ETH_KEYSTORE_PATH", value_name = "PATH")]
    eth_keystore_path: Option<PathBuf>,
    /// File holding the keystore password.
    #[arg(long, env = "SLUICE_SIGNER_ETH_PASSWORD", value_name = "FILE")]
    eth_password: Option<PathBuf>,
    /// Which account of a keystore directory.
    #[arg(long, env = "SLUICE_SIGNER_ETH_ADDR", value_name = "ADDR")]
    eth_addr: Option<String>,
    /// Serve a non-loopback address although callers are not authenticated.
    #[arg(long, env = "SLUICE_SIGNER_ALLOW_NO_AUTH")]
    allow_no_auth: bool,
}

#[derive(Subcommand, Debug)]
enum TrickleCommand {
    /// Serve trickle channels under /ai/trickle/ (e.g. for runners).
    Serve {
        /// Listen address.
        #[arg(long, env = "SLUICE_TRICKLE_ADDR", default_value = "127.0.0.1:2939")]
        addr: SocketAddr,
        /// Let a POST create unknown channels.
        #[arg(long)]
        auto_create: bool,
        /// Serve over TLS with a self-signed certificate (clients accept it as
        /// go-livepeer's do, or pin the printed fingerprint).
        #[arg(long)]
        tls: bool,
    },
    /// Cut FLV or MPEG-TS (a file, or - for stdin) into keyframe-aligned MPEG-TS segments
    /// and publish them to a channel in real time; the channel is closed at the end.
    Publish {
        /// Channel URL, e.g. http://127.0.0.1:2939/ai/trickle/cam
        url: String,
        /// Input file; - or nothing for stdin.
        input: Option<PathBuf>,
        /// Segment duration in seconds (cut at the first keyframe after it).
        #[arg(long, default_value_t = 1.0)]
        segment_duration: f64,
        /// Send as fast as possible instead of in real time.
        #[arg(long)]
        fast: bool,
        /// SHA-256 (hex) of the only server certificate to accept; repeat for several.
        /// Without any, every certificate is accepted (as go-livepeer does).
        #[arg(long = "cert-pin", value_name = "HEX")]
        cert_pins: Vec<String>,
    },
    /// Follow a channel and write every segment's bytes as they arrive.
    Subscribe {
        /// Channel URL.
        url: String,
        /// Output file; - or nothing for stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where to start: -2 the current segment, -1 the next one, or an index.
        #[arg(long, default_value_t = -2, allow_hyphen_values = true)]
        start: i64,
        /// SHA-256 (hex) of the only server certificate to accept; repeat for several.
        #[arg(long = "cert-pin", value_name = "HEX")]
        cert_pins: Vec<String>,
    },
}

#[derive(Args, Debug)]
struct OrchestratorArgs {
    /// TOML config file (sections [listen], [transcoding], [payment], [debug]; keys as
    /// the flags with underscores).
    #[arg(long, env = "SLUICE_ORCH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: OrchestratorSettings,
}

impl OrchestratorArgs {
    fn resolve(&self, m: &ArgMatches) -> anyhow::Result<OrchestratorSettings> {
        let base = match &self.config {
            Some(p) => engine::config::read_toml(p)?,
            None => OrchestratorSettings::default(),
        };
        Ok(engine::config::overlay(base, &self.settings, |id| given(m, id))?)
    }
}

/// True when argument `id` was given as a flag or an environment variable (not left at
/// its default), so it overrides the config file.
fn given(m: &ArgMatches, id: &str) -> bool {
    matches!(m.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
}

/// Settings shared by `gateway` and `demo`: a config file and every setting as a flag.
#[derive(Args, Debug)]
struct GatewayArgs {
    /// TOML config file (sections [listen], [segmenting], [orchestrators], [selection],
    /// [payment], [trickle], [live]; keys as the flags with underscores; see README).
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: GatewayConfig,
}

impl GatewayArgs {
    fn resolve(&self, m: &ArgMatches) -> anyhow::Result<GatewayConfig> {
        let base = match &self.config {
            Some(p) => GatewayConfig::from_file(p)?,
            None => GatewayConfig::default(),
        };
        let mut c = engine::config::overlay(base, &self.settings, |id| given(m, id))?;
        if c.listen.web_dir.is_none() {
            let local = PathBuf::from(engine::DEFAULT_WEB_DIR);
            if local.join("hls.js/dist/hls.min.js").exists() {
                c.listen.web_dir = Some(local);
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

#[derive(Args, Debug)]
struct WhipPublishArgs {
    /// The WHIP endpoint, e.g. http://127.0.0.1:9935/live/cam/whip; with --sessions,
    /// `{n}` in it becomes each session's number (a stream each: /live/cam{n}/whip).
    url: String,
    /// Seconds to publish.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Picture size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x360")]
    size: String,
    /// Frames a second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Video bit rate, kbit/s.
    #[arg(long, default_value_t = 1000)]
    kbps: u32,
    /// Sessions sending the one encoding (load tests).
    #[arg(long, default_value_t = 1)]
    sessions: usize,
    /// API key, sent as `Authorization: Bearer`.
    #[arg(long, env = "SLUICE_API_KEY", hide_env_values = true)]
    token: Option<String>,
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
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let sub = matches.subcommand().map(|(_, m)| m.clone()).unwrap_or_default();
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
        Command::Key(a) => {
            let key = engine::ai::keys::new_key();
            let entry = engine::ai::keys::KeyEntry {
                name: a.name,
                sha256: engine::ai::keys::hash_key(&key),
                requests_per_minute: a.requests_per_minute,
                burst: a.burst,
                max_concurrent: a.max_concurrent,
                control: a.control,
                revoked: false,
            };
            #[derive(serde::Serialize)]
            struct File {
                key: Vec<engine::ai::keys::KeyEntry>,
            }
            println!("API key (give it to its holder; only its hash is kept): {key}");
            println!("\n# Append to the --api-keys file:\n{}", toml::to_string(&File { key: vec![entry] })?);
            Ok(())
        }
        command => tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(command, &sub)),
    }
}

/// Runs a command; `m` holds its parsed arguments (to tell flags from defaults).
async fn run(command: Command, m: &ArgMatches) -> anyhow::Result<()> {
    match command {
        Command::Gateway(args) => {
            let gw = Gateway::start(args.resolve(m)?).await?;
            println!("RTMP ingest:  rtmp://{}/live/{{stream}}", gw.rtmp_addr);
            println!("HLS playback: http://{}/stream/{{stream}}.m3u8", gw.http_addr);
            println!(
                "LL-HLS, DASH: http://{0}/stream/{{stream}}/ll.m3u8  http://{0}/stream/{{stream}}.mpd",
                gw.http_addr
            );
            println!("Control API:  http://{}/streams  metrics: http://{}/metrics", gw.cli_addr, gw.cli_addr);
            wait_for_signal().await;
            info!("shutting down");
            gw.shutdown().await;
            Ok(())
        }
        Command::Demo(args) => demo(args, m).await,
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
        Command::WhipPublish(a) => {
            let (width, height) = a
                .size
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                .context("--size is WIDTHxHEIGHT, e.g. 1280x720")?;
            let plan = engine::webrtc::client::PublishPlan {
                url: a.url.clone(),
                token: a.token,
                duration: std::time::Duration::from_secs_f64(a.seconds.max(0.0)),
                media: webrtc_media::ClientConfig {
                    width,
                    height,
                    fps: a.fps,
                    video_kbps: a.kbps,
                    sessions: a.sessions,
                    ..Default::default()
                },
            };
            let r = tokio::select! {
                r = engine::webrtc::client::publish(&plan) => r?,
                _ = wait_for_signal() => return Ok(()),
            };
            println!(
                "{}: {} sessions answered, {} connected, {} failed, {} ended with DELETE",
                a.url, r.answered, r.connected, r.failed, r.deleted
            );
            anyhow::ensure!(r.connected > 0, "no session connected");
            Ok(())
        }
        Command::Orchestrator(a) => {
            let o = orchestrator::service::start(a.resolve(m)?.service_config()?).await?;
            println!("Orchestrator: {}  (gRPC and HTTP; status: {}/status)", o.service_uri, o.service_uri);
            if let Some(fp) = o.cert_fingerprint {
                println!("Certificate SHA-256: {}  (for a gateway's --orch-cert-pin)", hex::encode(fp));
            }
            wait_for_signal().await;
            info!("shutting down");
            o.shutdown().await;
            Ok(())
        }
        Command::Trickle(t) => trickle(t).await,
        Command::Signer(a) => {
            engine::signer::check_exposure(a.addr, a.allow_no_auth)?;
            let key = engine::transcode::payer::load_key(
                a.eth_key_file.as_deref(),
                a.eth_keystore_path.as_deref(),
                a.eth_password.as_deref(),
                a.eth_addr.as_deref(),
            )?
            .ok_or(engine::signer::SignerStartError::NoKey)?;
            let signer = std::sync::Arc::new(session::signer::Signer::new(key));
            let (address, _) = signer.orchestrator_info_signature();
            let listener =
                tokio::net::TcpListener::bind(a.addr).await.with_context(|| format!("binding {}", a.addr))?;
            let bound = listener.local_addr()?;
            println!("Signer: http://{bound}  (address {address})");
            let serve = axum::serve(listener, engine::signer::router(signer))
                .with_graceful_shutdown(async { wait_for_signal().await });
            serve.await?;
            Ok(())
        }
        Command::Segment(_) | Command::Key(_) => unreachable!("handled without a runtime"),
    }
}

async fn demo(args: DemoArgs, m: &ArgMatches) -> anyhow::Result<()> {
    let clip = match &args.clip {
        Some(p) => Bytes::from(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => Bytes::from_static(engine::DEMO_CLIP),
    };
    let tags = read_flv(clip)?;
    let mut config = args.gateway.resolve(m)?;
    let mut local_orch = None;
    if !args.no_orchestrator && config.orchestrators.orch_addr.is_empty() {
        use orchestrator::transcode::GstTranscoder;
        match GstTranscoder::check_installed() {
            Ok(()) => {
                let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
                let t = std::sync::Arc::new(GstTranscoder::new(
                    parallel,
                    std::env::temp_dir().join("sluice-demo-orchestrator"),
                ));
                let t: std::sync::Arc<dyn orchestrator::transcode::Transcoder> = t;
                let cfg = |addr| {
                    let mut c = orchestrator::service::OrchestratorConfig::new(addr, t.clone());
                    c.ai_models = orchestrator::ai::AiModel::cpu_defaults(engine::orch_config::DEFAULT_AI_CAPACITY);
                    c
                };
                let o = match orchestrator::service::start(cfg(args.orchestrator_addr)).await {
                    Ok(o) => o,
                    Err(e) => {
                        // The port may belong to a real orchestrator on this machine.
                        warn!(addr = %args.orchestrator_addr, error = %e, "local orchestrator port busy; using an ephemeral port");
                        let any = SocketAddr::from(([127, 0, 0, 1], 0));
                        orchestrator::service::start(cfg(any)).await.context("starting the local orchestrator")?
                    }
                };
                config.orchestrators.orch_addr = o.service_uri.clone();
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
    println!("  LL-HLS, DASH: http://{0}/stream/{name}/ll.m3u8  http://{0}/stream/{name}.mpd", gw.http_addr);
    println!("  Player:       http://{0}/player/{name}   (?ll: LL-HLS, ?dash: DASH)", gw.http_addr);
    if let Some(o) = &local_orch {
        println!("  Orchestrator: {} (local, GStreamer on CPU; status: {}/status)", o.service_uri, o.service_uri);
        println!(
            "  AI:           curl -X POST http://{}/text-to-image -d '{{\"prompt\":\"a lighthouse\"}}'   (every pipeline, /llm, /v1/chat/completions: docs/AI.md)",
            gw.http_addr
        );
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

async fn trickle(command: TrickleCommand) -> anyhow::Result<()> {
    use engine::trickle_cli;
    let dash = |p: Option<PathBuf>| p.filter(|p| p.as_os_str() != "-");
    match command {
        TrickleCommand::Serve { addr, auto_create, tls } => {
            let bound = |a: SocketAddr, fp: Option<[u8; 32]>| {
                let scheme = if fp.is_some() { "https" } else { "http" };
                println!("Trickle server: {scheme}://{a}/ai/trickle/{{channel}}");
                if let Some(fp) = fp {
                    println!("Certificate SHA-256: {}", hex::encode(fp));
                }
            };
            trickle_cli::serve(addr, auto_create, tls, bound, wait_for_signal()).await?;
        }
        TrickleCommand::Publish { url, input, segment_duration, fast, cert_pins } => {
            let certs = trickle_cli::cert_policy(&cert_pins)?;
            let sent = trickle_cli::publish(&url, dash(input), segment_duration, fast, certs).await?;
            eprintln!("published {sent} segments to {url}");
        }
        TrickleCommand::Subscribe { url, out, start, cert_pins } => {
            let certs = trickle_cli::cert_policy(&cert_pins)?;
            let (segments, bytes) = tokio::select! {
                r = trickle_cli::subscribe(&url, dash(out), start, certs) => r?,
                _ = wait_for_signal() => return Ok(()),
            };
            eprintln!("received {segments} segments, {bytes} bytes from {url}");
        }
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
