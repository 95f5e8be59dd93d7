//! The trickle server's HTTP shell (spec `trickle-and-live-ai.md` §1.3–§1.7): axum routes
//! over a [`TrickleServer`], mounted under `/ai/trickle/` by the gateway and the local
//! orchestrator. Decisions are the core's; this module moves bytes and wakes readers.
//!
//! * A GET gets each segment's bytes as the publisher writes them (a streamed body), and
//!   its response headers only once the first byte exists (or the segment ends).
//! * A GET's body reads the ring itself, as its connection polls it: a write wakes the
//!   waiting bodies, each takes a handle to the new chunk. A slow subscriber never slows
//!   the publisher or other subscribers; it falls behind, its segment leaves the ring, and
//!   its body ends (it then gets 470 for the old index).
//! * An idle sweep closes channels with no new segment for [`IDLE_TIMEOUT`].
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::Notify;

use crate::trickle::{
    CLOSED_HEADER, CLOSED_VALUE, EXPECT_CONTENT_HEADER, IDLE_TIMEOUT, LATEST_HEADER, Limits, RESET_HEADER, ReadStart,
    ReadStep, SEQ_HEADER, STATUS_NOT_PRESENT, TrickleError, TrickleServer,
};

/// A trickle server shared by the HTTP handlers and its owner (who may create channels
/// and publish into them directly).
pub struct TrickleHub {
    core: Mutex<Inner>,
    /// Handlers waiting for a channel's next change (a POST's preconnect, a GET's first
    /// byte) wait here.
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Ids for streamed response bodies.
    next_body: AtomicU64,
}

/// The channel state and, under the same lock, the response bodies waiting for more of a
/// segment: a body reads and registers atomically, so a write never slips between them.
struct Inner {
    server: TrickleServer,
    /// Per channel: reader id → the segment it waits on and its task's waker.
    readers: HashMap<String, HashMap<u64, (u64, Waker)>>,
}

impl Deref for Inner {
    type Target = TrickleServer;
    fn deref(&self) -> &TrickleServer {
        &self.server
    }
}

impl DerefMut for Inner {
    fn deref_mut(&mut self) -> &mut TrickleServer {
        &mut self.server
    }
}

impl std::fmt::Debug for TrickleHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrickleHub").field("channels", &self.lock().len()).finish()
    }
}

impl TrickleHub {
    /// A hub with `limits`; `auto_create` lets a POST create unknown channels.
    pub fn new(limits: Limits, auto_create: bool) -> Arc<Self> {
        Arc::new(TrickleHub {
            core: Mutex::new(Inner { server: TrickleServer::new(limits, auto_create), readers: HashMap::new() }),
            wakers: Mutex::default(),
            next_body: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waker(&self, name: &str) -> Arc<Notify> {
        self.wakers.lock().unwrap_or_else(|e| e.into_inner()).entry(name.to_owned()).or_default().clone()
    }

    /// Wakes everything waiting on channel `name` (its state changed: a segment opened,
    /// ended or was closed). Tokio's wake only schedules a task, so readers are woken under
    /// the lock (their map keeps its capacity).
    fn wake(&self, name: &str) {
        if let Some(readers) = self.lock().readers.get_mut(name) {
            for (_, (_, w)) in readers.drain() {
                w.wake();
            }
        }
        if let Some(n) = self.wakers.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            n.notify_waiters();
        }
    }

    /// Wakes the readers waiting for more of segment `seq` of `name` (bytes were written
    /// to it); readers of other segments, such as the preconnected next one, sleep on.
    fn wake_readers(&self, name: &str, seq: u64) {
        if let Some(readers) = self.lock().readers.get_mut(name) {
            readers.retain(|_, (s, w)| {
                if *s != seq {
                    return true;
                }
                w.wake_by_ref();
                false
            });
        }
    }

    /// Reads segment `seq` of `name` from `offset` for reader `id`; when there is nothing
    /// new, registers the task to be woken, under the lock the read held, so a write
    /// never slips between the two.
    fn poll_read(&self, name: &str, seq: u64, offset: usize, id: u64, cx: &mut Context<'_>) -> Poll<ReadStep> {
        let mut inner = self.lock();
        match inner.server.read(name, seq, offset) {
            ReadStep::Pending => {
                let entry = (seq, cx.waker().clone());
                match inner.readers.get_mut(name) {
                    Some(readers) => drop(readers.insert(id, entry)),
                    None => drop(inner.readers.entry(name.to_owned()).or_default().insert(id, entry)),
                }
                Poll::Pending
            }
            step => Poll::Ready(step),
        }
    }

    /// Forgets channel `name`'s waiters after waking them (it is gone).
    fn forget(&self, name: &str) {
        self.wake(name);
        self.lock().readers.remove(name);
        self.wakers.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    /// Creates channel `name` (its owner's call; HTTP creation needs auto-create).
    #[allow(clippy::disallowed_methods)] // IO shell: the channel's idle clock starts now
    pub fn create(&self, name: &str, mime: &str) -> Result<(), TrickleError> {
        self.lock().create(name, mime, Instant::now())
    }

    /// Starts the next segment of channel `name` (its owner publishing directly, without
    /// HTTP); returns its index.
    #[allow(clippy::disallowed_methods)] // IO shell: write times for the idle sweep
    pub fn open_segment(&self, name: &str) -> Result<u64, TrickleError> {
        let seq = self.lock().open_write(name, -1, false, "", Instant::now())?;
        self.wake(name);
        Ok(seq)
    }

    /// Appends `data` (a handle, no copy) to segment `seq` of `name`; its readers get it
    /// at once. False if the segment was closed or overwritten meanwhile.
    #[allow(clippy::disallowed_methods)] // IO shell: write times for the idle sweep
    pub fn write_segment(&self, name: &str, seq: u64, data: Bytes) -> Result<bool, TrickleError> {
        let r = self.lock().write(name, seq, data, Instant::now());
        self.wake_readers(name, seq);
        r
    }

    /// Ends segment `seq` of `name`.
    pub fn finish_segment(&self, name: &str, seq: u64) -> Result<(), TrickleError> {
        let r = self.lock().finish_write(name, seq).map(|_| ());
        self.wake(name);
        r
    }

    /// Closes and removes channel `name`: waiting readers end, readers in the middle of
    /// a segment get the rest of it (for `DELETED_GRACE`).
    #[allow(clippy::disallowed_methods)] // IO shell: when the grace starts
    pub fn delete(&self, name: &str) -> Result<(), TrickleError> {
        let r = self.lock().delete(name, Instant::now());
        self.forget(name);
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
            self.forget(name);
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
        hub.wake_readers(&channel, seq);
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
        Ok(ReadStart::Segment { seq, mime, latest, fresh }) => {
            if fresh {
                // The preconnect took the slot of an older segment: its readers must see that.
                hub.wake(&channel);
            }
            (seq, mime, latest)
        }
    };
    // Wait for the first byte (or the end) before answering, as the Go server does.
    let reader = Registration { hub: hub.clone(), channel, id: hub.next_body.fetch_add(1, Ordering::Relaxed) };
    let first = std::future::poll_fn(|cx| hub.poll_read(&reader.channel, seq, 0, reader.id, cx)).await;
    let first = match first {
        ReadStep::Data(first) => first,
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
            // segment with the index to catch up at (the overwriting segment itself when it
            // has no byte yet).
            let next = hub.lock().catch_up(&reader.channel);
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
    };
    let offset = first.len();
    let body = SegmentBody { reader, seq, offset, first: Some(first) };
    let mut r = Response::new(Body::new(body));
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

/// A subscriber's response body: reads its segment straight from the channel's ring as
/// the publisher writes it (one handle per frame, no copy, no task of its own) until the
/// segment ends, leaves the ring, or the subscriber goes away. A slow subscriber only
/// falls behind; when its segment is overwritten its body ends.
struct SegmentBody {
    reader: Registration,
    seq: u64,
    /// Bytes of the segment handed out so far.
    offset: usize,
    /// The first bytes, read before the headers were sent.
    first: Option<Bytes>,
}

impl http_body::Body for SegmentBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(first))));
        }
        let r = &this.reader;
        match r.hub.poll_read(&r.channel, this.seq, this.offset, r.id, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(ReadStep::Data(b)) => {
                this.offset += b.len();
                Poll::Ready(Some(Ok(http_body::Frame::data(b))))
            }
            Poll::Ready(_) => Poll::Ready(None),
        }
    }
}

