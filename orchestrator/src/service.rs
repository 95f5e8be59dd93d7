//! The orchestrator as a network service: gRPC (`net.Orchestrator`) and HTTP (`/segment`,
//! `/stream/...`, `/status`) on one port, over TLS with a self-signed certificate (or
//! cleartext when asked), as go-livepeer serves them (spec §1, §4).
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use num_traits::ToPrimitive;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use transport::capabilities::{Capability, CapabilitySet};
use transport::credentials::keccak256;
use transport::identity::{Address, EthSigner};
use transport::proto::orchestrator_server::OrchestratorServer;
use transport::proto::{
    AuthToken, Capabilities, OrchestratorInfo, PriceInfo, TicketExpirationParams, TranscodeData, TranscodeResult,
    TranscodedSegmentData, transcode_result,
};
use transport::segment::{PAYMENT_HEADER, SEGMENT_HEADER};

use crate::admission::{Admitted, Rejection, SegmentGate};
use crate::auth::AuthTokens;
use crate::faults::{FaultState, fault_layer, set_fault};
use crate::recipient::{DEFAULT_TICKET_EV, Recipient};
use crate::sessions::SessionTable;
use crate::transcode::{Rendition, Transcoder};

/// Session limits and the rendition store depth (see [`crate::sessions`]).
pub use crate::sessions::{SESSION_IDLE, SESSION_QUEUE, STORE_DEPTH};
/// Largest accepted segment body.
pub const MAX_SEGMENT: usize = 300_000_000;

/// How to run an orchestrator.
pub struct OrchestratorConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The service URI announced in `OrchestratorInfo.transcoder`; by default
    /// `https://{listen}` (or `http://` without TLS).
    pub service_uri: Option<String>,
    /// Serve TLS with a self-signed certificate (the default) or cleartext.
    pub tls: bool,
    /// On-chain identity: with one, the orchestrator quotes tickets and checks payments
    /// and signatures; without, it is off-chain and checks neither (§3.2).
    pub signer: Option<EthSigner>,
    /// Price per pixel (paid mode).
    pub price: PriceInfo,
    /// Target ticket EV in wei (paid mode).
    pub ticket_ev: u64,
    /// Sessions served at once before `OrchestratorCapped`.
    pub max_sessions: usize,
    /// How long one "L1 block" lasts on the local block clock; ticket params expire 40
    /// blocks after they are quoted.
    pub block_time: Duration,
    /// Turns segments into renditions.
    pub transcoder: Arc<dyn Transcoder>,
    /// Write every `GetOrchestrator` and `/segment` exchange here ([`crate::capture`]).
    pub capture_dir: Option<std::path::PathBuf>,
    /// Accept `POST /fault` to misbehave on purpose (fault-injection tests only).
    pub allow_faults: bool,
    /// Live video-to-video jobs at once (0: the capability is not offered).
    pub live_capacity: usize,
    /// Batch AI models served (empty: no AI capability is offered).
    pub ai_models: Vec<crate::ai::AiModel>,
    /// Text-to-image answers a 1×1 PNG at once instead of drawing (gateway load tests).
    pub ai_instant: bool,
    /// The secret BYOC workers register capabilities with (`-orchSecret`); none: no
    /// registration.
    pub orch_secret: Option<String>,
    /// BYOC capabilities registered from the start.
    pub byoc: Vec<crate::byoc::ByocCapability>,
}

impl OrchestratorConfig {
    /// An off-chain orchestrator on `listen` with `transcoder` and go-livepeer's defaults.
    pub fn new(listen: SocketAddr, transcoder: Arc<dyn Transcoder>) -> Self {
        OrchestratorConfig {
            listen,
            service_uri: None,
            tls: true,
            signer: None,
            price: PriceInfo { price_per_unit: 0, pixels_per_unit: 1, ..Default::default() },
            ticket_ev: DEFAULT_TICKET_EV,
            max_sessions: 10,
            block_time: Duration::from_secs(12),
            transcoder,
            capture_dir: None,
            allow_faults: false,
            live_capacity: 4,
            ai_models: Vec::new(),
            ai_instant: false,
            orch_secret: None,
            byoc: Vec::new(),
        }
    }
}

