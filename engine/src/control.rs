//! The control API on the CLI port.
//!
//! | path | what |
//! |---|---|
//! | `GET /streams` | JSON list of streams: counters, renditions, orchestrator sessions and recent segment results |
//! | `GET /streams/{id}` | one stream, same fields |
//! | `GET /orchestrators` | JSON: every orchestrator, best first as the selector ranks them: latency score, success rate, upload time, price, failures by reason, suspensions, sessions, and why an excluded one is excluded |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /healthz` | `ok` |

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;
use crate::registry::Registry;

#[derive(Clone)]
struct Ctl {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
}

/// The control router.
pub fn router(registry: Arc<Registry>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/streams", get(streams))
        .route("/streams/{id}", get(stream))
        .route("/orchestrators", get(orchestrators))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Ctl { registry, metrics })
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_vec_pretty(v) {
        Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn streams(State(c): State<Ctl>) -> Response {
    json(&c.registry.list())
}

async fn stream(State(c): State<Ctl>, Path(id): Path<String>) -> Response {
    match c.registry.list().into_iter().find(|s| s.id == id) {
        Some(s) => json(&s),
        None => (StatusCode::NOT_FOUND, "no such stream\n").into_response(),
    }
}

async fn orchestrators(State(c): State<Ctl>) -> Response {
    json(&c.registry.orchestrators())
}

async fn metrics_text(State(c): State<Ctl>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], c.metrics.render()).into_response()
}
