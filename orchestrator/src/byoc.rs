//! BYOC capabilities on the orchestrator (AI gateway spec §5.5): workers register a
//! capability (`POST /capability/register` with the orchestrator secret), gateways ask a
//! job token (`GET /process/token`) and send jobs (`POST /process/request/{path}`), which
//! are forwarded to the worker with its bearer token. Off-chain the price is zero; on a
//! paid network the job's signature is checked and each started second of compute is
//! debited at the capability's price.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use transport::byoc::{
    BALANCE_HEADER, CAPABILITY_HEADER, ETH_ADDRESS_HEADER, JOB_HEADER, JobPrice, JobToken, METADATA_HEADER,
    SenderAddress, decode_job, verify_job,
};

use crate::service::Shared;

/// Largest job body.
pub const MAX_JOB_BODY: usize = 100 << 20;

/// A registered capability (`POST /capability/register` body).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct ByocCapability {
    /// The name gateways ask for.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// The worker's base URL.
    pub url: String,
    /// Jobs at once.
    #[serde(default = "one")]
    pub capacity: i64,
    /// Price per second of compute, wei (divided by `price_scaling`).
    #[serde(default)]
    pub price_per_unit: i64,
    /// Divisor of the price (0 = 1).
    #[serde(default)]
    pub price_scaling: i64,
    /// Currency (wei only here).
    #[serde(default)]
    pub currency: String,
    /// Sent to the worker as `Authorization: Bearer`.
    #[serde(default)]
    pub token: String,
}

fn one() -> i64 {
    1
}

/// The registered capabilities and their running jobs.
pub(crate) struct Byoc {
    secret: Option<String>,
    caps: Mutex<HashMap<String, (ByocCapability, i64)>>,
    net: transport::client::OrchestratorNet,
}

impl Byoc {
    pub(crate) fn new(secret: Option<String>, caps: Vec<ByocCapability>) -> Self {
        Byoc {
            secret,
            caps: Mutex::new(caps.into_iter().map(|c| (c.name.clone(), (c, 0))).collect()),
            net: transport::client::OrchestratorNet::new(transport::tls::CertPolicy::AcceptAny),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ByocCapability, i64)>> {
        self.caps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot of `name`: 400 when not registered, 503 when all are busy. The slot
    /// is given back by the [`Held`] guard.
    fn reserve(&self, name: &str) -> Result<ByocCapability, StatusCode> {
        let mut caps = self.lock();
        let (cap, running) = caps.get_mut(name).ok_or(StatusCode::BAD_REQUEST)?;
        if *running >= cap.capacity {
            return Err(StatusCode::SERVICE_UNAVAILABLE);
        }
        *running += 1;
        Ok(cap.clone())
    }

    fn unregister(&self, name: &str) {
        if self.lock().remove(name).is_some() {
            tracing::warn!(capability = name, "BYOC capability unregistered");
        }
    }
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    tracing::info!(status = status.as_u16(), reason = %m, "BYOC request refused");
    m.push('\n');
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], m).into_response()
}

fn price_of(c: &ByocCapability) -> JobPrice {
    JobPrice { price_per_unit: c.price_per_unit.max(0), pixels_per_unit: c.price_scaling.max(1) }
}

/// `POST /capability/register`: `Authorization` must be the orchestrator secret.
pub(crate) async fn register(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if s.byoc.secret.is_none() || auth != s.byoc.secret.as_deref() {
        return text(StatusCode::BAD_REQUEST, "invalid authorization");
    }
    let cap: ByocCapability = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("invalid capability: {e}")),
    };
    if cap.name.is_empty() || !(cap.url.starts_with("http://") || cap.url.starts_with("https://")) {
        return text(StatusCode::BAD_REQUEST, "a capability needs a name and an http(s) url");
    }
    tracing::info!(capability = %cap.name, url = %cap.url, capacity = cap.capacity, "BYOC capability registered");
    let name = cap.name.clone();
    let mut caps = s.byoc.lock();
    let running = caps.get(&name).map_or(0, |(_, n)| *n);
    caps.insert(name, (cap, running));
    (StatusCode::OK, "ok").into_response()
}

/// `POST /capability/unregister` with the name as the body.
pub(crate) async fn unregister(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if s.byoc.secret.is_none() || auth != s.byoc.secret.as_deref() {
        return text(StatusCode::BAD_REQUEST, "invalid authorization");
    }
    s.byoc.unregister(String::from_utf8_lossy(&body).trim());
    (StatusCode::OK, "ok").into_response()
}

