//! A client's request read into the [`Job`] sent on (AI spec §1.6, §3.3, §3.4).
//!
//! Differences from go-livepeer, each deliberate:
//! * the model is always forwarded (the pipeline's default when absent), where
//!   go-livepeer selects with the default but forwards none and its orchestrator crashes;
//! * multipart fields are checked for their types (a 400 naming the field), required
//!   ones included, and an image whose header does not decode is the client's 400, not a
//!   failure that suspends an orchestrator;
//! * `/llm` needs only non-empty `messages`: `model`, `stream` and `max_tokens` default
//!   (the pipeline's default model, false, 256) instead of a 400;
//! * audio of any format ffmpeg decodes is measured, raw PCM WAV included (#3918).
use bytes::Bytes;
use http::HeaderMap;
use transport::ai::{BodyKind, Pipeline, Units};
use transport::ai_types::{LlmRequest, MultipartWriter, TextToImageParams, TextToSpeechParams};

use super::{AiError, Job};

/// `max_tokens` when the client gives none (the runner's default).
pub const DEFAULT_MAX_TOKENS: i64 = 256;

/// How a multipart text field is typed (`runner.gen.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    Int,
    Bool,
    Text,
}

fn kind(field: &str) -> Kind {
    match field {
        "strength" | "guidance_scale" | "image_guidance_scale" | "noise_aug_strength" => Kind::Float,
        "seed" | "num_images_per_prompt" | "num_inference_steps" | "height" | "width" | "fps" | "motion_bucket_id" => {
            Kind::Int
        }
        "safety_check" | "multimask_output" | "return_logits" | "normalize_coords" => Kind::Bool,
        _ => Kind::Text,
    }
}

/// A field's value as go-livepeer writes it (§3.3: floats `%f`, ints decimal, bools
/// `true`/`false`), or a 400 naming the field.
fn canonical(field: &str, value: &str) -> Result<String, AiError> {
    let v = value.trim();
    let bad = |what| AiError::bad_request(format!("{field}: {what}: {value:?}"));
    Ok(match kind(field) {
        Kind::Float => {
            format!("{:.6}", v.parse::<f64>().ok().filter(|f| f.is_finite()).ok_or_else(|| bad("not a number"))?)
        }
        Kind::Int => v.parse::<i64>().map_err(|_| bad("not an integer"))?.to_string(),
        Kind::Bool => match v.to_ascii_lowercase().as_str() {
            "true" | "1" => "true".into(),
            "false" | "0" => "false".into(),
            _ => return Err(bad("not a boolean")),
        },
        Kind::Text => value.to_owned(),
    })
}

fn json_body<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, AiError> {
    serde_json::from_slice(raw).map_err(|e| AiError::bad_request(format!("invalid JSON body: {e}")))
}

/// A JSON job whose body is `body` re-encoded.
fn json_of(pipeline: Pipeline, model: String, body: &impl serde::Serialize, units: Units, stream: bool) -> Job {
    let body = Bytes::from(serde_json::to_vec(body).expect("request types serialize"));
    Job { pipeline, model, content_type: "application/json".into(), body, units, stream }
}

fn model_or_default(p: Pipeline, m: Option<String>) -> String {
    m.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| p.default_model().to_owned())
}

/// A JSON pipeline's job (text-to-image, text-to-speech; LLM has [`llm_job`]).
pub fn json_job(p: Pipeline, raw: &[u8]) -> Result<Job, AiError> {
    match p {
        Pipeline::TextToImage => {
            let mut r: TextToImageParams = json_body(raw)?;
            if r.prompt.trim().is_empty() {
                return Err(AiError::bad_request("prompt is required"));
            }
            let model = model_or_default(p, r.model_id.take());
            r.model_id = Some(model.clone());
            let height = *r.height.get_or_insert(512);
            let width = *r.width.get_or_insert(512);
            if !(1..=16_384).contains(&height) || !(1..=16_384).contains(&width) {
                return Err(AiError::bad_request("height and width must be between 1 and 16384"));
            }
            let images = r.num_images_per_prompt.map_or(1, |n| n.max(1));
            r.num_images_per_prompt = Some(images);
            let units = Units::Images { height: height as u64, width: width as u64, images: images as u64 };
            Ok(json_of(p, model, &r, units, false))
        }
        Pipeline::TextToSpeech => {
            let mut r: TextToSpeechParams = json_body(raw)?;
            let Some(text) = r.text.as_deref().filter(|t| !t.is_empty()) else {
                return Err(AiError::bad_request("text field is required"));
            };
            let units = Units::TextBytes(text.len() as u64);
            let model = model_or_default(p, r.model_id.take());
            r.model_id = Some(model.clone());
            Ok(json_of(p, model, &r, units, false))
        }
        Pipeline::Llm => llm_job(json_body(raw)?),
        _ => Err(AiError::internal(format!("{p} is not a JSON pipeline"))),
    }
}

