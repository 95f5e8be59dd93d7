//! The public AI API on the HTTP port (AI spec §1.2): go-livepeer's routes and bodies,
//! image-to-video's async mode (§1.7.3), `/llm` streaming (§1.7.4), and the
//! OpenAI-compatible alias `POST /v1/chat/completions` and `GET /v1/models`.
//!
//! A wrong method gets 405 with an `Allow` header and a reason (go-livepeer answers an
//! empty 200); every error is `{"error":{"message":…}}` with the real reason.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use tracing::{Instrument, info, info_span};
use transport::ai::Pipeline;
use transport::ai_types::{LlmMessage, LlmRequest, LlmResponse};

use super::keys::{Denied, Outcome, Permit, Scope};
use super::reply::{Flavor, error_response, json_response, relay_llm, sse_response};
use super::request::{json_job, llm_job, multipart_job};
use super::results::request_id;
use super::{Ai, AiError, Job};

/// Async image-to-video jobs held at once (running, or finished within the result TTL).
pub const MAX_ASYNC_JOBS: usize = 10_000;
/// Largest request body (an image or audio upload).
pub const MAX_REQUEST: usize = 100 << 20;

/// image-to-video jobs running in the background, by request id.
#[derive(Debug, Default)]
pub(crate) struct AsyncJobs(Mutex<HashMap<String, (Instant, Option<serde_json::Value>)>>);

impl AsyncJobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<serde_json::Value>)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The AI routes.
pub fn router(ai: Arc<Ai>) -> Router {
    let mut r = Router::new();
    for p in Pipeline::ALL {
        r = r.route(&format!("/{p}"), only_post(post(move |st: State<Arc<Ai>>, req: Request| job(st, p, req))));
    }
    r.route("/image-to-video/result", only_post(post(async_result)))
        .route("/v1/chat/completions", only_post(post(openai_chat)))
        .route("/v1/models", get(openai_models))
        .route("/process/request/{*path}", only_post(post(super::byoc::request)))
        .with_state(ai)
}

fn only_post(m: MethodRouter<Arc<Ai>>) -> MethodRouter<Arc<Ai>> {
    m.fallback(|req: Request| async move {
        let mut r = error_response(&AiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("{} is not allowed here; use POST", req.method()),
        });
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        r
    })
}

/// 401/403/429 with the reason, and `Retry-After` on 429.
pub fn denied_response(d: &Denied) -> Response {
    let mut r = error_response(&AiError { status: d.status, message: d.reason.clone() });
    if let Some(s) = d.retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(s));
    }
    if d.status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    r
}

async fn read_body(body: axum::body::Body) -> Result<bytes::Bytes, AiError> {
    axum::body::to_bytes(body, MAX_REQUEST).await.map_err(|e| AiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("request body: {e} (at most {} MiB)", MAX_REQUEST >> 20),
    })
}

/// Builds the job of a pipeline request.
async fn build(p: Pipeline, headers: &HeaderMap, raw: bytes::Bytes) -> Result<Job, AiError> {
    match p.body_kind() {
        transport::ai::BodyKind::Json => json_job(p, &raw),
        transport::ai::BodyKind::Multipart { .. } => multipart_job(p, headers, raw).await,
    }
}

/// `POST /<pipeline>`.
async fn job(State(ai): State<Arc<Ai>>, p: Pipeline, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let permit = match ai.keys.admit(&parts.headers, Scope::Jobs) {
        Ok(p) => p,
        Err(d) => return denied_response(&d),
    };
    let request = request_id();
    let span = info_span!("ai", pipeline = %p, request = %request, key = permit.key.as_deref().unwrap_or("-"));
    async move {
        let started = Instant::now();
        let built = match read_body(body).await {
            Ok(raw) => build(p, &parts.headers, raw).await,
            Err(e) => Err(e),
        };
        let job = match built {
            Ok(j) => j,
            Err(e) => return fail(&ai, p, &permit, started, e),
        };
        let prefer_async = parts.headers.get("prefer").is_some_and(|v| v.as_bytes() == b"respond-async");
        if p == Pipeline::ImageToVideo && prefer_async {
            return start_async(ai.clone(), job, request, permit);
        }
        if job.stream {
            return stream(ai.clone(), job, Flavor::Livepeer, permit).await;
        }
        match run_to_json(&ai, &job, &request).await {
            Ok((value, fee, tokens)) => {
                done(&ai, &job, &permit, started, fee, tokens);
                json_response(&value)
            }
            Err(e) => fail(&ai, p, &permit, started, e),
        }
    }
    .instrument(span)
    .await
}