/// Counters the `/status` endpoint reports.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Stats {
    /// Segments transcoded successfully.
    pub segments_transcoded: u64,
    /// Segments whose transcode failed.
    pub segments_failed: u64,
    /// Segments answered with `OrchestratorBusy`.
    pub segments_busy: u64,
    /// Requests refused, by HTTP status.
    pub rejected: HashMap<u16, u64>,
    /// Valid tickets received.
    pub tickets_received: u64,
    /// Winning tickets among them.
    pub winning_tickets: u64,
    /// Tickets whose nonce did not increase.
    pub nonces_out_of_order: u64,
    /// EV of the tickets received, wei.
    pub credited_wei: f64,
    /// Fees charged, wei.
    pub debited_wei: f64,
    /// Sessions alive.
    pub sessions: usize,
    /// `GetOrchestrator` calls answered.
    pub get_orchestrator_calls: u64,
    /// `EndTranscodingSession` calls answered.
    pub sessions_ended: u64,
    /// Live video-to-video jobs running.
    pub live_jobs: usize,
    /// Live payments (`POST /payment`) accepted.
    pub live_payments: u64,
    /// Batch AI jobs done.
    pub ai_jobs: u64,
    /// Batch AI jobs that failed.
    pub ai_failed: u64,
}

pub(crate) struct Shared {
    service_uri: String,
    address: Address,
    pub(crate) signer: Option<EthSigner>,
    pub(crate) price: Mutex<PriceInfo>,
    pub(crate) capabilities: Capabilities,
    pub(crate) fault: Mutex<FaultState>,
    pub(crate) allow_faults: bool,
    started: Instant,
    block_time: Duration,
    pub(crate) gate: Mutex<SegmentGate>,
    pub(crate) sessions: Mutex<SessionTable>,
    pub(crate) stats: Mutex<Stats>,
    transcoder: Arc<dyn Transcoder>,
    pub(crate) live: crate::live::LiveJobs,
    pub(crate) ai: crate::ai::AiJobs,
    pub(crate) byoc: crate::byoc::Byoc,
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("the OS random source works");
    b
}

impl Shared {
    pub(crate) fn paid(&self) -> bool {
        self.signer.is_some()
    }

    /// The announced service URI.
    pub(crate) fn service_uri(&self) -> &str {
        &self.service_uri
    }

    /// The local block clock: a block every `block_time` since start.
    pub(crate) fn latest_block(&self) -> u64 {
        1_000 + (self.started.elapsed().as_millis() / self.block_time.as_millis().max(1)) as u64
    }

    pub(crate) fn round(&self, block: u64) -> TicketExpirationParams {
        let round = (block / 100) as i64;
        TicketExpirationParams {
            creation_round: round,
            creation_round_block_hash: keccak256(&round.to_be_bytes()).to_vec(),
        }
    }

    /// A fresh `OrchestratorInfo` for `sender` carrying `token`, quoting the transcoding
    /// price.
    pub(crate) fn info(&self, sender: &Address, token: AuthToken) -> OrchestratorInfo {
        self.info_priced(sender, token, None)
    }

    /// [`Shared::info`] quoting `price` instead (an AI job's models, §4.2).
    pub(crate) fn info_priced(&self, sender: &Address, token: AuthToken, price: Option<PriceInfo>) -> OrchestratorInfo {
        let mut info = OrchestratorInfo {
            transcoder: self.service_uri.clone(),
            capabilities: Some(self.capabilities.clone()),
            auth_token: Some(token),
            ..Default::default()
        };
        if self.paid() {
            let block = self.latest_block();
            let price = price.unwrap_or_else(|| self.price.lock().expect("price lock").clone());
            let gate = self.gate.lock().expect("gate lock");
            let recipient = gate.recipient.as_ref().expect("paid mode has a recipient");
            info.ticket_params = Some(recipient.quote(sender, &price, random(), block, &self.round(block)));
            info.price_info = Some(price);
            info.address = self.address.to_vec();
        }
        info
    }

