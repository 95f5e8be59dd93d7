//! The control API on the CLI port.
//!
//! | path | what |
//! |---|---|
//! | `GET /streams` | JSON list of streams: counters, renditions, orchestrator sessions and recent segment results |
//! | `GET /streams/{id}` | one stream, same fields |
//! | `GET /orchestrators` | JSON: every orchestrator, best first as the selector ranks them: latency score, success rate, upload time, price, failures by reason, suspensions, sessions, and why an excluded one is excluded |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /healthz` | `ok` |
//! | `GET /ai/pools` | JSON: per `"<capability>_<model>"`, the orchestrators able to run it (warm, latency score, running jobs, price) |
//! | `GET /usage` | JSON: per API key, requests, refusals, pixels, audio ms, tokens, characters, seconds, wei, running jobs |
//! | `POST /setMaxPriceForCapability` | go-livepeer's form (`maxPricePerUnit`, `pixelsPerUnit`, `currency`, `pipeline`, `modelID`): sets an AI price ceiling at run time |
//!
//! With API keys on (`--api-keys`), every path but `/healthz` and `/metrics` needs a key
//! with `control = true`.

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
    ai: Option<Arc<crate::ai::Ai>>,
    keys: Arc<crate::ai::keys::KeyRing>,
}

/// The control router.
pub fn router(
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    ai: Option<Arc<crate::ai::Ai>>,
    keys: Arc<crate::ai::keys::KeyRing>,
) -> Router {
    let ctl = Ctl { registry, metrics, ai, keys };
    let guarded = Router::new()
        .route("/streams", get(streams))
        .route("/streams/{id}", get(stream))
        .route("/orchestrators", get(orchestrators))
        .route("/ai/pools", get(ai_pools))
        .route("/usage", get(usage))
        .route("/setMaxPriceForCapability", axum::routing::post(set_max_price))
        .layer(axum::middleware::from_fn_with_state(ctl.clone(), require_control_key));
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(guarded)
        .with_state(ctl)
}

async fn require_control_key(
    State(c): State<Ctl>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match c.keys.admit(req.headers(), crate::ai::keys::Scope::Control) {
        Ok(_) => next.run(req).await,
        Err(d) => crate::ai::routes::denied_response(&d),
    }
}

async fn ai_pools(State(c): State<Ctl>) -> Response {
    match &c.ai {
        Some(ai) => json(&ai.pools()),
        None => json(&serde_json::json!({})),
    }
}

async fn usage(State(c): State<Ctl>) -> Response {
    json(&c.keys.usage())
}

/// go-livepeer's `/setMaxPriceForCapability`: every form parameter is required.
async fn set_max_price(State(c): State<Ctl>, body: axum::body::Bytes) -> Response {
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let bad = |m: String| (StatusCode::BAD_REQUEST, format!("{m}\n")).into_response();
    for name in ["maxPricePerUnit", "pixelsPerUnit", "currency", "pipeline", "modelID"] {
        if form.get(name).is_none_or(|v| v.is_empty()) {
            return bad(format!("missing form param: {name}"));
        }
    }
    let Some(ai) = &c.ai else { return bad("no orchestrators are configured".into()) };
    let Some(pipeline) = transport::ai::Pipeline::from_name(&form["pipeline"]) else {
        return bad(format!("unknown pipeline {:?}", form["pipeline"]));
    };
    if !matches!(form["currency"].to_ascii_lowercase().as_str(), "wei" | "eth") {
        return bad("currency must be wei (no price feed)".into());
    }
    let (Ok(price), Ok(pixels)) = (form["maxPricePerUnit"].parse::<i64>(), form["pixelsPerUnit"].parse::<i64>()) else {
        return bad("maxPricePerUnit and pixelsPerUnit must be integers".into());
    };
    if price <= 0 || pixels <= 0 {
        return bad("maxPricePerUnit and pixelsPerUnit must be greater than 0".into());
    }
    ai.set_max_price(pipeline, &form["modelID"], num_rational::BigRational::new(price.into(), pixels.into()));
    tracing::info!(%pipeline, model = %form["modelID"], price, pixels, "AI price ceiling set");
    (StatusCode::OK, "ok\n").into_response()
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
