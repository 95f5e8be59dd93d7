//! `sluice signer`: the remote signer API (spec `livepeer-transcode-protocol.md` §6) over
//! HTTP, for gateways that pay without holding the key: the official Python SDK,
//! go-livepeer with `-remoteSignerUrl`, or Sluice. The answers are
//! [`session::signer::Signer`]'s; this module parses, times and frames them.
//!
//! | route | answer |
//! |---|---|
//! | `POST /sign-orchestrator-info` | `{"address": "0x…", "signature": "0x…"}` |
//! | `POST /generate-live-payment` | `{"payment", "segCreds", "state"}`; 400, 480 (with `Livepeer-Orchestrator-URL`), 481, 482 with `{"error": {"message"}}` |
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use session::signer::{PaymentRequest, Signer};

/// Largest request body.
const MAX_BODY: usize = 1 << 20;

/// Why the signer would not start.
#[derive(Debug, thiserror::Error)]
pub enum SignerStartError {
    /// A non-loopback address needs an explicit `--allow-no-auth` (no caller auth yet).
    #[error(
        "{0} is not a loopback address: anyone who reaches it could spend the key; pass --allow-no-auth to serve it anyway"
    )]
    Exposed(SocketAddr),
    /// No key was given.
    #[error("the signer needs a key: --eth-key-file, or --eth-keystore-path with --eth-password")]
    NoKey,
}

/// Checks that `addr` may be served without caller authentication.
pub fn check_exposure(addr: SocketAddr, allow_no_auth: bool) -> Result<(), SignerStartError> {
    if addr.ip().is_loopback() || allow_no_auth { Ok(()) } else { Err(SignerStartError::Exposed(addr)) }
}

fn error(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(serde_json::json!({ "error": { "message": message } }))).into_response()
}

/// The routes.
pub fn router(signer: Arc<Signer>) -> Router {
    Router::new()
        .route("/sign-orchestrator-info", post(sign_orchestrator_info))
        .route("/generate-live-payment", post(generate_live_payment))
        .with_state(signer)
}

async fn sign_orchestrator_info(State(s): State<Arc<Signer>>) -> Response {
    let (address, signature) = s.orchestrator_info_signature();
    axum::Json(serde_json::json!({ "address": address, "signature": signature })).into_response()
}

#[allow(clippy::disallowed_methods)] // IO shell: the payment's wall-clock time
async fn generate_live_payment(State(s): State<Arc<Signer>>, body: Bytes) -> Response {
    if body.len() > MAX_BODY {
        return error(413, "request body too large");
    }
    let req: PaymentRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(400, &format!("invalid request: {e}")),
    };
    match s.live_payment(&req, std::time::SystemTime::now()) {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => {
            tracing::info!(status = e.status, reason = %e.message, "live payment not signed");
            let mut r = error(e.status, &e.message);
            if let Some(url) = e.orchestrator.and_then(|u| HeaderValue::from_str(&u).ok()) {
                r.headers_mut().insert("Livepeer-Orchestrator-URL", url);
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_auth() {
        assert!(check_exposure("127.0.0.1:7936".parse().unwrap(), false).is_ok());
        assert!(check_exposure("[::1]:7936".parse().unwrap(), false).is_ok());
        assert!(matches!(check_exposure("0.0.0.0:7936".parse().unwrap(), false), Err(SignerStartError::Exposed(_))));
        assert!(check_exposure("0.0.0.0:7936".parse().unwrap(), true).is_ok());
    }
}
