//! The tokio shell around [`ServerSession`]: accept, read, feed, drain, write.
//!
//! Each connection runs in its own task. A published stream's events go to the engine
//! through a bounded channel, so a slow stream pushes back on its own publisher's TCP
//! window and on nothing else. Any protocol or media error closes that one connection with
//! the reason logged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use media::{Payload, StreamEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::flv::{FlvDemuxer, TAG_AUDIO, TAG_VIDEO};
use crate::redact::RedactedAddr;
use crate::rtmp::session::{ServerSession, SessionConfig, SessionEvent};

/// Settings of the RTMP listener.
#[derive(Debug, Clone)]
pub struct RtmpServerConfig {
    /// Session settings.
    pub session: SessionConfig,
    /// A connection that sends nothing for this long is closed. Encoders send frames many
    /// times a second; 30 s covers a stalled uplink without holding dead sockets for long.
    pub idle_timeout: Duration,
    /// Most connections served at once; more are refused at accept.
    pub max_connections: usize,
}

impl Default for RtmpServerConfig {
    fn default() -> Self {
        RtmpServerConfig {
            session: SessionConfig::default(),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// A publish request, for the handler to accept or reject.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// Connection number (for logs).
    pub conn_id: u64,
    /// The peer.
    pub remote: SocketAddr,
    /// RTMP application (`live` in `rtmp://host/live/key`).
    pub app: String,
    /// The stream name as sent, query string included.
    pub name: String,
}

/// The handler's acceptance: where the stream's events go.
pub struct PublishAccepted {
    /// Stream id, for logs.
    pub stream_id: String,
    /// Events of the stream, in order. If the receiver is dropped the connection closes.
    pub sink: mpsc::Sender<StreamEvent>,
    /// Resolves (or is dropped) when the engine wants this publisher gone, e.g. because a
    /// new publisher took the same stream over. The value is the reason.
    pub kick: oneshot::Receiver<&'static str>,
}

/// Why a publish was refused.
#[derive(Debug, Clone)]
pub struct PublishRejected {
    /// NetStream status code sent to the client, e.g. `NetStream.Publish.BadName`.
    pub code: &'static str,
    /// Human-readable reason, sent to the client and logged.
    pub reason: String,
}

/// Decides what happens to publish requests.
pub trait PublishHandler: Send + Sync + 'static {
    /// Accepts or rejects `req`. Must not block.
    fn on_publish(&self, req: &PublishRequest) -> Result<PublishAccepted, PublishRejected>;
}

/// Accepts RTMP connections on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<dyn PublishHandler>,
    config: RtmpServerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let next_id = AtomicU64::new(1);
    let active = Arc::new(AtomicU64::new(0));
    loop {
        let (sock, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(err) => {
                    warn!(%err, "rtmp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        if active.load(Ordering::Relaxed) as usize >= config.max_connections {
            warn!(remote = %RedactedAddr(remote), "rtmp connection refused: connection limit reached");
            continue;
        }
        let conn_id = next_id.fetch_add(1, Ordering::Relaxed);
        let span =
            info_span!("rtmp", conn = conn_id, remote = %RedactedAddr(remote), stream_id = tracing::field::Empty);
        let (handler, config, active, shutdown) = (handler.clone(), config.clone(), active.clone(), shutdown.clone());
        active.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(
            async move {
                let _ = sock.set_nodelay(true);
                match serve_connection(sock, remote, conn_id, &*handler, &config, shutdown).await {
                    Ok(()) => debug!("connection closed"),
                    Err(reason) => warn!(%reason, "publisher disconnected"),
                }
                active.fetch_sub(1, Ordering::Relaxed);
            }
            .instrument(span),
        );
    }
}

/// Why a connection ended early, for the log.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Rtmp(#[from] crate::RtmpError),
    #[error("{0}")]
    Flv(#[from] crate::FlvError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("no data for {0:?}")]
    Idle(Duration),
    #[error("publish rejected: {0}")]
    Rejected(String),
    #[error("{0}")]
    Closed(&'static str),
}

async fn serve_connection(
    mut sock: TcpStream,
    remote: SocketAddr,
    conn_id: u64,
    handler: &dyn PublishHandler,
    config: &RtmpServerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    #[allow(clippy::disallowed_methods)] // the shell owns the clock
    let epoch_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u32).unwrap_or(0);
    let mut session = ServerSession::new(config.session.clone(), epoch_ms, crate::random_seed());
    let mut demux = FlvDemuxer::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut publishing: Option<(mpsc::Sender<StreamEvent>, oneshot::Receiver<&'static str>)> = None;
    // What the FLV demuxer yields for one tag; reused so no frame allocates it.
    let mut events = Vec::with_capacity(2);
    loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let kicked = async {
            match publishing.as_mut() {
                Some((_, kick)) => kick.await.unwrap_or("stream removed"),
                None => std::future::pending().await,
            }
        };
        let n = tokio::select! {
            r = tokio::time::timeout(config.idle_timeout, sock.read_buf(&mut buf)) => match r {
                Ok(r) => r?,
                Err(_) => return Err(ConnError::Idle(config.idle_timeout)),
            },
            reason = kicked => {
                info!(reason, "closing publisher");
                return Ok(());
            }
            _ = shutdown.changed() => return Ok(()),
        };
        if n == 0 {
            if let Some((sink, _)) = publishing.take() {
                // No unpublish before EOF: the stream ends all the same.
                let _ = sink.send(StreamEvent::End).await;
                info!("publisher closed the connection");
            }
            return Ok(());
        }
        let fed = session.handle_input(&mut buf);
        // Answer what was understood before reporting an error.
        while let Some(out) = session.poll_transmit() {
            sock.write_all(&out).await?;
        }
        fed?;
        while let Some(ev) = session.poll_event() {
            match ev {
                SessionEvent::Connect { app, .. } => debug!(app, "connect"),
                SessionEvent::Publish { app, name } => {
                    let req = PublishRequest { conn_id, remote, app, name };
                    match handler.on_publish(&req) {
                        Ok(acc) => {
                            tracing::Span::current().record("stream_id", acc.stream_id.as_str());
                            info!("publishing");
                            session.accept_publish();
                            publishing = Some((acc.sink, acc.kick));
                        }
                        Err(rej) => {
                            session.reject_publish(rej.code, &rej.reason);
                            while let Some(out) = session.poll_transmit() {
                                sock.write_all(&out).await?;
                            }
                            return Err(ConnError::Rejected(rej.reason));
                        }
                    }
                }
                SessionEvent::Metadata(meta) => debug!(?meta, "metadata"),
                SessionEvent::Video { timestamp, payload } => {
                    forward(&mut demux, &publishing, TAG_VIDEO, timestamp, &payload, &mut events).await?
                }
                SessionEvent::Audio { timestamp, payload } => {
                    forward(&mut demux, &publishing, TAG_AUDIO, timestamp, &payload, &mut events).await?
                }
                SessionEvent::Unpublish => {
                    if let Some((sink, _)) = publishing.take() {
                        let _ = sink.send(StreamEvent::End).await;
                        info!("unpublished");
                    }
                }
            }
        }
        while let Some(out) = session.poll_transmit() {
            sock.write_all(&out).await?;
        }
    }
}

async fn forward(
    demux: &mut FlvDemuxer,
    publishing: &Option<(mpsc::Sender<StreamEvent>, oneshot::Receiver<&'static str>)>,
    tag: u8,
    ts: u32,
    payload: &Payload,
    events: &mut Vec<StreamEvent>,
) -> Result<(), ConnError> {
    let Some((sink, _)) = publishing else { return Ok(()) };
    events.clear();
    let handled = demux.handle_tag(tag, ts, payload, events);
    while let Some(notice) = demux.poll_notice() {
        warn!(%notice, "tolerated publisher input");
    }
    handled?;
    for ev in events.drain(..) {
        sink.send(ev).await.map_err(|_| ConnError::Closed("stream closed by the gateway"))?;
    }
    Ok(())
}
