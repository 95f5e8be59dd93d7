//! `sluice orchestrator` configuration: one struct, [`OrchestratorSettings`], that is both
//! the command line and the TOML file (`--config`), in five sections: `[listen]`,
//! `[transcoding]`, `[ai]`, `[payment]`, `[debug]`. Flags win, then `SLUICE_ORCH_*` variables,
//! then the file, then the defaults below. Unknown keys are refused.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

/// Listen address: go-livepeer's orchestrator port, on loopback.
pub const DEFAULT_ORCH_LISTEN: &str = "127.0.0.1:8935";
/// Sessions served at once before `OrchestratorCapped`: go-livepeer's `-maxSessions`.
pub const DEFAULT_MAX_SESSIONS: usize = 10;
/// Seconds per block of the local block clock: Ethereum L1's 12 s slots.
pub const DEFAULT_BLOCK_TIME: f64 = 12.0;
/// Price in wei per pixel-unit: the smallest non-zero price, for paid tests and demos.
pub const DEFAULT_PRICE_PER_UNIT: i64 = 1;

/// How segments are transcoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TranscoderKind {
    /// Decode, scale and encode with GStreamer (x264) on the CPU.
    Gstreamer,
    /// Return the input unchanged (load tests).
    Echo,
}

/// Everything `sluice orchestrator` can be told.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorSettings {
    /// Where it listens and what it announces.
    #[command(flatten)]
    pub listen: OrchListen,
    /// How it transcodes.
    #[command(flatten)]
    pub transcoding: OrchTranscoding,
    /// Which AI models it serves.
    #[command(flatten)]
    pub ai: OrchAi,
    /// What it charges.
    #[command(flatten)]
    pub payment: OrchPayment,
    /// Test and debugging aids.
    #[command(flatten)]
    pub debug: OrchDebug,
}

/// `[listen]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Listen")]
pub struct OrchListen {
    /// Listen address (gRPC and HTTP on one port).
    #[arg(long, env = "SLUICE_ORCH_LISTEN", value_name = "HOST:PORT", default_value = DEFAULT_ORCH_LISTEN)]
    pub listen: SocketAddr,
    /// Service URI announced to gateways [default: https://LISTEN, or http:// with
    /// --no-tls].
    #[arg(long, env = "SLUICE_ORCH_SERVICE_URI", value_name = "URI")]
    pub service_uri: Option<String>,
    /// Serve cleartext HTTP/1.1 and h2c instead of TLS.
    #[arg(long, env = "SLUICE_ORCH_NO_TLS")]
    pub no_tls: bool,
}

impl Default for OrchListen {
    fn default() -> Self {
        OrchListen { listen: DEFAULT_ORCH_LISTEN.parse().expect("valid literal"), service_uri: None, no_tls: false }
    }
}

/// `[transcoding]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Transcoding")]
pub struct OrchTranscoding {
    /// `gstreamer` (decode, scale, x264) or `echo` (returns the input; for load tests).
    #[arg(long, env = "SLUICE_ORCH_TRANSCODER", value_enum, default_value_t = TranscoderKind::Gstreamer)]
    pub transcoder: TranscoderKind,
    /// GStreamer processes at once [default: number of CPUs].
    #[arg(long, env = "SLUICE_ORCH_PARALLEL", value_name = "N")]
    pub parallel: Option<usize>,
    /// Scratch directory for GStreamer jobs [default: the system temp dir].
    #[arg(long, env = "SLUICE_ORCH_WORK_DIR", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Sessions served at once before answering OrchestratorCapped.
    #[arg(long, env = "SLUICE_ORCH_MAX_SESSIONS", value_name = "N", default_value_t = DEFAULT_MAX_SESSIONS)]
    pub max_sessions: usize,
    /// Live video-to-video jobs at once (effect models noop, negate, edges, hue, blur, on
    /// CPU); 0 does not offer the capability.
    #[arg(long, env = "SLUICE_ORCH_LIVE_CAPACITY", value_name = "N", default_value_t = DEFAULT_LIVE_CAPACITY)]
    pub live_capacity: usize,
}

/// `[ai]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "AI")]
pub struct OrchAi {
    /// Batch AI jobs at once per model on the CPU stand-ins (every pipeline's default
    /// model, and `echo` for LLM); 0 offers no batch AI unless --ai-models names some.
    #[arg(long, env = "SLUICE_ORCH_AI_CAPACITY", value_name = "N", default_value_t = DEFAULT_AI_CAPACITY)]
    pub ai_capacity: u32,
    /// The models to serve instead, as go-livepeer's `-aiModels`: a JSON list (inline or a
    /// file path) of `{"pipeline", "model_id", "warm", "capacity", "url", "token",
    /// "price_per_unit", "pixels_per_unit"}`; entries with a `url` forward to that
    /// ai-runner, the others run on the CPU stand-ins.
    #[arg(long, env = "SLUICE_ORCH_AI_MODELS", value_name = "JSON|FILE")]
    pub ai_models: Option<String>,
    /// The secret BYOC workers send in `Authorization` to `POST /capability/register`
    /// (go-livepeer's `-orchSecret`); without it no capability can be registered.
    #[arg(long, env = "SLUICE_ORCH_SECRET", value_name = "SECRET", hide_env_values = true)]
    pub orch_secret: Option<String>,
    /// Text-to-image answers a 1x1 PNG at once instead of drawing the prompt (load tests
    /// of gateways).
    #[arg(long, env = "SLUICE_ORCH_AI_INSTANT")]
    pub ai_instant: bool,
}

