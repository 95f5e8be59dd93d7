//! Batch AI request and response bodies (spec `ai-gateway-protocol.md` §1.6, §1.7), with
//! go-livepeer's JSON keys, and the multipart writer for gateway → orchestrator requests
//! (§3.3). Optional keys are left out when absent, as Go's `omitempty` does.
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// `POST /text-to-image` (JSON). Unknown keys are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TextToImageParams {
    /// The prompt (several separated by `|` if the model supports it). Required.
    #[serde(default)]
    pub prompt: String,
    /// Model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// LoRA weights, a JSON object as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loras: Option<String>,
    /// Output height, pixels (the gateway fills 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    /// Output width, pixels (the gateway fills 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    /// Guidance scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f64>,
    /// Negative prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Run the safety checker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_check: Option<bool>,
    /// Seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Inference steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_inference_steps: Option<i64>,
    /// Images to make (the gateway fills 1, and at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_images_per_prompt: Option<i64>,
}

/// `POST /text-to-speech` (JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TextToSpeechParams {
    /// The text to speak. Required (400 `text field is required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A description of the voice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
}

/// One chat message (`LLMMessage`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LlmMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// `POST /llm` (JSON `LLMRequest`). go-livepeer requires `model`, `messages` (non-empty),
/// `stream` and `max_tokens` to be present.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LlmRequest {
    /// The conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<LlmMessage>>,
    /// Model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Token budget, which is also what the job pays for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
}

/// One generated file (`Media`); keys in go-livepeer's order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Media {
    /// The safety checker flagged it.
    #[serde(default)]
    pub nsfw: bool,
    /// The seed used.
    #[serde(default)]
    pub seed: i64,
    /// Where to fetch it (the gateway's own URL once rewritten).
    pub url: String,
}

/// Images (or videos, for image-to-video) (`ImageResponse`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageResponse {
    /// The files.
    pub images: Vec<Media>,
}

/// A transcript chunk.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TextChunk {
    /// The text.
    pub text: String,
    /// Start and end, seconds.
    #[serde(default)]
    pub timestamp: Vec<serde_json::Value>,
}

/// audio-to-text's answer (`TextResponse`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TextResponse {
    /// The transcript.
    pub text: String,
    /// Timed chunks.
    #[serde(default)]
    pub chunks: Vec<TextChunk>,
}

/// segment-anything-2's answer (`MasksResponse`): each a JSON array serialised as a string.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MasksResponse {
    /// Masks.
    pub masks: String,
    /// Scores.
    pub scores: String,
    /// Logits.
    pub logits: String,
}

/// image-to-text's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageToTextResponse {
    /// The caption.
    pub text: String,
}

/// A URL-only media reference.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MediaUrl {
    /// Where to fetch it.
    pub url: String,
}

/// text-to-speech's answer (`AudioResponse`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AudioResponse {
    /// The audio file.
    pub audio: MediaUrl,
}

/// Token counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LlmUsage {
    /// Tokens produced.
    #[serde(default)]
    pub completion_tokens: i64,
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: i64,
    /// Their sum.
    #[serde(default)]
    pub total_tokens: i64,
}

/// One choice of an LLM answer or stream chunk (`LLMChoice`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LlmChoice {
    /// Choice index.
    #[serde(default)]
    pub index: i64,
    /// Set on the last chunk (`stop`, `length`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// The increment (streaming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<LlmMessage>,
    /// The whole message (non-streaming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<LlmMessage>,
}

/// An LLM answer, or one chunk of a streamed one (`LLMResponse`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LlmResponse {
    /// The choices.
    #[serde(default)]
    pub choices: Vec<LlmChoice>,
    /// Unix seconds.
    #[serde(default)]
    pub created: i64,
    /// Response id.
    #[serde(default)]
    pub id: String,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// Cumulative token counts.
    #[serde(default)]
    pub usage: LlmUsage,
}

impl LlmResponse {
    /// The first choice's `finish_reason`, if set and non-empty (a stream ends after it).
    pub fn finished(&self) -> Option<&str> {
        self.choices.first().and_then(|c| c.finish_reason.as_deref()).filter(|r| !r.is_empty())
    }
}

/// An error body carrying both shapes clients expect: go-livepeer's gateway's
/// `{"error":{"message":…}}` and the published gateway OpenAPI's `{"detail":{"msg":…}}`
/// (which the `livepeer-ai` SDK parses), §1.7.1.
pub fn error_body(message: &str) -> String {
    let mut s = serde_json::json!({ "error": { "message": message }, "detail": { "msg": message } }).to_string();
    s.push('\n');
    s
}

/// Writes a `multipart/form-data` body: the file part first, then text fields, as
/// go-livepeer's `New*MultipartWriter` does (§3.3). The file's bytes are copied once into
/// the body.
#[derive(Debug)]
pub struct MultipartWriter {
    boundary: String,
    buf: BytesMut,
}

impl MultipartWriter {
    /// A writer with `boundary` (30–70 characters of `[0-9a-zA-Z'()+_,-./:=?]`, not
    /// occurring in the parts).
    pub fn new(boundary: String, capacity: usize) -> Self {
        MultipartWriter { boundary, buf: BytesMut::with_capacity(capacity + 512) }
    }

