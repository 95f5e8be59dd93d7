//! BYOC batch jobs through the gateway (AI gateway spec §5.2–§5.4):
//! `POST /process/request/{path}` with the `Livepeer` job header. Every known
//! orchestrator (within the job's include/exclude lists) is asked for a job token for the
//! capability; those with capacity are tried cheapest first, each within
//! `timeout_seconds + 5`; the first answer below 500 is relayed (streamed as it comes,
//! server-sent events included), with `X-Orchestrator-Url` naming who ran it.
//!
//! Differences from go-livepeer: the search timeouts in `Livepeer-Orch-Search-Timeout`
//! and `Livepeer-Orch-Search-Resp-Timeout` are honoured (go-livepeer ignores them); a job
//! without `parameters` is taken as `{}`; when every orchestrator fails the client gets
//! 503 with the reasons, not an empty 200; the worker's `Content-Type` is passed on.
//! A token quoting a price is paid with tickets for `timeout_seconds` (none while the
//! credit it reports covers two minutes); a gateway without a key skips it.
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::Full;
use tokio::task::JoinSet;
use tracing::{Instrument, info, info_span, warn};
use transport::byoc::{
    BALANCE_HEADER, CAPABILITY_HEADER, ETH_ADDRESS_HEADER, JOB_HEADER, JobToken, METADATA_HEADER,
    ORCHESTRATOR_URL_HEADER, SEARCH_RESPONSE_TIMEOUT_HEADER, SEARCH_TIMEOUT_HEADER, SenderAddress, decode_job,
    encode_job, parse_go_duration, sign_job,
};

use super::keys::{Outcome, Scope};
use super::reply::error_response;
use super::routes::{MAX_REQUEST, denied_response};
use super::{Ai, AiError};

/// How long the token search lasts by default.
pub const SEARCH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one orchestrator may take to answer a token request by default.
pub const SEARCH_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

fn header_duration(h: &axum::http::HeaderMap, name: &str, default: Duration) -> Duration {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_go_duration)
        .filter(|s| *s > 0.0 && *s <= 60.0)
        .map_or(default, Duration::from_secs_f64)
}

impl Ai {
    /// The `Livepeer-Payment` header for a job of `capability` under `token` (§5.4):
    /// `None` when it is free or the credit the token reports covers two minutes;
    /// otherwise tickets for `timeout_seconds` at the token's price, nonces continuing
    /// after the orchestrator's `LastNonce`.
    fn byoc_payment(&self, token: &JobToken, capability: &str, timeout_seconds: u64) -> Result<Option<String>, String> {
        let (Some(p), Some(price)) = (&self.payer, token.price) else { return Ok(None) };
        if price.price_per_unit <= 0 {
            return Ok(None);
        }
        let json = token.ticket_params.as_ref().ok_or("a priced token without ticket params")?;
        let tp = transport::byoc::ticket_params_from_json(json).ok_or("unreadable ticket params")?;
        let ev = session::payment::params_ev(&tp).map_err(|e| format!("ticket params: {e}"))?;
        let per_second = price.price_per_unit as f64 / price.pixels_per_unit.max(1) as f64;
        let count = transport::byoc::tickets_for_job(
            per_second,
            timeout_seconds,
            token.balance as f64,
            num_traits::ToPrimitive::to_f64(&ev).unwrap_or(0.0),
        );
        if count == 0 {
            return Ok(None);
        }
        let recipient: [u8; 20] = tp.recipient.as_slice().try_into().map_err(|_| "bad ticket recipient")?;
        let mut senders = p.senders.lock().unwrap_or_else(|e| e.into_inner());
        let sender = senders
            .entry((recipient, format!("byoc:{capability}")))
            .or_insert_with(|| transport::pm::TicketSender::new(p.signer.clone()));
        sender.update_params(&tp).map_err(|e| format!("ticket params: {e}"))?;
        if sender.nonce() < token.last_nonce {
            sender.resume_nonce(token.last_nonce);
        }
        let info = transport::proto::PriceInfo {
            price_per_unit: price.price_per_unit,
            pixels_per_unit: price.pixels_per_unit.max(1),
            ..Default::default()
        };
        let payment = sender.payment(count as u32, &info).map_err(|e| format!("payment: {e}"))?;
        Ok(Some(transport::segment::payment_header(Some(&payment))))
    }