/// Runs a job and reads its answer: the client's JSON, the fee and the LLM tokens.
async fn run_to_json(ai: &Ai, job: &Job, request: &str) -> Result<(serde_json::Value, f64, u64), AiError> {
    let answered = ai.run(job).await?;
    let (fee, orchestrator, tries) = (answered.fee_wei, answered.orchestrator.clone(), answered.tries);
    let value = ai.finish(job, answered, request).await?;
    let tokens = value.pointer("/usage/completion_tokens").and_then(|v| v.as_u64()).unwrap_or(0);
    info!(%orchestrator, tries, model = %job.model, "AI job answered");
    Ok((value, fee, tokens))
}

fn done(ai: &Ai, job: &Job, permit: &Permit, started: Instant, fee_wei: f64, tokens: u64) {
    let took = started.elapsed();
    ai.meter.answered(job.pipeline, 200, took, job.units.count());
    ai.keys.record(permit, Outcome { ok: true, units: Some(job.units), tokens, took, fee_wei });
}

fn fail(ai: &Ai, p: Pipeline, permit: &Permit, started: Instant, e: AiError) -> Response {
    ai.meter.answered(p, e.status.as_u16(), started.elapsed(), 0);
    ai.keys.record(permit, Outcome { ok: false, ..Default::default() });
    if e.status.is_server_error() {
        tracing::warn!(status = e.status.as_u16(), reason = %e.message, "AI request failed");
    } else {
        info!(status = e.status.as_u16(), reason = %e.message, "AI request refused");
    }
    error_response(&e)
}

/// A streamed LLM job: the first chunk is awaited (so a failure is still a proper error
/// status), then chunks are relayed as they come.
async fn stream(ai: Arc<Ai>, job: Job, flavor: Flavor, permit: Permit) -> Response {
    let started = Instant::now();
    let answered = match ai.run(&job).await {
        Ok(a) => a,
        Err(e) => return fail(&ai, job.pipeline, &permit, started, e),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let idle = ai.timeouts.llm_idle;
    let fee = answered.fee_wei;
    let body = answered.response.into_body();
    tokio::spawn(
        async move {
            let end = relay_llm(body, flavor, idle, tx).await;
            let tokens = end.usage.as_ref().map_or(0, |u| u.completion_tokens.max(0) as u64);
            if let Some(e) = &end.error {
                tracing::warn!(error = %e, tokens, "LLM stream ended early");
            }
            if end.finished {
                done(&ai, &job, &permit, started, fee, tokens);
            } else {
                ai.meter.answered(job.pipeline, 502, started.elapsed(), 0);
                ai.keys.record(&permit, Outcome { ok: false, ..Default::default() });
            }
        }
        .in_current_span(),
    );
    sse_response(rx)
}

/// image-to-video with `Prefer: respond-async`: 202 with the request id; the job runs
/// detached from the client.
fn start_async(ai: Arc<Ai>, job: Job, request: String, permit: Permit) -> Response {
    {
        let mut jobs = ai.async_jobs.lock();
        let ttl = ai.results.ttl();
        jobs.retain(|_, (t, done)| done.is_none() || t.elapsed() < ttl);
        if jobs.len() >= MAX_ASYNC_JOBS {
            return error_response(&AiError::unavailable(format!("{MAX_ASYNC_JOBS} async jobs are held already")));
        }
        jobs.insert(request.clone(), (Instant::now(), None));
    }
    let id = request.clone();
    tokio::spawn(
        async move {
            let started = Instant::now();
            let result = match run_to_json(&ai, &job, &id).await {
                Ok((v, fee, _)) => {
                    done(&ai, &job, &permit, started, fee, 0);
                    v
                }
                Err(e) => {
                    let _ = fail(&ai, job.pipeline, &permit, started, e.clone());
                    serde_json::json!({ "error": { "message": e.message } })
                }
            };
            // Finished async jobs are kept as long as their files.
            ai.async_jobs.lock().insert(id, (Instant::now(), Some(result)));
        }
        .in_current_span(),
    );
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "request_id": request }).to_string(),
    )
        .into_response()
}

