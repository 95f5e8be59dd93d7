//! Low-Latency HLS and DASH over HTTP: each stream's CMAF output ([`crate::cmaf`]) next
//! to the MPEG-TS HLS of [`crate::http`] (whose `/stream/{id}.m3u8` stays for go-livepeer
//! compatibility). Both read the same fragments under `/stream/{id}/ll/`.
//!
//! | path | what |
//! |---|---|
//! | `GET /stream/{id}.mpd` | DASH MPD: dynamic while live, static after the end ([`segmenter::dash`]) |
//! | `GET /utc` | the server's clock as ISO 8601 (the MPD's `UTCTiming`, `urn:mpeg:dash:utc:http-iso:2014`) |
//! | `GET /stream/{id}/ll.m3u8` | multivariant playlist: the `video` variant with the `audio` group |
//! | `GET /stream/{id}/ll/{track}.m3u8[?_HLS_msn=M[&_HLS_part=P]]` | media playlist; with `_HLS_msn` a blocking reload (RFC 8216bis §6.2.5.2) |
//! | `GET /stream/{id}/ll/{track}-init{n}.mp4` | init segment `n` (a new one after each discontinuity) |
//! | `GET /stream/{id}/ll/{track}-{msn}.m4s` | a media segment; one still being written (or the next) is streamed part by part as they complete |
//! | `GET /stream/{id}/ll/{track}-{msn}.{part}.m4s` | a part; the preload-hinted one is answered when it is complete |
//!
//! Blocking: a reload waits until the playlist holds part `P` of segment `M` (or the whole
//! segment `M` without `_HLS_part`), for at most three target durations, then answers
//! 503. An `_HLS_msn` more than two segments past the last one answers 400 at once, as
//! does `_HLS_part` without `_HLS_msn`. Waiting requests hold no thread and no lock: each
//! waits on the output's change counter.
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use media::Payload;
use segmenter::llhls::{FileName, parse_file_name};

use crate::cmaf::{CmafOutput, PartState};
use crate::registry::Registry;

/// The LL-HLS routes, for the playback router.
pub fn router<S: Clone + Send + Sync + 'static>(registry: Arc<Registry>) -> Router<S> {
    Router::new()
        .route("/stream/{id}/ll.m3u8", get(multivariant))
        .route("/stream/{id}/ll/{file}", get(file))
        .route("/utc", get(utc))
        .with_state(registry)
}