/// A GET's place among its channel's waiting readers, removed when the GET ends (or its
/// client goes away while it waits).
struct Registration {
    hub: Arc<TrickleHub>,
    channel: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(readers) = self.hub.lock().readers.get_mut(&self.channel) {
            readers.remove(&self.id);
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one real instant as their epoch
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn waiting(hub: &TrickleHub, ch: &str) -> usize {
        hub.lock().readers.get(ch).map_or(0, HashMap::len)
    }

    #[test]
    fn writes_wake_only_the_readers_of_their_segment_and_gone_readers_leave() {
        let hub = TrickleHub::new(Limits::default(), false);
        hub.create("ch", "video/MP2T").unwrap();
        let t0 = Instant::now();
        let w0 = hub.lock().open_write("ch", 0, false, "", t0).unwrap();
        // Reader A waits for more of segment 0, reader B on the preconnected segment 1.
        assert!(matches!(hub.lock().open_read("ch", 1), Ok(ReadStart::Segment { fresh: true, .. })));
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let ra = Registration { hub: hub.clone(), channel: "ch".into(), id: 1 };
        let rb = Registration { hub: hub.clone(), channel: "ch".into(), id: 2 };
        assert!(hub.poll_read("ch", 0, 0, ra.id, &mut Context::from_waker(&wa)).is_pending());
        assert!(hub.poll_read("ch", 1, 0, rb.id, &mut Context::from_waker(&wb)).is_pending());
        assert_eq!(waiting(&hub, "ch"), 2);
        for _ in 0..3 {
            hub.lock().write("ch", w0, Bytes::from_static(b"ts"), t0).unwrap();
            hub.wake_readers("ch", w0);
            let _ = hub.poll_read("ch", 0, 0, ra.id, &mut Context::from_waker(&wa));
        }
        assert_eq!(a.0.load(Ordering::Relaxed), 1, "woken by the first write; the data was then there to read");
        assert_eq!(b.0.load(Ordering::Relaxed), 0, "the preconnected reader sleeps through writes to segment 0");
        // The segment ends: a state change wakes everyone.
        hub.lock().finish_write("ch", w0).unwrap();
        hub.wake("ch");
        assert_eq!(b.0.load(Ordering::Relaxed), 1);
        // A GET whose client went away leaves no registration behind.
        assert!(hub.poll_read("ch", 1, 0, rb.id, &mut Context::from_waker(&wb)).is_pending());
        drop((ra, rb));
        assert_eq!(waiting(&hub, "ch"), 0);
        hub.delete("ch").unwrap();
        assert!(hub.lock().readers.is_empty());
    }
}
