//! Forwarding a job to an external ai-runner (`--ai-models` entries with a `url`), and
//! the bodies that hold a capacity slot while a reply streams.
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use transport::ai::Pipeline;

use super::{MAX_BODY, Slot, cpu};
use crate::service::Shared;

/// Forwards a job to an ai-runner at `url` (same path, same body) and relays its answer;
/// a runner 400 becomes `"<pipeline> container returned 400: <msg>"` (500), which the
/// gateway hands its client as a 400 (§4.3).
pub(super) async fn forward(
    s: &Arc<Shared>,
    pipeline: Pipeline,
    url: &str,
    token: Option<&str>,
    headers: &HeaderMap,
    raw: Bytes,
    slot: Slot<'_>,
) -> Result<Response, String> {
    let target = format!("{}/{}", url.trim_end_matches('/'), pipeline.name());
    let mut req = axum::http::Request::post(&target);
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(http_body_util::Full::new(raw)).map_err(|e| format!("runner request: {e}"))?;
    let resp = s.ai.net.send(req, cpu::FFMPEG_TIMEOUT * 5).await.map_err(|e| format!("runner: {e}"))?;
    let status = resp.status();
    let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
    if status == StatusCode::OK && ct.as_ref().is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")) {
        // Relay the stream as it comes, the capacity slot held until it ends.
        let held = OwnedSlot { shared: s.clone(), key: slot.1.clone() };
        std::mem::forget(slot);
        let mut r = Response::new(Body::new(GuardedBody { inner: resp.into_body(), guard: held }));
        r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/event-stream"));
        return Ok(r);
    }
    let body = transport::client::OrchestratorNet::read_body(resp.into_body(), MAX_BODY, cpu::FFMPEG_TIMEOUT)
        .await
        .map_err(|e| format!("runner: {e}"))?;
    if status == StatusCode::BAD_REQUEST {
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.pointer("/detail/msg").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
        return Err(format!("{pipeline} container returned 400: {detail}"));
    }
    if status != StatusCode::OK {
        return Err(format!(
            "{pipeline} container returned {}: {}",
            status.as_u16(),
            String::from_utf8_lossy(&body).trim()
        ));
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A capacity slot owned by a streamed reply's body.
struct OwnedSlot {
    shared: Arc<Shared>,
    key: (Pipeline, String),
}

impl Drop for OwnedSlot {
    fn drop(&mut self) {
        if let Some(n) = self.shared.ai.lock_running().get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
}

/// A relayed body that holds `guard` (a capacity slot) until it ends or is dropped.
pub(crate) struct GuardedBody<G> {
    pub(crate) inner: hyper::body::Incoming,
    /// Held for its `Drop`.
    #[allow(dead_code)]
    pub(crate) guard: G,
}

impl<G: Unpin> http_body::Body for GuardedBody<G> {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }
}