    fn reject(&self, r: &Rejection) -> Response {
        let status = r.status();
        *self.stats.lock().expect("stats lock").rejected.entry(status).or_default() += 1;
        tracing::info!(status, reason = %r, "segment refused");
        (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), r.to_string()).into_response()
    }
}

async fn segment(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let header_str = |h: &HeaderMap, name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let seg_h = header_str(&parts.headers, SEGMENT_HEADER);
    let pay_h = header_str(&parts.headers, PAYMENT_HEADER);
    let admitted = {
        let block = s.latest_block();
        let mut gate = s.gate.lock().expect("gate lock");
        gate.admit(&seg_h, &pay_h, unix_now(), block)
    };
    let admitted = match admitted {
        Ok(a) => a,
        Err(r) => return s.reject(&r),
    };
    let body = match axum::body::to_bytes(body, MAX_SEGMENT).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("segment body: {e}")).into_response(),
    };
    if let Err(r) = SegmentGate::check_body(&admitted, &body) {
        return s.reject(&r);
    }
    let token = admitted.seg.auth_token.clone().unwrap_or_default();
    let info = s.info(&admitted.sender, token);
    let seq = admitted.seg.seq;
    let admitted_now = s.sessions.lock().expect("sessions lock").admit(&admitted.session_id, Instant::now());
    if let Err(refused) = admitted_now {
        let err = refused.as_wire();
        s.stats.lock().expect("stats lock").segments_busy += 1;
        let result =
            TranscodeResult { seq, result: Some(transcode_result::Result::Error(err.into())), info: Some(info) };
        return (StatusCode::OK, result.encode_to_vec()).into_response();
    }
    // §4.2 step 8: headers go out now; the body follows when the transcode is done.
    let job = tokio::spawn(transcode(s.clone(), admitted, body, info));
    let body = Body::from_stream(one_shot::Once::new(async move {
        let bytes = job.await.unwrap_or_else(|e| {
            TranscodeResult {
                seq,
                result: Some(transcode_result::Result::Error(format!("transcode task failed: {e}"))),
                info: None,
            }
            .encode_to_vec()
        });
        Ok::<_, std::convert::Infallible>(Bytes::from(bytes))
    }));
    Response::builder().status(StatusCode::OK).body(body).expect("static response parts are valid")
}

mod one_shot {
    //! The smallest `Stream` a streamed axum body needs: one item from one future.
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures_core::Stream;

    pub(super) struct Once<F> {
        fut: Option<Pin<Box<F>>>,
    }

    impl<F> Once<F> {
        pub(super) fn new(f: F) -> Self {
            Once { fut: Some(Box::pin(f)) }
        }
    }

    impl<F: Future> Stream for Once<F> {
        type Item = F::Output;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
            let Some(fut) = self.fut.as_mut() else { return Poll::Ready(None) };
            match fut.as_mut().poll(cx) {
                Poll::Ready(v) => {
                    self.fut = None;
                    Poll::Ready(Some(v))
                }
                Poll::Pending => Poll::Pending,
            }
        }
    }
}