/// `GET /process/token`: a job token for the capability in `Livepeer-Capability`.
pub(crate) async fn token(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let (Some(sender), Some(capability)) =
        (get(ETH_ADDRESS_HEADER).and_then(SenderAddress::decode), get(CAPABILITY_HEADER))
    else {
        return text(StatusCode::BAD_REQUEST, "missing Livepeer-Eth-Address or Livepeer-Capability");
    };
    if s.paid() && !sender_verifies(&sender) {
        return text(StatusCode::BAD_REQUEST, "could not verify the sender address signature");
    }
    let caps = s.byoc.lock();
    let Some((cap, running)) = caps.get(capability) else {
        return text(StatusCode::BAD_REQUEST, format!("capability {capability} is not registered"));
    };
    let token = JobToken {
        sender_address: Some(sender),
        ticket_params: None,
        balance: 0,
        price: Some(price_of(cap)),
        service_addr: s.service_uri().to_owned(),
        available_capacity: (cap.capacity - running).max(0),
        last_nonce: 0,
    };
    (StatusCode::OK, axum::Json(token)).into_response()
}

fn sender_verifies(sender: &SenderAddress) -> bool {
    let Ok(sig) = hex::decode(sender.sig.trim_start_matches("0x")) else { return false };
    let digest = transport::credentials::keccak256(sender.addr.as_bytes());
    transport::identity::recover_personal(&digest, &sig)
        .is_ok_and(|a| transport::identity::eip55(&a).eq_ignore_ascii_case(&sender.addr))
}

/// `POST /process/request/{path}`: runs a job on the capability's worker.
pub(crate) async fn request(State(s): State<Arc<Shared>>, Path(path): Path<String>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let header = parts.headers.get(JOB_HEADER).and_then(|v| v.to_str().ok());
    let job = match decode_job(header) {
        Ok(j) => j,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if s.paid() && verify_job(&job.request).is_none() {
        return text(StatusCode::BAD_REQUEST, "Could not verify job creds");
    }
    let name = job.request.capability.clone();
    let cap = match s.byoc.reserve(&name) {
        Ok(c) => c,
        Err(StatusCode::SERVICE_UNAVAILABLE) => {
            return text(StatusCode::SERVICE_UNAVAILABLE, "No capacity available for capability");
        }
        Err(_) => return text(StatusCode::BAD_REQUEST, format!("capability {name} is not registered")),
    };
    let held = Held { shared: s.clone(), name: name.clone() };
    if s.paid() && cap.price_per_unit > 0 {
        // Paid BYOC needs ticket params in the job token, which this orchestrator does not
        // issue yet: refuse rather than run unpaid.
        return text(StatusCode::BAD_REQUEST, "Insufficient balance for request");
    }
    let body = match axum::body::to_bytes(body, MAX_JOB_BODY).await {
        Ok(b) => b,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("job body: {e}")),
    };
    let target = format!("{}/{}", cap.url.trim_end_matches('/'), path.trim_start_matches('/'));
    let mut fwd = axum::http::Request::post(&target);
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        fwd = fwd.header(header::CONTENT_TYPE, ct);
    }
    if !cap.token.is_empty() {
        fwd = fwd.header(header::AUTHORIZATION, format!("Bearer {}", cap.token));
    }
    let Ok(fwd) = fwd.body(http_body_util::Full::new(body)) else {
        return text(StatusCode::BAD_REQUEST, "bad worker path");
    };
    let timeout = Duration::from_secs(job.request.timeout_seconds.clamp(1, 86_400) as u64);
    let started = Instant::now();
    let span = tracing::info_span!("byoc", capability = %name, path = %path);
    let _e = span.enter();
    let resp = match s.byoc.net.send(fwd, timeout).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "BYOC worker unreachable");
            if !matches!(e, transport::client::NetError::Timeout(_)) {
                s.byoc.unregister(&name);
            }
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("worker failed: {e}"));
        }
    };
    if resp.status() == StatusCode::UNAUTHORIZED {
        s.byoc.unregister(&name);
        return text(StatusCode::INTERNAL_SERVER_ERROR, "worker refused the capability token");
    }
    let status = resp.status();
    let mut out = Response::builder().status(status);
    for name in [header::CONTENT_TYPE.as_str(), METADATA_HEADER] {
        if let Some(v) = resp.headers().get(name) {
            out = out.header(name, v);
        }
    }
    out = out.header(BALANCE_HEADER, HeaderValue::from_static("0"));
    // The slot is held until the body is done (streamed replies included).
    let body = Body::new(HeldBody { inner: resp.into_body(), _held: held });
    tracing::info!(status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "BYOC job answered");
    out.body(body).unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

/// A capability slot, given back when dropped (kept by the response body, so a streamed
/// reply holds it to its end).
struct Held {
    shared: Arc<Shared>,
    name: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((_, n)) = self.shared.byoc.lock().get_mut(&self.name) {
            *n = (*n - 1).max(0);
        }
    }
}

/// A worker's body relayed as it comes, holding the capability slot until it ends.
struct HeldBody {
    inner: hyper::body::Incoming,
    _held: Held,
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }
}
