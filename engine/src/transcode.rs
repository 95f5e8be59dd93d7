//! Transcoding through Livepeer orchestrators: per stream, one task that sends each
//! source segment to an orchestrator session with payment attached, fetches the
//! renditions and hands them to the stream's output in segment order.
//!
//! * Sessions come from `GetOrchestrator` (spec §3.4) and are refreshed before the auth
//!   token's last three minutes, when ticket params may be stale (idle for
//!   [`PARAMS_MAX_IDLE`]) and whenever the orchestrator refuses a segment for a reason a
//!   fresh session cures (expired ticket params, auth token, balance).
//! * Payments (on-chain networks) follow §5.6: tickets cover max(fee, one ticket's EV)
//!   less the credit held for the session; the credit is settled from the pixels the
//!   orchestrator reports, and restored only when no response came back.
//! * A segment is tried at most [`MAX_ATTEMPTS`] times; busy, unreachable or failing
//!   orchestrators make the next attempt go to the next configured orchestrator.
//! * A backlog never grows without bound: a segment that waited longer than its own
//!   upload deadline plus a few segment durations becomes a gap instead of delaying the
//!   ones behind it.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use media::Segment;
use num_rational::BigRational;
use num_traits::{Signed, ToPrimitive, Zero};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};
use transport::capabilities::job_capabilities;
use transport::client::{DOWNLOAD_TIMEOUT, NetError, OrchestratorNet};
use transport::identity::{Address, EthSigner, eip55};
use transport::orch_addr::{OrchestratorUri, parse_orch_addrs};
use transport::pm::{Balances, TicketSender, price_per_pixel, segment_fee, tickets_needed};
use transport::proto::{Capabilities, OrchestratorInfo, OrchestratorRequest, VideoProfile};
use transport::segment::{SegmentRequest, SegmentTimeouts, payment_header, seg_data, segment_header, verify_results};
use transport::tls::{CertPolicy, parse_fingerprint};

use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::output::{RenditionOutcome, StreamOutput};
use crate::selection::{DefaultSelector, OrchestratorPool, Weights};
use crate::status::{SegmentResult, SessionStatus};

/// How often every known orchestrator is asked for its price and capabilities.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(60);
/// A discovery round waits at least this long for answers, doubling while none came
/// (spec §7.2, `-discoveryTimeout`)…
pub const DISCOVERY_MIN_WAIT: Duration = Duration::from_millis(500);
/// …up to this hard cut-off.
pub const DISCOVERY_MAX_WAIT: Duration = Duration::from_secs(6);

/// How often the orchestrator webhook is read (go-livepeer caches it for a minute).
pub const WEBHOOK_REFRESH: Duration = Duration::from_secs(60);
/// Deadline for the webhook request.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(3);

/// One entry of the orchestrator webhook's answer.
#[derive(Debug, serde::Deserialize)]
struct WebhookEntry {
    address: String,
    #[serde(default)]
    region: Option<String>,
}
/// Refresh the session when the auth token expires within this (go-livepeer: last 10 %).
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(180);
/// Without chain access the gateway cannot see ticket params expire; refresh them after
/// this long without a `TranscodeResult` (params live ~40 L1 blocks ≈ 8 min).
pub const PARAMS_MAX_IDLE: Duration = Duration::from_secs(120);
/// A price more than this many times the session's starting price ends the session
/// (go-livepeer `priceIncreaseThreshold`).
pub const PRICE_INCREASE_LIMIT: i64 = 2;

/// keccak256 of each segment, computed while the segmenter writes it, so a closed
/// segment goes to its orchestrator without another pass over its bytes.
#[derive(Default)]
pub struct SegmentKeccak(transport::credentials::IncrementalKeccak);

impl segmenter::SegmentDigest for SegmentKeccak {
    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish_reset(&mut self) -> [u8; 32] {
        self.0.finish_reset()
    }
}

/// Read-only chain access the gateway uses to judge ticket params (spec §5.7). No
/// JSON-RPC implementation ships yet (`--eth-url` is not offered): without one the
/// gateway trusts each orchestrator's params and refreshes them when idle or refused.
pub trait ChainView: Send + Sync {
    /// The latest L1 block number, if known.
    fn latest_l1_block(&self) -> Option<u64>;
}

/// go-livepeer's `ValidateTicketParams` expiry rule: params are stale once their
/// expiration block is at most one block ahead of the latest L1 block.
pub fn params_expired(tp: &transport::proto::TicketParams, latest_l1_block: u64) -> bool {
    let exp = tp.expiration_block.iter().try_fold(0u64, |acc, b| acc.checked_mul(256).map(|v| v + *b as u64));
    match exp {
        Some(e) => e.saturating_sub(latest_l1_block) <= 1,
        None => false, // beyond u64: far in the future
    }
}

/// The gateway's paying identity.
pub struct Payer {
    signer: EthSigner,
    /// `OrchestratorRequest.sig`: static, over the EIP-55 address string (§3.3).
    request_sig: Vec<u8>,
    /// Highest acceptable price per pixel, in wei.
    max_price: Option<BigRational>,
}

impl Payer {
    /// A payer signing as `signer`, refusing orchestrators priced above `max_price`.
    pub fn new(signer: EthSigner, max_price: Option<BigRational>) -> Self {
        let request_sig = signer.sign_message(eip55(&signer.address()).as_bytes()).to_vec();
        Payer { signer, request_sig, max_price }
    }
}

