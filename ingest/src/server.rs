//! The tokio shell around [`ServerSession`]: accept, read, feed, drain, write.
//!
//! Each connection runs in its own task. A published stream's events go to the engine
//! through a bounded channel, so a slow stream pushes back on its own publisher's TCP
//! window and on nothing else. Any protocol or media error closes that one connection with
//! the reason logged.
//!
//! Connections can run on [`IngestThreads`]: dedicated threads, each with a
//! single-threaded runtime, that connections are dealt to in turn. Ingest is many small
//! steps per second per stream (a read, a message, a frame handed on); on a work-stealing
//! runtime every one of them can wake a second thread that finds nothing to do, and those
//! sleeps and wake-ups cost more than the work. A thread of its own serves hundreds of
//! 6 Mb/s streams (see `docs/BENCHMARKS.md`); tasks a connection spawns (the engine's
//! stream task) run on the same thread.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Threads dedicated to ingest, each running a single-threaded runtime; see the module
/// docs. Stopped (and joined) with [`IngestThreads::stop`]; until then they keep running
/// whatever was spawned on them, including tasks that outlive their connection.
pub struct IngestThreads {
    senders: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
    stop: watch::Sender<bool>,
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl IngestThreads {
    /// Starts `n` threads (at least one), named `sluice-ingest-{i}`.
    pub fn start(n: usize) -> std::io::Result<Arc<Self>> {
        let (stop, stopped) = watch::channel(false);
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let mut stopped = stopped.clone();
            let thread = std::thread::Builder::new().name(format!("sluice-ingest-{i}")).spawn(move || {
                rt.block_on(async move {
                    loop {
                        tokio::select! {
                            job = rx.recv() => match job {
                                Some(job) => { tokio::spawn(job); }
                                None => break,
                            },
                            _ = stopped.changed() => break,
                        }
                    }
                    // Jobs still running (streams flushing) get until `stop` to finish.
                    while !*stopped.borrow() {
                        if stopped.changed().await.is_err() {
                            break;
                        }
                    }
                });
            })?;
            senders.push(tx);
            threads.push(thread);
        }
        Ok(Arc::new(IngestThreads { senders, next: AtomicUsize::new(0), stop, threads: threads.into() }))
    }

    /// Runs `job` on the next thread in turn.
    pub fn spawn(&self, job: impl Future<Output = ()> + Send + 'static) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        // A thread only goes away after `stop`; a job sent after that is dropped.
        let _ = self.senders[i].send(Box::pin(job));
    }

    /// Stops every thread (what still runs on them is dropped) and waits for them.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// Accepts RTMP connections on `listener` until `shutdown` turns true, serving each on
/// `threads` if given, else on the calling runtime.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<dyn PublishHandler>,
    config: RtmpServerConfig,
    mut shutdown: watch::Receiver<bool>,
    threads: Option<Arc<IngestThreads>>,
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
        let serve_one = async move {
            // Registered with the reactor of the runtime that runs it.
            let sock = match sock.into_std().and_then(TcpStream::from_std) {
                Ok(s) => s,
                Err(err) => {
                    warn!(%err, "rtmp connection could not be handed to its thread");
                    active.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            };
            let _ = sock.set_nodelay(true);
            match serve_connection(sock, remote, conn_id, &*handler, &config, shutdown).await {
                Ok(()) => debug!("connection closed"),
                Err(reason) => warn!(%reason, "publisher disconnected"),
            }
            active.fetch_sub(1, Ordering::Relaxed);
        }
        .instrument(span);
        match &threads {
            Some(t) => t.spawn(serve_one),
            None => {
                tokio::spawn(serve_one);
            }
        }
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
