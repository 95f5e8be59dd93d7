//! Transcoding through Livepeer orchestrators: the IO around the sans-IO session manager
//! (`session::SegmentJobs`).
//!
//! * [`Transcoding`] is the gateway-wide setup: the network clients, the paying
//!   identity, the orchestrator pool and the link settings every stream shares.
//! * [`discovery`] is the gateway's discovery task (rounds of `GetOrchestrator`, the
//!   orchestrator webhook); it stops with the gateway.
//! * `driver` runs one stream's session manager: it performs the manager's actions
//!   (gRPC, HTTP, ticket signing) and feeds back the answers with the time.
//! * `recorder` turns the manager's reports into metrics, logs and the status JSON.
//!
//! The decisions (selection, suspension, refresh, retries, payments) are the session
//! manager's; `docs/TRANSCODING.md` and `docs/RELIABILITY.md` describe them.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use media::Segment;
use num_rational::BigRational;
use session::LinkConfig;
use session::pool::{DefaultSelector, OrchestratorPool, Weights};
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span};
use transport::capabilities::job_capabilities;
use transport::client::OrchestratorNet;
use transport::orch_addr::parse_orch_addrs;
use transport::proto::{OrchestratorRequest, VideoProfile};
use transport::tls::{CertPolicy, parse_fingerprint};

use crate::config::GatewayConfig;
use crate::error::TranscodingError;
use crate::metrics::Metrics;
use crate::output::StreamOutput;

pub mod discovery;
mod driver;
pub mod payer;
mod recorder;

pub use payer::Payer;

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

/// Gateway-wide transcoding setup, shared by every stream.
pub struct Transcoding {
    net: OrchestratorNet,
    profiles: Arc<Vec<VideoProfile>>,
    payer: Option<Arc<Payer>>,
    metrics: Arc<Metrics>,
    /// What the gateway knows of its orchestrators, and the selector ranking them.
    pool: Arc<OrchestratorPool>,
    /// What every stream's session manager is configured with.
    link: Arc<LinkConfig>,
    /// The orchestrator webhook, if configured.
    webhook: Option<String>,
    /// Seeds for the streams' selector draws.
    seeds: AtomicU64,
    /// The address and signature `OrchestratorRequest` carries when a remote signer holds
    /// the key (set once at start).
    remote_identity: std::sync::OnceLock<(Vec<u8>, Vec<u8>)>,
}

