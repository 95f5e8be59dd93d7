//! Trickle clients (spec `trickle-and-live-ai.md` §1.8): a publisher that streams each
//! segment's bytes into its POST as they are produced and preconnects the next segment,
//! and a subscriber that follows a channel segment by segment, catching up after 470.
//!
//! Both run over one pooled hyper client (HTTP/2 by ALPN, HTTP/1.1 otherwise) with the
//! orchestrator TLS policy (any certificate, as go-livepeer; or SHA-256 pins).
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, StreamBody, combinators::BoxBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, oneshot};

use crate::client::{Connector, connector};
use crate::tls::CertPolicy;
use crate::trickle::{
    CLOSED_HEADER, EXPECT_CONTENT_HEADER, LATEST_HEADER, RESET_HEADER, SEQ_HEADER, STATUS_NOT_PRESENT,
};

type Body = BoxBody<Bytes, Infallible>;

/// Retries of a subscribe that failed without an answer (ai-runner and the Python clients
/// retry 5 times).
pub const SUBSCRIBE_RETRIES: u32 = 5;
/// 470s answered "you are ahead of the edge" before the subscriber jumps back to the
/// latest index (5 s at 250 ms).
pub const AHEAD_RETRIES: u32 = 20;
/// Pause between those retries.
pub const SUBSCRIBE_RETRY_PAUSE: Duration = Duration::from_millis(300);

/// A trickle client failure.
#[derive(Debug, thiserror::Error)]
pub enum TrickleClientError {
    /// Not a usable URL.
    #[error("invalid trickle URL {0:?}")]
    Url(String),
    /// The channel does not exist (404): terminal.
    #[error("trickle channel not found")]
    NotFound,
    /// The server answered with another status.
    #[error("trickle server answered {status}: {body}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The body text.
        body: String,
    },
    /// Connecting or transferring failed.
    #[error("trickle transport: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A pooled HTTP client for trickle channels.
#[derive(Clone)]
pub struct TrickleClient {
    http: Client<Connector, Body>,
}

impl std::fmt::Debug for TrickleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrickleClient")
    }
}

impl TrickleClient {
    /// A client accepting server certificates under `policy`.
    pub fn new(policy: CertPolicy) -> Self {
        TrickleClient { http: Client::builder(TokioExecutor::new()).build(connector(policy, true)) }
    }

    async fn send(&self, req: Request<Body>) -> Result<http::Response<hyper::body::Incoming>, TrickleClientError> {
        self.http.request(req).await.map_err(|e| TrickleClientError::Transport(Box::new(e)))
    }

    /// `GET {channel}/next`: the server's next write index.
    pub async fn next_index(&self, channel: &str) -> Result<u64, TrickleClientError> {
        let uri = parse(&format!("{channel}/next"))?;
        let resp = self.send(Request::get(uri).body(empty()).expect("valid request")).await?;
        match resp.status() {
            StatusCode::OK => Ok(header_u64(resp.headers(), LATEST_HEADER).unwrap_or(0)),
            StatusCode::NOT_FOUND => Err(TrickleClientError::NotFound),
            status => Err(TrickleClientError::Status { status, body: String::new() }),
        }
    }

    /// `POST {channel}` with `Expect-Content: mime`: creates the channel (servers with
    /// auto-creation only).
    pub async fn create(&self, channel: &str, mime: &str) -> Result<(), TrickleClientError> {
        let uri = parse(channel)?;
        let req = Request::post(uri).header(EXPECT_CONTENT_HEADER, mime).body(empty()).expect("valid request");
        let resp = self.send(req).await?;
        match resp.status() {
            StatusCode::OK => Ok(()),
            StatusCode::NOT_FOUND => Err(TrickleClientError::NotFound),
            status => Err(TrickleClientError::Status { status, body: String::new() }),
        }
    }

    /// `DELETE {channel}`: closes the channel for everyone.
    pub async fn close(&self, channel: &str) -> Result<(), TrickleClientError> {
        let uri = parse(channel)?;
        let resp = self.send(Request::delete(uri).body(empty()).expect("valid request")).await?;
        match resp.status() {
            StatusCode::OK => Ok(()),
            status => Err(TrickleClientError::Status { status, body: String::new() }),
        }
    }
}

