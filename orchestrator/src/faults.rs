//! Fault injection for tests of gateways (`POST /fault`, only with `allow_faults`): the
//! orchestrator hangs, fails, answers busy or sends garbage on purpose.
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use prost::Message;
use transport::proto::{TranscodeResult, transcode_result};

use crate::service::Shared;

/// Ways to misbehave on purpose (`POST /fault`, only with `allow_faults`), for testing
/// how gateways cope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// Behave.
    #[default]
    None,
    /// Accept connections and requests, never answer any (gRPC included).
    Hang,
    /// Answer every `/segment` and AI job with 500.
    Error500,
    /// Answer every other `/segment` with `OrchestratorBusy`.
    BusyAlternate,
    /// Answer `/segment` with 200 and a body that is not a `TranscodeResult`.
    Garbage,
    /// Every live runner fails (running ones at once, new ones as they start), reporting
    /// the failure in an `ERROR` status event before its job ends.
    RunnerCrash,
    /// Refuse every live payment (`POST /payment`) with 400, as for an invalid ticket.
    RefusePayments,
    /// Answer every AI job with 503 `insufficient capacity`.
    AiBusy,
}

#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub(crate) mode: FaultMode,
    pub(crate) segments: u64,
}

/// Body of `POST /fault`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct FaultRequest {
    #[serde(default)]
    mode: Option<FaultMode>,
    /// New price per unit (paid mode), applied to quotes from now on.
    #[serde(default)]
    price_per_unit: Option<i64>,
}

pub(crate) async fn set_fault(State(s): State<Arc<Shared>>, axum::Json(req): axum::Json<FaultRequest>) -> Response {
    if !s.allow_faults {
        return (StatusCode::NOT_FOUND, "fault injection is off").into_response();
    }
    if let Some(m) = req.mode {
        s.fault.lock().expect("fault lock").mode = m;
        s.live.set_crash((m == FaultMode::RunnerCrash).then(|| "runner crashed (injected fault)".to_owned()));
        tracing::warn!(mode = ?m, "fault injected");
    }
    if let Some(p) = req.price_per_unit {
        s.price.lock().expect("price lock").price_per_unit = p;
        tracing::warn!(price_per_unit = p, "price changed");
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Applies the injected fault to every request but `/fault` itself.
pub(crate) async fn fault_layer(State(s): State<Arc<Shared>>, req: Request, next: axum::middleware::Next) -> Response {
    if req.uri().path() == "/fault" {
        return next.run(req).await;
    }
    let mode = s.fault.lock().expect("fault lock").mode;
    let segment = req.uri().path() == "/segment";
    let ai = transport::ai::Pipeline::ALL.into_iter().any(|p| req.uri().path().strip_prefix('/') == Some(p.name()));
    match mode {
        FaultMode::Hang => std::future::pending().await,
        FaultMode::Error500 if segment || ai => {
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
        }
        FaultMode::AiBusy if ai => (StatusCode::SERVICE_UNAVAILABLE, "insufficient capacity\n").into_response(),
        FaultMode::Garbage if segment => (StatusCode::OK, vec![0x0a, 0xff, 0xff, 0x01, 0x12]).into_response(),
        FaultMode::RefusePayments if req.uri().path() == "/payment" => {
            (StatusCode::BAD_REQUEST, "invalid ticket (injected fault)").into_response()
        }
        FaultMode::BusyAlternate if segment => {
            let n = {
                let mut f = s.fault.lock().expect("fault lock");
                f.segments += 1;
                f.segments
            };
            if n.is_multiple_of(2) {
                let r = TranscodeResult {
                    seq: 0,
                    result: Some(transcode_result::Result::Error(transport::refusal::wire::BUSY.into())),
                    info: None,
                };
                return (StatusCode::OK, r.encode_to_vec()).into_response();
            }
            next.run(req).await
        }
        _ => next.run(req).await,
    }
}
