//! The trickle server's HTTP shell (spec `trickle-and-live-ai.md` §1.3–§1.7): axum routes
//! over a [`TrickleServer`], mounted under `/ai/trickle/` by the gateway and the local
//! orchestrator. Decisions are the core's; this module moves bytes and wakes readers.
//!
//! * A GET gets each segment's bytes as the publisher writes them (a streamed body), and
//!   its response headers only once the first byte exists (or the segment ends).
//! * Each GET is served by its own task through a small bounded queue: a slow subscriber
//!   never slows the publisher or other subscribers; it falls behind, its segment leaves
//!   the ring, and its body ends (it then gets 470 for the old index).
//! * An idle sweep closes channels with no new segment for [`IDLE_TIMEOUT`].
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::{Notify, mpsc};

use crate::trickle::{
    CLOSED_HEADER, CLOSED_VALUE, EXPECT_CONTENT_HEADER, IDLE_TIMEOUT, LATEST_HEADER, Limits, RESET_HEADER, ReadStart,
    ReadStep, SEQ_HEADER, STATUS_NOT_PRESENT, TrickleError, TrickleServer,
};

/// Chunks queued per subscriber before its reader task waits (the subscriber is slow).
const SUBSCRIBER_QUEUE: usize = 16;

/// A trickle server shared by the HTTP handlers and its owner (who may create channels
/// and publish into them directly).
pub struct TrickleHub {
    core: Mutex<TrickleServer>,
    /// Readers of a channel wait here for its next change.
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
}

impl std::fmt::Debug for TrickleHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrickleHub").field("channels", &self.lock().len()).finish()
    }
}

impl TrickleHub {
    /// A hub with `limits`; `auto_create` lets a POST create unknown channels.
    pub fn new(limits: Limits, auto_create: bool) -> Arc<Self> {
        Arc::new(TrickleHub { core: Mutex::new(TrickleServer::new(limits, auto_create)), wakers: Mutex::default() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrickleServer> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waker(&self, name: &str) -> Arc<Notify> {
        self.wakers.lock().unwrap_or_else(|e| e.into_inner()).entry(name.to_owned()).or_default().clone()
    }

    fn wake(&self, name: &str) {
        if let Some(n) = self.wakers.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            n.notify_waiters();
        }
    }

    /// Creates channel `name` (its owner's call; HTTP creation needs auto-create).
    #[allow(clippy::disallowed_methods)] // IO shell: the channel's idle clock starts now
    pub fn create(&self, name: &str, mime: &str) -> Result<(), TrickleError> {
        self.lock().create(name, mime, Instant::now())
    }

    /// Closes and removes channel `name`, ending every reader.
    pub fn delete(&self, name: &str) -> Result<(), TrickleError> {
        let r = self.lock().delete(name);
        self.wake(name);
        self.wakers.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        r
    }

    /// Channels held.
    pub fn channels(&self) -> usize {
        self.lock().len()
    }

    /// Bytes held by every channel.
    pub fn bytes(&self) -> usize {
        self.lock().total_bytes()
    }

    /// Closes channels idle for `timeout`; returns their names.
    #[allow(clippy::disallowed_methods)] // IO shell: the sweep's clock
    pub fn sweep(&self, timeout: Duration) -> Vec<String> {
        let gone = self.lock().expire_idle(Instant::now(), timeout);
        for name in &gone {
            self.wake(name);
            self.wakers.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        }
        gone
    }

    /// Runs the idle sweep every minute until `stop` resolves.
    pub async fn sweep_until(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    for name in self.sweep(IDLE_TIMEOUT) {
                        tracing::info!(channel = %name, "trickle channel idle; closed");
                    }
                }
            }
        }
    }
}

/// The routes, to be nested under `/ai/trickle`.
pub fn router(hub: Arc<TrickleHub>) -> Router {
    Router::new()
        .route("/{channel}", post(create).delete(delete))
        .route("/{channel}/{seq}", post(publish).get(subscribe).delete(close_segment))
        .with_state(hub)
}