fn parse(url: &str) -> Result<Uri, TrickleClientError> {
    url.parse::<Uri>().ok().filter(|u| u.authority().is_some()).ok_or_else(|| TrickleClientError::Url(url.to_owned()))
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn header_u64(h: &http::HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.parse().ok()
}

/// A streamed request body fed through a channel.
struct Feed(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Feed {
    type Item = Result<http_body::Frame<Bytes>, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// One POST in flight: its body is fed chunk by chunk; the answer comes when it ends.
struct PendingPost {
    seq: u64,
    tx: mpsc::Sender<Bytes>,
    answer: oneshot::Receiver<Result<StatusCode, TrickleClientError>>,
}

/// Publishes segments to a channel, one POST per segment, the next one preconnected.
pub struct TricklePublisher {
    client: TrickleClient,
    channel: String,
    next: u64,
    pending: Option<PendingPost>,
    reset: bool,
}

impl TricklePublisher {
    /// A publisher to `channel` (`http(s)://host/ai/trickle/{name}`) starting at the
    /// server's next index (`GET next`), restarting it with `Lp-Trickle-Reset` as the
    /// Python gateway does. A missing channel is created if the server allows it.
    pub async fn start(client: TrickleClient, channel: &str) -> Result<Self, TrickleClientError> {
        let next = match client.next_index(channel).await {
            // Not there yet: create it where the server allows that.
            Err(TrickleClientError::NotFound) => {
                client.create(channel, "video/MP2T").await?;
                client.next_index(channel).await?
            }
            r => r?,
        };
        let mut p = TricklePublisher { client, channel: channel.to_owned(), next, pending: None, reset: true };
        p.preconnect();
        Ok(p)
    }

    /// Opens the POST for the next index with an empty streaming body, so the connection
    /// and the server's slot are ready before the data exists.
    fn preconnect(&mut self) {
        let seq = self.next;
        let (tx, rx) = mpsc::channel(8);
        let (done, answer) = oneshot::channel();
        let mut req = Request::post(format!("{}/{seq}", self.channel)).header(http::header::CONTENT_TYPE, "video/MP2T");
        if std::mem::take(&mut self.reset) {
            req = req.header(RESET_HEADER, "1");
        }
        let body = BodyExt::boxed(StreamBody::new(Feed(rx)));
        let client = self.client.clone();
        match req.body(body) {
            Ok(req) => {
                tokio::spawn(async move {
                    let r = match client.send(req).await {
                        Ok(resp) if resp.status() == StatusCode::NOT_FOUND => Err(TrickleClientError::NotFound),
                        Ok(resp) => Ok(resp.status()),
                        Err(e) => Err(e),
                    };
                    let _ = done.send(r);
                });
            }
            Err(_) => {
                let _ = done.send(Err(TrickleClientError::Url(self.channel.clone())));
            }
        }
        self.pending = Some(PendingPost { seq, tx, answer });
        self.next += 1;
    }

    /// Starts the next segment: returns its writer and preconnects the one after.
    pub fn segment(&mut self) -> SegmentWriter {
        if self.pending.is_none() {
            self.preconnect();
        }
        let post = self.pending.take().expect("preconnected above");
        self.preconnect();
        SegmentWriter { post }
    }

    /// Ends the publisher: the preconnected POST is ended empty (and its answer awaited, so
    /// it cannot recreate the channel afterwards) and the channel closed.
    pub async fn close(mut self) -> Result<(), TrickleClientError> {
        if let Some(p) = self.pending.take() {
            drop(p.tx);
            let _ = tokio::time::timeout(Duration::from_secs(5), p.answer).await;
        }
        self.client.close(&self.channel).await
    }
}

/// Writes one segment's bytes into its POST as they come.
pub struct SegmentWriter {
    post: PendingPost,
}

impl SegmentWriter {
    /// The segment's index.
    pub fn seq(&self) -> u64 {
        self.post.seq
    }

    /// Sends a chunk (a handle, not a copy).
    ///
    /// An empty chunk is not sent: an HTTP/2 server counts empty DATA frames against a
    /// per-connection limit (h2 closes the whole connection after 100), and every stream
    /// sharing the pooled connection would go with it.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), TrickleClientError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.post.tx.send(chunk).await.map_err(|_| TrickleClientError::Transport("the POST ended early".into()))
    }

    /// Ends the segment and waits for the server's answer.
    pub async fn finish(self) -> Result<(), TrickleClientError> {
        let PendingPost { tx, answer, .. } = self.post;
        drop(tx);
        match answer.await {
            Ok(Ok(StatusCode::OK)) => Ok(()),
            Ok(Ok(status)) => Err(TrickleClientError::Status { status, body: String::new() }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(TrickleClientError::Transport("the POST task ended".into())),
        }
    }
}

type PendingGet = tokio::task::JoinHandle<Result<http::Response<hyper::body::Incoming>, TrickleClientError>>;

/// Follows a channel segment by segment. As soon as segment N's headers arrive, the GET
/// for N+1 is sent (a preconnect), so the next segment's first byte is not delayed by a
/// request round trip.
pub struct TrickleSubscriber {
    client: TrickleClient,
    channel: String,
    seq: i64,
    pending: Option<(i64, PendingGet)>,
}

impl Drop for TrickleSubscriber {
    fn drop(&mut self) {
        if let Some((_, p)) = self.pending.take() {
            p.abort();
        }
    }
}

/// One segment being received.
pub struct SegmentReader {
    /// The segment's index (`Lp-Trickle-Seq`).
    pub seq: u64,
    body: hyper::body::Incoming,
}

impl SegmentReader {
    /// The next chunk of the segment as it arrives; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, TrickleClientError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(TrickleClientError::Transport(Box::new(e))),
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        return Ok(Some(d));
                    }
                }
            }
        }
    }
}