/// `POST /image-to-video/result` with `{"request_id": …}`.
async fn async_result(State(ai): State<Arc<Ai>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let _permit = match ai.keys.admit(&parts.headers, Scope::Read) {
        Ok(p) => p,
        Err(d) => return denied_response(&d),
    };
    #[derive(serde::Deserialize)]
    struct Ask {
        request_id: String,
    }
    let ask = match read_body(body).await.and_then(|b| {
        serde_json::from_slice::<Ask>(&b).map_err(|e| AiError::bad_request(format!("invalid JSON body: {e}")))
    }) {
        Ok(a) => a,
        Err(e) => return error_response(&e),
    };
    let state = ai.async_jobs.lock().get(&ask.request_id).map(|(_, r)| r.clone());
    match state {
        None => error_response(&AiError::bad_request("invalid request ID")),
        Some(None) => {
            (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, "application/json")], r#"{"status":"processing"}"#)
                .into_response()
        }
        Some(Some(result)) => json_response(&serde_json::json!({ "result": result, "status": "complete" })),
    }
}

/// An OpenAI chat request, as far as the LLM pipeline can honour it.
#[derive(Debug, serde::Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    max_completion_tokens: Option<i64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
}

#[derive(Debug, serde::Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: serde_json::Value,
}

/// A message's text: a string, or the text parts of a content array.
fn content_text(v: &serde_json::Value) -> Result<String, AiError> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Null => Ok(String::new()),
        serde_json::Value::Array(parts) => parts
            .iter()
            .map(|p| match (p.get("type").and_then(|t| t.as_str()), p.get("text").and_then(|t| t.as_str())) {
                (Some("text"), Some(t)) => Ok(t.to_owned()),
                (kind, _) => Err(AiError::bad_request(format!(
                    "message content of type {} is not supported; only text",
                    kind.unwrap_or("unknown")
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|t| t.join("")),
        _ => Err(AiError::bad_request("message content must be a string or an array of text parts")),
    }
}

/// `POST /v1/chat/completions`: the LLM pipeline under OpenAI's request and response
/// shapes (streamed as `chat.completion.chunk` events ending with `[DONE]`).
async fn openai_chat(State(ai): State<Arc<Ai>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let permit = match ai.keys.admit(&parts.headers, Scope::Jobs) {
        Ok(p) => p,
        Err(d) => return denied_response(&d),
    };
    let request = request_id();
    let span = info_span!("ai", pipeline = "llm", api = "openai", request = %request, key = permit.key.as_deref().unwrap_or("-"));
    async move {
        let started = Instant::now();
        let built = async {
            let raw = read_body(body).await?;
            let chat: ChatRequest =
                serde_json::from_slice(&raw).map_err(|e| AiError::bad_request(format!("invalid JSON body: {e}")))?;
            let messages = chat
                .messages
                .iter()
                .map(|m| Ok(LlmMessage { role: m.role.clone(), content: content_text(&m.content)? }))
                .collect::<Result<Vec<_>, AiError>>()?;
            llm_job(LlmRequest {
                messages: Some(messages),
                model: chat.model,
                max_tokens: chat.max_completion_tokens.or(chat.max_tokens),
                stream: chat.stream,
                temperature: chat.temperature,
                top_p: chat.top_p,
                top_k: None,
            })
        }
        .await;
        let job = match built {
            Ok(j) => j,
            Err(e) => return fail(&ai, Pipeline::Llm, &permit, started, e),
        };
        if job.stream {
            return stream(ai.clone(), job, Flavor::OpenAi, permit).await;
        }
        match run_to_json(&ai, &job, &request).await {
            Ok((value, fee, tokens)) => {
                done(&ai, &job, &permit, started, fee, tokens);
                let r: LlmResponse = serde_json::from_value(value).unwrap_or_default();
                json_response(&openai_completion(&r))
            }
            Err(e) => fail(&ai, Pipeline::Llm, &permit, started, e),
        }
    }
    .instrument(span)
    .await
}

/// A Livepeer LLM answer as an OpenAI `chat.completion`.
fn openai_completion(r: &LlmResponse) -> serde_json::Value {
    let choices: Vec<serde_json::Value> = r
        .choices
        .iter()
        .map(|c| {
            let m = c.message.as_ref().or(c.delta.as_ref());
            serde_json::json!({
                "index": c.index,
                "message": { "role": m.map_or("assistant", |m| m.role.as_str()), "content": m.map_or("", |m| m.content.as_str()) },
                "finish_reason": c.finish_reason.as_deref().unwrap_or("stop"),
            })
        })
        .collect();
    serde_json::json!({
        "id": r.id, "object": "chat.completion", "created": r.created, "model": r.model,
        "choices": choices, "usage": r.usage,
    })
}

/// `GET /v1/models`: the LLM models the known orchestrators offer.
async fn openai_models(State(ai): State<Arc<Ai>>, headers: HeaderMap) -> Response {
    let _permit = match ai.keys.admit(&headers, Scope::Read) {
        Ok(p) => p,
        Err(d) => return denied_response(&d),
    };
    let models = ai.offered_models(Pipeline::Llm).await;
    let data: Vec<serde_json::Value> = models
        .into_iter()
        .map(|(id, owned_by)| serde_json::json!({ "id": id, "object": "model", "created": 0, "owned_by": owned_by }))
        .collect();
    json_response(&serde_json::json!({ "object": "list", "data": data }))
}

impl Ai {
    /// The models of `p` the known orchestrators offer, each with the first orchestrator
    /// offering it; asked again at most every [`MODELS_TTL`].
    pub async fn offered_models(&self, p: Pipeline) -> Vec<(String, String)> {
        let cached = self.models_cache.lock().unwrap_or_else(|e| e.into_inner()).get(&p).cloned();
        if let Some((at, list)) = cached
            && at.elapsed() < MODELS_TTL
        {
            return list;
        }
        let answers = self.discover(p, p.default_model()).await;
        let mut out: Vec<(String, String)> = Vec::new();
        for a in answers {
            let Ok(info) = a.info else { continue };
            let Some(caps) = info.capabilities.as_ref() else { continue };
            for (pipeline, model, _) in transport::ai::offered(caps) {
                if pipeline == p && !out.iter().any(|(m, _)| *m == model) {
                    out.push((model, a.uri.clone()));
                }
            }
        }
        out.sort();
        self.models_cache.lock().unwrap_or_else(|e| e.into_inner()).insert(p, (Instant::now(), out.clone()));
        out
    }
}

/// How long a model list is reused.
pub const MODELS_TTL: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_content_forms() {
        assert_eq!(content_text(&serde_json::json!("hi")).unwrap(), "hi");
        let parts = serde_json::json!([{"type":"text","text":"a"},{"type":"text","text":"b"}]);
        assert_eq!(content_text(&parts).unwrap(), "ab");
        let image = serde_json::json!([{"type":"image_url","image_url":{"url":"x"}}]);
        assert_eq!(content_text(&image).unwrap_err().status, 400);
    }

    #[test]
    fn completion_shape() {
        let r: LlmResponse = serde_json::from_str(
            r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"created":1,"id":"c","model":"echo","usage":{"completion_tokens":1,"prompt_tokens":1,"total_tokens":2}}"#,
        )
        .unwrap();
        let v = openai_completion(&r);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "hi");
        assert_eq!(v["usage"]["total_tokens"], 2);
    }
}