fn refusal(e: TrickleError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = (status, e.to_string()).into_response();
    if matches!(e, TrickleError::NoChannel) {
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

fn num(v: u64) -> HeaderValue {
    HeaderValue::from(v)
}

async fn create(State(hub): State<Arc<TrickleHub>>, Path(channel): Path<String>, headers: HeaderMap) -> Response {
    let mime = headers.get(EXPECT_CONTENT_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream");
    let (exists, allowed) = {
        let core = hub.lock();
        (core.exists(&channel), core.auto_create())
    };
    if exists {
        return StatusCode::OK.into_response();
    }
    if !allowed {
        return (StatusCode::NOT_FOUND, "Stream not found").into_response();
    }
    match hub.create(&channel, mime) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => refusal(e),
    }
}

async fn delete(State(hub): State<Arc<TrickleHub>>, Path(channel): Path<String>) -> Response {
    match hub.delete(&channel) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "Invalid stream").into_response(),
    }
}

async fn close_segment(State(hub): State<Arc<TrickleHub>>, Path((channel, seq)): Path<(String, String)>) -> Response {
    let Ok(seq) = seq.parse::<u64>() else { return (StatusCode::BAD_REQUEST, "Invalid idx").into_response() };
    let r = hub.lock().close_segment(&channel, seq);
    hub.wake(&channel);
    match r {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => refusal(e),
    }
}

/// `POST {ch}/{seq}`: streams the body into the segment as it arrives.
#[allow(clippy::disallowed_methods)] // IO shell: write times for the idle sweep
async fn publish(
    State(hub): State<Arc<TrickleHub>>,
    Path((channel, seq)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Ok(seq) = seq.parse::<i64>() else { return (StatusCode::BAD_REQUEST, "Invalid idx").into_response() };
    let reset = req.headers().contains_key(RESET_HEADER);
    let mime = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let opened = hub.lock().open_write(&channel, seq, reset, &mime, Instant::now());
    let seq = match opened {
        Ok(s) => s,
        Err(e) => return refusal(e),
    };
    hub.wake(&channel);
    let waker = hub.waker(&channel);
    let mut body = req.into_body();
    loop {
        // A waiting POST (a preconnect) must learn when its channel is deleted or its
        // segment closed or overwritten, not only when its body moves.
        let notified = waker.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match hub.lock().segment_state(&channel, seq) {
            None => return ended_post(seq, true),
            Some(None) | Some(Some((true, _))) => break,
            Some(Some((false, _))) => {}
        }
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = notified => continue,
        };
        let Some(frame) = frame else { break };
        let chunk = match frame {
            Ok(f) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Err(_) => {
                let _ = hub.lock().finish_write(&channel, seq);
                hub.wake(&channel);
                return (StatusCode::INTERNAL_SERVER_ERROR, "Server error").into_response();
            }
        };
        let written = hub.lock().write(&channel, seq, chunk, Instant::now());
        hub.wake(&channel);
        match written {
            Ok(true) => {}
            // Overwritten or closed meanwhile: the rest of the body is dropped.
            Ok(false) => break,
            Err(e) => {
                // The segment ends where it is, so its readers do not wait for more.
                let _ = hub.lock().finish_write(&channel, seq);
                hub.wake(&channel);
                return refusal(e);
            }
        }
    }
    let end = hub.lock().finish_write(&channel, seq);
    hub.wake(&channel);
    let end = match end {
        Ok(e) => e,
        Err(_) => return ended_post(seq, true),
    };
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    h.insert(SEQ_HEADER, num(end.seq));
    if end.len == 0 {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if end.closed {
            h.insert(CLOSED_HEADER, HeaderValue::from_static(CLOSED_VALUE));
        }
    }
    r
}

/// The answer to a POST whose segment ended empty: `Connection: close`, and
/// `Lp-Trickle-Closed` when the channel is gone.
fn ended_post(seq: u64, closed: bool) -> Response {
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    h.insert(SEQ_HEADER, num(seq));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if closed {
        h.insert(CLOSED_HEADER, HeaderValue::from_static(CLOSED_VALUE));
    }
    r
}

