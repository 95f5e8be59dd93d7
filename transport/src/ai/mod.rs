//! Batch AI wire contract (spec `ai-gateway-protocol.md`): the pipelines and their
//! capability numbers and default models (§1.5), the job capabilities a gateway asks for
//! (§2.2), what orchestrators offer (§2.4), price ceilings in go-livepeer's
//! `-maxPricePerCapability` format (§2.6), how an orchestrator's refusal is read (§2.7),
//! the units each pipeline pays for (§3.4) and the `Livepeer-Segment` credentials of a job
//! (§3.2). Request and response bodies are in [`crate::ai_types`].
use num_bigint::BigInt;
use num_rational::BigRational;

use crate::capabilities::CapabilitySet;
use crate::credentials::{flatten_segment, keccak256};
use crate::identity::EthSigner;
use crate::proto::capabilities::{CapabilityConstraints, Constraints, capability_constraints::ModelConstraint};
use crate::proto::{AuthToken, Capabilities, SegData};
use crate::segment::LEGACY_PROFILES_FIELD;

mod price;
pub use price::{DEFAULT_MODEL_KEY, MaxPrices, PriceListError, parse_ai_models};

/// `Authorization` value on gateway → orchestrator AI requests (§3.2).
pub const AUTHORIZATION: &str = "Livepeer-AI-Worker-1.0";

/// go-livepeer's `core.DefaultCapabilities()`: ids 0–12, 14 and 26, which every AI job's
/// bitstring carries besides its own capability (§2.2).
pub const DEFAULT_CAPABILITIES: [u32; 15] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 26];

/// The batch AI pipelines (§1.2). The name is the route and the orchestrator path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pipeline {
    /// `POST /text-to-image`, JSON.
    TextToImage,
    /// `POST /image-to-image`, multipart.
    ImageToImage,
    /// `POST /image-to-video`, multipart.
    ImageToVideo,
    /// `POST /upscale`, multipart.
    Upscale,
    /// `POST /audio-to-text`, multipart.
    AudioToText,
    /// `POST /segment-anything-2`, multipart.
    #[serde(rename = "segment-anything-2")]
    SegmentAnything2,
    /// `POST /llm`, JSON, optionally streamed as server-sent events.
    Llm,
    /// `POST /image-to-text`, multipart.
    ImageToText,
    /// `POST /text-to-speech`, JSON.
    TextToSpeech,
}

/// How a pipeline's request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json`.
    Json,
    /// `multipart/form-data` with one file part named `file_field`.
    Multipart {
        /// `image` or `audio`.
        file_field: &'static str,
    },
}

impl Pipeline {
    /// Every batch pipeline, in capability order.
    pub const ALL: [Pipeline; 9] = [
        Pipeline::TextToImage,
        Pipeline::ImageToImage,
        Pipeline::ImageToVideo,
        Pipeline::Upscale,
        Pipeline::AudioToText,
        Pipeline::SegmentAnything2,
        Pipeline::Llm,
        Pipeline::ImageToText,
        Pipeline::TextToSpeech,
    ];

