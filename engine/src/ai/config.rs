//! `[ai]` and `[auth]` of the gateway's configuration (re-exported by `crate::config`).
use clap::Args;
use serde::{Deserialize, Serialize};

/// Deadline of an image job, seconds.
pub const DEFAULT_AI_IMAGE_TIMEOUT: f64 = 60.0;
/// Deadline of an image-to-video job, seconds.
pub const DEFAULT_AI_VIDEO_TIMEOUT: f64 = 600.0;
/// Deadline of an audio job, seconds.
pub const DEFAULT_AI_AUDIO_TIMEOUT: f64 = 300.0;
/// Longest wait for an LLM's first token, and between tokens, seconds.
pub const DEFAULT_AI_LLM_IDLE_TIMEOUT: f64 = 60.0;
/// How long AI results stay fetchable, seconds.
pub const DEFAULT_AI_RESULT_TTL: f64 = 3600.0;

/// `[ai]`: batch AI and LLM jobs (`POST /text-to-image`, `/llm`, `/v1/chat/completions`, …),
/// routed to the orchestrators of `[orchestrators]`. See docs/AI.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Batch AI")]
pub struct AiConfig {
    /// Price ceilings per pipeline and model, go-livepeer's `-maxPricePerCapability`:
    /// `{"capabilities_prices": [{"pipeline", "model_id", "price_per_unit",
    /// "pixels_per_unit"}]}`, inline or a file path. Orchestrators quoting more are not
    /// used; without an entry the global --max-price-per-unit applies.
    #[arg(long, env = "SLUICE_MAX_PRICE_PER_CAPABILITY", value_name = "JSON|FILE")]
    pub max_price_per_capability: Option<String>,
    /// Deadline of an image job (text-to-image, image-to-image, upscale,
    /// segment-anything-2, image-to-text), seconds, retries included.
    #[arg(long, env = "SLUICE_AI_IMAGE_TIMEOUT", value_name = "S", default_value_t = DEFAULT_AI_IMAGE_TIMEOUT)]
    pub ai_image_timeout: f64,
    /// Deadline of an image-to-video job, seconds.
    #[arg(long, env = "SLUICE_AI_VIDEO_TIMEOUT", value_name = "S", default_value_t = DEFAULT_AI_VIDEO_TIMEOUT)]
    pub ai_video_timeout: f64,
    /// Deadline of an audio job (audio-to-text, text-to-speech), seconds.
    #[arg(long, env = "SLUICE_AI_AUDIO_TIMEOUT", value_name = "S", default_value_t = DEFAULT_AI_AUDIO_TIMEOUT)]
    pub ai_audio_timeout: f64,
    /// Longest wait for an LLM's first token and between two tokens, seconds; a whole
    /// non-streamed answer gets five times this.
    #[arg(long, env = "SLUICE_AI_LLM_IDLE_TIMEOUT", value_name = "S", default_value_t = DEFAULT_AI_LLM_IDLE_TIMEOUT)]
    pub ai_llm_idle_timeout: f64,
    /// How long results stay fetchable at `/stream/{request}/{file}`, seconds.
    #[arg(long, env = "SLUICE_AI_RESULT_TTL", value_name = "S", default_value_t = DEFAULT_AI_RESULT_TTL)]
    pub ai_result_ttl: f64,
    /// Lowest ai-runner version an orchestrator's model may run (sent as the
    /// `runnerVersion` constraint); empty for any.
    #[arg(long, env = "SLUICE_AI_MIN_RUNNER_VERSION", value_name = "VERSION", default_value = "")]
    pub ai_min_runner_version: String,
}

impl Default for AiConfig {
    fn default() -> Self {
        AiConfig {
            max_price_per_capability: None,
            ai_image_timeout: DEFAULT_AI_IMAGE_TIMEOUT,
            ai_video_timeout: DEFAULT_AI_VIDEO_TIMEOUT,
            ai_audio_timeout: DEFAULT_AI_AUDIO_TIMEOUT,
            ai_llm_idle_timeout: DEFAULT_AI_LLM_IDLE_TIMEOUT,
            ai_result_ttl: DEFAULT_AI_RESULT_TTL,
            ai_min_runner_version: String::new(),
        }
    }
}

/// `[auth]`: API keys for the AI, live AI and control endpoints. See docs/AI.md.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "API keys")]
pub struct AuthConfig {
    /// A TOML file of API keys (`[[key]]` tables with `name`, `sha256` of the key, and
    /// optional limits); when set, the AI, live AI and control endpoints need
    /// `Authorization: Bearer <key>`. Reread when it changes and on SIGHUP. `sluice key`
    /// makes entries.
    #[arg(long, env = "SLUICE_API_KEYS", value_name = "FILE")]
    pub api_keys: Option<std::path::PathBuf>,
}