/// Transcodes one admitted segment and builds the reply body.
async fn transcode(s: Arc<Shared>, admitted: Admitted, body: Bytes, info: OrchestratorInfo) -> Vec<u8> {
    let seq = admitted.seg.seq;
    let started = Instant::now();
    let outcome = s.transcoder.transcode(body, admitted.profiles.clone()).await;
    let session_id = admitted.session_id.clone();
    let mut stored = Vec::new();
    let result = match outcome {
        Ok(renditions) => {
            let pixels: i64 = renditions.iter().map(|r| r.pixels).sum();
            if s.paid() {
                let price = admitted.payment.expected_price.clone().unwrap_or_default();
                let mut gate = s.gate.lock().expect("gate lock");
                if let Some(r) = gate.recipient.as_mut() {
                    r.debit(admitted.sender, &session_id, pixels.max(0) as u64, &price);
                }
            }
            let sig = s.signer.as_ref().map(|signer| results_signature(signer, &renditions)).unwrap_or_default();
            let segments = renditions
                .iter()
                .zip(&admitted.profiles)
                .map(|(r, p)| TranscodedSegmentData {
                    url: format!("{}/stream/{}/{}/{}.ts", s.service_uri, session_id, p.name, seq),
                    pixels: r.pixels,
                    ..Default::default()
                })
                .collect();
            stored = renditions.iter().zip(&admitted.profiles).map(|(r, p)| (p.name.clone(), r.data.clone())).collect();
            s.stats.lock().expect("stats lock").segments_transcoded += 1;
            tracing::debug!(session = %session_id, seq, ms = started.elapsed().as_millis() as u64, "segment transcoded");
            transcode_result::Result::Data(TranscodeData { segments, sig })
        }
        Err(e) => {
            s.stats.lock().expect("stats lock").segments_failed += 1;
            tracing::warn!(session = %session_id, seq, error = %e, "transcode failed");
            transcode_result::Result::Error(e.to_string())
        }
    };
    s.sessions.lock().expect("sessions lock").finish(&session_id, seq, stored, Instant::now());
    TranscodeResult { seq, result: Some(result), info: Some(info) }.encode_to_vec()
}

/// §4.5: personal_sign(keccak256(keccak256(r0) ‖ keccak256(r1) ‖ …)).
fn results_signature(signer: &EthSigner, renditions: &[Rendition]) -> Vec<u8> {
    let mut cat = Vec::with_capacity(32 * renditions.len());
    for r in renditions {
        cat.extend_from_slice(&keccak256(&r.data));
    }
    signer.personal_sign(&keccak256(&cat)).to_vec()
}