    /// The route name (`text-to-image`), also the orchestrator's path.
    pub fn name(self) -> &'static str {
        match self {
            Pipeline::TextToImage => "text-to-image",
            Pipeline::ImageToImage => "image-to-image",
            Pipeline::ImageToVideo => "image-to-video",
            Pipeline::Upscale => "upscale",
            Pipeline::AudioToText => "audio-to-text",
            Pipeline::SegmentAnything2 => "segment-anything-2",
            Pipeline::Llm => "llm",
            Pipeline::ImageToText => "image-to-text",
            Pipeline::TextToSpeech => "text-to-speech",
        }
    }

    /// The capability number (`core/capabilities.go`, §1.5).
    pub fn capability(self) -> u32 {
        match self {
            Pipeline::TextToImage => 27,
            Pipeline::ImageToImage => 28,
            Pipeline::ImageToVideo => 29,
            Pipeline::Upscale => 30,
            Pipeline::AudioToText => 31,
            Pipeline::SegmentAnything2 => 32,
            Pipeline::Llm => 33,
            Pipeline::ImageToText => 34,
            Pipeline::TextToSpeech => 36,
        }
    }

    /// The model go-livepeer selects with when the request names none (§1.5). Sluice
    /// also forwards it, so the orchestrator never sees a job without a model.
    pub fn default_model(self) -> &'static str {
        match self {
            Pipeline::TextToImage | Pipeline::ImageToImage => "stabilityai/sdxl-turbo",
            Pipeline::ImageToVideo => "stabilityai/stable-video-diffusion-img2vid-xt",
            Pipeline::Upscale => "stabilityai/stable-diffusion-x4-upscaler",
            Pipeline::AudioToText => "openai/whisper-large-v3",
            Pipeline::SegmentAnything2 => "facebook/sam2-hiera-large",
            Pipeline::Llm => "meta-llama/llama-3.1-8B-Instruct",
            Pipeline::ImageToText => "Salesforce/blip-image-captioning-large",
            Pipeline::TextToSpeech => "parler-tts/parler-tts-large-v1",
        }
    }

    /// How the request body is encoded.
    pub fn body_kind(self) -> BodyKind {
        match self {
            Pipeline::TextToImage | Pipeline::Llm | Pipeline::TextToSpeech => BodyKind::Json,
            Pipeline::AudioToText => BodyKind::Multipart { file_field: "audio" },
            _ => BodyKind::Multipart { file_field: "image" },
        }
    }

    /// The text fields of a multipart pipeline in the order go-livepeer writes them after
    /// the file part (§3.3); empty for JSON pipelines.
    pub fn multipart_fields(self) -> &'static [&'static str] {
        match self {
            Pipeline::ImageToImage => &[
                "prompt",
                "model_id",
                "loras",
                "strength",
                "guidance_scale",
                "image_guidance_scale",
                "negative_prompt",
                "safety_check",
                "seed",
                "num_images_per_prompt",
                "num_inference_steps",
            ],
            Pipeline::ImageToVideo => &[
                "model_id",
                "height",
                "width",
                "fps",
                "motion_bucket_id",
                "noise_aug_strength",
                "seed",
                "safety_check",
                "num_inference_steps",
            ],
            Pipeline::Upscale => &["prompt", "model_id", "safety_check", "seed", "num_inference_steps"],
            Pipeline::AudioToText => &["model_id", "return_timestamps", "metadata"],
            Pipeline::SegmentAnything2 => &[
                "model_id",
                "point_coords",
                "point_labels",
                "box",
                "mask_input",
                "multimask_output",
                "return_logits",
                "normalize_coords",
            ],
            Pipeline::ImageToText => &["prompt", "model_id"],
            _ => &[],
        }
    }

    /// The multipart text fields the pipeline requires besides its file (§1.6).
    pub fn required_fields(self) -> &'static [&'static str] {
        match self {
            Pipeline::ImageToImage | Pipeline::Upscale => &["prompt"],
            _ => &[],
        }
    }

    /// The pipeline named `name`: the route name, or go-livepeer's capability name
    /// (`Text to image`, `Llm`), case-insensitively (`core.PipelineToCapability`).
    pub fn from_name(name: &str) -> Option<Pipeline> {
        let norm = name.trim().to_ascii_lowercase().replace(' ', "-");
        Pipeline::ALL.into_iter().find(|p| p.name() == norm)
    }

    /// The pipeline with capability number `cap`.
    pub fn from_capability(cap: u32) -> Option<Pipeline> {
        Pipeline::ALL.into_iter().find(|p| p.capability() == cap)
    }
}

impl std::fmt::Display for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The selector key and dummy manifest id of a job: `"<capability>_<model>"` (§2.1, §3.2).
pub fn manifest_id(pipeline: Pipeline, model: &str) -> String {
    format!("{}_{model}", pipeline.capability())
}