/// `GET {ch}/{seq}` and `GET {ch}/next`.
async fn subscribe(State(hub): State<Arc<TrickleHub>>, Path((channel, seq)): Path<(String, String)>) -> Response {
    if seq == "next" {
        let next = hub.lock().next(&channel);
        return match next {
            Ok((n, closed)) => {
                let mut r = n.to_string().into_response();
                r.headers_mut().insert(LATEST_HEADER, num(n));
                if closed {
                    r.headers_mut().insert(CLOSED_HEADER, HeaderValue::from_static(CLOSED_VALUE));
                }
                r
            }
            Err(e) => refusal(e),
        };
    }
    let Ok(requested) = seq.parse::<i64>() else { return (StatusCode::BAD_REQUEST, "Invalid idx").into_response() };
    let start = hub.lock().open_read(&channel, requested);
    // A preconnect may have taken the slot of an older segment: its readers must see that.
    hub.wake(&channel);
    let (seq, mime, latest) = match start {
        Err(e) => return refusal(e),
        Ok(ReadStart::Missing { seq, latest, closed }) => {
            let status = if closed { StatusCode::OK } else { StatusCode::from_u16(STATUS_NOT_PRESENT).expect("valid") };
            let mut r = (status, "Entry not found").into_response();
            r.headers_mut().insert(LATEST_HEADER, num(latest));
            r.headers_mut().insert(SEQ_HEADER, num(seq));
            if closed {
                r.headers_mut().insert(CLOSED_HEADER, HeaderValue::from_static(CLOSED_VALUE));
            }
            return r;
        }
        Ok(ReadStart::Segment { seq, mime, latest }) => (seq, mime, latest),
    };
    // Wait for the first byte (or the end) before answering, as the Go server does.
    let waker = hub.waker(&channel);
    let first = loop {
        let notified = waker.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match hub.lock().read(&channel, seq, 0) {
            ReadStep::Pending => {}
            step => break step,
        }
        notified.await;
    };
    let (tx, rx) = mpsc::channel::<Bytes>(SUBSCRIBER_QUEUE);
    let mut offset = 0;
    match first {
        ReadStep::Data(chunks) => {
            for c in chunks {
                offset += c.len();
                // The queue is empty: these fit or the reader task below sends the rest.
                if tx.try_send(c.clone()).is_err() {
                    offset -= c.len();
                    break;
                }
            }
        }
        ReadStep::End { closed, latest } => {
            let mut r = StatusCode::OK.into_response();
            r.headers_mut().insert(SEQ_HEADER, num(seq));
            r.headers_mut().insert(LATEST_HEADER, num(latest));
            if closed {
                r.headers_mut().insert(CLOSED_HEADER, HeaderValue::from_static(CLOSED_VALUE));
            }
            return r;
        }
        ReadStep::Gone | ReadStep::Pending => {
            // Deleted: the channel has ended. Overwritten (a publisher moved on): an empty
            // segment with the latest index, so the reader catches up.
            let next = hub.lock().next(&channel);
            let mut r = StatusCode::OK.into_response();
            r.headers_mut().insert(SEQ_HEADER, num(seq));
            match next {
                Ok((latest, closed)) => {
                    r.headers_mut().insert(LATEST_HEADER, num(latest));
                    if closed {
                        r.headers_mut().insert(CLOSED_HEADER, HeaderValue::from_static(CLOSED_VALUE));
                    }
                }
                Err(_) => {
                    r.headers_mut().insert(CLOSED_HEADER, HeaderValue::from_static(CLOSED_VALUE));
                }
            }
            return r;
        }
    }
    tokio::spawn(follow(hub.clone(), waker, channel, seq, offset, tx));
    let mut r = Response::new(Body::new(http_body_util::StreamBody::new(Chunks(rx))));
    let h = r.headers_mut();
    h.insert(SEQ_HEADER, num(seq));
    if let Some(l) = latest {
        h.insert(LATEST_HEADER, num(l));
    }
    if let Ok(v) = HeaderValue::from_str(&mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    r
}

/// Feeds one subscriber: reads its segment from `offset` as the publisher writes, until
/// the segment ends, leaves the ring, or the subscriber goes away.
async fn follow(
    hub: Arc<TrickleHub>,
    waker: Arc<Notify>,
    channel: String,
    seq: u64,
    mut offset: usize,
    tx: mpsc::Sender<Bytes>,
) {
    loop {
        let notified = waker.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let step = hub.lock().read(&channel, seq, offset);
        match step {
            ReadStep::Data(chunks) => {
                for c in chunks {
                    offset += c.len();
                    if tx.send(c).await.is_err() {
                        return; // the subscriber went away
                    }
                }
            }
            ReadStep::Pending => {
                tokio::select! {
                    _ = notified => {}
                    _ = tx.closed() => return,
                }
            }
            ReadStep::End { .. } | ReadStep::Gone => return,
        }
    }
}

/// A streamed body fed by a subscriber's reader task.
struct Chunks(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Chunks {
    type Item = Result<http_body::Frame<Bytes>, std::convert::Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(http_body::Frame::data(b))))
    }
}