async fn utc() -> Response {
    let mut r = segmenter::llhls::rfc3339(crate::unix_now()).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `s` as one URL path segment (RFC 3986 unreserved characters kept, the rest
/// percent-encoded).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /stream/{id}.mpd`, for the playback router: the stream's DASH MPD. A stream
/// that has just started waits (up to three target durations) for its first complete
/// segment. `host` (the request's `Host`) makes the clock URL absolute, so a player
/// page on another origin synchronises with this server.
pub async fn mpd(registry: &Registry, id: &str, host: Option<&str>) -> Response {
    let Some(c) = registry.cmaf(id) else { return not_found(format!("no stream {id:?}")) };
    let prefix = format!("{}/ll/", path_segment(id));
    let utc = Some(host.map_or_else(|| "/utc".to_owned(), |h| format!("//{h}/utc")));
    if !wait_for(&c, block_limit(registry), CmafOutput::has_complete_segment).await {
        return not_found(format!("stream {id:?} has no complete segment yet"));
    }
    let Some(text) = read(&c).mpd(&prefix, crate::unix_now(), utc) else {
        return not_found(format!("stream {id:?} has no complete segment yet"));
    };
    let mut r = text.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/dash+xml"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn not_found(what: impl std::fmt::Display) -> Response {
    (StatusCode::NOT_FOUND, what.to_string()).into_response()
}

fn playlist(text: impl IntoResponse) -> Response {
    let mut r = text.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.apple.mpegurl"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A CMAF file whose bytes are in `data`'s fragments: sent as they are, with its length.
fn media(track: &str, data: Payload) -> Response {
    let mut r = axum::body::Body::new(FragmentsBody(data.into_parts().into())).into_response();
    let h = r.headers_mut();
    let mime = if track == crate::cmaf::AUDIO { "audio/mp4" } else { "video/mp4" };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
    r
}

fn read(c: &RwLock<CmafOutput>) -> std::sync::RwLockReadGuard<'_, CmafOutput> {
    c.read().unwrap_or_else(|e| e.into_inner())
}

/// Waits up to `limit` for `ready` to hold on the output; true if it did.
async fn wait_for(c: &RwLock<CmafOutput>, limit: Duration, ready: impl Fn(&CmafOutput) -> bool) -> bool {
    // Subscribed before the first look, so no change between the two is missed.
    let mut changes = read(c).subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if ready(&read(c)) {
            return true;
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            _ => return ready(&read(c)),
        }
    }
}

/// How long a blocked request may wait: three target durations.
fn block_limit(registry: &Registry) -> Duration {
    Duration::from_secs_f64(3.0 * registry.segment_duration().max(1.0))
}

async fn multivariant(State(r): State<Arc<Registry>>, Path(id): Path<String>) -> Response {
    let Some(c) = r.cmaf(&id) else { return not_found(format!("no stream {id:?}")) };
    // A stream that has just started has no tracks yet: wait a little for them.
    if !wait_for(&c, block_limit(&r), |o| o.multivariant().is_some()).await {
        return not_found(format!("stream {id:?} has no media yet"));
    }
    let text = read(&c).multivariant();
    match text {
        Some(t) => playlist(t),
        None => not_found(format!("stream {id:?} has no media yet")),
    }
}

async fn file(
    State(r): State<Arc<Registry>>,
    Path((id, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(c) = r.cmaf(&id) else { return not_found(format!("no stream {id:?}")) };
    if let Some(track) = file.strip_suffix(".m3u8") {
        return media_playlist(&r, &c, track, query.as_deref().unwrap_or_default()).await;
    }
    match parse_file_name(&file) {
        Some(FileName::Init(track, n)) => match read(&c).init(track, n) {
            Some(d) => media(track, Payload::from(d)),
            None => not_found(format!("no {file}")),
        },
        Some(FileName::Segment(track, msn)) => {
            if let Some(d) = read(&c).segment(track, msn) {
                return media(track, d);
            }
            // Still being written (or about to start): its parts as they come.
            let soon =
                |o: &CmafOutput| o.segment_parts(track, msn, 0).is_some() || o.part(track, msn, 0) != PartState::Soon;
            if read(&c).part(track, msn, 0) == PartState::Soon {
                wait_for(&c, block_limit(&r), soon).await;
            }
            if read(&c).segment_parts(track, msn, 0).is_none() {
                return not_found(format!("no {file}"));
            }
            streamed(track, c.clone(), track.to_owned(), msn, block_limit(&r))
        }
        Some(FileName::Part(track, msn, part)) => {
            let state = read(&c).part(track, msn, part);
            match state {
                PartState::Ready(d) => media(track, d),
                PartState::Gone => not_found(format!("no {file}")),
                PartState::Soon => {
                    let ready = |o: &CmafOutput| !matches!(o.part(track, msn, part), PartState::Soon);
                    wait_for(&c, block_limit(&r), ready).await;
                    let state = read(&c).part(track, msn, part);
                    match state {
                        PartState::Ready(d) => media(track, d),
                        _ => not_found(format!("{file} did not come")),
                    }
                }
            }
        }
        None => not_found(format!("no {file}")),
    }
}

/// A body of fragments known up front (a part, a complete segment): each goes out as it
/// is, and the exact length is known (`Content-Length`).
struct FragmentsBody(std::collections::VecDeque<bytes::Bytes>);

impl http_body::Body for FragmentsBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

/// A body of whatever a channel delivers: the parts of a segment still being written,
/// sent as they are completed (chunked transfer over HTTP/1.1, DATA frames over HTTP/2).
/// An error aborts the response (no terminating chunk), so a client never takes a
/// segment cut short for a whole one.
struct PartsBody(tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>);

impl http_body::Body for PartsBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| b.map(http_body::Frame::data)))
    }
}

/// Streams segment `msn` of `track` while it is written: the parts so far at once, the
/// rest as each is complete, until the segment is (or nothing new comes for `limit`).
fn streamed(track: &str, c: Arc<RwLock<CmafOutput>>, name: String, msn: u64, limit: Duration) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut sent = 0;
        loop {
            let Some((parts, complete)) = read(&c).segment_parts(&name, msn, sent) else { break };
            for p in parts {
                sent += 1;
                for f in p.parts() {
                    if tx.send(Ok(f.clone())).await.is_err() {
                        return;
                    }
                }
            }
            if complete {
                return;
            }
            let more = |o: &CmafOutput| o.segment_parts(&name, msn, sent).is_none_or(|(p, done)| done || !p.is_empty());
            if !wait_for(&c, limit, more).await {
                break;
            }
        }
        // Gone from the window, or stuck: the response must not end as if complete.
        let _ = tx.send(Err(std::io::Error::other("the segment did not complete"))).await;
    });
    let mut r = axum::body::Body::new(PartsBody(rx)).into_response();
    let h = r.headers_mut();
    let mime = if track == crate::cmaf::AUDIO { "audio/mp4" } else { "video/mp4" };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn media_playlist(r: &Registry, c: &RwLock<CmafOutput>, track: &str, query: &str) -> Response {
    let (msn, part) = match segmenter::llhls::parse_blocking_query(query) {
        Ok(None) => (None, None),
        Ok(Some(b)) => (Some(b.msn), b.part),
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let last = read(c).last_msn(track);
    if !read(c).has_track(track) {
        return not_found(format!("no track {track:?}"));
    }
    if let Some(m) = msn {
        if last.is_some_and(|l| m > l + 2) {
            return (StatusCode::BAD_REQUEST, "_HLS_msn is more than two segments ahead").into_response();
        }
        if !wait_for(c, block_limit(r), |o| o.has(track, m, part)).await {
            return (StatusCode::SERVICE_UNAVAILABLE, "the requested segment or part did not come in time")
                .into_response();
        }
    }
    match read(c).media_playlist(track) {
        Some(t) => playlist(t),
        None => not_found(format!("no track {track:?}")),
    }
}
