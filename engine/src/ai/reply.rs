//! An orchestrator's answer turned into the client's (AI spec §1.7, §3.5): result files
//! copied into the gateway's store and named by its own URLs, other bodies re-encoded
//! (unknown keys dropped, as go-livepeer does), LLM streams relayed chunk by chunk.
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use transport::ai::Pipeline;
use transport::ai_types::LineSplitter;
use transport::ai_types::{
    AudioResponse, ImageResponse, ImageToTextResponse, LlmResponse, MasksResponse, TextResponse,
};

use super::results::{extension, mime_of, random_bytes};
use super::{Ai, AiError, Answered, Job};

/// Largest orchestrator answer read (go-livepeer's `MaxSegSize`).
pub const MAX_REPLY: usize = 300_000_000;

/// A JSON 200.
pub fn json_response(v: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => error_response(&AiError::internal(format!("encoding the answer: {e}"))),
    }
}

/// `{"error":{"message":…}}` with the error's status.
pub fn error_response(e: &AiError) -> Response {
    (e.status, [(header::CONTENT_TYPE, "application/json")], transport::ai_types::error_body(&e.message))
        .into_response()
}

impl Ai {
    /// Reads a non-streamed answer and builds the client's reply, with result files in
    /// the store under `request`.
    pub async fn finish(&self, job: &Job, answered: Answered, request: &str) -> Result<serde_json::Value, AiError> {
        let transcoder = answered.transcoder.clone();
        let deadline = self.timeouts.deadline(job.pipeline, false);
        let left = deadline.saturating_sub(answered.started.elapsed()).max(Duration::from_secs(1));
        let body = transport::client::OrchestratorNet::read_body(answered.response.into_body(), MAX_REPLY, left)
            .await
            .map_err(|e| AiError::internal(format!("reading the orchestrator's answer: {e}")))?;
        let parse = |what| AiError::internal(format!("the orchestrator's answer is not a valid {what}"));
        let value = match job.pipeline {
            Pipeline::TextToImage | Pipeline::ImageToImage | Pipeline::Upscale | Pipeline::ImageToVideo => {
                let mut r: ImageResponse = serde_json::from_slice(&body).map_err(|_| parse("ImageResponse"))?;
                for (i, m) in r.images.iter_mut().enumerate() {
                    m.url = self.keep(request, i, &m.url, &transcoder).await?;
                }
                serde_json::to_value(r)
            }
            Pipeline::TextToSpeech => {
                let mut r: AudioResponse = serde_json::from_slice(&body).map_err(|_| parse("AudioResponse"))?;
                r.audio.url = self.keep(request, 0, &r.audio.url, &transcoder).await?;
                serde_json::to_value(r)
            }
            Pipeline::AudioToText => {
                serde_json::to_value(serde_json::from_slice::<TextResponse>(&body).map_err(|_| parse("TextResponse"))?)
            }
            Pipeline::SegmentAnything2 => serde_json::to_value(
                serde_json::from_slice::<MasksResponse>(&body).map_err(|_| parse("MasksResponse"))?,
            ),
            Pipeline::ImageToText => serde_json::to_value(
                serde_json::from_slice::<ImageToTextResponse>(&body).map_err(|_| parse("ImageToTextResponse"))?,
            ),
            Pipeline::Llm => {
                serde_json::to_value(serde_json::from_slice::<LlmResponse>(&body).map_err(|_| parse("LLMResponse"))?)
            }
        };
        value.map_err(|e| AiError::internal(e.to_string()))
    }

    /// Copies a result the orchestrator names (a `data:` URL, or a URL to download) into
    /// the store; returns the gateway's URL for it. Files are served with the type their
    /// extension says (images, audio, video; anything else as bytes), never one the
    /// orchestrator chose, and a download must be on the orchestrator's own host or a
    /// public one ([`download_allowed`]).
    async fn keep(&self, request: &str, index: usize, url: &str, transcoder: &str) -> Result<String, AiError> {
        let (name, mime, data) = if let Some(rest) = url.strip_prefix("data:") {
            let (meta, payload) =
                rest.split_once(',').ok_or_else(|| AiError::internal("the orchestrator sent a malformed data URL"))?;
            let mime = meta.strip_suffix(";base64").unwrap_or(meta);
            let data = base64::engine::general_purpose::STANDARD
                .decode(payload.trim())
                .map_err(|e| AiError::internal(format!("the orchestrator's data URL: {e}")))?;
            let hex: String = random_bytes::<4>().iter().map(|b| format!("{b:02x}")).collect();
            let name = format!("{hex}.{}", extension(mime));
            let mime = mime_of(&name).to_owned();
            (name, mime, Bytes::from(data))
        } else {
            if !download_allowed(url, transcoder) {
                return Err(AiError::internal(format!(
                    "the orchestrator named a result at {url}, neither on its own host nor a public one"
                )));
            }
            let data = self.download(url).await.map_err(AiError::internal)?;
            let base = url.split(['?', '#']).next().unwrap_or("").rsplit('/').next().unwrap_or("");
            let safe = !base.is_empty()
                && base.len() <= 100
                && base.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && !base.starts_with('.');
            let name = if safe { base.to_owned() } else { format!("{index}.bin") };
            let mime = mime_of(&name).to_owned();
            (name, mime, data)
        };
        Ok(self.results.put(request, &name, &mime, data))
    }
}