/// An LLM job: `messages` must be non-empty; `model`, `stream` and `max_tokens` default.
pub fn llm_job(mut r: LlmRequest) -> Result<Job, AiError> {
    if r.messages.as_ref().is_none_or(|m| m.is_empty()) {
        return Err(AiError::bad_request("missing required fields: messages"));
    }
    let model = model_or_default(Pipeline::Llm, r.model.take());
    r.model = Some(model.clone());
    let max_tokens = *r.max_tokens.get_or_insert(DEFAULT_MAX_TOKENS);
    if max_tokens < 1 {
        return Err(AiError::bad_request("max_tokens must be at least 1"));
    }
    let stream = *r.stream.get_or_insert(false);
    Ok(json_of(Pipeline::Llm, model, &r, Units::Tokens(max_tokens as u64), stream))
}

/// A multipart pipeline's job: the client's form checked and rewritten as go-livepeer
/// writes it — the file part first, then the pipeline's fields that are present, in its
/// order, with the model always named (and, for audio-to-text, `metadata` set to the
/// measured duration).
pub async fn multipart_job(p: Pipeline, headers: &HeaderMap, raw: Bytes) -> Result<Job, AiError> {
    let BodyKind::Multipart { file_field } = p.body_kind() else {
        return Err(AiError::internal(format!("{p} is not a multipart pipeline")));
    };
    let form = orchestrator::ai::read_form(headers, raw, file_field).await.map_err(AiError::bad_request)?;
    let Some((filename, data)) = form.file.clone() else {
        return Err(AiError::bad_request(format!("{file_field} is required")));
    };
    if data.is_empty() {
        return Err(AiError::bad_request(format!("{file_field} is empty")));
    }
    for f in p.required_fields() {
        if form.fields.get(*f).is_none_or(|v| v.trim().is_empty()) {
            return Err(AiError::bad_request(format!("{f} is required")));
        }
    }
    let field = |name: &str| form.fields.get(name).filter(|v| !v.is_empty());
    let int = |name: &str| -> Result<Option<i64>, AiError> {
        field(name).map(|v| canonical(name, v).map(|c| c.parse().unwrap_or(0))).transpose()
    };
    let image = || orchestrator::ai::image_size(&data).map_err(AiError::bad_request);
    let mut metadata = None;
    let units = match p {
        Pipeline::ImageToImage => {
            let (height, width) = image()?;
            Units::Images { height, width, images: int("num_images_per_prompt")?.map_or(1, |n| n.max(1)) as u64 }
        }
        Pipeline::ImageToVideo => {
            image()?;
            let (h, w) = (int("height")?.unwrap_or(576), int("width")?.unwrap_or(1024));
            if !(1..=16_384).contains(&h) || !(1..=16_384).contains(&w) {
                return Err(AiError::bad_request("height and width must be between 1 and 16384"));
            }
            Units::Video { height: h as u64, width: w as u64 }
        }
        Pipeline::AudioToText => {
            let secs = orchestrator::ai::cpu::audio_seconds(data.clone()).await.unwrap_or(0.0) as u64;
            if secs == 0 {
                return Err(AiError::bad_request("audio duration calculation failed"));
            }
            metadata = Some(serde_json::json!({ "duration": secs.to_string() }).to_string());
            Units::AudioSeconds(secs)
        }
        _ => {
            let (height, width) = image()?;
            Units::Image { height, width }
        }
    };
    let model = model_or_default(p, field("model_id").cloned());
    let boundary = format!("sluice{:032x}", u128::from_le_bytes(crate::ai::results::random_bytes()));
    let mut w = MultipartWriter::new(boundary, data.len());
    w.file(file_field, &filename, &data);
    for name in p.multipart_fields() {
        let value = match *name {
            "model_id" => Some(model.clone()),
            "metadata" if metadata.is_some() => metadata.clone(),
            n => field(n).map(|v| canonical(n, v)).transpose()?,
        };
        if let Some(v) = value {
            w.field(name, &v);
        }
    }
    let content_type = w.content_type();
    Ok(Job { pipeline: p, model, content_type, body: w.finish(), units, stream: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_to_image_defaults_and_model() {
        let j = json_job(Pipeline::TextToImage, br#"{"prompt":"a cat","extra":1}"#).unwrap();
        assert_eq!(j.model, "stabilityai/sdxl-turbo");
        let sent: serde_json::Value = serde_json::from_slice(&j.body).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"prompt":"a cat","model_id":"stabilityai/sdxl-turbo","height":512,"width":512,"num_images_per_prompt":1})
        );
        assert_eq!(j.units.count(), 512 * 512);
        let j = json_job(Pipeline::TextToImage, br#"{"prompt":"x","num_images_per_prompt":0,"width":1024}"#).unwrap();
        assert_eq!(j.units.count(), 512 * 1024);
        assert_eq!(json_job(Pipeline::TextToImage, br#"{"prompt":""}"#).unwrap_err().status, 400);
        assert_eq!(json_job(Pipeline::TextToImage, b"{").unwrap_err().status, 400);
    }

    #[test]
    fn tts_and_llm() {
        let e = json_job(Pipeline::TextToSpeech, b"{}").unwrap_err();
        assert_eq!(e.message, "text field is required");
        let j = json_job(Pipeline::TextToSpeech, r#"{"text":"héllo"}"#.as_bytes()).unwrap();
        assert_eq!(j.units, Units::TextBytes(6));
        let e = json_job(Pipeline::Llm, br#"{"messages":[]}"#).unwrap_err();
        assert_eq!((e.status.as_u16(), e.message.as_str()), (400, "missing required fields: messages"));
        let j = json_job(Pipeline::Llm, br#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(
            (j.units, j.stream, j.model.as_str()),
            (Units::Tokens(256), false, "meta-llama/llama-3.1-8B-Instruct")
        );
        let sent: serde_json::Value = serde_json::from_slice(&j.body).unwrap();
        assert_eq!(sent["max_tokens"], 256);
        assert_eq!(sent["stream"], false);
    }

    proptest::proptest! {
        /// Any body: no panic; an accepted one always names its model to the
        /// orchestrator, keeps the client's prompt, and pays for at least one unit.
        #[test]
        fn json_bodies(prompt in ".{0,40}", w in proptest::option::of(-5i64..5000), n in proptest::option::of(-3i64..9), junk in ".{0,20}") {
            let body = serde_json::json!({"prompt": prompt, "width": w, "num_images_per_prompt": n}).to_string();
            if let Ok(j) = json_job(Pipeline::TextToImage, body.as_bytes()) {
                let sent: serde_json::Value = serde_json::from_slice(&j.body).unwrap();
                proptest::prop_assert_eq!(sent["model_id"].as_str(), Some(j.model.as_str()));
                proptest::prop_assert_eq!(sent["prompt"].as_str(), Some(prompt.as_str()));
                proptest::prop_assert!(j.units.count() >= 1);
            }
            for p in [Pipeline::TextToImage, Pipeline::TextToSpeech, Pipeline::Llm] {
                let _ = json_job(p, junk.as_bytes());
            }
        }

        /// Multipart values: an accepted one is canonical (canonicalizing again changes
        /// nothing).
        #[test]
        fn canonical_is_idempotent(field in proptest::sample::select(vec!["strength", "seed", "safety_check", "prompt"]), v in ".{0,12}") {
            if let Ok(c) = canonical(field, &v) {
                proptest::prop_assert_eq!(canonical(field, &c).unwrap(), c);
            }
        }
    }

    #[test]
    fn canonical_values() {
        assert_eq!(canonical("strength", "0.8").unwrap(), "0.800000");
        assert_eq!(canonical("seed", " 42 ").unwrap(), "42");
        assert_eq!(canonical("safety_check", "False").unwrap(), "false");
        assert_eq!(canonical("prompt", " keep spaces ").unwrap(), " keep spaces ");
        let e = canonical("seed", "4.5").unwrap_err();
        assert_eq!(e.message, "seed: not an integer: \"4.5\"");
        assert!(canonical("strength", "NaN").is_err());
    }
}