/// The capabilities a job of `pipeline` with `model` asks for (§2.2): the default
/// capabilities plus the pipeline's, a capacity of 1 for each, and the model as a
/// constraint (not required warm; `runner_version` the minimum runner version, or empty).
pub fn job_capabilities(pipeline: Pipeline, model: &str, runner_version: &str) -> Capabilities {
    let mut set = CapabilitySet::default();
    for c in DEFAULT_CAPABILITIES {
        set.insert(c);
    }
    let cap = pipeline.capability();
    set.insert(cap);
    let capacities = DEFAULT_CAPABILITIES.iter().chain([&cap]).map(|&c| (c, 1)).collect();
    let constraint = ModelConstraint { warm: false, runner_version: runner_version.to_owned(), ..Default::default() };
    let models = [(model.to_owned(), constraint)].into();
    Capabilities {
        bitstring: set.words().to_vec(),
        capacities,
        constraints: Some(Constraints {
            per_capability: [(cap, CapabilityConstraints { models })].into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What an orchestrator's capabilities offer for `pipeline` and `model` (§2.4): `None`
/// unless it lists the model under the pipeline's constraints (go-livepeer's `Refresh`
/// keeps no orchestrator without them); otherwise whether the model is warm.
pub fn offers(caps: &Capabilities, pipeline: Pipeline, model: &str) -> Option<bool> {
    let cap = pipeline.capability();
    let word = caps.bitstring.get((cap / 64) as usize).copied().unwrap_or(0);
    if word & (1 << (cap % 64)) == 0 {
        return None;
    }
    caps.constraints.as_ref()?.per_capability.get(&cap)?.models.get(model).map(|m| m.warm)
}

/// Every batch (pipeline, model, warm) an orchestrator's capabilities offer.
pub fn offered(caps: &Capabilities) -> Vec<(Pipeline, String, bool)> {
    let mut out = Vec::new();
    let Some(c) = caps.constraints.as_ref() else { return out };
    for p in Pipeline::ALL {
        let cap = p.capability();
        let bit = caps.bitstring.get((cap / 64) as usize).is_some_and(|w| w & (1 << (cap % 64)) != 0);
        if let (true, Some(models)) = (bit, c.per_capability.get(&cap)) {
            out.extend(models.models.iter().map(|(m, v)| (p, m.clone(), v.warm)));
        }
    }
    out
}

/// The `Livepeer-Segment` credentials of a job (§3.2): the dummy manifest, sequence 0, the
/// hash of empty data, `invalid` profiles, the job's capabilities and the orchestrator's
/// auth token, signed by `signer` when the gateway pays (empty signature off-chain).
pub fn seg_data(
    pipeline: Pipeline,
    model: &str,
    capabilities: &Capabilities,
    token: Option<&AuthToken>,
    signer: Option<&EthSigner>,
) -> SegData {
    let manifest = manifest_id(pipeline, model);
    let hash = keccak256(&[]);
    let sig = signer
        .map(|s| s.sign_message(&flatten_segment(manifest.as_bytes(), 0, &hash, std::iter::empty())).to_vec())
        .unwrap_or_default();
    SegData {
        manifest_id: manifest.into_bytes(),
        seq: 0,
        hash: hash.to_vec(),
        profiles: LEGACY_PROFILES_FIELD.to_vec(),
        sig,
        duration: 0,
        capabilities: Some(capabilities.clone()),
        auth_token: token.cloned(),
        ..Default::default()
    }
}

/// How the gateway reads an orchestrator's failed answer (§2.7): by case-insensitive
/// substring of the error text, as go-livepeer does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AiFailure {
    /// `ticketparams expired`: retry, possibly on the same orchestrator (up to 3 times).
    TicketParamsExpired,
    /// `invalid ticket sendernonce`: skip it for this request, no suspension.
    InvalidNonce,
    /// `insufficient capacity`: skip it for this request, no suspension.
    InsufficientCapacity,
    /// The runner refused the input (`… returned 400: <msg>`): the client's fault, a 400
    /// with the message; the orchestrator is not suspended.
    BadRequest(String),
    /// Anything else: suspend the orchestrator and try the next.
    Other,
}

impl AiFailure {
    /// Reads an orchestrator's error text.
    pub fn classify(text: &str) -> AiFailure {
        let lower = text.to_ascii_lowercase();
        if lower.contains("ticketparams expired") {
            AiFailure::TicketParamsExpired
        } else if lower.contains("invalid ticket sendernonce") {
            AiFailure::InvalidNonce
        } else if lower.contains("insufficient capacity") {
            AiFailure::InsufficientCapacity
        } else if let Some(i) = lower.find("returned 400") {
            let msg = text[i + "returned 400".len()..].trim_start_matches([':', ' ']).trim();
            AiFailure::BadRequest(msg.to_owned())
        } else {
            AiFailure::Other
        }
    }

    /// True for the failures that say nothing bad about the orchestrator (no suspension).
    pub fn is_soft(&self) -> bool {
        !matches!(self, AiFailure::Other)
    }
}

/// Units a job pays for (§3.4), as both go-livepeer sides compute them. Image sizes are
/// those of the input image, or the requested output for text-to-image / image-to-video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    /// `height × width × images` pixels (text-to-image, image-to-image).
    Images {
        /// Height, pixels.
        height: u64,
        /// Width, pixels.
        width: u64,
        /// `num_images_per_prompt` (at least 1).
        images: u64,
    },
    /// `height × width × 25` pixels: image-to-video's fixed 25 frames.
    Video {
        /// Height, pixels.
        height: u64,
        /// Width, pixels.
        width: u64,
    },
    /// `height × width` pixels of the input image (upscale, segment-anything-2,
    /// image-to-text).
    Image {
        /// Height, pixels.
        height: u64,
        /// Width, pixels.
        width: u64,
    },
    /// Whole seconds of audio × 1000 (audio-to-text).
    AudioSeconds(u64),
    /// `max_tokens` (LLM; the budget, not the tokens produced).
    Tokens(u64),
    /// Bytes of the text (text-to-speech, as the gateway budgets it; go-livepeer's
    /// orchestrator debits 1000 × characters instead, spec §3.4).
    TextBytes(u64),
}

/// Frames image-to-video is priced for.
pub const VIDEO_FRAMES: u64 = 25;

impl Units {
    /// The count the price applies to.
    pub fn count(self) -> u64 {
        match self {
            Units::Images { height, width, images } => height.saturating_mul(width).saturating_mul(images.max(1)),
            Units::Video { height, width } => height.saturating_mul(width).saturating_mul(VIDEO_FRAMES),
            Units::Image { height, width } => height.saturating_mul(width),
            Units::AudioSeconds(s) => s.saturating_mul(1000),
            Units::Tokens(t) | Units::TextBytes(t) => t,
        }
    }

    /// What the metering calls the unit.
    pub fn kind(self) -> UnitKind {
        match self {
            Units::Images { .. } | Units::Video { .. } | Units::Image { .. } => UnitKind::Pixels,
            Units::AudioSeconds(_) => UnitKind::Milliseconds,
            Units::Tokens(_) => UnitKind::Tokens,
            Units::TextBytes(_) => UnitKind::Characters,
        }
    }
}

/// The unit a pipeline is priced in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// Output or input pixels.
    Pixels,
    /// Milliseconds of audio.
    Milliseconds,
    /// LLM tokens.
    Tokens,
    /// Bytes of text.
    Characters,
}

/// The fee of a job, wei: units × price per unit (§3.4; no 2 % margin, unlike
/// transcoding).
pub fn job_fee(units: u64, price_per_unit: &BigRational) -> BigRational {
    BigRational::from_integer(BigInt::from(units)) * price_per_unit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: i64, d: i64) -> BigRational {
        BigRational::new(n.into(), d.into())
    }

    /// Test vector 1: DefaultCapabilities + the pipeline's bit.
    #[test]
    fn capability_bitstrings() {
        assert_eq!(job_capabilities(Pipeline::TextToImage, "m", "").bitstring, vec![201_351_167]);
        assert_eq!(job_capabilities(Pipeline::Llm, "m", "").bitstring, vec![8_657_068_031]);
        assert_eq!(job_capabilities(Pipeline::TextToSpeech, "m", "").bitstring, vec![68_786_610_175]);
        let c = job_capabilities(Pipeline::TextToImage, "stabilityai/sdxl-turbo", "0.14.0");
        assert_eq!(c.capacities.get(&27), Some(&1), "the AI capability must be in capacities");
        assert_eq!(c.capacities.len(), 16);
        let m = &c.constraints.as_ref().unwrap().per_capability[&27].models["stabilityai/sdxl-turbo"];
        assert!(!m.warm);
        assert_eq!(m.runner_version, "0.14.0");
    }

    /// Test vector 2: pipeline names.
    #[test]
    fn pipeline_names() {
        assert_eq!(Pipeline::from_name("audio-to-text").map(Pipeline::capability), Some(31));
        assert_eq!(Pipeline::from_name("llm").map(Pipeline::capability), Some(33));
        assert_eq!(Pipeline::from_name("Text to image"), Some(Pipeline::TextToImage));
        assert_eq!(Pipeline::from_name("i-love-tests"), None);
        for p in Pipeline::ALL {
            assert_eq!(Pipeline::from_name(p.name()), Some(p));
            assert_eq!(Pipeline::from_capability(p.capability()), Some(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
        }
    }

    /// Test vector 7, and the 400 pass-through.
    #[test]
    fn error_classes() {
        assert_eq!(AiFailure::classify("Insufficient capacity"), AiFailure::InsufficientCapacity);
        assert_eq!(AiFailure::classify("Invalid ticket sendernonce: 4"), AiFailure::InvalidNonce);
        assert_eq!(AiFailure::classify("TICKETPARAMS expired"), AiFailure::TicketParamsExpired);
        assert_eq!(
            AiFailure::classify("text-to-image container returned 400: prompt too long"),
            AiFailure::BadRequest("prompt too long".into())
        );
        assert_eq!(AiFailure::classify("CUDA out of memory"), AiFailure::Other);
        assert!(!AiFailure::Other.is_soft());
        assert!(AiFailure::InsufficientCapacity.is_soft());
    }

    /// Test vector 10: payment arithmetic.
    #[test]
    fn units_and_fees() {
        let u = Units::Images { height: 1024, width: 1024, images: 1 };
        assert_eq!(u.count(), 1_048_576);
        assert_eq!(job_fee(u.count(), &r(4_768_371, 1)), r(4_999_999_389_696, 1));
        assert_eq!(Units::Tokens(256).count(), 256);
        assert_eq!(job_fee(256, &r(1000, 1)), r(256_000, 1));
        assert_eq!(Units::AudioSeconds(22).count(), 22_000);
        assert_eq!(Units::Video { height: 576, width: 1024 }.count(), 576 * 1024 * 25);
        assert_eq!(Units::Images { height: 10, width: 10, images: 0 }.count(), 100, "at least one image");
    }

    #[test]
    fn offers_reads_constraints() {
        let mut caps = job_capabilities(Pipeline::Llm, "echo", "");
        assert_eq!(offers(&caps, Pipeline::Llm, "echo"), Some(false));
        assert_eq!(offers(&caps, Pipeline::Llm, "other"), None);
        assert_eq!(offers(&caps, Pipeline::TextToImage, "echo"), None, "no bit");
        caps.constraints.as_mut().unwrap().per_capability.get_mut(&33).unwrap().models.get_mut("echo").unwrap().warm =
            true;
        assert_eq!(offers(&caps, Pipeline::Llm, "echo"), Some(true));
        assert_eq!(offered(&caps), vec![(Pipeline::Llm, "echo".to_owned(), true)]);
        caps.constraints = None;
        assert_eq!(offers(&caps, Pipeline::Llm, "echo"), None, "no constraints: not offered");
    }

    /// Test vector 9's credentials: manifest `27_<model>`, the empty-data hash.
    #[test]
    fn job_credentials() {
        let caps = job_capabilities(Pipeline::TextToImage, "stabilityai/sdxl-turbo", "");
        let token = AuthToken { token: vec![1], session_id: "abcd0123".into(), expiration: 9 };
        let sd = seg_data(Pipeline::TextToImage, "stabilityai/sdxl-turbo", &caps, Some(&token), None);
        assert_eq!(sd.manifest_id, b"27_stabilityai/sdxl-turbo");
        assert_eq!(hex::encode(&sd.hash), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
        assert_eq!(sd.profiles, b"invalid");
        assert!(sd.sig.is_empty());
        assert_eq!(sd.auth_token, Some(token));
        let signer = EthSigner::from_hex("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
        let signed = seg_data(Pipeline::TextToImage, "stabilityai/sdxl-turbo", &caps, None, Some(&signer));
        let flat = flatten_segment(b"27_stabilityai/sdxl-turbo", 0, &keccak256(&[]), std::iter::empty());
        let digest = keccak256(&flat);
        assert_eq!(crate::identity::recover_personal(&digest, &signed.sig).unwrap(), signer.address());
    }
}
