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
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tracing::Instrument;
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

/// True when `headers` carry the orchestrator secret in `Authorization` (compared in
/// constant time).
fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
    let (Some(secret), Some(auth)) = (s.byoc.secret.as_deref(), headers.get(header::AUTHORIZATION)) else {
        return false;
    };
    let (a, b) = (secret.as_bytes(), auth.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The worker path of a job: the request path after `/process/request/`, still
/// percent-encoded, without the query; `None` when it could climb out of the worker's base
/// path (dot segments, encoded dots, slashes or backslashes).
pub fn worker_path(uri_path: &str) -> Option<&str> {
    let p = uri_path.strip_prefix(transport::byoc::REQUEST_PREFIX)?;
    let lower = p.to_ascii_lowercase();
    let bad = p.split('/').any(|seg| seg == "." || seg == "..")
        || ["%2e", "%2f", "%5c", "\\"].iter().any(|x| lower.contains(x));
    (!bad).then_some(p)
}

/// `POST /capability/register`: `Authorization` must be the orchestrator secret.
pub(crate) async fn register(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&s, &headers) {
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
    if !authorized(&s, &headers) {
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
    let address = match (s.paid(), sender_verifies(&sender)) {
        (true, None) => return text(StatusCode::BAD_REQUEST, "could not verify the sender address signature"),
        (_, a) => a,
    };
    let (cap, running) = match s.byoc.lock().get(capability) {
        Some((c, r)) => (c.clone(), *r),
        None => return text(StatusCode::BAD_REQUEST, format!("capability {capability} is not registered")),
    };
    let price = price_of(&cap);
    let (ticket_params, balance) = match (address, s.paid() && price.price_per_unit > 0) {
        (Some(a), true) => {
            let info = price_info(price);
            let block = s.latest_block();
            let gate = s.gate.lock().expect("gate lock");
            let Some(r) = gate.recipient.as_ref() else { return text(StatusCode::BAD_REQUEST, "not an orchestrator") };
            let tp = r.quote(&a, &info, crate::service::random(), block, &s.round(block));
            let balance = r.balance(a, &session_of(capability)).floor().to_integer();
            (Some(transport::byoc::ticket_params_json(&tp)), num_traits::ToPrimitive::to_i64(&balance).unwrap_or(0))
        }
        _ => (None, 0),
    };
    let token = JobToken {
        sender_address: Some(sender),
        ticket_params,
        balance,
        price: Some(price),
        service_addr: s.service_uri().to_owned(),
        available_capacity: (cap.capacity - running).max(0),
        last_nonce: 0,
    };
    (StatusCode::OK, axum::Json(token)).into_response()
}

/// The address a sender header proves, if its signature verifies.
fn sender_verifies(sender: &SenderAddress) -> Option<transport::identity::Address> {
    let sig = hex::decode(sender.sig.trim_start_matches("0x")).ok()?;
    let digest = transport::credentials::keccak256(sender.addr.as_bytes());
    let a = transport::identity::recover_personal(&digest, &sig).ok()?;
    transport::identity::eip55(&a).eq_ignore_ascii_case(&sender.addr).then_some(a)
}

/// Balances of BYOC jobs are kept per (sender, capability).
fn session_of(capability: &str) -> String {
    format!("byoc:{capability}")
}

/// A price per second as the `PriceInfo` tickets are quoted against.
fn price_info(p: JobPrice) -> transport::proto::PriceInfo {
    transport::proto::PriceInfo {
        price_per_unit: p.price_per_unit,
        pixels_per_unit: p.pixels_per_unit.max(1),
        ..Default::default()
    }
}

/// `POST /process/request/{path}`: runs a job on the capability's worker.
pub(crate) async fn request(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(path) = worker_path(parts.uri.path()).map(str::to_owned) else {
        return text(StatusCode::BAD_REQUEST, "invalid job path");
    };
    let header = parts.headers.get(JOB_HEADER).and_then(|v| v.to_str().ok());
    let job = match decode_job(header) {
        Ok(j) => j,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let sender = verify_job(&job.request);
    if s.paid() && sender.is_none() {
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
    let mut held = Held { shared: s.clone(), name: name.clone(), sender: None, price: None, started: Instant::now() };
    let price = price_info(price_of(&cap));
    if let (true, Some(sender)) = (s.paid() && price.price_per_unit > 0, sender) {
        // §5.5: the tickets, then credit for a minute of compute.
        let header = parts.headers.get(transport::segment::PAYMENT_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        let payment = match decode_payment(header) {
            Ok(p) => p,
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        };
        let session = session_of(&name);
        let block = s.latest_block();
        let mut gate = s.gate.lock().expect("gate lock");
        let Some(r) = gate.recipient.as_mut() else { return text(StatusCode::BAD_REQUEST, "not an orchestrator") };
        if let Err(e) = r.receive(&payment, &session, block) {
            return text(StatusCode::BAD_REQUEST, e.to_string());
        }
        let needed = num_rational::BigRational::new(
            (price.price_per_unit * transport::byoc::REQUIRED_SECONDS as i64).into(),
            price.pixels_per_unit.into(),
        );
        if r.balance(sender, &session) < needed {
            return text(StatusCode::BAD_REQUEST, "Insufficient balance for request");
        }
        (held.sender, held.price) = (Some(sender), Some(price));
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
    let sent = s.byoc.net.send(fwd, timeout).instrument(span.clone()).await;
    let _e = span.enter();
    let resp = match sent {
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
    // A whole reply is charged now (per started second); a stream when it ends.
    let stream =
        resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !stream {
        held.settle();
    }
    out = out.header(BALANCE_HEADER, held.balance().to_string());
    // The slot is held until the body is done (streamed replies included).
    let body = Body::new(crate::ai::GuardedBody { inner: resp.into_body(), guard: held });
    tracing::info!(status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "BYOC job answered");
    out.body(body).unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

/// A capability slot, given back when dropped (kept by the response body, so a streamed
/// reply holds it to its end), and the job's charge: each started second of compute at
/// the capability's price, once.
struct Held {
    shared: Arc<Shared>,
    name: String,
    /// Who pays (paid jobs only).
    sender: Option<transport::identity::Address>,
    /// The price per second, until charged.
    price: Option<transport::proto::PriceInfo>,
    started: Instant,
}

impl Held {
    /// Debits the compute time so far (once).
    fn settle(&mut self) {
        let (Some(sender), Some(price)) = (self.sender, self.price.take()) else { return };
        let secs = self.started.elapsed().as_secs_f64().ceil().max(1.0) as u64;
        if let Some(r) = self.shared.gate.lock().expect("gate lock").recipient.as_mut() {
            r.debit(sender, &session_of(&self.name), secs, &price);
        }
        tracing::debug!(capability = %self.name, secs, "BYOC compute charged");
    }

    /// The sender's credit for this capability, whole wei (0 for unpaid jobs).
    fn balance(&self) -> i64 {
        let Some(sender) = self.sender else { return 0 };
        let gate = self.shared.gate.lock().expect("gate lock");
        let b = gate.recipient.as_ref().map(|r| r.balance(sender, &session_of(&self.name)).floor().to_integer());
        b.and_then(|b| num_traits::ToPrimitive::to_i64(&b)).unwrap_or(0)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.settle();
        if let Some((_, n)) = self.shared.byoc.lock().get_mut(&self.name) {
            *n = (*n - 1).max(0);
        }
    }
}

/// The `Livepeer-Payment` header's `Payment` (empty header: none).
fn decode_payment(header: &str) -> Result<transport::proto::Payment, String> {
    use base64::Engine;
    use prost::Message;
    if header.is_empty() {
        return Ok(transport::proto::Payment::default());
    }
    let raw =
        base64::engine::general_purpose::STANDARD.decode(header).map_err(|e| format!("base64 decode error: {e}"))?;
    transport::proto::Payment::decode(raw.as_slice()).map_err(|e| format!("protobuf unmarshal error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_paths_stay_under_the_base() {
        assert_eq!(worker_path("/process/request/reverse-text"), Some("reverse-text"));
        assert_eq!(worker_path("/process/request/a/b%20c"), Some("a/b%20c"));
        for bad in [
            "/process/request/../admin",
            "/process/request/a/./b",
            "/process/request/%2e%2e/admin",
            "/process/request/a%2Fb",
            "/process/request/a%5cb",
            "/other/x",
        ] {
            assert_eq!(worker_path(bad), None, "{bad}");
        }
    }
}
