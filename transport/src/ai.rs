//! Batch AI wire contract (spec `ai-gateway-protocol.md`): the pipelines and their
//! capability numbers and default models (§1.5), the job capabilities a gateway asks for
//! (§2.2), what orchestrators offer (§2.4), price ceilings in go-livepeer's
//! `-maxPricePerCapability` format (§2.6), how an orchestrator's refusal is read (§2.7),
//! the units each pipeline pays for (§3.4) and the `Livepeer-Segment` credentials of a job
//! (§3.2). Request and response bodies are in [`crate::ai_types`].
use std::collections::BTreeMap;

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{Signed, Zero};

use crate::capabilities::CapabilitySet;
use crate::credentials::{flatten_segment, keccak256};
use crate::identity::EthSigner;
use crate::proto::capabilities::{CapabilityConstraints, Constraints, capability_constraints::ModelConstraint};
use crate::proto::{AuthToken, Capabilities, SegData};
use crate::segment::LEGACY_PROFILES_FIELD;

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

/// Why a price list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceListError {
    /// Not the expected JSON.
    #[error("max price list is not valid JSON: {0}")]
    Json(String),
    /// A pipeline name that is not a batch AI pipeline.
    #[error("max price list: unknown pipeline {0:?}")]
    UnknownPipeline(String),
    /// A price that is not a number.
    #[error("max price list: {field} of {pipeline} is not a number: {value}")]
    NotANumber {
        /// The pipeline of the entry.
        pipeline: String,
        /// `price_per_unit` or `pixels_per_unit`.
        field: &'static str,
        /// The raw value.
        value: String,
    },
    /// A currency other than wei / ETH (there is no price feed).
    #[error("max price list: currency {currency:?} of {pipeline} needs a price feed; give the price in wei")]
    Currency {
        /// The pipeline of the entry.
        pipeline: String,
        /// The currency given.
        currency: String,
    },
}

/// Price ceilings per (pipeline, model) in wei per unit, from go-livepeer's
/// `-maxPricePerCapability` JSON (§2.6), with the global `-maxPricePerUnit` fallback.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaxPrices {
    per_model: BTreeMap<(u32, String), BigRational>,
    global: Option<BigRational>,
}

/// The model name that applies a ceiling to every model of a pipeline.
pub const DEFAULT_MODEL_KEY: &str = "default";