/// Whether a result URL may be downloaded: `http(s)` on the orchestrator's own host, or
/// `https` on a host that is a name or a public address (an object store). A loopback,
/// private or link-local address other than the orchestrator's is refused, so an
/// orchestrator cannot make the gateway fetch its internal services. (A name resolving
/// to such an address is not caught here.)
pub fn download_allowed(url: &str, transcoder: &str) -> bool {
    let (Ok(u), Ok(t)) = (url.parse::<http::Uri>(), transcoder.parse::<http::Uri>()) else { return false };
    let scheme = u.scheme_str().unwrap_or("");
    if !matches!(scheme, "http" | "https") {
        return false;
    }
    let Some(host) = u.host() else { return false };
    if Some(host) == t.host() {
        return true;
    }
    if scheme != "https" {
        return false;
    }
    match host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => {
            !(a.is_loopback() || a.is_private() || a.is_link_local() || a.is_unspecified() || a.is_broadcast())
        }
        Ok(std::net::IpAddr::V6(a)) => {
            !(a.is_loopback()
                || a.is_unspecified()
                || (a.segments()[0] & 0xfe00) == 0xfc00
                || (a.segments()[0] & 0xffc0) == 0xfe80)
        }
        Err(_) => host != "localhost",
    }
}

/// How streamed LLM chunks are written to the client.
#[derive(Debug, Clone)]
pub enum Flavor {
    /// go-livepeer's `/llm`: `data: <LLMResponse>\n\n`, no `[DONE]`.
    Livepeer,
    /// OpenAI's `chat.completion.chunk` objects, then `data: [DONE]`.
    OpenAi,
}

/// An OpenAI `chat.completion.chunk` for one Livepeer chunk.
pub fn openai_chunk(c: &LlmResponse) -> serde_json::Value {
    let choices: Vec<serde_json::Value> = c
        .choices
        .iter()
        .map(|ch| {
            serde_json::json!({
                "index": ch.index,
                "delta": ch.delta.as_ref().map_or(serde_json::json!({}), |d| serde_json::json!({"role": d.role, "content": d.content})),
                "finish_reason": ch.finish_reason.as_deref().filter(|r| !r.is_empty()),
            })
        })
        .collect();
    let mut v = serde_json::json!({
        "id": c.id, "object": "chat.completion.chunk", "created": c.created, "model": c.model, "choices": choices,
    });
    if c.finished().is_some() {
        v["usage"] = serde_json::to_value(&c.usage).unwrap_or_default();
    }
    v
}

/// The end of a relayed stream.
#[derive(Debug, Clone, Default)]
pub struct StreamEnd {
    /// The last chunk's usage (tokens), if any came.
    pub usage: Option<transport::ai_types::LlmUsage>,
    /// The stream ended with a `finish_reason`.
    pub finished: bool,
    /// Why it ended early, if it did.
    pub error: Option<String>,
}

/// Relays an orchestrator's LLM event stream to `tx` in `flavor`: `data:` lines parsed
/// as `LLMResponse` (others, and `[DONE]`, skipped), stopping after the chunk with a
/// `finish_reason`, at the end of the body, or after `idle` without data (spec §1.7.4,
/// §3.6).
pub async fn relay_llm(
    body: hyper::body::Incoming,
    flavor: Flavor,
    idle: Duration,
    tx: mpsc::Sender<Bytes>,
) -> StreamEnd {
    let mut body = body;
    let mut lines = LineSplitter::default();
    let mut end = StreamEnd::default();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                end.error = Some(format!("no token for {} s", idle.as_secs_f64()));
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                end.error = Some(format!("stream broke: {e}"));
                break;
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else { continue };
        let got = match lines.push(&data) {
            Ok(l) => l,
            Err(e) => {
                end.error = Some(e.into());
                break;
            }
        };
        for line in got {
            let Some(json) = line.strip_prefix("data:").map(str::trim_start) else { continue };
            let Ok(chunk) = serde_json::from_str::<LlmResponse>(json) else {
                if json != "[DONE]" {
                    tracing::debug!(line = %json, "unparsable LLM chunk skipped");
                }
                continue;
            };
            if chunk.choices.is_empty() {
                continue;
            }
            let out = match flavor {
                Flavor::Livepeer => serde_json::to_string(&chunk),
                Flavor::OpenAi => serde_json::to_string(&openai_chunk(&chunk)),
            }
            .unwrap_or_default();
            end.usage = Some(chunk.usage.clone());
            if tx.send(Bytes::from(format!("data: {out}\n\n"))).await.is_err() {
                end.error = Some("client went away".into());
                return end;
            }
            if chunk.finished().is_some() {
                end.finished = true;
                if matches!(flavor, Flavor::OpenAi) {
                    let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
                }
                return end;
            }
        }
    }
    end
}

/// A response body fed from a channel (a relayed stream).
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// A `text/event-stream` response over `rx`.
pub fn sse_response(rx: mpsc::Receiver<Bytes>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONNECTION, "keep-alive"),
        ],
        Body::new(ChannelBody(rx)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_stay_off_internal_hosts() {
        let o = "https://10.0.0.5:8935";
        assert!(download_allowed("https://10.0.0.5:8935/stream/x/0.png", o), "the orchestrator itself");
        assert!(download_allowed("http://10.0.0.5:9000/x.png", o), "its host, another port");
        assert!(download_allowed("https://storage.example.com/b/x.png", o), "an object store");
        assert!(download_allowed("https://8.8.8.8/x.png", o));
        for bad in [
            "http://storage.example.com/x.png",
            "https://127.0.0.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://192.168.1.1/x",
            "https://[::1]/x",
            "https://localhost/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(!download_allowed(bad, o), "{bad}");
        }
    }

    #[test]
    fn openai_chunks() {
        let c: LlmResponse = serde_json::from_str(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"created":5,"id":"x","model":"echo","usage":{"completion_tokens":1,"prompt_tokens":2,"total_tokens":3}}"#,
        )
        .unwrap();
        let v = openai_chunk(&c);
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["choices"][0]["delta"]["content"], "hi");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 3);
    }
}
