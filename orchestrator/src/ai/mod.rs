//! Batch AI jobs on the orchestrator (AI gateway spec §4): `POST /<pipeline>` for every
//! pipeline, checked in go-livepeer's order (§4.3) — body (400), `Livepeer-Payment`
//! (402), `Livepeer-Segment` credentials (403), the pipeline's own parse (400), capacity
//! (503 `insufficient capacity`, before any payment is taken), payment (400), the job
//! (500 with the runner's text) — then the units debited and the result answered.
//!
//! A model runs on the CPU stand-ins of [`cpu`] and [`llm`], or on an external runner
//! (`runner_url`, ai-runner's API: the same path and body) for anyone with a GPU.
//! Results are kept for [`RESULT_TTL`] under `GET /stream/{request}/{file}`; with the
//! gateway's `Authorization: Livepeer-AI-Worker-1.0` the reply names them by URL,
//! without it images come inline as `data:` URLs (§3.5).
pub mod cpu;
pub mod llm;
mod runner;

pub(crate) use runner::GuardedBody;
use runner::forward;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use tracing::Instrument;
use transport::ai::{Pipeline, Units};
use transport::ai_types::{
    AudioResponse, ImageResponse, ImageToTextResponse, LlmRequest, Media, MediaUrl, TextToImageParams,
    TextToSpeechParams,
};
use transport::proto::capabilities::{Constraints, capability_constraints::ModelConstraint};
use transport::proto::{Capabilities, PriceInfo};
use transport::segment::{PAYMENT_HEADER, SEGMENT_HEADER};

use crate::service::{Shared, random, unix_now};

/// A 1×1 PNG (the spec's stub worker image, test vector 8): what text-to-image answers in
/// instant mode.
pub const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x01, 0x03, 0x00, 0x00, 0x00, 0x25, 0xdb, 0x56, 0xca, 0x00, 0x00, 0x00, 0x03, 0x50,
    0x4c, 0x54, 0x45, 0x00, 0x00, 0x00, 0xa7, 0x7a, 0x3d, 0xda, 0x00, 0x00, 0x00, 0x01, 0x74, 0x52, 0x4e, 0x53, 0x00,
    0x40, 0xe6, 0xd8, 0x66, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x08, 0xd7, 0x63, 0x60, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x01, 0xe2, 0x21, 0xbc, 0x33, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// How long results stay fetchable (`aiWorkerResultsTimeout`).
pub const RESULT_TTL: Duration = Duration::from_secs(600);
/// Largest request body.
pub const MAX_BODY: usize = 100 << 20;

/// One model this orchestrator serves.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct AiModel {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model id it is offered under.
    pub model_id: String,
    /// Advertised as loaded.
    #[serde(default = "yes")]
    pub warm: bool,
    /// Jobs at once before `insufficient capacity`.
    #[serde(default = "one")]
    pub capacity: u32,
    /// An ai-runner to forward jobs to; the CPU stand-in when absent.
    #[serde(default)]
    pub url: Option<String>,
    /// Sent as `Authorization: Bearer` to the runner.
    #[serde(default)]
    pub token: Option<String>,
    /// Price per unit, wei (paid mode).
    #[serde(default)]
    pub price_per_unit: i64,
    /// Units per price (paid mode).
    #[serde(default = "one_i64")]
    pub pixels_per_unit: i64,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn one_i64() -> i64 {
    1
}

impl AiModel {
    /// Every pipeline's default model (§1.5) on the CPU stand-ins, warm, with `capacity`
    /// jobs each; LLM also as `echo`.
    pub fn cpu_defaults(capacity: u32) -> Vec<AiModel> {
        let mut out: Vec<AiModel> = Pipeline::ALL
            .into_iter()
            .map(|p| AiModel {
                pipeline: p,
                model_id: p.default_model().to_owned(),
                warm: true,
                capacity,
                url: None,
                token: None,
                price_per_unit: 0,
                pixels_per_unit: 1,
            })
            .collect();
        out.push(AiModel { model_id: "echo".into(), ..out[Pipeline::ALL.len() - 3].clone() });
        out
    }
}

/// A stored result file.
#[derive(Debug, Clone)]
struct Stored {
    name: String,
    content_type: &'static str,
    data: Bytes,
}

/// The AI side of a running orchestrator: its models, their running jobs and the results.
pub(crate) struct AiJobs {
    models: Vec<AiModel>,
    /// Text-to-image answers [`TINY_PNG`] at once (load tests of gateways).
    instant: bool,
    running: Mutex<HashMap<(Pipeline, String), u32>>,
    results: Mutex<HashMap<String, (Instant, Vec<Stored>)>>,
    net: transport::client::OrchestratorNet,
}

