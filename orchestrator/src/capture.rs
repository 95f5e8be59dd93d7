//! Wire capture: with a capture directory set, the orchestrator writes every
//! `GetOrchestrator` and `/segment` exchange as it crossed the wire (after TLS): request
//! headers, request body, response body (and gRPC trailers). For debugging gateways and
//! for the protocol fixtures under `testdata/wire/`.
//!
//! Files: `{n:04}-{name}.request-headers.txt`, `{n:04}-{name}.request.bin`,
//! `{n:04}-{name}.response.bin`, with `name` `get_orchestrator`, `segment` or an AI
//! pipeline (`text-to-image`, …).
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;

/// Where and how many exchanges have been captured.
#[derive(Debug)]
pub struct Capture {
    dir: PathBuf,
    n: AtomicU64,
}

impl Capture {
    /// Captures into `dir` (created if missing).
    pub fn new(dir: PathBuf) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        Ok(Arc::new(Capture { dir, n: AtomicU64::new(0) }))
    }
}

/// A body replayed from memory: its data, then its trailers.
struct Replay {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

/// The middleware: records the exchanges a gateway makes (discovery, segments, AI jobs
/// named by their pipeline), passes everything else.
pub async fn capture(State(c): State<Arc<Capture>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let name = match path {
        "/net.Orchestrator/GetOrchestrator" => "get_orchestrator",
        "/segment" => "segment",
        _ => match transport::ai::Pipeline::ALL.into_iter().find(|p| path.strip_prefix('/') == Some(p.name())) {
            Some(p) => p.name(),
            None => return next.run(req).await,
        },
    };
    let n = c.n.fetch_add(1, Ordering::Relaxed);
    let base = c.dir.join(format!("{n:04}-{name}"));
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    let mut head = format!("{} {} {:?}\n", parts.method, parts.uri, parts.version);
    for (k, v) in &parts.headers {
        head.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("<binary>")));
    }
    let _ = std::fs::write(base.with_extension("request-headers.txt"), head);
    let _ = std::fs::write(base.with_extension("request.bin"), &body);
    let resp = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (rparts, rbody) = resp.into_parts();
    let Ok(collected) = rbody.collect().await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "unreadable response").into_response();
    };
    let trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    let _ = std::fs::write(base.with_extension("response.bin"), &data);
    Response::from_parts(rparts, Body::new(Replay { data: Some(data), trailers }))
}