async fn rendition(
    State(s): State<Arc<Shared>>,
    Path((session, profile, file)): Path<(String, String, String)>,
) -> Response {
    let Some(seq) = file.strip_suffix(".ts").and_then(|n| n.parse::<i64>().ok()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let found = s.sessions.lock().expect("sessions lock").rendition(&session, &profile, seq);
    match found {
        Some(b) => ([(header::CONTENT_TYPE, "video/mp2t")], b).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    let mut st = s.stats.lock().expect("stats lock").clone();
    st.sessions = s.sessions.lock().expect("sessions lock").len();
    st.live_jobs = s.live.running();
    if let Some(r) = s.gate.lock().expect("gate lock").recipient.as_ref() {
        st.tickets_received = r.tickets_received;
        st.winning_tickets = r.winning_tickets;
        st.nonces_out_of_order = r.nonces_out_of_order;
        st.credited_wei = r.total_credited.to_f64().unwrap_or(f64::NAN);
        st.debited_wei = r.total_debited.to_f64().unwrap_or(f64::NAN);
    }
    axum::Json(st).into_response()
}

/// What this orchestrator can do: H.264 in and out, MPEG-TS, the H.264 profiles, GOP,
/// fractional frame rates, auth tokens and segment slicing; and, with `live_capacity`,
/// live video-to-video with the effect models, each warm with that capacity.
fn own_capabilities(live_capacity: usize) -> Capabilities {
    let mut set = CapabilitySet::default();
    for c in [
        Capability::H264,
        Capability::MpegTs,
        Capability::FractionalFramerates,
        Capability::ProfileH264Baseline,
        Capability::ProfileH264Main,
        Capability::ProfileH264High,
        Capability::ProfileH264ConstrainedHigh,
        Capability::Gop,
        Capability::AuthToken,
        Capability::SegmentSlicing,
    ] {
        set.insert(c as u32);
    }
    let mut caps = Capabilities {
        bitstring: set.words().to_vec(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    if live_capacity > 0 {
        use transport::proto::capabilities::{
            CapabilityConstraints, Constraints, capability_constraints::ModelConstraint,
        };
        set.insert(crate::live::CAPABILITY);
        caps.bitstring = set.words().to_vec();
        let capacity = live_capacity as u32;
        caps.capacities.insert(crate::live::CAPABILITY, capacity);
        let models = crate::live::effects::MODELS
            .iter()
            .map(|m| (m.to_string(), ModelConstraint { warm: true, capacity, ..Default::default() }))
            .collect();
        caps.constraints = Some(Constraints {
            per_capability: [(crate::live::CAPABILITY, CapabilityConstraints { models })].into(),
            ..Default::default()
        });
    }
    caps
}

/// A running orchestrator.
pub struct OrchestratorHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// The announced service URI.
    pub service_uri: String,
    /// SHA-256 of the TLS certificate (for pinning), if serving TLS.
    pub cert_fingerprint: Option<[u8; 32]>,
    /// The trickle channels under `/ai/trickle/` (created by the orchestrator's own jobs).
    pub trickle: Arc<transport::trickle_http::TrickleHub>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl OrchestratorHandle {
    /// Stops accepting and closes the listener.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Why an orchestrator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The capture directory could not be created.
    #[error("capture directory {dir}: {source}")]
    Capture {
        /// The directory.
        dir: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The self-signed certificate could not be made.
    #[error("self-signed certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The TLS configuration was refused.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// Serves one accepted connection (HTTP/1.1 or HTTP/2, over TLS when `tls` is given) on
/// its own task.
fn spawn_connection(tcp: tokio::net::TcpStream, peer: SocketAddr, app: Router, tls: Option<TlsAcceptor>) {
    let _ = tcp.set_nodelay(true);
    tokio::spawn(async move {
        let service = TowerToHyperService::new(app);
        let builder = auto::Builder::new(TokioExecutor::new());
        let served = match tls {
            Some(acceptor) => {
                let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                builder.serve_connection(TokioIo::new(stream), service).await
            }
            None => builder.serve_connection(TokioIo::new(tcp), service).await,
        };
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    });
}

/// Serves `app` on `listener` until `stop` turns true: HTTP/1.1 and HTTP/2, over TLS with
/// a fresh self-signed certificate (as go-livepeer's orchestrator) when `tls`. Returns the
/// serving task and, with TLS, the certificate's SHA-256 (for pinning).
pub fn serve_app(
    listener: TcpListener,
    app: Router,
    tls: bool,
    mut stop: watch::Receiver<bool>,
) -> Result<(tokio::task::JoinHandle<()>, Option<[u8; 32]>), StartError> {
    let (acceptor, fingerprint) = if tls {
        let addr =
            listener.local_addr().map_err(|source| StartError::Bind { addr: ([0, 0, 0, 0], 0).into(), source })?;
        let (sc, fp) = self_signed(vec![addr.ip().to_string(), "localhost".into()])?;
        (Some(TlsAcceptor::from(Arc::new(sc))), Some(fp))
    } else {
        (None, None)
    };
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                accepted = listener.accept() => {
                    let Ok((tcp, peer)) = accepted else { continue };
                    spawn_connection(tcp, peer, app.clone(), acceptor.clone());
                }
            }
        }
    });
    Ok((task, fingerprint))
}

/// A self-signed certificate as go-livepeer makes one (ECDSA P-256), for `hosts`.
fn self_signed(hosts: Vec<String>) -> Result<(rustls::ServerConfig, [u8; 32]), StartError> {
    let ck = rcgen::generate_simple_self_signed(hosts)?;
    let cert_der = ck.cert.der().clone();
    let fp = transport::tls::fingerprint(&cert_der);
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let mut cfg = rustls::ServerConfig::builder_with_provider(transport::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((cfg, fp))
}

/// Starts an orchestrator.
pub async fn start(cfg: OrchestratorConfig) -> Result<OrchestratorHandle, StartError> {
    let bind = |source| StartError::Bind { addr: cfg.listen, source };
    let listener = TcpListener::bind(cfg.listen).await.map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    let scheme = if cfg.tls { "https" } else { "http" };
    let service_uri = cfg.service_uri.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
    let secret: [u8; 32] = random();
    let address = cfg.signer.as_ref().map(|s| s.address()).unwrap_or([0; 20]);
    let recipient = cfg.signer.as_ref().map(|_| Recipient::new(address, &secret, cfg.ticket_ev));
    let ai = crate::ai::AiJobs::new(cfg.ai_models, cfg.ai_instant);
    let mut capabilities = own_capabilities(if cfg!(feature = "live") { cfg.live_capacity } else { 0 });
    ai.add_capabilities(&mut capabilities);
    // Live AI's channels, created by the orchestrator itself (no auto-creation).
    let trickle = transport::trickle_http::TrickleHub::new(transport::trickle::Limits::default(), false);
    let shared = Arc::new(Shared {
        service_uri: service_uri.clone(),
        address,
        signer: cfg.signer,
        price: Mutex::new(cfg.price),
        fault: Mutex::new(FaultState::default()),
        allow_faults: cfg.allow_faults,
        capabilities: capabilities.clone(),
        started: Instant::now(),
        block_time: cfg.block_time,
        sessions: Mutex::new(SessionTable::new(cfg.max_sessions)),
        gate: Mutex::new(SegmentGate { auth: AuthTokens::new(&secret), recipient, capabilities }),
        stats: Mutex::new(Stats::default()),
        transcoder: cfg.transcoder,
        live: crate::live::LiveJobs::new(cfg.live_capacity, trickle.clone()),
        ai,
        byoc: crate::byoc::Byoc::new(cfg.orch_secret, cfg.byoc),
    });
    let mut http = Router::new()
        .route("/segment", post(segment))
        .route("/live-video-to-video", post(crate::live::start))
        .route("/payment", post(crate::live::payment))
        .route("/stream/{session}/{profile}/{file}", get(rendition))
        .route("/stream/{request}/{file}", get(crate::ai::result_file))
        .route("/status", get(status))
        .route("/fault", post(set_fault))
        .route("/capability/register", post(crate::byoc::register))
        .route("/capability/unregister", post(crate::byoc::unregister))
        .route("/process/token", get(crate::byoc::token))
        .route("/process/request/{*path}", post(crate::byoc::request))
        .with_state(shared.clone());
    if !shared.ai.is_empty() {
        for p in transport::ai::Pipeline::ALL {
            let st = shared.clone();
            http =
                http.route(&format!("/{}", p.name()), post(move |req: Request| crate::ai::handle(p, State(st), req)));
        }
    }
    let http = http.nest("/ai/trickle", transport::trickle_http::router(trickle.clone()));
    let mut app = tonic::service::Routes::new(OrchestratorServer::new(crate::grpc::Grpc(shared.clone())))
        .into_axum_router()
        .merge(http);
    if cfg.allow_faults {
        app = app.layer(axum::middleware::from_fn_with_state(shared.clone(), fault_layer));
    }
    if let Some(dir) = &cfg.capture_dir {
        let c = crate::capture::Capture::new(dir.clone())
            .map_err(|source| StartError::Capture { dir: dir.clone(), source })?;
        app = app.layer(axum::middleware::from_fn_with_state(c, crate::capture::capture));
    }
    let (tls, cert_fingerprint) = if cfg.tls {
        let host = addr.ip().to_string();
        let (sc, fp) = self_signed(vec![host, "localhost".into()])?;
        (Some(TlsAcceptor::from(Arc::new(sc))), Some(fp))
    } else {
        (None, None)
    };
    let (shutdown, mut stop) = watch::channel(false);
    let janitor = shared.clone();
    let live = shared.clone();
    let trickle_sweep = trickle.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    live.live.stop_all();
                    break;
                }
                _ = tick.tick() => {
                    janitor.ai.expire(Instant::now());
                    for id in janitor.sessions.lock().expect("sessions lock").expire(Instant::now()) {
                        tracing::info!(session = %id, "session idle, dropped");
                    }
                    for channel in trickle_sweep.sweep(transport::trickle::IDLE_TIMEOUT) {
                        tracing::info!(%channel, "trickle channel idle, closed");
                    }
                }
                accepted = listener.accept() => {
                    let Ok((tcp, peer)) = accepted else { continue };
                    spawn_connection(tcp, peer, app.clone(), tls.clone());
                }
            }
        }
    });
    tracing::info!(%service_uri, paid = shared.paid(), "orchestrator listening");
    Ok(OrchestratorHandle { addr, service_uri, cert_fingerprint, trickle, shutdown, task })
}