/// CPU AI jobs at once per model.
pub const DEFAULT_AI_CAPACITY: u32 = 2;

impl Default for OrchAi {
    fn default() -> Self {
        OrchAi { ai_capacity: DEFAULT_AI_CAPACITY, ai_models: None, orch_secret: None, ai_instant: false }
    }
}

impl OrchAi {
    /// The models to serve; `price` (per unit, wei, units per price) is the CPU stand-ins'.
    pub fn models(&self, price: (i64, i64)) -> Result<Vec<orchestrator::ai::AiModel>, OrchSettingsError> {
        let Some(spec) = &self.ai_models else {
            let mut m = orchestrator::ai::AiModel::cpu_defaults(self.ai_capacity);
            if self.ai_capacity == 0 {
                m.clear();
            }
            for x in &mut m {
                (x.price_per_unit, x.pixels_per_unit) = price;
            }
            return Ok(m);
        };
        let text = if spec.trim_start().starts_with('[') {
            spec.clone()
        } else {
            std::fs::read_to_string(spec).map_err(|e| OrchSettingsError::AiModels(format!("{spec}: {e}")))?
        };
        serde_json::from_str(&text).map_err(|e| OrchSettingsError::AiModels(e.to_string()))
    }
}

/// Live jobs at once: a 512x512 effect job takes about a third of a core.
pub const DEFAULT_LIVE_CAPACITY: usize = 4;

impl Default for OrchTranscoding {
    fn default() -> Self {
        OrchTranscoding {
            transcoder: TranscoderKind::Gstreamer,
            parallel: None,
            work_dir: None,
            max_sessions: DEFAULT_MAX_SESSIONS,
            live_capacity: DEFAULT_LIVE_CAPACITY,
        }
    }
}

/// `[payment]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Payment")]
pub struct OrchPayment {
    /// `offchain` (no payments, no signatures) or a network name: quote tickets and
    /// check payments and signatures (needs a key).
    #[arg(long, env = "SLUICE_ORCH_NETWORK", value_name = "NAME", default_value = crate::config::DEFAULT_NETWORK)]
    pub network: String,
    /// File holding the orchestrator's raw hex private key (paid mode).
    #[arg(long, env = "SLUICE_ORCH_ETH_KEY_FILE", value_name = "FILE")]
    pub eth_key_file: Option<PathBuf>,
    /// Keystore file or directory holding the orchestrator's key (paid mode).
    #[arg(long, env = "SLUICE_ORCH_ETH_KEYSTORE_PATH", value_name = "PATH")]
    pub eth_keystore_path: Option<PathBuf>,
    /// File holding the keystore password.
    #[arg(long, env = "SLUICE_ORCH_ETH_PASSWORD", value_name = "FILE")]
    pub eth_password: Option<PathBuf>,
    /// Price in wei per --pixels-per-unit pixels (paid mode).
    #[arg(long, env = "SLUICE_ORCH_PRICE_PER_UNIT", value_name = "WEI", default_value_t = DEFAULT_PRICE_PER_UNIT)]
    pub price_per_unit: i64,
    /// Pixels the price is for.
    #[arg(long, env = "SLUICE_ORCH_PIXELS_PER_UNIT", value_name = "N", default_value_t = crate::config::DEFAULT_PIXELS_PER_UNIT)]
    pub pixels_per_unit: i64,
    /// Target expected value of one ticket, in wei.
    #[arg(long, env = "SLUICE_ORCH_TICKET_EV", value_name = "WEI", default_value_t = orchestrator::recipient::DEFAULT_TICKET_EV)]
    pub ticket_ev: u64,
    /// Seconds per block of the local block clock; ticket params expire after 40 blocks.
    #[arg(long, env = "SLUICE_ORCH_BLOCK_TIME", value_name = "S", default_value_t = DEFAULT_BLOCK_TIME)]
    pub block_time: f64,
}

impl Default for OrchPayment {
    fn default() -> Self {
        OrchPayment {
            network: crate::config::DEFAULT_NETWORK.to_owned(),
            eth_key_file: None,
            eth_keystore_path: None,
            eth_password: None,
            price_per_unit: DEFAULT_PRICE_PER_UNIT,
            pixels_per_unit: crate::config::DEFAULT_PIXELS_PER_UNIT,
            ticket_ev: orchestrator::recipient::DEFAULT_TICKET_EV,
            block_time: DEFAULT_BLOCK_TIME,
        }
    }
}

