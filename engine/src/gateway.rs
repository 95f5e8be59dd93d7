//! Starting and stopping a gateway: RTMP ingest, HTTP playback and the control API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ingest::server::{IngestThreads, PublishHandler, RtmpServerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::GatewayConfig;
use crate::error::StartError;
use crate::metrics::Metrics;
use crate::registry::Registry;
use transport::trickle::Limits;
use transport::trickle_http::TrickleHub;

/// What [`Gateway::shutdown`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The gateway's own tasks: the RTMP, HTTP and control listeners, the trickle idle
    /// sweep; discovery and the AI result expiry when orchestrators are configured; the
    /// API key file watcher when keys are on.
    pub tasks: usize,
    /// Those that had not stopped 5 s after the signal and were aborted.
    pub aborted: usize,
}

/// A running gateway.
pub struct Gateway {
    /// Bound RTMP address.
    pub rtmp_addr: SocketAddr,
    /// Bound HTTP playback address.
    pub http_addr: SocketAddr,
    /// Bound control API address.
    pub cli_addr: SocketAddr,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    ingest_threads: Option<Arc<IngestThreads>>,
    trickle: Arc<TrickleHub>,
}

impl Gateway {
    /// Validates `config`, binds every listener and starts serving. Port 0 binds an
    /// ephemeral port (the bound addresses are in the returned value).
    pub async fn start(config: GatewayConfig) -> Result<Gateway, StartError> {
        config.validate()?;
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());
        let transcoding = crate::transcode::Transcoding::from_config(&config, metrics.clone())?;
        // Live payments: the gateway's key, or a remote signer, whose identity discovery
        // uses too.
        let payer = match (&config.payment.remote_signer_url, transcoding.as_ref().and_then(|t| t.key())) {
            (Some(url), _) => Some(crate::live::pay::LivePayer::Remote {
                url: url.trim_end_matches('/').to_owned(),
                net: Box::new(transport::client::OrchestratorNet::new(transport::tls::CertPolicy::AcceptAny)),
            }),
            (None, Some(key)) => Some(crate::live::pay::LivePayer::Local(session::signer::Signer::new(key))),
            (None, None) => None,
        };
        if let (Some(p @ crate::live::pay::LivePayer::Remote { url, .. }), Some(t)) = (&payer, &transcoding) {
            match p.identity().await {
                Ok((address, sig)) => t.set_remote_identity(address, sig),
                Err(e) => tracing::warn!(%url, error = %e, "remote signer unreachable; orchestrators see no identity"),
            }
        }
        let keys = crate::ai::keys::KeyRing::load(config.auth.api_keys.clone()).map_err(StartError::Keys)?;
        if keys.enabled() {
            let _ = metrics.keys.set(keys.clone());
        }
        let ai = match &transcoding {
            Some(t) => Some(
                crate::ai::Ai::new(t.clone(), &config, keys.clone(), metrics.ai.clone())
                    .map_err(|e| StartError::Ai(e.message))?,
            ),
            None => None,
        };
        let (shutdown, rx) = watch::channel(false);
        let (rtmp, rtmp_addr) = bind("RTMP", config.listen.rtmp_addr).await?;
        let (http, http_addr) = bind("HTTP", config.listen.http_addr).await?;
        let (cli, cli_addr) = bind("control", config.listen.cli_addr).await?;
        // Discovery starts once the gateway can serve, and stops with it.
        let discovery = transcoding.clone().map(|t| crate::transcode::discovery::spawn(t, rx.clone()));
        let trickle = TrickleHub::new(Limits::default(), config.trickle.trickle_auto_create);
        // Live AI runs on the same orchestrators, republishing on the gateway's channels.
        let live = transcoding.clone().map(|t| {
            crate::live::Live::new(
                t,
                trickle.clone(),
                config.live.clone(),
                metrics.clone(),
                format!("http://{http_addr}"),
                payer.map(std::sync::Arc::new),
            )
        });
        let registry = Registry::new(config.clone(), metrics.clone(), transcoding, live);