    /// The `Content-Type` header value.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    fn open(&mut self, disposition: &str) {
        self.buf.put_slice(b"--");
        self.buf.put_slice(self.boundary.as_bytes());
        self.buf.put_slice(b"\r\nContent-Disposition: form-data; ");
        self.buf.put_slice(disposition.as_bytes());
        self.buf.put_slice(b"\r\n");
    }

    /// A file part (`Content-Type: application/octet-stream`).
    pub fn file(&mut self, name: &str, filename: &str, data: &[u8]) {
        self.open(&format!("name=\"{}\"; filename=\"{}\"", escape_quotes(name), escape_quotes(filename)));
        self.buf.put_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        self.buf.put_slice(data);
        self.buf.put_slice(b"\r\n");
    }

    /// A text field.
    pub fn field(&mut self, name: &str, value: &str) {
        self.open(&format!("name=\"{}\"", escape_quotes(name)));
        self.buf.put_slice(b"\r\n");
        self.buf.put_slice(value.as_bytes());
        self.buf.put_slice(b"\r\n");
    }

    /// The finished body.
    pub fn finish(mut self) -> Bytes {
        self.buf.put_slice(b"--");
        self.buf.put_slice(self.boundary.as_bytes());
        self.buf.put_slice(b"--\r\n");
        self.buf.freeze()
    }
}

/// Go's `escapeQuotes` for Content-Disposition values.
fn escape_quotes(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Splits a server-sent event stream into lines (`\n`, `\r\n`); at most 1 MiB per line.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: BytesMut,
    /// Bytes of `buf` already known to hold no newline.
    scanned: usize,
}

impl LineSplitter {
    /// Feeds bytes; returns the complete lines (lossy UTF-8, without `\r\n`), or an error
    /// when a line grows past 1 MiB.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<String>, &'static str> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n').map(|i| i + self.scanned) {
            let line = self.buf.split_to(i + 1);
            self.scanned = 0;
            let text = String::from_utf8_lossy(&line[..i]);
            out.push(text.trim_end_matches('\r').to_owned());
        }
        self.scanned = self.buf.len();
        if self.buf.len() > 1 << 20 {
            return Err("an event line longer than 1 MiB");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vector 8 replies parse, and keys come out in go-livepeer's order.
    #[test]
    fn stub_worker_replies() {
        let t2i = r#"{"images":[{"url":"data:image/png;base64,iVBORw0KGgo=","nsfw":false,"seed":111}]}"#;
        let r: ImageResponse = serde_json::from_str(t2i).unwrap();
        assert_eq!(r.images[0].seed, 111);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"images":[{"nsfw":false,"seed":111,"url":"data:image/png;base64,iVBORw0KGgo="}]}"#
        );
        let a2t: TextResponse = serde_json::from_str(r#"{"text":"Transcribed text"}"#).unwrap();
        assert_eq!(a2t.text, "Transcribed text");
        let llm = r#"{"choices":[{"index":0,"delta":{"content":"choice1","role":"assistant"}}],"created":1,"model":"llm_model","usage":{"prompt_tokens":40,"completion_tokens":10,"total_tokens":50}}"#;
        let l: LlmResponse = serde_json::from_str(llm).unwrap();
        assert_eq!(l.usage.total_tokens, 50);
        assert_eq!(l.finished(), None);
        let out = serde_json::to_string(&l).unwrap();
        assert!(!out.contains("finish_reason") && !out.contains("\"message\""), "omitempty: {out}");
        let tts: AudioResponse = serde_json::from_str(r#"{"audio":{"url":"data:audio/wav;base64,UklGRg=="}}"#).unwrap();
        assert!(tts.audio.url.starts_with("data:audio/wav"));
    }

    #[test]
    fn lines_split_across_reads() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"data: {\"a\"").unwrap(), Vec::<String>::new());
        assert_eq!(s.push(b":1}\r\n\ndata: x\n").unwrap(), vec!["data: {\"a\":1}", "", "data: x"]);
        assert!(s.push(&vec![b'x'; (1 << 20) + 1]).is_err());
    }

    #[test]
    fn error_shape() {
        assert_eq!(
            error_body("missing required fields"),
            "{\"detail\":{\"msg\":\"missing required fields\"},\"error\":{\"message\":\"missing required fields\"}}\n"
        );
    }

    #[test]
    fn unknown_keys_ignored_absent_keys_omitted() {
        let p: TextToImageParams = serde_json::from_str(r#"{"prompt":"a cat","whatever":1}"#).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"prompt":"a cat"}"#);
    }

    #[test]
    fn multipart_layout() {
        let mut w = MultipartWriter::new("b0undary".into(), 3);
        w.file("image", "cat \"1\".png", b"PNG");
        w.field("prompt", "a cat");
        assert_eq!(w.content_type(), "multipart/form-data; boundary=b0undary");
        let body = w.finish();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(
            text,
            "--b0undary\r\nContent-Disposition: form-data; name=\"image\"; filename=\"cat \\\"1\\\".png\"\r\n\
             Content-Type: application/octet-stream\r\n\r\nPNG\r\n\
             --b0undary\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na cat\r\n--b0undary--\r\n"
        );
    }
}