impl MaxPrices {
    /// Ceilings from `json` (`{"capabilities_prices": [...]}`); `global` is
    /// `max_price_per_unit / pixels_per_unit` (`None` or 0 = any price). An entry's
    /// missing or non-positive `pixels_per_unit` takes `default_pixels_per_unit`; a missing
    /// or non-positive `price_per_unit` takes the global price, or drops the entry when
    /// there is none. Unknown pipelines and non-numeric prices are errors here (go-livepeer
    /// panics or drops the whole list).
    pub fn parse(
        json: &str,
        global: Option<BigRational>,
        default_pixels_per_unit: u64,
    ) -> Result<MaxPrices, PriceListError> {
        #[derive(serde::Deserialize)]
        struct List {
            #[serde(default)]
            capabilities_prices: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            pipeline: String,
            #[serde(default)]
            model_id: Option<String>,
            #[serde(default)]
            price_per_unit: Option<serde_json::Number>,
            #[serde(default)]
            pixels_per_unit: Option<serde_json::Number>,
            #[serde(default)]
            currency: Option<String>,
        }
        let global = global.filter(|g| g.is_positive());
        let list: List = serde_json::from_str(json).map_err(|e| PriceListError::Json(e.to_string()))?;
        let mut out = MaxPrices { per_model: BTreeMap::new(), global: global.clone() };
        for e in list.capabilities_prices {
            let pipeline =
                Pipeline::from_name(&e.pipeline).ok_or_else(|| PriceListError::UnknownPipeline(e.pipeline.clone()))?;
            match e.currency.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("") | Some("wei") | Some("eth") => {}
                Some(_) => {
                    return Err(PriceListError::Currency {
                        pipeline: e.pipeline,
                        currency: e.currency.unwrap_or_default(),
                    });
                }
            }
            let number = |field, n: &Option<serde_json::Number>| -> Result<Option<BigRational>, PriceListError> {
                n.as_ref()
                    .map(|n| {
                        parse_decimal(&n.to_string()).ok_or_else(|| PriceListError::NotANumber {
                            pipeline: e.pipeline.clone(),
                            field,
                            value: n.to_string(),
                        })
                    })
                    .transpose()
            };
            let pixels = number("pixels_per_unit", &e.pixels_per_unit)?
                .filter(|p| p.is_positive())
                .unwrap_or_else(|| BigRational::from_integer(default_pixels_per_unit.max(1).into()));
            let ceiling = match number("price_per_unit", &e.price_per_unit)?.filter(|p| p.is_positive()) {
                Some(p) => p / pixels,
                None => match &global {
                    Some(g) => g.clone(),
                    None => continue,
                },
            };
            let model = e.model_id.filter(|m| !m.is_empty()).unwrap_or_else(|| DEFAULT_MODEL_KEY.to_owned());
            out.per_model.insert((pipeline.capability(), model), ceiling);
        }
        Ok(out)
    }

    /// Only a global ceiling (`None` = any price).
    pub fn global(global: Option<BigRational>) -> MaxPrices {
        MaxPrices { per_model: BTreeMap::new(), global: global.filter(|g| g.is_positive()) }
    }

    /// Sets one ceiling at run time (go-livepeer's `/setMaxPriceForCapability`).
    pub fn set(&mut self, pipeline: Pipeline, model: &str, ceiling: BigRational) {
        self.per_model.insert((pipeline.capability(), model.to_owned()), ceiling);
    }

    /// The ceiling for a job asking for `jobs` (capability, model) pairs, wei per unit
    /// (`GetCapabilitiesMaxPrice`): the sum of each pair's ceiling (the exact model's, else
    /// its pipeline's `default`); the global ceiling when that sum is zero; `None` for no
    /// limit.
    pub fn ceiling<'a>(&self, jobs: impl IntoIterator<Item = (u32, &'a str)>) -> Option<BigRational> {
        let mut sum = BigRational::zero();
        for (cap, model) in jobs {
            let exact = self.per_model.get(&(cap, model.to_owned()));
            if let Some(c) = exact.or_else(|| self.per_model.get(&(cap, DEFAULT_MODEL_KEY.to_owned()))) {
                sum += c;
            }
        }
        if sum.is_zero() { self.global.clone() } else { Some(sum) }
    }

    /// True when no ceiling is set at all.
    pub fn is_empty(&self) -> bool {
        self.per_model.is_empty() && self.global.is_none()
    }
}

/// A JSON number's text (`1000`, `0.5`, `1e3`) as an exact rational.
fn parse_decimal(text: &str) -> Option<BigRational> {
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: BigInt = format!("{int}{frac}").parse().ok()?;
    let scale = exp - frac.len() as i32;
    let ten = BigInt::from(10);
    Some(if scale >= 0 {
        BigRational::from_integer(digits * num_traits::pow(ten, scale as usize))
    } else {
        BigRational::new(digits, num_traits::pow(ten, (-scale) as usize))
    })
}