        let rtmp_cfg = RtmpServerConfig {
            idle_timeout: Duration::from_secs_f64(config.listen.rtmp_idle_timeout),
            max_connections: config.listen.max_streams * 2,
            ..RtmpServerConfig::default()
        };
        let handler: Arc<dyn PublishHandler> = Arc::new(crate::registry::PublishGate(registry.clone()));
        let ingest_threads = match config.listen.ingest_threads {
            0 => None,
            n => Some(IngestThreads::start(n).map_err(StartError::IngestThreads)?),
        };
        let serve = ingest::server::serve(rtmp, handler, rtmp_cfg, rx.clone(), ingest_threads.clone());
        let mut tasks = vec![tokio::spawn(serve)];
        tasks.extend(discovery);
        tasks.push(tokio::spawn(trickle.clone().sweep_until(stopped(rx.clone()))));
        let mut playback =
            crate::http::router(registry.clone(), metrics.clone(), config.listen.web_dir.clone(), keys.clone())
                .nest("/ai/trickle", transport::trickle_http::router(trickle.clone()));
        if let Some(ai) = &ai {
            playback = playback
                .merge(crate::ai::routes::router(ai.clone()))
                .layer(axum::middleware::from_fn_with_state(ai.results.clone(), crate::ai::results::serve_layer));
            tasks.push(tokio::spawn(expire_results(ai.clone(), rx.clone())));
        }
        playback = playback
            .merge(crate::webrtc::whip::router(
                registry.clone(),
                keys.clone(),
                metrics.webrtc.clone(),
                &config.webrtc,
                rx.clone(),
            ))
            .merge(crate::webrtc::whep::router(
                registry.clone(),
                keys.clone(),
                metrics.webrtc.clone(),
                &config.webrtc,
                rx.clone(),
            ));
        tasks.extend(keys.watch(rx.clone()));
        tasks.push(spawn_http(http, playback, rx.clone()));
        tasks.push(spawn_http(cli, crate::control::router(registry.clone(), metrics.clone(), ai, keys), rx));
        info!(%rtmp_addr, %http_addr, %cli_addr, "gateway listening");
        Ok(Gateway { rtmp_addr, http_addr, cli_addr, registry, metrics, shutdown, tasks, ingest_threads, trickle })
    }

    /// The stream registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The trickle server under `/ai/trickle/` (the gateway creates its channels).
    pub fn trickle(&self) -> &Arc<TrickleHub> {
        &self.trickle
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops accepting, ends every stream (flushing its last segment and ending its
    /// playlist) and waits up to five seconds for that and for the gateway's own tasks
    /// (listeners, discovery) to finish; any still running then are aborted.
    pub async fn shutdown(self) -> ShutdownReport {
        self.registry.kick_all();
        let _ = self.shutdown.send(true);
        if !self.registry.wait_all_ended(Duration::from_secs(5)).await {
            tracing::warn!("some streams did not end within 5 s of shutdown");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut report = ShutdownReport { tasks: self.tasks.len(), aborted: 0 };
        for mut t in self.tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
                report.aborted += 1;
            }
        }
        if report.aborted > 0 {
            tracing::warn!(aborted = report.aborted, "gateway tasks still running 5 s after shutdown were aborted");
        }
        if let Some(t) = self.ingest_threads {
            // Streams have flushed; what is left there (grace periods) goes with them.
            let _ = tokio::task::spawn_blocking(move || t.stop()).await;
        }
        report
    }
}

/// Drops expired AI results every 10 s until the gateway stops.
async fn expire_results(ai: std::sync::Arc<crate::ai::Ai>, mut rx: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = rx.changed() => return,
            _ = tick.tick() => {
                #[allow(clippy::disallowed_methods)] // IO shell: the store's clock
                let dropped = ai.results.expire(std::time::Instant::now());
                if dropped > 0 {
                    tracing::debug!(dropped, "expired AI results dropped");
                }
            }
        }
    }
}

/// Resolves once the gateway is shutting down.
async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Binds `addr` for `what`, returning the listener and the address it got.
async fn bind(what: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let err = |source| StartError::Bind { what, addr, source };
    let l = TcpListener::bind(addr).await.map_err(err)?;
    let bound = l.local_addr().map_err(err)?;
    Ok((l, bound))
}

fn spawn_http(listener: TcpListener, router: axum::Router, mut rx: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Trickle bodies are streamed in small writes: they must not wait on Nagle.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        // Handlers may read the peer's address (the `/start` hook pulls from its caller).
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, service).with_graceful_shutdown(async move {
            let _ = rx.changed().await;
        });
        if let Err(err) = serve.await {
            tracing::error!(%err, "http server failed");
        }
    })
}