/// A held capacity slot, given back when dropped.
struct Slot<'a>(&'a AiJobs, (Pipeline, String));

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.0.lock_running().get_mut(&self.1) {
            *n = n.saturating_sub(1);
        }
    }
}

impl AiJobs {
    pub(crate) fn new(models: Vec<AiModel>, instant: bool) -> Self {
        AiJobs {
            models,
            instant,
            running: Mutex::default(),
            results: Mutex::default(),
            net: transport::client::OrchestratorNet::new(transport::tls::CertPolicy::AcceptAny),
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<(Pipeline, String), u32>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_results(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Vec<Stored>)>> {
        self.results.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    fn model(&self, p: Pipeline, model: &str) -> Option<&AiModel> {
        self.models.iter().find(|m| m.pipeline == p && m.model_id == model)
    }

    /// Adds the AI capabilities to `caps` (§4.2): go-livepeer's default capability bits,
    /// each pipeline's bit and capacity, and its models with warmth and capacity.
    pub(crate) fn add_capabilities(&self, caps: &mut Capabilities) {
        if self.models.is_empty() {
            return;
        }
        let mut set = transport::capabilities::CapabilitySet::default();
        for (i, w) in caps.bitstring.iter().enumerate() {
            for b in 0..64 {
                if w & (1 << b) != 0 {
                    set.insert(i as u32 * 64 + b);
                }
            }
        }
        for c in transport::ai::DEFAULT_CAPABILITIES {
            set.insert(c);
        }
        let constraints = caps.constraints.get_or_insert_with(Constraints::default);
        for m in &self.models {
            let cap = m.pipeline.capability();
            set.insert(cap);
            *caps.capacities.entry(cap).or_default() += m.capacity;
            constraints.per_capability.entry(cap).or_default().models.insert(
                m.model_id.clone(),
                ModelConstraint { warm: m.warm, capacity: m.capacity, ..Default::default() },
            );
        }
        caps.bitstring = set.words().to_vec();
    }

    /// The price to quote a gateway asking for `job` (§4.2 `PriceInfoForCaps`): the sum of
    /// the prices of the AI models it names, if it names any.
    pub(crate) fn price_for(&self, job: &Capabilities) -> Option<PriceInfo> {
        let per_cap = &job.constraints.as_ref()?.per_capability;
        let mut total = num_rational::BigRational::from_integer(0.into());
        let mut any = false;
        for (cap, c) in per_cap {
            let Some(p) = Pipeline::from_capability(*cap) else { continue };
            for model in c.models.keys() {
                if let Some(m) = self.model(p, model) {
                    any = true;
                    total += num_rational::BigRational::new(m.price_per_unit.into(), m.pixels_per_unit.max(1).into());
                }
            }
        }
        use num_traits::ToPrimitive;
        any.then(|| PriceInfo {
            price_per_unit: total.numer().to_i64().unwrap_or(i64::MAX),
            pixels_per_unit: total.denom().to_i64().unwrap_or(1),
            ..Default::default()
        })
    }

    fn reserve(&self, p: Pipeline, model: &str) -> Option<Slot<'_>> {
        let capacity = self.model(p, model)?.capacity;
        let mut running = self.lock_running();
        let n = running.entry((p, model.to_owned())).or_default();
        if *n >= capacity {
            return None;
        }
        *n += 1;
        Some(Slot(self, (p, model.to_owned())))
    }

    fn store(&self, request: &str, files: Vec<Stored>) {
        self.lock_results().insert(request.to_owned(), (Instant::now(), files));
    }

    /// Drops results older than [`RESULT_TTL`].
    pub(crate) fn expire(&self, now: Instant) {
        self.lock_results().retain(|_, (t, _)| now.saturating_duration_since(*t) < RESULT_TTL);
    }
}

/// A refusal: status and the plain-text body go-livepeer's `http.Error` sends.
fn refuse(status: StatusCode, text: impl Into<String>) -> Response {
    let mut text = text.into();
    tracing::info!(status = status.as_u16(), reason = %text, "AI request refused");
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// A decoded multipart body: the file part and the text fields.
#[derive(Debug, Default)]
pub struct Form {
    /// The file part: its file name and bytes.
    pub file: Option<(String, Bytes)>,
    /// The text fields by name.
    pub fields: HashMap<String, String>,
}

impl Form {
    fn get(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
    fn number<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, String> {
        self.get(k).map(|v| v.trim().parse().map_err(|_| format!("{k}: not a number: {v:?}"))).transpose()
    }
}

/// Reads a multipart body (`file_field` is the file part's name). Errors are the
/// multipart parser's text (a 400).
pub async fn read_form(headers: &HeaderMap, raw: Bytes, file_field: &str) -> Result<Form, String> {
    let mut req = Request::new(Body::from(raw));
    *req.headers_mut() = headers.clone();
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| e.body_text())?;
    let mut form = Form::default();
    while let Some(field) = mp.next_field().await.map_err(|e| e.body_text())? {
        let name = field.name().unwrap_or("").to_owned();
        if name == file_field {
            let filename = field.file_name().unwrap_or("file").to_owned();
            let data = field.bytes().await.map_err(|e| e.body_text())?;
            form.file = Some((filename, data));
        } else {
            let text = field.text().await.map_err(|e| e.body_text())?;
            form.fields.insert(name, text);
        }
    }
    Ok(form)
}

/// What a decoded request asks for.
enum Input {
    TextToImage(TextToImageParams),
    TextToSpeech(TextToSpeechParams),
    Llm(LlmRequest),
    Form(Form),
}

/// `POST /<pipeline>`.
pub(crate) async fn handle(pipeline: Pipeline, State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let raw = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    // 1. The body.
    let input = match pipeline.body_kind() {
        transport::ai::BodyKind::Json => {
            let r = match pipeline {
                Pipeline::TextToImage => serde_json::from_slice(&raw).map(Input::TextToImage),
                Pipeline::TextToSpeech => serde_json::from_slice(&raw).map(Input::TextToSpeech),
                _ => serde_json::from_slice(&raw).map(Input::Llm),
            };
            match r {
                Ok(i) => i,
                Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        transport::ai::BodyKind::Multipart { file_field } => {
            match read_form(&parts.headers, raw.clone(), file_field).await {
                Ok(f) if f.file.is_some() => Input::Form(f),
                Ok(_) => return refuse(StatusCode::BAD_REQUEST, format!("missing file part {file_field:?}")),
                Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
            }
        }
    };
    // 2–3. Payment header and credentials.
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let admitted = {
        let gate = s.gate.lock().expect("gate lock");
        gate.verify(&header(SEGMENT_HEADER), &header(PAYMENT_HEADER), unix_now())
    };
    let admitted = match admitted {
        Ok(a) => a,
        Err(r) => return refuse(StatusCode::from_u16(r.status()).unwrap_or(StatusCode::FORBIDDEN), r.to_string()),
    };
    // 4. The pipeline's own parse: model and units.
    let model = match &input {
        Input::TextToImage(p) => p.model_id.clone(),
        Input::TextToSpeech(p) => p.model_id.clone(),
        Input::Llm(r) => r.model.clone(),
        Input::Form(f) => f.get("model_id").map(str::to_owned),
    }
    .filter(|m| !m.is_empty())
    .unwrap_or_else(|| pipeline.default_model().to_owned());
    let units = match units(pipeline, &input).await {
        Ok(u) => u,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    // 5. Capacity, before any payment is taken.
    let Some(slot) = s.ai.reserve(pipeline, &model) else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "insufficient capacity");
    };
    // 6. Payment.
    let paid = {
        let block = s.latest_block();
        s.gate.lock().expect("gate lock").pay(&admitted, block)
    };
    if let Err(r) = paid {
        return refuse(StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST), r.to_string());
    }
    let request_id = hex8();
    let span = tracing::info_span!("ai", %pipeline, %model, request = %request_id);
    let by_url = header("authorization") == transport::ai::AUTHORIZATION;
    let started = Instant::now();
    let spec = s.ai.model(pipeline, &model).cloned();
    // 7. The job (a streamed reply from a runner keeps the capacity slot until it ends).
    let outcome = match spec.as_ref().and_then(|m| m.url.clone()) {
        Some(url) => {
            let token = spec.as_ref().and_then(|m| m.token.as_deref());
            forward(&s, pipeline, &url, token, &parts.headers, raw, slot).instrument(span.clone()).await
        }
        None => run_cpu(&s, pipeline, input, &model, &request_id, by_url).instrument(span.clone()).await,
    };
    let _enter = span.enter();
    match outcome {
        Ok(resp) => {
            if s.paid() {
                let price = admitted.payment.expected_price.clone().unwrap_or_default();
                if let Some(r) = s.gate.lock().expect("gate lock").recipient.as_mut() {
                    r.debit(admitted.sender, &admitted.session_id, units.count(), &price);
                }
            }
            tracing::info!(units = units.count(), ms = started.elapsed().as_millis() as u64, "AI job done");
            s.stats.lock().expect("stats lock").ai_jobs += 1;
            resp
        }
        Err(e) => {
            tracing::warn!(error = %e, "AI job failed");
            s.stats.lock().expect("stats lock").ai_failed += 1;
            refuse(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
    }
}

fn hex8() -> String {
    random::<4>().iter().map(|b| format!("{b:02x}")).collect()
}

/// Height and width of an image from its header (PNG, JPEG, GIF, WebP).
pub fn image_size(data: &[u8]) -> Result<(u64, u64), String> {
    let s = imagesize::blob_size(data).map_err(|e| format!("image: {e}"))?;
    Ok((s.height as u64, s.width as u64))
}

/// The units a job is debited (§3.4), computed as go-livepeer's orchestrator does, except
/// text-to-speech: bytes of text, what the gateway budgets (go-livepeer debits 1000 ×
/// characters, a mismatch its spec marks).
async fn units(pipeline: Pipeline, input: &Input) -> Result<Units, String> {
    let image = |f: &Form| f.file.as_ref().map(|(_, d)| image_size(d)).unwrap_or(Err("missing image".into()));
    Ok(match (pipeline, input) {
        (_, Input::TextToImage(p)) => Units::Images {
            height: p.height.unwrap_or(512).max(1) as u64,
            width: p.width.unwrap_or(512).max(1) as u64,
            images: p.num_images_per_prompt.unwrap_or(1).max(1) as u64,
        },
        (_, Input::TextToSpeech(p)) => {
            Units::TextBytes(p.text.as_deref().ok_or("text field is required")?.len() as u64)
        }
        (_, Input::Llm(r)) => Units::Tokens(r.max_tokens.ok_or("MaxTokens not specified")?.max(0) as u64),
        (Pipeline::ImageToImage, Input::Form(f)) => {
            let (height, width) = image(f)?;
            Units::Images { height, width, images: f.number::<u64>("num_images_per_prompt")?.unwrap_or(1) }
        }
        (Pipeline::ImageToVideo, Input::Form(f)) => {
            image(f)?;
            Units::Video { height: f.number("height")?.unwrap_or(576), width: f.number("width")?.unwrap_or(1024) }
        }
        (Pipeline::AudioToText, Input::Form(f)) => {
            let audio = f.file.as_ref().map(|(_, d)| d.clone()).unwrap_or_default();
            let secs = cpu::audio_seconds(audio).await.map_err(|_| "Unable to calculate duration".to_owned())?;
            if secs <= 0.0 {
                return Err("Unable to calculate duration".into());
            }
            Units::AudioSeconds(secs as u64)
        }
        (_, Input::Form(f)) => {
            let (height, width) = image(f)?;
            Units::Image { height, width }
        }
    })
}

fn json(v: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the result: {e}")),
    }
}

/// Runs a job on the CPU stand-ins and stores its files.
async fn run_cpu(
    s: &Arc<Shared>,
    pipeline: Pipeline,
    input: Input,
    model: &str,
    request: &str,
    by_url: bool,
) -> Result<Response, String> {
    let url = |name: &str| format!("{}/stream/{request}/{name}", s.service_uri());
    let store = |files: Vec<Stored>| s.ai.store(request, files);
    let images = |list: Vec<(Bytes, i64)>| -> Response {
        let mut media = Vec::new();
        let mut files = Vec::new();
        for (i, (png, seed)) in list.into_iter().enumerate() {
            let name = format!("{i}.png");
            let u = if by_url { url(&name) } else { format!("data:image/png;base64,{}", STANDARD.encode(&png)) };
            media.push(Media { nsfw: false, seed, url: u });
            files.push(Stored { name, content_type: "image/png", data: png });
        }
        store(files);
        json(&ImageResponse { images: media })
    };
    let form = |i: Input| match i {
        Input::Form(f) => f,
        _ => Form::default(),
    };
    Ok(match pipeline {
        Pipeline::TextToImage => {
            let Input::TextToImage(p) = input else { return Err("bad input".into()) };
            let (w, h) =
                (p.width.unwrap_or(512).clamp(16, 2048) as u32, p.height.unwrap_or(512).clamp(16, 2048) as u32);
            let seed = p.seed.unwrap_or_else(|| cpu::seed_of(&p.prompt));
            if s.ai.instant {
                return Ok(images(vec![(Bytes::from_static(TINY_PNG), seed)]));
            }
            let mut out = Vec::new();
            for i in 0..p.num_images_per_prompt.unwrap_or(1).clamp(1, 8) {
                let png = cpu::text_to_image(&p.prompt, w, h, seed.wrapping_add(i)).await.map_err(|e| e.0)?;
                out.push((png, seed.wrapping_add(i)));
            }
            images(out)
        }
        Pipeline::ImageToImage => {
            let f = form(input);
            let (_, img) = f.file.clone().unwrap_or_default();
            let strength = f.number::<f64>("strength")?.unwrap_or(0.8);
            let seed = f.number::<i64>("seed")?.unwrap_or_else(|| cpu::seed_of(f.get("prompt").unwrap_or("")));
            let mut out = Vec::new();
            for i in 0..f.number::<u32>("num_images_per_prompt")?.unwrap_or(1).clamp(1, 8) {
                out.push((
                    cpu::image_to_image(img.clone(), strength, i).await.map_err(|e| e.0)?,
                    seed.wrapping_add(i as i64),
                ));
            }
            images(out)
        }
        Pipeline::Upscale => {
            let f = form(input);
            let (_, img) = f.file.clone().unwrap_or_default();
            let (h, w) = image_size(&img)?;
            let seed = f.number::<i64>("seed")?.unwrap_or_else(|| cpu::seed_of(f.get("prompt").unwrap_or("")));
            images(vec![(cpu::upscale(img, w, h).await.map_err(|e| e.0)?, seed)])
        }
        Pipeline::ImageToVideo => {
            let f = form(input);
            let (_, img) = f.file.clone().unwrap_or_default();
            let (w, h, fps) = (
                f.number("width")?.unwrap_or(1024u32),
                f.number("height")?.unwrap_or(576u32),
                f.number("fps")?.unwrap_or(6u32),
            );
            let mp4 = cpu::image_to_video(img, w.min(2048), h.min(2048), fps).await.map_err(|e| e.0)?;
            let seed = f.number::<i64>("seed")?.unwrap_or(0);
            store(vec![Stored { name: "0.mp4".into(), content_type: "video/mp4", data: mp4 }]);
            json(&ImageResponse { images: vec![Media { nsfw: false, seed, url: url("0.mp4") }] })
        }
        Pipeline::AudioToText => {
            let f = form(input);
            let (_, audio) = f.file.clone().unwrap_or_default();
            let secs = cpu::audio_seconds(audio).await.map_err(|e| e.0)?;
            json(&cpu::transcript(secs))
        }
        Pipeline::SegmentAnything2 => {
            let f = form(input);
            let (_, img) = f.file.clone().unwrap_or_default();
            let (h, w) = image_size(&img)?;
            let boxed = f.get("box").and_then(|b| serde_json::from_str::<[f64; 4]>(b).ok());
            let point = f
                .get("point_coords")
                .and_then(|p| serde_json::from_str::<Vec<[f64; 2]>>(p).ok())
                .and_then(|v| v.first().copied());
            json(&cpu::masks(w, h, boxed, point))
        }
        Pipeline::ImageToText => {
            let f = form(input);
            let (_, img) = f.file.clone().unwrap_or_default();
            let (h, w) = image_size(&img)?;
            let text = cpu::caption(img, w, h, f.get("prompt").unwrap_or("")).await.map_err(|e| e.0)?;
            json(&ImageToTextResponse { text })
        }
        Pipeline::TextToSpeech => {
            let Input::TextToSpeech(p) = input else { return Err("bad input".into()) };
            let wav = cpu::speech(p.text.as_deref().unwrap_or("")).await.map_err(|e| e.0)?;
            store(vec![Stored { name: "0.wav".into(), content_type: "audio/wav", data: wav }]);
            json(&AudioResponse { audio: MediaUrl { url: url("0.wav") } })
        }
        Pipeline::Llm => {
            let Input::Llm(r) = input else { return Err("bad input".into()) };
            let id = format!("chatcmpl-{request}");
            let created = unix_now();
            let _ = model;
            if r.stream == Some(true) {
                let mut sse = String::new();
                for c in llm::chunks(&r, &id, created) {
                    sse.push_str("data: ");
                    sse.push_str(&serde_json::to_string(&c).unwrap_or_default());
                    sse.push_str("\n\n");
                }
                ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], sse)
                    .into_response()
            } else {
                json(&llm::complete(&r, &id, created))
            }
        }
    })
}

/// `GET /stream/{request}/{file}`: a stored result.
pub(crate) async fn result_file(
    State(s): State<Arc<Shared>>,
    Path((request, file)): Path<(String, String)>,
) -> Response {
    let found = s.ai.lock_results().get(&request).and_then(|(_, files)| files.iter().find(|f| f.name == file).cloned());
    match found {
        Some(f) => ([(header::CONTENT_TYPE, f.content_type)], f.data).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
