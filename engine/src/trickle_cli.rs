//! `sluice trickle serve | publish | subscribe`: a standalone trickle server and command-line
//! clients, for running and debugging live-AI pipelines (pipe ffmpeg in, ffplay out).
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use media::Segment;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use transport::tls::CertPolicy;
use transport::trickle::Limits;
use transport::trickle_client::{TrickleClient, TrickleClientError, TricklePublisher, TrickleSubscriber};
use transport::trickle_http::TrickleHub;

/// How long `publish` waits after its last segment before closing the channel.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Why a trickle command failed.
#[derive(Debug, thiserror::Error)]
pub enum TrickleCliError {
    /// The listen address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Serving could not start (TLS setup).
    #[error(transparent)]
    Serve(#[from] orchestrator::service::StartError),
    /// The input could not be read or cut.
    #[error(transparent)]
    Input(#[from] crate::offline::OfflineError),
    /// Opening the input or output file failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
    /// The trickle exchange failed.
    #[error(transparent)]
    Trickle(#[from] TrickleClientError),
}

/// Runs a standalone trickle server on `addr` under `/ai/trickle/` until `stop` resolves;
/// with `tls`, over TLS with a fresh self-signed certificate (as orchestrators serve).
/// `bound` gets the bound address and, with TLS, the certificate's SHA-256.
pub async fn serve(
    addr: SocketAddr,
    auto_create: bool,
    tls: bool,
    bound: impl FnOnce(SocketAddr, Option<[u8; 32]>),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), TrickleCliError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| TrickleCliError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| TrickleCliError::Bind { addr, source })?;
    let hub = TrickleHub::new(Limits::default(), auto_create);
    let app = axum::Router::new().nest("/ai/trickle", transport::trickle_http::router(hub.clone()));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let (served, fingerprint) = orchestrator::service::serve_app(listener, app, tls, rx.clone())?;
    bound(local, fingerprint);
    let sweep = tokio::spawn(hub.sweep_until(async move {
        let mut rx = rx;
        let _ = rx.changed().await;
    }));
    stop.await;
    let _ = tx.send(true);
    let _ = sweep.await;
    let _ = served.await;
    Ok(())
}

/// The certificate policy for `pins` (SHA-256 hex): any certificate without pins, as
/// go-livepeer accepts orchestrators' self-signed ones.
pub fn cert_policy(pins: &[String]) -> Result<CertPolicy, transport::tls::PinError> {
    if pins.is_empty() {
        return Ok(CertPolicy::AcceptAny);
    }
    Ok(CertPolicy::Pinned(pins.iter().map(|p| transport::tls::parse_fingerprint(p)).collect::<Result<_, _>>()?))
}

/// Cuts `input` (FLV or MPEG-TS; `-` is stdin) into keyframe-aligned MPEG-TS segments of
/// about `segment_secs` and publishes each as one trickle segment to `url`, paced in real
/// time unless `fast`. Returns the segments sent. The channel is closed at the end.
pub async fn publish(
    url: &str,
    input: Option<PathBuf>,
    segment_secs: f64,
    fast: bool,
    certs: CertPolicy,
) -> Result<u64, TrickleCliError> {
    let (tx, mut rx) = mpsc::channel::<Segment>(4);
    let reader = tokio::task::spawn_blocking(move || -> Result<(), TrickleCliError> {
        let sink = |s: &Segment| {
            let _ = tx.blocking_send(s.clone());
        };
        match input {
            Some(path) => {
                let f = std::fs::File::open(&path).map_err(|source| TrickleCliError::File { path, source })?;
                crate::offline::segment_stream(std::io::BufReader::new(f), segment_secs, sink)?;
            }
            None => {
                crate::offline::segment_stream(std::io::stdin().lock(), segment_secs, sink)?;
            }
        }
        Ok(())
    });
    let client = TrickleClient::new(certs);
    let mut publisher = TricklePublisher::start(client, url).await?;
    let started = tokio::time::Instant::now();
    let mut first: Option<f64> = None;
    let mut sent = 0;
    while let Some(seg) = rx.recv().await {
        let at = seg.start.as_secs_f64() - *first.get_or_insert(seg.start.as_secs_f64());
        if !fast {
            tokio::time::sleep_until(started + Duration::from_secs_f64(at.max(0.0))).await;
        }
        let mut w = publisher.segment();
        tracing::info!(seq = w.seq(), bytes = seg.data.len(), media_s = format!("{at:.2}"), "publishing segment");
        w.write(seg.data.clone()).await?;
        w.finish().await?;
        sent += 1;
    }
    reader.await.map_err(|e| TrickleCliError::Output(std::io::Error::other(e)))??;
    // Closing deletes the channel at once (as go-livepeer's publisher does); give
    // subscribers a moment to read the last segment first.
    tokio::time::sleep(CLOSE_LINGER).await;
    publisher.close().await?;
    Ok(sent)
}

/// Follows the channel at `url` from `start` (`-2` current, `-1` next) and writes every
/// segment's bytes, as they arrive, to `out` (`None`: stdout) until the channel ends.
/// Returns (segments, bytes).
pub async fn subscribe(
    url: &str,
    out: Option<PathBuf>,
    start: i64,
    certs: CertPolicy,
) -> Result<(u64, u64), TrickleCliError> {
    let mut sink: Box<dyn Write + Send> = match &out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|source| TrickleCliError::File { path: path.clone(), source })?,
        )),
        None => Box::new(std::io::stdout()),
    };
    let mut sub = TrickleSubscriber::new(TrickleClient::new(certs), url, start);
    let (mut segments, mut bytes) = (0, 0);
    while let Some(mut seg) = sub.next_segment().await? {
        while let Some(chunk) = seg.chunk().await? {
            bytes += chunk.len() as u64;
            sink.write_all(&chunk).map_err(TrickleCliError::Output)?;
        }
        sink.flush().map_err(TrickleCliError::Output)?;
        segments += 1;
        tracing::debug!(seq = seg.seq, "segment received");
    }
    Ok((segments, bytes))
}