    /// Job tokens for `capability` from every orchestrator `allows` admits, within
    /// `search` (each within `per_response`): usable ones (capacity, service address),
    /// cheapest first, and why the others are not.
    #[allow(clippy::disallowed_methods)] // IO shell: times the search
    async fn byoc_tokens(
        &self,
        capability: &str,
        allows: impl Fn(&str) -> bool,
        search: Duration,
        per_response: Duration,
    ) -> (Vec<(String, JobToken)>, Vec<String>) {
        let identity = SenderAddress::of(self.t.key().as_ref()).header();
        let mut calls = JoinSet::new();
        let mut why = Vec::new();
        for (_, addr) in self.t.pool().addresses() {
            let uri = addr.to_string();
            if !allows(&uri) {
                why.push(format!("{uri}: excluded by the job's parameters"));
                continue;
            }
            let net = self.t.net().clone();
            let (identity, capability) = (identity.clone(), capability.to_owned());
            calls.spawn(async move {
                let req = http::Request::get(format!("{uri}/process/token"))
                    .header(ETH_ADDRESS_HEADER, identity)
                    .header(CAPABILITY_HEADER, capability)
                    .body(Full::new(Bytes::new()));
                let answer = async {
                    let req = req.map_err(|e| e.to_string())?;
                    let resp = net.send(req, per_response).await.map_err(|e| e.to_string())?;
                    let status = resp.status();
                    let body = transport::client::OrchestratorNet::read_body(resp.into_body(), 1 << 20, per_response)
                        .await
                        .map_err(|e| e.to_string())?;
                    if status != StatusCode::OK {
                        return Err(format!("HTTP {}: {}", status.as_u16(), String::from_utf8_lossy(&body).trim()));
                    }
                    serde_json::from_slice::<JobToken>(&body).map_err(|e| format!("not a job token: {e}"))
                };
                (uri, answer.await)
            });
        }
        let deadline = tokio::time::Instant::now() + search;
        let mut tokens = Vec::new();
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, calls.join_next()).await {
            let Ok((uri, answer)) = joined else { continue };
            match answer {
                Err(e) => why.push(format!("{uri}: token: {e}")),
                Ok(t) if t.available_capacity <= 0 => why.push(format!("{uri}: no capacity for {capability}")),
                Ok(t) if t.service_addr.is_empty() => why.push(format!("{uri}: token without a service address")),
                Ok(t) if t.price.is_some_and(|p| p.price_per_unit > 0) && self.payer.is_none() => {
                    why.push(format!("{uri}: quotes a price and this gateway has no key to pay with"))
                }
                Ok(t) => tokens.push((uri, t)),
            }
        }
        if !calls.is_empty() {
            why.push(format!("{} orchestrators did not answer within {:?}", calls.len(), search));
        }
        let price = |t: &JobToken| t.price.map_or(0.0, |p| p.price_per_unit as f64 / p.pixels_per_unit.max(1) as f64);
        tokens.sort_by(|a, b| price(&a.1).total_cmp(&price(&b.1)));
        (tokens, why)
    }
}