/// `[debug]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Debugging")]
pub struct OrchDebug {
    /// Write every GetOrchestrator and /segment exchange (as received, after TLS) into
    /// this directory.
    #[arg(long, env = "SLUICE_ORCH_CAPTURE_DIR", value_name = "DIR")]
    pub capture_dir: Option<PathBuf>,
    /// Accept `POST /fault` ({"mode": "hang|error500|busy_alternate|garbage|none",
    /// "price_per_unit": N}) to misbehave on purpose. For fault-injection tests only.
    #[arg(long, env = "SLUICE_ORCH_ALLOW_FAULTS")]
    pub allow_faults: bool,
}

/// Why the orchestrator settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OrchSettingsError {
    /// GStreamer is missing.
    #[error(transparent)]
    Transcoder(#[from] orchestrator::transcode::TranscodeError),
    /// `block_time` out of range.
    #[error("block_time must be between 0.001 and 3600 seconds")]
    BlockTime,
    /// The key cannot be loaded.
    #[error(transparent)]
    Key(#[from] crate::error::PayerError),
    /// `--ai-models` is not a list of models.
    #[error("--ai-models: {0}")]
    AiModels(String),
    /// A negative price or a non-positive pixel count.
    #[error("--price-per-unit must be >= 0 and --pixels-per-unit >= 1")]
    Price,
}

impl OrchestratorSettings {
    /// The running orchestrator's configuration: checks ranges, loads the key and
    /// builds the transcoder.
    pub fn service_config(&self) -> Result<orchestrator::service::OrchestratorConfig, OrchSettingsError> {
        use orchestrator::transcode::{EchoTranscoder, GstTranscoder, Transcoder};
        let t = &self.transcoding;
        let transcoder: Arc<dyn Transcoder> = match t.transcoder {
            TranscoderKind::Echo => Arc::new(EchoTranscoder),
            TranscoderKind::Gstreamer => {
                GstTranscoder::check_installed()?;
                let parallel =
                    t.parallel.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
                let dir = t.work_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("sluice-orchestrator"));
                Arc::new(GstTranscoder::new(parallel, dir))
            }
        };
        let mut cfg = orchestrator::service::OrchestratorConfig::new(self.listen.listen, transcoder);
        cfg.service_uri.clone_from(&self.listen.service_uri);
        cfg.tls = !self.listen.no_tls;
        cfg.max_sessions = t.max_sessions;
        cfg.live_capacity = t.live_capacity;
        let paid = self.payment.network != crate::config::DEFAULT_NETWORK;
        let cpu_price = if paid { (self.payment.price_per_unit, self.payment.pixels_per_unit) } else { (0, 1) };
        cfg.ai_models = self.ai.models(cpu_price)?;
        cfg.orch_secret.clone_from(&self.ai.orch_secret);
        cfg.ai_instant = self.ai.ai_instant;
        cfg.capture_dir.clone_from(&self.debug.capture_dir);
        cfg.allow_faults = self.debug.allow_faults;
        let p = &self.payment;
        cfg.ticket_ev = p.ticket_ev;
        if !(0.001..=3600.0).contains(&p.block_time) {
            return Err(OrchSettingsError::BlockTime);
        }
        cfg.block_time = Duration::from_secs_f64(p.block_time);
        if p.network != crate::config::DEFAULT_NETWORK {
            use crate::error::PayerError;
            let signer = crate::transcode::payer::load_key(
                p.eth_key_file.as_deref(),
                p.eth_keystore_path.as_deref(),
                p.eth_password.as_deref(),
                None,
            )?
            .ok_or_else(|| PayerError::NoKey(p.network.clone()))?;
            if p.pixels_per_unit <= 0 || p.price_per_unit < 0 {
                return Err(OrchSettingsError::Price);
            }
            cfg.price = transport::proto::PriceInfo {
                price_per_unit: p.price_per_unit,
                pixels_per_unit: p.pixels_per_unit,
                ..Default::default()
            };
            cfg.signer = Some(signer);
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sections_and_unknown_keys() {
        let s: OrchestratorSettings = toml::from_str(
            "[listen]\nlisten = \"127.0.0.1:9000\"\nno_tls = true\n[transcoding]\ntranscoder = \"echo\"\n[payment]\nprice_per_unit = 5",
        )
        .unwrap();
        assert_eq!(s.listen.listen.port(), 9000);
        assert!(s.listen.no_tls);
        assert_eq!(s.transcoding.transcoder, TranscoderKind::Echo);
        assert_eq!(s.payment.price_per_unit, 5);
        assert_eq!(s.transcoding.max_sessions, DEFAULT_MAX_SESSIONS);
        assert!(toml::from_str::<OrchestratorSettings>("[listen]\nlisen = \"x\"").is_err());
        let echo = OrchestratorSettings {
            transcoding: OrchTranscoding { transcoder: TranscoderKind::Echo, ..Default::default() },
            ..Default::default()
        };
        assert!(echo.service_config().unwrap().tls);
    }
}