/// Gateway-wide transcoding setup, shared by every stream.
pub struct Transcoding {
    net: OrchestratorNet,
    profiles: Arc<Vec<VideoProfile>>,
    capabilities: Capabilities,
    payer: Option<Arc<Payer>>,
    metrics: Arc<Metrics>,
    /// What the gateway knows of its orchestrators, and the selector ranking them.
    pool: Arc<OrchestratorPool>,
    /// Attempts per segment (`--max-attempts`).
    max_attempts: u32,
    /// Orchestrator ETH addresses never to use (`--orch-blocklist`), lower-case hex.
    blocklist: Vec<String>,
    /// Highest price per pixel accepted, wei.
    max_price: Option<BigRational>,
    /// Random numbers for the selector's draw.
    rng: AtomicU64,
    /// Chain access, when available.
    chain: Option<Arc<dyn ChainView>>,
}

impl Transcoding {
    /// The setup `config` describes, or `None` when no orchestrator is configured.
    pub fn from_config(config: &GatewayConfig, metrics: Arc<Metrics>) -> anyhow::Result<Option<Arc<Self>>> {
        let orchestrators = parse_orch_addrs(&config.orch_addr)?;
        if orchestrators.is_empty() && config.orch_webhook_url.is_none() {
            return Ok(None);
        }
        let profiles = config.profiles()?;
        if profiles.is_empty() {
            bail!("--transcoding-options names no profiles");
        }
        let payer = load_payer(config)?.map(Arc::new);
        let policy = if config.orch_cert_pins.is_empty() {
            CertPolicy::AcceptAny
        } else {
            CertPolicy::Pinned(
                config
                    .orch_cert_pins
                    .iter()
                    .map(|p| parse_fingerprint(p))
                    .collect::<Result<_, _>>()
                    .map_err(anyhow::Error::msg)?,
            )
        };
        info!(
            orchestrators = %orchestrators.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(","),
            profiles = %profiles.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(","),
            network = %config.network,
            "transcoding enabled"
        );
        let weights = Weights {
            stake: config.select_stake_weight,
            price: config.select_price_weight,
            random: config.select_rand_freq,
            ..Weights::default()
        };
        let pool = Arc::new(OrchestratorPool::new(
            orchestrators.iter().map(|o| (o.to_string(), None)).collect(),
            Box::new(DefaultSelector { weights }),
            config.preferred_regions.clone(),
        ));
        metrics.set_pool(pool.clone());
        let max_price = payer.as_ref().and_then(|p| p.max_price.clone()).or_else(|| {
            (config.max_price_per_unit > 0)
                .then(|| BigRational::new(config.max_price_per_unit.into(), config.pixels_per_unit.max(1).into()))
        });
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
        let t = Arc::new(Transcoding {
            net: OrchestratorNet::new(policy),
            capabilities: job_capabilities(&profiles, false, ""),
            profiles: Arc::new(profiles),
            payer,
            metrics,
            pool,
            max_attempts: config.max_attempts.max(1),
            blocklist: config.orch_blocklist.iter().map(|a| a.trim().trim_start_matches("0x").to_lowercase()).collect(),
            max_price,
            rng: AtomicU64::new(seed),
            chain: None,
        });
        if let Some(url) = &config.orch_webhook_url {
            t.spawn_webhook(url.clone());
        }
        t.spawn_discovery();
        Ok(Some(t))
    }

    /// The orchestrator pool (control API).
    pub fn pool(&self) -> &Arc<OrchestratorPool> {
        &self.pool
    }

    /// A uniform draw in [0, 1) (xorshift; selection needs spread, not secrecy).
    fn random(&self) -> f64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uri(&self, text: &str) -> Option<OrchestratorUri> {
        parse_orch_addrs(text).ok().and_then(|mut v| v.pop())
    }