/// `POST /process/request/{path}`.
pub(crate) async fn request(State(ai): State<Arc<Ai>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(path) = orchestrator::byoc::worker_path(parts.uri.path()).map(str::to_owned) else {
        return error_response(&AiError::bad_request("invalid job path: no dot segments or encoded slashes"));
    };
    let permit = match ai.keys.admit(&parts.headers, Scope::Jobs) {
        Ok(p) => p,
        Err(d) => return denied_response(&d),
    };
    let job = match decode_job(parts.headers.get(JOB_HEADER).and_then(|v| v.to_str().ok())) {
        Ok(j) => j,
        Err(e) => return error_response(&AiError::bad_request(e.to_string())),
    };
    let span = info_span!("byoc", capability = %job.request.capability, path = %path, key = permit.key.as_deref().unwrap_or("-"));
    async move {
        let started = Instant::now();
        let fail = |permit: &super::keys::Permit, e: AiError| {
            ai.keys.record(permit, Outcome { ok: false, ..Default::default() });
            warn!(status = e.status.as_u16(), reason = %e.message, "BYOC job failed");
            error_response(&e)
        };
        let body = match axum::body::to_bytes(body, MAX_REQUEST).await {
            Ok(b) => b,
            Err(e) => {
                let e = AiError { status: StatusCode::PAYLOAD_TOO_LARGE, message: format!("request body: {e}") };
                return fail(&permit, e);
            }
        };
        let search = header_duration(&parts.headers, SEARCH_TIMEOUT_HEADER, SEARCH_TIMEOUT);
        let per = header_duration(&parts.headers, SEARCH_RESPONSE_TIMEOUT_HEADER, SEARCH_RESPONSE_TIMEOUT);
        let filter = job.parameters.orchestrators.clone();
        let (tokens, mut why) = ai.byoc_tokens(&job.request.capability, |u| filter.allows(u), search, per).await;
        let mut signed = job.request.clone();
        // The orchestrator sets the worker's URL; a client's is dropped.
        signed.capability_url.clear();
        sign_job(&mut signed, ai.t.key().as_ref());
        let header_value = encode_job(&signed);
        let timeout = Duration::from_secs(job.request.timeout_seconds.clamp(1, 86_400) as u64 + 5);
        for (uri, token) in tokens {
            let url = format!("{}/process/request/{}", token.service_addr.trim_end_matches('/'), path);
            let mut fwd = http::Request::post(&url).header(JOB_HEADER, &header_value);
            match ai.byoc_payment(&token, &job.request.capability, job.request.timeout_seconds.max(1) as u64) {
                Ok(Some(payment)) => fwd = fwd.header(transport::segment::PAYMENT_HEADER, payment),
                Ok(None) => {}
                Err(e) => {
                    why.push(format!("{uri}: cannot pay: {e}"));
                    continue;
                }
            }
            if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
                fwd = fwd.header(header::CONTENT_TYPE, ct);
            }
            let Ok(fwd) = fwd.body(Full::new(body.clone())) else {
                why.push(format!("{uri}: bad service address {}", token.service_addr));
                continue;
            };
            let resp = match ai.t.net().send(fwd, timeout).await {
                Ok(r) => r,
                Err(e) => {
                    why.push(format!("{uri}: {e}"));
                    continue;
                }
            };
            let status = resp.status();
            if status.is_server_error() {
                let text = transport::client::OrchestratorNet::read_body(resp.into_body(), 4096, Duration::from_secs(2))
                    .await
                    .unwrap_or_default();
                why.push(format!("{uri}: HTTP {}: {}", status.as_u16(), String::from_utf8_lossy(&text).trim()));
                continue;
            }
            info!(orchestrator = %uri, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "BYOC job answered");
            ai.keys.record(&permit, Outcome { ok: status.is_success(), took: started.elapsed(), ..Default::default() });
            let mut out = Response::builder().status(status);
            for name in [header::CONTENT_TYPE.as_str(), BALANCE_HEADER, METADATA_HEADER] {
                if let Some(v) = resp.headers().get(name) {
                    out = out.header(name, v);
                }
            }
            if let Ok(v) = HeaderValue::from_str(&token.service_addr) {
                out = out.header(ORCHESTRATOR_URL_HEADER, v);
            }
            let stream = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            // A stream may run to the job's timeout and ten seconds more; the key's job
            // counts as running until the body ends.
            let limit = if stream { timeout + Duration::from_secs(5) } else { timeout };
            let body = Body::new(Deadline { inner: resp.into_body(), sleep: Box::pin(tokio::time::sleep(limit)), _permit: permit });
            return out.body(body).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        fail(&permit, AiError::unavailable(format!(
            "no orchestrators available for capability {}: {}",
            job.request.capability,
            if why.is_empty() { "none known".to_owned() } else { why.join("; ") }
        )))
    }
    .instrument(span)
    .await
}

/// An orchestrator's body relayed until it ends or a deadline passes, holding the key's
/// job slot until then.
struct Deadline {
    inner: hyper::body::Incoming,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    _permit: super::keys::Permit,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.sleep.as_mut().poll(cx).is_ready() {
            // Cut short: the client must not take this for a whole answer.
            return std::task::Poll::Ready(Some(Err("the job ran past its timeout".into())));
        }
        std::pin::Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into)
    }
}