/// go-livepeer's short `-aiModels` form: `pipeline:model_id:warm,…` (§4.2, test vector 5).
pub fn parse_ai_models(text: &str) -> Result<Vec<(String, String, bool)>, String> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|entry| {
            let parts: Vec<&str> = entry.trim().split(':').collect();
            match parts.as_slice() {
                [p, m, w] => Ok((p.to_string(), m.to_string(), w.eq_ignore_ascii_case("true"))),
                _ => Err("invalid AI model config expected <pipeline>:<model_id>:<warm>".to_owned()),
            }
        })
        .collect()
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

    /// Test vector 3: the three-entry list.
    #[test]
    fn max_price_list() {
        let json = r#"{"capabilities_prices": [
            {"pipeline": "text-to-image", "model_id": "stabilityai/sd-turbo", "price_per_unit": 1000, "pixels_per_unit": 1},
            {"pipeline": "image-to-video", "model_id": "default", "price_per_unit": 2000, "pixels_per_unit": 3},
            {"pipeline": "image-to-image", "price_per_unit": 3000, "pixels_per_unit": 1}
        ]}"#;
        let m = MaxPrices::parse(json, None, 1).unwrap();
        assert_eq!(m.ceiling([(27, "stabilityai/sd-turbo")]), Some(r(1000, 1)));
        assert_eq!(m.ceiling([(27, "other")]), None, "no default for text-to-image, no global");
        assert_eq!(m.ceiling([(29, "anything")]), Some(r(2000, 3)));
        assert_eq!(m.ceiling([(28, "x")]), Some(r(3000, 1)));
        // USD needs a price feed; a quoted price is not a number; unknown pipelines fail.
        let usd = r#"{"capabilities_prices":[{"pipeline":"llm","price_per_unit":1,"currency":"USD"}]}"#;
        assert!(matches!(MaxPrices::parse(usd, None, 1), Err(PriceListError::Currency { .. })));
        let quoted = r#"{"capabilities_prices":[{"pipeline":"llm","price_per_unit":"1"}]}"#;
        assert!(matches!(MaxPrices::parse(quoted, None, 1), Err(PriceListError::Json(_))));
        let unknown = r#"{"capabilities_prices":[{"pipeline":"i-love-tests","price_per_unit":1}]}"#;
        assert!(matches!(MaxPrices::parse(unknown, None, 1), Err(PriceListError::UnknownPipeline(_))));
        // No price: the global one, or no entry.
        let bare = r#"{"capabilities_prices":[{"pipeline":"llm"}]}"#;
        assert!(MaxPrices::parse(bare, None, 1).unwrap().is_empty());
        assert_eq!(MaxPrices::parse(bare, Some(r(7, 1)), 1).unwrap().ceiling([(33, "m")]), Some(r(7, 1)));
        // Fractional and exponent numbers are exact.
        let frac = r#"{"capabilities_prices":[{"pipeline":"llm","price_per_unit":0.5,"pixels_per_unit":1e1}]}"#;
        assert_eq!(MaxPrices::parse(frac, None, 1).unwrap().ceiling([(33, "m")]), Some(r(1, 20)));
    }

    /// Test vector 4: summation over the job's (capability, model) pairs.
    #[test]
    fn ceiling_summation() {
        let mut m = MaxPrices::global(Some(r(10, 1)));
        m.per_model.insert((1, "model1".into()), r(5, 1));
        m.per_model.insert((2, "model2".into()), r(7, 1));
        assert_eq!(m.ceiling([(1, "model1"), (2, "model2")]), Some(r(12, 1)));
        m.per_model.insert((1, "default".into()), r(3, 1));
        assert_eq!(m.ceiling([(1, "unknown")]), Some(r(3, 1)));
        assert_eq!(m.ceiling([]), Some(r(10, 1)));
        assert_eq!(MaxPrices::default().ceiling([(1, "x")]), None);
    }

    /// Test vector 5.
    #[test]
    fn ai_models_short_form() {
        let m = parse_ai_models("pipeline1:model1:true,pipeline2:model2:false").unwrap();
        assert_eq!(m, vec![("pipeline1".into(), "model1".into(), true), ("pipeline2".into(), "model2".into(), false)]);
        assert_eq!(
            parse_ai_models("pipeline1:model1").unwrap_err(),
            "invalid AI model config expected <pipeline>:<model_id>:<warm>"
        );
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