    /// A discovery round now and every [`DISCOVERY_INTERVAL`]: `GetOrchestrator` to every
    /// known orchestrator at once (spec §7.2). Unreachable, incompatible or blocklisted
    /// ones are suspended and priced ones have their price checked against the cap,
    /// before any stream needs them. Host names are resolved again on every connection.
    fn spawn_discovery(self: &Arc<Self>) {
        let t = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(DISCOVERY_INTERVAL);
            loop {
                tick.tick().await;
                t.discover().await;
            }
        });
    }

    async fn discover(self: &Arc<Self>) {
        let uris = self.pool.uris();
        let started = Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for uri in uris {
            let t = self.clone();
            calls.spawn(async move {
                let r = t.net.get_orchestrator_within(&uri, t.orchestrator_request(), DISCOVERY_MAX_WAIT).await;
                (uri, r, started.elapsed())
            });
        }
        // At least the minimum wait; then, while nothing has arrived, keep doubling it.
        let mut wait = DISCOVERY_MIN_WAIT;
        let mut answered = 0;
        loop {
            let until = tokio::time::Instant::from_std(started + wait);
            match tokio::time::timeout_at(until, calls.join_next()).await {
                Ok(Some(Ok((uri, r, took)))) => {
                    answered += 1;
                    self.judge(&uri, r, took);
                }
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                Err(_) if answered == 0 && wait < DISCOVERY_MAX_WAIT => wait = (wait * 2).min(DISCOVERY_MAX_WAIT),
                Err(_) => break,
            }
        }
        // Late answers still count; the round just stops waiting for them.
        let t = self.clone();
        tokio::spawn(async move {
            while let Some(Ok((uri, r, took))) = calls.join_next().await {
                t.judge(&uri, r, took);
            }
        });
        debug!(answered, ms = started.elapsed().as_millis() as u64, "discovery round");
    }

    /// Takes one discovery answer into the pool.
    fn judge(&self, uri: &str, r: Result<OrchestratorInfo, NetError>, took: Duration) {
        let now = Instant::now();
        let info = match r {
            Ok(i) => i,
            Err(e) => {
                let reason = if matches!(e, NetError::Timeout(_)) { "timeout" } else { "unreachable" };
                self.pool.failure(uri, reason, true, now);
                return;
            }
        };
        self.pool.discovered(uri, took);
        let incompatible =
            info.capabilities.as_ref().is_some_and(|c| !transport::capabilities::compatible(&self.capabilities, c));
        let blocked = !self.blocklist.is_empty() && self.blocklist.contains(&hex::encode(&info.address));
        if info.transcoder.is_empty() || incompatible || blocked {
            let reason = if blocked {
                "blocklisted"
            } else if incompatible {
                "incompatible"
            } else {
                "bad_reply"
            };
            self.pool.failure(uri, reason, true, now);
            return;
        }
        if self.payer.is_some()
            && let Ok(p) = session_price(&info)
        {
            let over = self.max_price.as_ref().is_some_and(|m| &p > m);
            self.pool.price(uri, p.to_f64().unwrap_or(f64::MAX), over, now);
        }
    }

    /// The `OrchestratorRequest` this gateway sends (§2.1, §3.3).
    fn orchestrator_request(&self) -> OrchestratorRequest {
        let payer = self.payer.as_deref();
        OrchestratorRequest {
            address: payer.map(|p| p.signer.address().to_vec()).unwrap_or_else(|| vec![0; 20]),
            sig: payer.map(|p| p.request_sig.clone()).unwrap_or_default(),
            capabilities: Some(self.capabilities.clone()),
            ignore_capacity_check: false,
        }
    }

    /// Reads the orchestrator webhook every minute and adds what it lists to the pool
    /// (go-livepeer's shape: `[{"address": "https://host:port", "score": 1}]`; an entry
    /// may also name its `region`).
    fn spawn_webhook(self: &Arc<Self>, url: String) {
        let t = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WEBHOOK_REFRESH);
            loop {
                tick.tick().await;
                match t.net.download(&url, WEBHOOK_TIMEOUT).await.map_err(|e| e.to_string()).and_then(|b| {
                    serde_json::from_slice::<Vec<WebhookEntry>>(&b).map_err(|e| format!("not the expected JSON: {e}"))
                }) {
                    Ok(list) => {
                        let entries: Vec<(String, Option<String>)> = list
                            .into_iter()
                            .filter_map(|e| {
                                let uri = parse_orch_addrs(&e.address).ok()?.pop()?;
                                Some((uri.to_string(), e.region))
                            })
                            .collect();
                        let added = t.pool.merge(&entries);
                        if added > 0 {
                            info!(added, total = entries.len(), "orchestrators from the webhook");
                        }
                    }
                    Err(e) => warn!(%url, error = %e, "orchestrator webhook failed; keeping the known orchestrators"),
                }
            }
        });
    }

    /// The output profiles, in rendition order.
    pub fn profiles(&self) -> &[VideoProfile] {
        &self.profiles
    }

    /// Starts the transcode task of stream `id`, which writes into `output`.
    pub fn start_stream(self: &Arc<Self>, id: &str, output: Arc<RwLock<StreamOutput>>) -> StreamTranscoder {
        let (tx, rx) = mpsc::unbounded_channel();
        let worker =
            Worker { t: self.clone(), id: id.to_owned(), output, session: None, balances: Balances::default() };
        tokio::spawn(worker.run(rx).instrument(info_span!(parent: None, "transcode", stream_id = %id)));
        StreamTranscoder { tx }
    }
}

fn load_payer(config: &GatewayConfig) -> anyhow::Result<Option<Payer>> {
    if config.network == "offchain" {
        return Ok(None);
    }
    let signer = if let Some(path) = &config.eth_key_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading --eth-key-file {}", path.display()))?;
        EthSigner::from_hex(text.trim()).map_err(|e| anyhow::anyhow!("--eth-key-file {}: {e}", path.display()))?
    } else if let Some(path) = &config.eth_keystore_path {
        let Some(pw_file) = &config.eth_password else {
            bail!("--eth-keystore-path needs --eth-password FILE");
        };
        let password = std::fs::read_to_string(pw_file)
            .with_context(|| format!("reading --eth-password {}", pw_file.display()))?;
        let want = match &config.eth_addr {
            Some(a) => Some(parse_address(a)?),
            None => None,
        };
        transport::keystore::load(path, password.trim_end_matches(['\n', '\r']), want.as_ref())
            .map_err(|e| anyhow::anyhow!("keystore {}: {e}", path.display()))?
    } else {
        bail!(
            "--network {} pays orchestrators and needs a key: --eth-keystore-path with --eth-password, or --eth-key-file",
            config.network
        );
    };
    let max_price = if config.max_price_per_unit > 0 {
        Some(BigRational::new(config.max_price_per_unit.into(), config.pixels_per_unit.max(1).into()))
    } else {
        None
    };
    info!(address = %eip55(&signer.address()), network = %config.network, "paying orchestrators with tickets");
    Ok(Some(Payer::new(signer, max_price)))
}

fn parse_address(text: &str) -> anyhow::Result<Address> {
    let raw =
        hex::decode(text.trim().trim_start_matches("0x")).map_err(|_| anyhow::anyhow!("--eth-addr is not hex"))?;
    raw.try_into().map_err(|_| anyhow::anyhow!("--eth-addr is not 20 bytes"))
}

/// Hands a stream's segments to its transcode task.
#[derive(Clone)]
pub struct StreamTranscoder {
    tx: mpsc::UnboundedSender<Job>,
}

impl StreamTranscoder {
    /// Queues a source segment (a handle, not a copy).
    pub fn submit(&self, seg: &Segment) {
        let _ = self.tx.send(Job::Segment(seg.clone(), Instant::now()));
    }

    /// The publisher ended: finish the queue, end the rendition playlists and the session.
    pub fn end(&self) {
        let _ = self.tx.send(Job::End);
    }
}

enum Job {
    Segment(Segment, Instant),
    End,
}