impl Transcoding {
    /// The setup `config` describes, or `None` when no orchestrator is configured. The
    /// discovery task is started separately ([`discovery::spawn`]).
    pub fn from_config(config: &GatewayConfig, metrics: Arc<Metrics>) -> Result<Option<Arc<Self>>, TranscodingError> {
        let orchestrators = parse_orch_addrs(&config.orchestrators.orch_addr)?;
        if orchestrators.is_empty() && config.orchestrators.orch_webhook_url.is_none() {
            return Ok(None);
        }
        let profiles = config.profiles()?;
        if profiles.is_empty() {
            return Err(TranscodingError::NoProfiles);
        }
        let payer = payer::load_payer(config)?.map(Arc::new);
        let policy = if config.orchestrators.orch_cert_pins.is_empty() {
            CertPolicy::AcceptAny
        } else {
            CertPolicy::Pinned(
                config.orchestrators.orch_cert_pins.iter().map(|p| parse_fingerprint(p)).collect::<Result<_, _>>()?,
            )
        };
        let blocklist = config
            .orchestrators
            .orch_blocklist
            .iter()
            .filter(|a| !a.trim().is_empty())
            .map(|a| payer::parse_address(a).ok_or_else(|| TranscodingError::Blocklist(a.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        info!(
            orchestrators = %orchestrators.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(","),
            profiles = %profiles.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(","),
            network = %config.payment.network,
            "transcoding enabled"
        );
        let weights = Weights {
            stake: config.selection.select_stake_weight,
            price: config.selection.select_price_weight,
            random: config.selection.select_rand_freq,
            ..Weights::default()
        };
        let pool = Arc::new(OrchestratorPool::new(
            orchestrators.into_iter().map(|o| (o, None)).collect(),
            Box::new(DefaultSelector { weights }),
            config.selection.preferred_regions.clone(),
        ));
        metrics.set_pool(pool.clone());
        let max_price = payer.as_ref().and_then(|p| p.max_price.clone()).or_else(|| {
            (config.payment.max_price_per_unit > 0).then(|| {
                BigRational::new(config.payment.max_price_per_unit.into(), config.payment.pixels_per_unit.max(1).into())
            })
        });
        let link = LinkConfig {
            max_attempts: config.orchestrators.max_attempts.max(1),
            paid: payer.is_some(),
            max_price,
            capabilities: job_capabilities(&profiles, false, ""),
            blocklist,
        };
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
        Ok(Some(Arc::new(Transcoding {
            net: OrchestratorNet::new(policy),
            profiles: Arc::new(profiles),
            payer,
            metrics,
            pool,
            link: Arc::new(link),
            webhook: config.orchestrators.orch_webhook_url.clone(),
            seeds: AtomicU64::new(seed),
            remote_identity: std::sync::OnceLock::new(),
        })))
    }

    /// The orchestrator pool (control API).
    pub fn pool(&self) -> &Arc<OrchestratorPool> {
        &self.pool
    }

    /// The output profiles, in rendition order.
    pub fn profiles(&self) -> &[VideoProfile] {
        &self.profiles
    }

    /// The gateway's own paying key, if it has one.
    pub fn key(&self) -> Option<transport::identity::EthSigner> {
        self.payer.as_ref().map(|p| p.signer.clone())
    }

    /// The identity a remote signer gave (address, signature over it), used in
    /// `OrchestratorRequest` when there is no local key.
    pub fn set_remote_identity(&self, address: Vec<u8>, sig: Vec<u8>) {
        let _ = self.remote_identity.set((address, sig));
    }

    /// The network clients (gRPC and HTTP, with the gateway's TLS policy).
    pub fn net(&self) -> &OrchestratorNet {
        &self.net
    }

    /// The `OrchestratorRequest` for a live video-to-video job with `model`: this
    /// gateway's identity, live capabilities, capacity check skipped as the Python gateway
    /// does (the start call checks capacity).
    pub fn live_request(&self, model: &str) -> OrchestratorRequest {
        OrchestratorRequest {
            capabilities: Some(transport::live::job_capabilities(model)),
            ignore_capacity_check: true,
            ..self.orchestrator_request()
        }
    }

    /// The `OrchestratorRequest` for a batch AI job (AI spec §2.2): this gateway's
    /// identity and the job's capabilities, capacity checked.
    pub fn ai_request(&self, p: transport::ai::Pipeline, model: &str, runner_version: &str) -> OrchestratorRequest {
        OrchestratorRequest {
            capabilities: Some(transport::ai::job_capabilities(p, model, runner_version)),
            ..self.orchestrator_request()
        }
    }

    /// The `OrchestratorRequest` this gateway sends (§2.1, §3.3).
    fn orchestrator_request(&self) -> OrchestratorRequest {
        let payer = self.payer.as_deref();
        let remote = self.remote_identity.get();
        OrchestratorRequest {
            address: payer
                .map(|p| p.signer.address().to_vec())
                .or_else(|| remote.map(|r| r.0.clone()))
                .unwrap_or_else(|| vec![0; 20]),
            sig: payer.map(|p| p.request_sig.clone()).or_else(|| remote.map(|r| r.1.clone())).unwrap_or_default(),
            capabilities: Some(self.link.capabilities.clone()),
            ignore_capacity_check: false,
        }
    }

    /// Starts the transcode task of stream `id`, which writes into `output` (MPEG-TS
    /// HLS) and `cmaf` (the renditions' CMAF tracks).
    pub fn start_stream(
        self: &Arc<Self>,
        id: &str,
        output: Arc<RwLock<StreamOutput>>,
        cmaf: crate::cmaf::SharedCmaf,
    ) -> StreamTranscoder {
        let (tx, rx) = mpsc::unbounded_channel();
        let (status_tx, status) = tokio::sync::watch::channel(crate::status::TranscodeStatus::default());
        // Spread the streams' draws: golden-ratio increments of the gateway's seed.
        let seed = self.seeds.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        let d = driver::Driver::new(self.clone(), id, output, cmaf, status_tx, seed);
        tokio::spawn(d.run(rx).instrument(info_span!(parent: None, "transcode", stream_id = %id)));
        StreamTranscoder { tx, status }
    }
}

/// Hands a stream's segments to its transcode task.
#[derive(Clone)]
pub struct StreamTranscoder {
    tx: mpsc::UnboundedSender<Job>,
    status: tokio::sync::watch::Receiver<crate::status::TranscodeStatus>,
}

impl StreamTranscoder {
    /// Queues a source segment (a handle, not a copy).
    pub fn submit(&self, seg: &Segment) {
        let _ = self.tx.send(Job::Segment(seg.clone(), Instant::now()));
    }

    /// The transcode task's status (sessions, recent results, totals), as its recorder
    /// publishes it.
    pub fn status(&self) -> tokio::sync::watch::Receiver<crate::status::TranscodeStatus> {
        self.status.clone()
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