impl TrickleSubscriber {
    /// A subscriber to `channel` starting at `start` (`-2`: the current segment, the
    /// fastest first frame; `-1`: the next one).
    pub fn new(client: TrickleClient, channel: &str, start: i64) -> Self {
        TrickleSubscriber { client, channel: channel.to_owned(), seq: start, pending: None }
    }

    fn get(&self, seq: i64) -> Result<PendingGet, TrickleClientError> {
        let uri = parse(&format!("{}/{}", self.channel, seq))?;
        let client = self.client.clone();
        Ok(tokio::spawn(async move { client.send(Request::get(uri).body(empty()).expect("valid request")).await }))
    }

    /// The next segment, or `None` when the channel has ended. After a 470 it jumps to
    /// the server's latest index; a request that fails without an answer is retried.
    pub async fn next_segment(&mut self) -> Result<Option<SegmentReader>, TrickleClientError> {
        let mut failures = 0;
        let mut ahead = 0;
        loop {
            let request = match self.pending.take() {
                Some((seq, p)) if seq == self.seq => p,
                Some((_, stale)) => {
                    stale.abort();
                    self.get(self.seq)?
                }
                None => self.get(self.seq)?,
            };
            let sent = request.await.unwrap_or_else(|e| Err(TrickleClientError::Transport(Box::new(e))));
            let resp = match sent {
                Ok(r) => r,
                Err(e) if failures < SUBSCRIBE_RETRIES => {
                    failures += 1;
                    tracing::debug!(error = %e, "trickle subscribe failed; retrying");
                    tokio::time::sleep(SUBSCRIBE_RETRY_PAUSE).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let h = resp.headers();
            match resp.status().as_u16() {
                200 => {
                    let seq = header_u64(h, SEQ_HEADER).unwrap_or(self.seq.max(0) as u64);
                    if h.contains_key(CLOSED_HEADER) {
                        return Ok(None); // the channel ended
                    }
                    let next = i64::try_from(seq).ok().and_then(|s| s.checked_add(1));
                    self.seq = next.ok_or_else(|| TrickleClientError::Status {
                        status: StatusCode::OK,
                        body: format!("{SEQ_HEADER} {seq} is out of range"),
                    })?;
                    self.pending = Some((self.seq, self.get(self.seq)?));
                    return Ok(Some(SegmentReader { seq, body: resp.into_body() }));
                }
                404 => return Ok(None),
                STATUS_NOT_PRESENT => {
                    let Some(latest) = header_u64(h, LATEST_HEADER).and_then(|l| i64::try_from(l).ok()) else {
                        let status = resp.status();
                        return Err(TrickleClientError::Status {
                            status,
                            body: format!("470 without {LATEST_HEADER}"),
                        });
                    };
                    if latest < self.seq && ahead < AHEAD_RETRIES {
                        // Ahead of the edge: wait a moment and ask again (as the Python gateway
                        // does), but not forever: a restarted publisher starts over lower.
                        ahead += 1;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    } else {
                        tracing::debug!(from = self.seq, to = latest, "trickle subscriber fell behind; catching up");
                        self.seq = latest;
                    }
                }
                _ => {
                    let status = resp.status();
                    let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    return Err(TrickleClientError::Status {
                        status,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                }
            }
        }
    }
}