/// One orchestrator session.
struct Session {
    orch: OrchestratorUri,
    info: OrchestratorInfo,
    recipient: Address,
    tickets: Option<TicketSender>,
    start_price: Option<BigRational>,
    info_at: Instant,
}

impl Session {
    fn session_id(&self) -> &str {
        self.info.auth_token.as_ref().map(|t| t.session_id.as_str()).unwrap_or("")
    }

    /// True when the session should be replaced before the next segment: the auth token
    /// is in its last minutes, or (paid) the ticket params are stale by the chain's
    /// latest block, or, without chain access, have not been refreshed for a while.
    fn needs_refresh(&self, paid: bool, chain: Option<&dyn ChainView>) -> bool {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let expiring =
            self.info.auth_token.as_ref().is_some_and(|t| t.expiration - now < TOKEN_REFRESH_MARGIN.as_secs() as i64);
        if expiring {
            return true;
        }
        if !paid {
            return false;
        }
        match (chain.and_then(|c| c.latest_l1_block()), self.info.ticket_params.as_ref()) {
            (Some(block), Some(tp)) => params_expired(tp, block),
            _ => self.info_at.elapsed() > PARAMS_MAX_IDLE,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Same orchestrator, fresh session (stale params, token, balance).
    Refresh,
    /// Another orchestrator.
    Failover,
    /// Give up on this segment (the input itself is the problem).
    GiveUp,
}

struct Failure {
    msg: String,
    next: Next,
    /// A short category for metrics and the control API.
    reason: &'static str,
}

impl Failure {
    fn new(msg: impl Into<String>, next: Next) -> Self {
        Failure { msg: msg.into(), next, reason: "other" }
    }

    fn because(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }
}

struct Attempt {
    renditions: Vec<Bytes>,
    upload: Duration,
    tickets: u32,
}

struct Worker {
    t: Arc<Transcoding>,
    id: String,
    output: Arc<RwLock<StreamOutput>>,
    session: Option<Session>,
    balances: Balances,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = rx.recv().await {
            match job {
                Job::Segment(seg, queued) => {
                    let secs = seg.duration.as_secs_f64().max(0.5);
                    let backlog_limit = SegmentTimeouts::for_duration(Duration::from_secs_f64(secs), 1.0).upload
                        + Duration::from_secs_f64(3.0 * secs);
                    // The ladder this source gets (nothing above it, bitrates capped).
                    let offered = {
                        let o = self.output.read().unwrap_or_else(|e| e.into_inner());
                        let source = o.tracks().video.as_ref().filter(|_| seg.tracks.video).map(|v| v.dimensions);
                        crate::ladder::offered(&self.t.profiles, source, o.source_bps())
                    };
                    let profiles: Vec<VideoProfile> = offered.iter().flatten().cloned().collect();
                    let (result, record) = if profiles.is_empty() {
                        // Nothing to make for this source: no orchestrator is asked.
                        let rec = self.record(&seg, None, Ok(0), 0, queued, None);
                        (Ok(Vec::new()), rec)
                    } else if !seg.independent {
                        // Cut inside a long GOP: an orchestrator decoding it alone would
                        // lose its frames up to the next keyframe. Served from the source.
                        let msg = "segment starts between keyframes (keyframe interval above max_segment_duration)";
                        (Err(msg.to_owned()), self.record(&seg, None, Err(msg.to_owned()), 0, queued, None))
                    } else if queued.elapsed() > backlog_limit {
                        warn!(
                            seq = seg.seq,
                            waited_ms = queued.elapsed().as_millis() as u64,
                            "transcode backlog: segment skipped"
                        );
                        let msg = "transcode backlog".to_owned();
                        (Err(msg.clone()), self.record(&seg, None, Err(msg), 0, queued, None))
                    } else {
                        self.transcode(&seg, queued, &profiles).await
                    };
                    let ok = result.is_ok();
                    let mut made = result.ok().map(Vec::into_iter);
                    let outcomes = offered
                        .iter()
                        .map(|p| match (p, made.as_mut()) {
                            (None, _) => RenditionOutcome::NotOffered,
                            (Some(_), Some(made)) => {
                                made.next().map_or(RenditionOutcome::Failed, RenditionOutcome::Stored)
                            }
                            (Some(_), None) => RenditionOutcome::Failed,
                        })
                        .collect();
                    let mut o = self.output.write().unwrap_or_else(|e| e.into_inner());
                    o.add_renditions(&seg, outcomes);
                    o.transcode.record(record);
                    drop(o);
                    Metrics::add(
                        if ok { &self.t.metrics.transcoded_total } else { &self.t.metrics.transcode_failures_total },
                        1,
                    );
                }
                Job::End => {
                    self.output.write().unwrap_or_else(|e| e.into_inner()).end_renditions();
                    self.end_session().await;
                }
            }
        }
        self.end_session().await;
    }

    fn record(
        &self,
        seg: &Segment,
        upload: Option<Duration>,
        outcome: Result<u32, String>,
        attempts: u32,
        queued: Instant,
        failover: Option<Duration>,
    ) -> SegmentResult {
        let (ok, error, tickets) = match outcome {
            Ok(t) => (true, None, t),
            Err(e) => (false, Some(e), 0),
        };
        SegmentResult {
            seq: seg.seq,
            orchestrator: self.session.as_ref().map(|s| s.orch.to_string()),
            ok,
            error,
            attempts,
            upload_ms: upload.map(|d| d.as_secs_f64() * 1000.0),
            total_ms: queued.elapsed().as_secs_f64() * 1000.0,
            tickets,
            failover_ms: failover.map(|d| d.as_secs_f64() * 1000.0),
        }
    }

    /// Transcodes `seg` into `profiles` (the offered ladder), with retries and failover;
    /// the renditions come back in profile order.
    async fn transcode(
        &mut self,
        seg: &Segment,
        queued: Instant,
        profiles: &[VideoProfile],
    ) -> (Result<Vec<Bytes>, String>, SegmentResult) {
        let seg_dur = Duration::from_secs_f64(seg.duration.as_secs_f64().max(0.0));
        // Every attempt must fit in the segment's overall deadline (§4.7's whole-request
        // timeout, counted from when the segment closed).
        let deadline = queued + SegmentTimeouts::for_duration(seg_dur, 1.0).total;
        let mut last = String::from("no orchestrator available");
        let mut attempts = 0;
        let mut tried: Vec<String> = Vec::new();
        let mut first_started: Option<Instant> = None;
        // A session opened while this segment waits gets at most half its duration
        // (floor 0.5 s): an orchestrator that does not answer GetOrchestrator by then
        // is skipped rather than holding the stream up.
        let open_budget = (seg_dur / 2).max(Duration::from_millis(500)).min(transport::client::GRPC_TIMEOUT);
        while attempts < self.t.max_attempts && Instant::now() < deadline {
            attempts += 1;
            let started = Instant::now();
            let first = *first_started.get_or_insert(started);
            if let Err(e) = self.ensure_session(&tried, open_budget).await {
                last = e;
                break;
            }
            let orch = self.session.as_ref().map(|s| s.orch.to_string()).unwrap_or_default();
            let closed = (attempts == 1).then_some(queued);
            match self.attempt(seg, profiles, closed, deadline).await {
                Ok(a) => {
                    let took = started.elapsed();
                    self.t.metrics.observe_transcode(&orch, took, true);
                    self.t.pool.success(&orch, took, a.upload, seg_dur);
                    debug!(seq = seg.seq, %orch, ms = took.as_millis() as u64, tickets = a.tickets, "segment transcoded");
                    let failover = (attempts > 1).then(|| started - first);
                    let rec = self.record(seg, Some(a.upload), Ok(a.tickets), attempts, queued, failover);
                    return (Ok(a.renditions), rec);
                }
                Err(f) => {
                    self.t.metrics.observe_transcode(&orch, started.elapsed(), false);
                    let suspend = matches!(f.next, Next::Failover);
                    let penalty = self.t.pool.failure(&orch, f.reason, suspend, Instant::now());
                    warn!(seq = seg.seq, %orch, attempt = attempts, error = %f.msg, reason = f.reason, next = ?f.next, suspended_s = penalty.map(|p| p.as_secs_f64()), "transcode attempt failed");
                    last = f.msg;
                    match f.next {
                        Next::Refresh => self.drop_session().await,
                        Next::Failover => {
                            tried.push(orch);
                            self.drop_session().await;
                        }
                        Next::GiveUp => break,
                    }
                }
            }
        }
        let rec = self.record(seg, None, Err(last.clone()), attempts, queued, None);
        (Err(last), rec)
    }

    /// Makes sure a usable session exists: keeps the current one while it is healthy
    /// (spec §7.4), else asks the pool's selector, skipping `tried`, and opens a session
    /// with its choice (trying the next choice if that fails).
    async fn ensure_session(&mut self, tried: &[String], open_budget: Duration) -> Result<(), String> {
        let paid = self.t.payer.is_some();
        if let Some(s) = &self.session {
            let keep = self.t.pool.keep_session(&s.orch.to_string(), Instant::now());
            if !s.needs_refresh(paid, self.t.chain.as_deref()) && keep.is_ok() {
                return Ok(());
            }
            debug!(session = %s.session_id(), why = ?keep.err(), "leaving orchestrator session");
            self.drop_session().await;
        }
        let mut tried: Vec<String> = tried.to_vec();
        loop {
            let uri = self
                .t
                .pool
                .choose(&tried, Instant::now(), self.t.random())
                .map_err(|e| format!("no orchestrator available ({})", e.0))?;
            let Some(orch) = self.t.uri(&uri) else {
                tried.push(uri);
                continue;
            };
            match self.open_session(&orch, open_budget).await {
                Ok(s) => {
                    info!(orchestrator = %orch, session = %s.session_id(), transcoder = %s.info.transcoder, "orchestrator session started");
                    let status = SessionStatus {
                        orchestrator: orch.to_string(),
                        transcoder: s.info.transcoder.clone(),
                        session_id: s.session_id().to_owned(),
                        started_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                        ended: false,
                        segments: 0,
                        price_per_pixel_wei: s.start_price.as_ref().and_then(|p| p.to_f64()),
                    };
                    self.output.write().unwrap_or_else(|e| e.into_inner()).transcode.session_started(status);
                    Metrics::add(&self.t.metrics.orchestrator_sessions_total, 1);
                    self.t.pool.session_delta(&uri, 1);
                    self.session = Some(s);
                    return Ok(());
                }
                Err(f) => {
                    warn!(orchestrator = %orch, error = %f.msg, reason = f.reason, "orchestrator unusable");
                    if f.reason != "price" {
                        self.t.pool.failure(&uri, f.reason, true, Instant::now());
                    }
                    tried.push(uri);
                }
            }
        }
    }

    async fn open_session(&self, orch: &OrchestratorUri, timeout: Duration) -> Result<Session, Failure> {
        let payer = self.t.payer.as_deref();
        let req = self.t.orchestrator_request();
        let info = self.t.net.get_orchestrator_within(&orch.to_string(), req, timeout).await.map_err(|e| {
            let reason = match &e {
                NetError::Timeout(_) => "timeout",
                NetError::Grpc { code: tonic::Code::ResourceExhausted, .. } => "capped",
                _ => "unreachable",
            };
            Failure::new(e.to_string(), Next::Failover).because(reason)
        })?;
        let bad = |m: &str| Failure::new(m, Next::Failover).because("bad_reply");
        if info.transcoder.is_empty() {
            return Err(bad("announced no transcoder URI"));
        }
        if info.auth_token.is_none() {
            return Err(bad("sent no auth token"));
        }
        if let Some(c) = &info.capabilities
            && !transport::capabilities::compatible(&self.t.capabilities, c)
        {
            return Err(Failure::new("incompatible capabilities", Next::Failover).because("incompatible"));
        }
        if !self.t.blocklist.is_empty() && self.t.blocklist.contains(&hex::encode(&info.address)) {
            return Err(Failure::new("blocklisted address", Next::Failover).because("blocklisted"));
        }
        let recipient: Address = info
            .ticket_params
            .as_ref()
            .and_then(|tp| tp.recipient.as_slice().try_into().ok())
            .or_else(|| info.address.as_slice().try_into().ok())
            .unwrap_or([0; 20]);
        let (tickets, start_price) = match payer {
            None => (None, None),
            Some(p) => {
                let price = session_price(&info).map_err(|e| bad(&e))?;
                self.check_price(&orch.to_string(), &price)?;
                let mut sender = TicketSender::new(p.signer.clone());
                if let Some(tp) = &info.ticket_params {
                    sender.update_params(tp).map_err(|e| bad(&format!("ticket params: {e}")))?;
                }
                (Some(sender), Some(price))
            }
        };
        Ok(Session { orch: orch.clone(), info, recipient, tickets, start_price, info_at: Instant::now() })
    }

    /// Records `price` with the pool; above the cap it is a failure that moves the
    /// stream elsewhere (the orchestrator stays out until it quotes under the cap).
    fn check_price(&self, uri: &str, price: &BigRational) -> Result<(), Failure> {
        let over = self.t.max_price.as_ref().is_some_and(|max| price > max);
        self.t.pool.price(uri, price.to_f64().unwrap_or(f64::MAX), over, Instant::now());
        if over {
            return Err(Failure::new(
                format!(
                    "price {} wei/pixel is above --max-price-per-unit/--pixels-per-unit ({})",
                    price.to_f64().unwrap_or(f64::NAN),
                    self.t.max_price.as_ref().and_then(|m| m.to_f64()).unwrap_or(f64::NAN)
                ),
                Next::Failover,
            )
            .because("price"));
        }
        Ok(())
    }

    /// Ends the current session without waiting for the orchestrator's answer.
    async fn drop_session(&mut self) {
        if let Some(s) = self.session.take() {
            self.mark_session_ended();
            self.t.pool.session_delta(&s.orch.to_string(), -1);
            end_quietly(self.t.net.clone(), s);
        }
    }

    async fn end_session(&mut self) {
        if let Some(s) = self.session.take() {
            self.mark_session_ended();
            self.t.pool.session_delta(&s.orch.to_string(), -1);
            if let Some(token) = s.info.auth_token.clone() {
                match self.t.net.end_session(&s.orch.to_string(), token).await {
                    Ok(()) => info!(orchestrator = %s.orch, session = %s.session_id(), "orchestrator session ended"),
                    Err(e) => debug!(orchestrator = %s.orch, error = %e, "EndTranscodingSession failed"),
                }
            }
        }
    }

    fn mark_session_ended(&self) {
        let mut o = self.output.write().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = o.transcode.sessions.back_mut() {
            last.ended = true;
        }
    }

    /// One try of one segment on the current session.
    /// `closed`: when the segment closed, on its first attempt (for the dispatch metric).
    /// One try of one segment on the current session, finishing by `deadline`.
    async fn attempt(
        &mut self,
        seg: &Segment,
        profiles: &[VideoProfile],
        closed: Option<Instant>,
        deadline: Instant,
    ) -> Result<Attempt, Failure> {
        let t = self.t.clone();
        let id = self.id.clone();
        let signer = t.payer.as_ref().map(|p| &p.signer);
        let session = self.session.as_mut().ok_or_else(|| Failure::new("no session", Next::Failover))?;
        let duration_ms = (seg.duration.as_secs_f64() * 1000.0).round() as i32;
        let sd = seg_data(
            &SegmentRequest {
                hash: seg.digest,
                manifest_id: &id,
                seq: seg.seq,
                data: &seg.data,
                duration_ms,
                profiles,
                capabilities: &t.capabilities,
                auth_token: session.info.auth_token.as_ref(),
            },
            signer,
        );
        // Payment (§5.6, §5.7).
        let mut paid: Option<(BigRational, BigRational, BigRational, u32)> = None; // existing, new credit, price, tickets
        let pay_header = match session.tickets.as_mut() {
            None => payment_header(None),
            Some(sender) => {
                let price_info = session.info.price_info.clone().unwrap_or_default();
                let price = session_price(&session.info).map_err(|e| Failure::new(e, Next::Failover))?;
                if let Some(start) = &session.start_price
                    && start.is_positive()
                    && price > start * BigRational::from_integer(PRICE_INCREASE_LIMIT.into())
                {
                    return Err(Failure::new("orchestrator price more than doubled", Next::Failover).because("price"));
                }
                let fee =
                    segment_fee(transport::profiles::estimated_pixels(profiles, seg.duration.as_secs_f64()), &price);
                let existing = self.balances.reserve(session.recipient, session_id(&session.info));
                let batch = tickets_needed(&existing, &fee, &sender.ticket_ev());
                let payment = match sender.payment(batch.count, &price_info) {
                    Ok(p) => p,
                    Err(e) => {
                        self.balances.restore(session.recipient, session_id(&session.info), existing);
                        return Err(Failure::new(format!("payment: {e}"), Next::Refresh));
                    }
                };
                paid = Some((existing, batch.new_credit, price, batch.count));
                payment_header(Some(&payment))
            }
        };
        let mut timeouts =
            SegmentTimeouts::for_duration(Duration::from_secs_f64(seg.duration.as_secs_f64().max(0.0)), 1.0);
        // An orchestrator answers with headers as soon as the upload is in (§4.2 step 8).
        // Once its upload time is known, a reply four times later than usual (at least
        // 0.5 s) means it is not coming: fail over well within a segment's duration
        // instead of waiting out the spec's fixed 2 s.
        if let Some(usual) = t.pool.upload_estimate(&session.orch.to_string()) {
            let adaptive = (usual * 4 + Duration::from_millis(200)).max(Duration::from_millis(500));
            timeouts.upload = timeouts.upload.min(adaptive);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        timeouts.total = timeouts.total.min(left);
        timeouts.upload = timeouts.upload.min(left);
        Metrics::add(&t.metrics.transcode_bytes_out_total, seg.data.len() as u64);
        if let Some(c) = closed {
            t.metrics.observe_dispatch(c.elapsed());
        }
        let submitted =
            t.net.submit(&session.info.transcoder, &segment_header(&sd), &pay_header, seg.data.clone(), timeouts).await;
        let recipient = session.recipient;
        let sid = session_id(&session.info).to_owned();
        let sub = match submitted {
            Ok(s) => s,
            Err(e) => {
                if let Some((existing, ..)) = paid {
                    if e.response_received() {
                        // Credit spent: nothing restored (§5.6).
                    } else {
                        self.balances.restore(recipient, &sid, existing);
                    }
                }
                return Err(classify_net(e));
            }
        };
        if let Some((_, _, _, n)) = &paid
            && *n > 0
            && let Some(sender) = session.tickets.as_ref()
        {
            Metrics::add(&t.metrics.tickets_sent_total, *n as u64);
            let ev = sender.ticket_ev() * BigRational::from_integer((*n).into());
            t.metrics.add_ev_paid(ev.to_f64().unwrap_or(0.0));
            let mut o = self.output.write().unwrap_or_else(|e| e.into_inner());
            o.transcode.tickets_sent += *n as u64;
            o.transcode.ev_paid_wei += ev.to_f64().unwrap_or(0.0);
        }
        // Fresh params and price with every result (§5.4); the auth token stays.
        if let Some(info) = sub.result.info.clone() {
            if let (Some(sender), Some(tp)) = (session.tickets.as_mut(), info.ticket_params.as_ref())
                && let Err(e) = sender.update_params(tp)
            {
                warn!(error = %e, "orchestrator sent unusable ticket params");
            }
            let token = session.info.auth_token.clone();
            session.info = OrchestratorInfo { auth_token: token, ..info };
            session.info_at = Instant::now();
        }
        let orch_uri = session.orch.to_string();
        let new_price = if t.payer.is_some() { session_price(&session.info).ok() } else { None };
        if let Some(last) = self.output.write().unwrap_or_else(|e| e.into_inner()).transcode.sessions.back_mut() {
            last.segments += 1;
        }
        let data = match sub.outcome() {
            Ok(d) => d.clone(),
            Err(e) => {
                let (next, reason) = if e.contains("OrchestratorBusy") {
                    (Next::Failover, "busy")
                } else if e.contains("OrchestratorCapped") {
                    (Next::Failover, "capped")
                } else {
                    (Next::GiveUp, "transcode_error")
                };
                return Err(Failure::new(format!("orchestrator: {e}"), next).because(reason));
            }
        };
        let tickets = paid.as_ref().map(|p| p.3).unwrap_or(0);
        if let Some((existing, new_credit, price, _)) = paid {
            let pixels: i64 = data.segments.iter().map(|s| s.pixels.max(0)).sum();
            let debit = price * BigRational::from_integer(pixels.into());
            self.balances.settle(recipient, &sid, existing, new_credit, debit);
        }
        if data.segments.len() != profiles.len() {
            return Err(Failure::new(
                format!("MismatchedSegments: {} renditions for {} profiles", data.segments.len(), profiles.len()),
                Next::Failover,
            )
            .because("bad_reply"));
        }
        let mut downloads = tokio::task::JoinSet::new();
        for (i, s) in data.segments.iter().enumerate() {
            let net = t.net.clone();
            let url = s.url.clone();
            downloads.spawn(async move { (i, net.download(&url, DOWNLOAD_TIMEOUT).await) });
        }
        let mut renditions = vec![Bytes::new(); data.segments.len()];
        while let Some(joined) = downloads.join_next().await {
            let (i, r) =
                joined.map_err(|e| Failure::new(format!("download task: {e}"), Next::Failover).because("download"))?;
            renditions[i] =
                r.map_err(|e| Failure::new(format!("rendition download: {e}"), Next::Failover).because("download"))?;
        }
        let bytes_in: usize = renditions.iter().map(Bytes::len).sum();
        Metrics::add(&t.metrics.transcode_bytes_in_total, bytes_in as u64);
        if t.payer.is_some() && !data.sig.is_empty() {
            let signer_addr: Option<Address> = self
                .session
                .as_ref()
                .and_then(|s| s.info.address.as_slice().try_into().ok())
                .or(Some(recipient).filter(|r| *r != [0; 20]));
            if let Some(addr) = signer_addr {
                let parts: Vec<&[u8]> = renditions.iter().map(|b| b.as_ref()).collect();
                verify_results(&parts, &data.sig, &addr)
                    .map_err(|e| Failure::new(format!("result signature: {e}"), Next::Failover).because("signature"))?;
            }
        }
        // A mid-stream price change: under the cap the new params simply apply; above it
        // the session ends after this segment and the stream moves on (never dropped).
        if let Some(p) = new_price
            && let Err(f) = self.check_price(&orch_uri, &p)
        {
            warn!(orchestrator = %orch_uri, error = %f.msg, "orchestrator price now above the cap; switching");
            self.drop_session().await;
            return Ok(Attempt { renditions, upload: sub.upload, tickets });
        }
        // Sign the next segment's tickets now, under the params this result brought, so
        // the signatures are off the next segment's path to the wire.
        if tickets > 0
            && let Some(sender) = self.session.as_mut().and_then(|s| s.tickets.as_mut())
            && let Err(e) = sender.presign(tickets)
        {
            debug!(error = %e, "cannot presign tickets");
        }
        Ok(Attempt { renditions, upload: sub.upload, tickets })
    }
}

fn session_id(info: &OrchestratorInfo) -> &str {
    info.auth_token.as_ref().map(|t| t.session_id.as_str()).unwrap_or("")
}

/// The session's price per pixel; an orchestrator that quotes none is free.
fn session_price(info: &OrchestratorInfo) -> Result<BigRational, String> {
    match &info.price_info {
        None => Ok(BigRational::zero()),
        Some(p) if p.price_per_unit == 0 => Ok(BigRational::zero()),
        Some(p) => price_per_pixel(p).map_err(|e| format!("price: {e}")),
    }
}

/// Maps a refused or failed request to what to do next (§4.2, §4.3).
fn classify_net(e: NetError) -> Failure {
    let (next, reason) = match &e {
        NetError::Status { status, body } if status.as_u16() == 400 => {
            // Ticket problems a fresh session fixes: expired or unknown params, nonces,
            // balance.
            if body.contains("TicketParams expired")
                || body.contains("recipientRand")
                || body.contains("senderNonce")
                || body.contains("Insufficient balance")
            {
                (Next::Refresh, "ticket_params")
            } else {
                (Next::Failover, "http_4xx")
            }
        }
        NetError::Status { status, body } if status.as_u16() == 403 => {
            if body.contains("auth token") {
                (Next::Refresh, "auth")
            } else if body.contains("ErrSegSig") {
                (Next::GiveUp, "segment_signature")
            } else {
                (Next::Failover, "http_4xx")
            }
        }
        NetError::Status { status, .. } if status.is_server_error() => (Next::Failover, "http_5xx"),
        NetError::Status { .. } => (Next::Failover, "http_4xx"),
        NetError::Timeout(_) => (Next::Failover, "timeout"),
        NetError::Body(_) => (Next::Failover, "bad_reply"),
        NetError::Transport(_) | NetError::Url(_) | NetError::Grpc { .. } => (Next::Failover, "unreachable"),
    };
    Failure::new(e.to_string(), next).because(reason)
}

/// Ends a session without waiting for the answer.
fn end_quietly(net: OrchestratorNet, s: Session) {
    if let Some(token) = s.info.auth_token.clone() {
        let uri = s.orch.to_string();
        tokio::spawn(async move {
            if let Err(e) = net.end_session(&uri, token).await {
                debug!(orchestrator = %uri, error = %e, "EndTranscodingSession failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn status(code: u16, body: &str) -> NetError {
        NetError::Status { status: StatusCode::from_u16(code).unwrap(), body: body.into() }
    }

    #[test]
    fn refusals_map_to_the_spec_reactions() {
        assert_eq!(classify_net(status(400, "TicketParams expired")).next, Next::Refresh);
        assert_eq!(classify_net(status(400, "invalid recipientRand for ticket recipientRandHash")).next, Next::Refresh);
        assert_eq!(classify_net(status(400, "Insufficient balance")).next, Next::Refresh);
        assert_eq!(classify_net(status(403, "expired auth token")).next, Next::Refresh);
        assert_eq!(classify_net(status(403, "ErrSegSig")).next, Next::GiveUp);
        assert_eq!(classify_net(status(403, "Forbidden")).next, Next::Failover);
        assert_eq!(classify_net(status(500, "Internal Server Error")).next, Next::Failover);
        assert_eq!(classify_net(NetError::Timeout("upload")).next, Next::Failover);
    }

    struct Block(u64);
    impl ChainView for Block {
        fn latest_l1_block(&self) -> Option<u64> {
            Some(self.0)
        }
    }

    #[test]
    fn stale_params_are_judged_by_the_chain_when_there_is_one() {
        let tp = transport::proto::TicketParams { expiration_block: vec![0x04, 0x10], ..Default::default() }; // 1040
        assert!(!params_expired(&tp, 1000));
        assert!(!params_expired(&tp, 1038));
        assert!(params_expired(&tp, 1039), "one block ahead is already stale");
        assert!(params_expired(&tp, 2000));
        assert!(!params_expired(
            &transport::proto::TicketParams { expiration_block: vec![1; 9], ..Default::default() },
            5
        ));
        let s = Session {
            orch: transport::orch_addr::parse_orch_addrs("127.0.0.1").unwrap().remove(0),
            info: OrchestratorInfo {
                ticket_params: Some(tp),
                auth_token: Some(transport::proto::AuthToken { expiration: i64::MAX, ..Default::default() }),
                ..Default::default()
            },
            recipient: [0; 20],
            tickets: None,
            start_price: None,
            info_at: Instant::now(),
        };
        assert!(!s.needs_refresh(true, None), "fresh params, no chain: keep");
        assert!(!s.needs_refresh(true, Some(&Block(1000))));
        assert!(s.needs_refresh(true, Some(&Block(1039))));
        assert!(!s.needs_refresh(false, Some(&Block(1039))), "off-chain sessions have no params to expire");
    }

    #[test]
    fn request_signature_recovers_to_the_payer() {
        let signer = EthSigner::from_hex("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
        let p = Payer::new(signer.clone(), None);
        // §3.3: personal_sign(keccak256(EIP-55 address string)).
        let digest = transport::credentials::keccak256(eip55(&signer.address()).as_bytes());
        let who = transport::identity::recover_personal(&digest, &p.request_sig).unwrap();
        assert_eq!(who, signer.address());
    }
}
