//! Gateway configuration: one struct, [`GatewayConfig`], that is both the command line
//! (`clap`) and the TOML file (`serde`), in seven sections: `[listen]`, `[segmenting]`,
//! `[orchestrators]`, `[selection]`, `[payment]`, `[trickle]`, `[live]`. Every setting can come from the file,
//! a `SLUICE_*` environment variable or a flag; flags win, then the environment, then
//! the file, then the defaults below (each written once, as a named constant). Unknown
//! keys are refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// RTMP ingest address: go-livepeer's `-rtmpAddr` port, on loopback so exposing it is a
/// deliberate choice.
pub const DEFAULT_RTMP_ADDR: &str = "127.0.0.1:1935";
/// HTTP playback address: go-livepeer's `-httpAddr` port.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9935";
/// Control API and metrics address: go-livepeer's gateway `-cliAddr` port.
pub const DEFAULT_CLI_ADDR: &str = "127.0.0.1:5935";
/// Seconds an RTMP connection may stay silent: long enough for a stalled encoder to
/// recover, short enough to free its stream id.
pub const DEFAULT_RTMP_IDLE_TIMEOUT: f64 = 30.0;
/// Ingest threads: one serves hundreds of 6 Mb/s streams (BENCHMARKS.md).
pub const DEFAULT_INGEST_THREADS: usize = 1;
/// Concurrent streams: far above what one machine transcodes, low enough to bound memory.
pub const DEFAULT_MAX_STREAMS: usize = 1000;
/// Target segment duration, seconds: go-livepeer segments at 2 s.
pub const DEFAULT_SEGMENT_DURATION: f64 = 2.0;
/// Live playlist length: six 2 s segments give players 12 s to choose from, as
/// go-livepeer does.
pub const DEFAULT_PLAYLIST_WINDOW: usize = 6;
/// Default LL-HLS part (CMAF chunk) duration, seconds.
pub const DEFAULT_PART_DURATION: f64 = 0.334;
/// Seconds an ended stream stays playable and resumable: covers an encoder restart.
pub const DEFAULT_STREAM_GRACE: f64 = 60.0;
/// Attempts per segment: go-livepeer's `-maxAttempts` default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Stake weight in the draw among untried orchestrators: go-livepeer's default.
pub const DEFAULT_SELECT_STAKE_WEIGHT: f64 = 0.7;
/// Price weight in that draw: go-livepeer's default (price does not count).
pub const DEFAULT_SELECT_PRICE_WEIGHT: f64 = 0.0;
/// Uniform-draw weight: go-livepeer's default.
pub const DEFAULT_SELECT_RAND_FREQ: f64 = 0.3;
/// Network: off-chain (no payments) unless a network is named.
pub const DEFAULT_NETWORK: &str = "offchain";
/// Pixels a price is quoted for: go-livepeer's default (prices per pixel).
pub const DEFAULT_PIXELS_PER_UNIT: i64 = 1;

/// Everything `sluice gateway` (and `sluice demo`) can be told.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Addresses and connection limits.
    #[command(flatten)]
    pub listen: ListenConfig,
    /// Segments and playlists.
    #[command(flatten)]
    pub segmenting: SegmentingConfig,
    /// Which orchestrators transcode, into what.
    #[command(flatten)]
    pub orchestrators: OrchestratorsConfig,
    /// How an orchestrator is chosen.
    #[command(flatten)]
    pub selection: SelectionConfig,
    /// Paying orchestrators.
    #[command(flatten)]
    pub payment: PaymentConfig,
    /// The trickle server under `/ai/trickle/`.
    #[command(flatten)]
    pub trickle: TrickleConfig,
    /// Live video-to-video streams.
    #[command(flatten)]
    pub live: LiveConfig,
    /// Batch AI and LLM jobs.
    #[command(flatten)]
    pub ai: AiConfig,
    /// API keys, rate limits and usage.
    #[command(flatten)]
    pub auth: AuthConfig,
    /// WHIP publishing and WHEP playback.
    #[command(flatten)]
    pub webrtc: crate::webrtc::WebrtcConfig,
}

/// Shortest input segment of a live AI stream, seconds: cut at the first IDR after this
/// (go-livepeer's `LIVE_AI_MIN_SEG_DUR`).
pub const DEFAULT_LIVE_MIN_SEGMENT: f64 = 1.0;
/// Target duration of a live AI stream's output HLS segments, seconds: short, so the
/// processed stream plays close to live.
pub const DEFAULT_LIVE_OUTPUT_SEGMENT: f64 = 1.0;
/// Seconds without output, while input is recent, before the orchestrator is swapped
/// (go-livepeer's watchdog: 30 s).
pub const DEFAULT_LIVE_OUTPUT_TIMEOUT: f64 = 30.0;

/// `[live]`: live video-to-video (RTMP publishes with `?pipeline=`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Live AI")]
pub struct LiveConfig {
    /// Shortest input segment sent to a live AI orchestrator, seconds (0.2–10): each is
    /// cut at the first IDR after this.
    #[arg(long, env = "SLUICE_LIVE_MIN_SEGMENT", value_name = "S", default_value_t = DEFAULT_LIVE_MIN_SEGMENT)]
    pub live_min_segment: f64,
    /// Target duration of the processed output's HLS segments, seconds (0.2–10).
    #[arg(long, env = "SLUICE_LIVE_OUTPUT_SEGMENT", value_name = "S", default_value_t = DEFAULT_LIVE_OUTPUT_SEGMENT)]
    pub live_output_segment: f64,
    /// Seconds without processed output, while input flows, before the orchestrator is
    /// given up and another one takes the stream (1–300).
    #[arg(long, env = "SLUICE_LIVE_OUTPUT_TIMEOUT", value_name = "S", default_value_t = DEFAULT_LIVE_OUTPUT_TIMEOUT)]
    pub live_output_timeout: f64,
    /// Asked before each live AI stream starts (go-livepeer's `-liveAIAuthWebhookUrl`):
    /// a JSON POST whose 2xx JSON answer admits the stream and may override its pipeline
    /// and params; anything else refuses it. See docs/LIVE_AI.md.
    #[arg(long, env = "SLUICE_LIVE_AUTH_WEBHOOK_URL", value_name = "URL")]
    pub live_auth_webhook_url: Option<String>,
    /// Accept the media-server hook (`POST /live/video-to-video/{stream}/start`) from any
    /// address; by default only loopback callers (a media server on the same host) may
    /// make the gateway pull a stream.
    #[arg(long, env = "SLUICE_LIVE_HOOK_ALLOW_REMOTE")]
    pub live_hook_allow_remote: bool,
    /// Sent to the auth webhook in `x-api-key` and `Authorization`.
    #[arg(long, env = "SLUICE_LIVE_AUTH_API_KEY", value_name = "KEY", hide_env_values = true)]
    pub live_auth_api_key: Option<String>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            live_min_segment: DEFAULT_LIVE_MIN_SEGMENT,
            live_output_segment: DEFAULT_LIVE_OUTPUT_SEGMENT,
            live_output_timeout: DEFAULT_LIVE_OUTPUT_TIMEOUT,
            live_auth_webhook_url: None,
            live_hook_allow_remote: false,
            live_auth_api_key: None,
        }
    }
}

pub use crate::ai::config::{
    AiConfig, AuthConfig, DEFAULT_AI_AUDIO_TIMEOUT, DEFAULT_AI_IMAGE_TIMEOUT, DEFAULT_AI_LLM_IDLE_TIMEOUT,
    DEFAULT_AI_RESULT_TTL, DEFAULT_AI_VIDEO_TIMEOUT,
};

/// `[trickle]`: the trickle server on the HTTP port (live AI's transport).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Trickle")]
pub struct TrickleConfig {
    /// Let a `POST /ai/trickle/{channel}` create channels (a standalone server for
    /// runners); off, only the gateway creates them, so nobody can fill it with channels.
    #[arg(long, env = "SLUICE_TRICKLE_AUTO_CREATE")]
    pub trickle_auto_create: bool,
}

/// `[listen]`: addresses and connection limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Listen")]
pub struct ListenConfig {
    /// RTMP listen address.
    #[arg(long, env = "SLUICE_RTMP_ADDR", value_name = "HOST:PORT", default_value = DEFAULT_RTMP_ADDR)]
    pub rtmp_addr: SocketAddr,
    /// HTTP playback listen address (HLS, player page).
    #[arg(long, env = "SLUICE_HTTP_ADDR", value_name = "HOST:PORT", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// Control API and /metrics listen address.
    #[arg(long, env = "SLUICE_CLI_ADDR", value_name = "HOST:PORT", default_value = DEFAULT_CLI_ADDR)]
    pub cli_addr: SocketAddr,
    /// Seconds without data after which an RTMP connection is closed (1–3600).
    #[arg(long, env = "SLUICE_RTMP_IDLE_TIMEOUT", value_name = "S", default_value_t = DEFAULT_RTMP_IDLE_TIMEOUT)]
    pub rtmp_idle_timeout: f64,
    /// Threads dedicated to RTMP ingest, each a single-threaded runtime; 0 runs ingest
    /// on the main runtime.
    #[arg(long, env = "SLUICE_INGEST_THREADS", value_name = "N", default_value_t = DEFAULT_INGEST_THREADS)]
    pub ingest_threads: usize,
    /// Most live streams at once; publishes beyond it are refused.
    #[arg(long, env = "SLUICE_MAX_STREAMS", value_name = "N", default_value_t = DEFAULT_MAX_STREAMS)]
    pub max_streams: usize,
    /// Directory holding the player page's hls.min.js and dash.all.min.js, directly or
    /// as npm installs them [default: web/node_modules if present, else a public CDN].
    #[arg(long, env = "SLUICE_WEB_DIR", value_name = "DIR")]
    pub web_dir: Option<PathBuf>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            rtmp_addr: DEFAULT_RTMP_ADDR.parse().expect("valid literal"),
            http_addr: DEFAULT_HTTP_ADDR.parse().expect("valid literal"),
            cli_addr: DEFAULT_CLI_ADDR.parse().expect("valid literal"),
            rtmp_idle_timeout: DEFAULT_RTMP_IDLE_TIMEOUT,
            ingest_threads: DEFAULT_INGEST_THREADS,
            max_streams: DEFAULT_MAX_STREAMS,
            web_dir: None,
        }
    }
}

/// `[segmenting]`: segments and playlists.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Segmenting")]
pub struct SegmentingConfig {
    /// Target segment duration in seconds (0.1–60); segments are cut at keyframes.
    #[arg(long, env = "SLUICE_SEGMENT_DURATION", value_name = "S", default_value_t = DEFAULT_SEGMENT_DURATION)]
    pub segment_duration: f64,
    /// Longest segment in seconds, also the playlists' fixed EXT-X-TARGETDURATION
    /// (rounded up); a GOP longer than this is cut without a keyframe [default: 2 ×
    /// segment duration].
    #[arg(long, env = "SLUICE_MAX_SEGMENT_DURATION", value_name = "S")]
    pub max_segment_duration: Option<f64>,
    /// Segments listed in a live media playlist; 0 lists all of them.
    #[arg(long, env = "SLUICE_PLAYLIST_WINDOW", value_name = "N", default_value_t = DEFAULT_PLAYLIST_WINDOW)]
    pub playlist_window: usize,
    /// Seconds an ended stream stays playable (and resumable by its publisher).
    #[arg(long, env = "SLUICE_STREAM_GRACE", value_name = "S", default_value_t = DEFAULT_STREAM_GRACE)]
    pub stream_grace: f64,
    /// Longest LL-HLS part (CMAF chunk) in seconds (0.1–2, at most the segment
    /// duration): the `PART-TARGET`; players hold back three parts.
    #[arg(long, env = "SLUICE_PART_DURATION", value_name = "S", default_value_t = DEFAULT_PART_DURATION)]
    pub part_duration: f64,
}

impl Default for SegmentingConfig {
    fn default() -> Self {
        SegmentingConfig {
            segment_duration: DEFAULT_SEGMENT_DURATION,
            max_segment_duration: None,
            playlist_window: DEFAULT_PLAYLIST_WINDOW,
            stream_grace: DEFAULT_STREAM_GRACE,
            part_duration: DEFAULT_PART_DURATION,
        }
    }
}

/// `[orchestrators]`: which orchestrators transcode, into what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Orchestrators")]
pub struct OrchestratorsConfig {
    /// Orchestrators to transcode with (go-livepeer -orchAddr), comma-separated: host,
    /// host:port, https://host:port or http://host:port; default port 8935. Empty: no
    /// transcoding, the source is the only rendition.
    #[arg(long, env = "SLUICE_ORCH_ADDR", value_name = "LIST", default_value = "", hide_default_value = true)]
    pub orch_addr: String,
    /// Renditions (go-livepeer -transcodingOptions): preset names, a JSON array of
    /// profiles, or the path of a file holding that JSON.
    #[arg(long, env = "SLUICE_TRANSCODING_OPTIONS", value_name = "X", default_value = transport::profiles::DEFAULT_TRANSCODING_OPTIONS)]
    pub transcoding_options: String,
    /// Attempts per segment, each on another orchestrator after a failure (1–10).
    #[arg(long, env = "SLUICE_MAX_ATTEMPTS", value_name = "N", default_value_t = DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// URL answering [{"address": "https://host:port", "region": "eu"}], read every
    /// minute (go-livepeer -orchWebhookUrl); its orchestrators join the pool.
    #[arg(long, env = "SLUICE_ORCH_WEBHOOK_URL", value_name = "URL")]
    pub orch_webhook_url: Option<String>,
    /// Orchestrator ETH addresses never to use, comma-separated (hex, 0x optional).
    #[arg(long, env = "SLUICE_ORCH_BLOCKLIST", value_name = "ADDRS", value_delimiter = ',')]
    pub orch_blocklist: Vec<String>,
    /// SHA-256 fingerprint (hex) of an orchestrator certificate to accept; repeat or
    /// comma-separate for several. Without any, every certificate is accepted, as
    /// go-livepeer does.
    #[arg(long = "orch-cert-pin", env = "SLUICE_ORCH_CERT_PINS", value_name = "HEX", value_delimiter = ',')]
    pub orch_cert_pins: Vec<String>,
}

impl Default for OrchestratorsConfig {
    fn default() -> Self {
        OrchestratorsConfig {
            orch_addr: String::new(),
            transcoding_options: transport::profiles::DEFAULT_TRANSCODING_OPTIONS.to_owned(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            orch_webhook_url: None,
            orch_blocklist: Vec::new(),
            orch_cert_pins: Vec::new(),
        }
    }
}

/// `[selection]`: how an orchestrator is chosen (go-livepeer's weights).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Selection")]
pub struct SelectionConfig {
    /// Regions to prefer, comma-separated (matched against the webhook's region).
    #[arg(long, env = "SLUICE_PREFERRED_REGIONS", value_name = "LIST", value_delimiter = ',')]
    pub preferred_regions: Vec<String>,
    /// Weight of stake when drawing among untried orchestrators (0–1; stake is unknown
    /// without chain access, so this part of the draw is uniform).
    #[arg(long, env = "SLUICE_SELECT_STAKE_WEIGHT", value_name = "W", default_value_t = DEFAULT_SELECT_STAKE_WEIGHT)]
    pub select_stake_weight: f64,
    /// Weight of a low price in that draw (0–1).
    #[arg(long, env = "SLUICE_SELECT_PRICE_WEIGHT", value_name = "W", default_value_t = DEFAULT_SELECT_PRICE_WEIGHT)]
    pub select_price_weight: f64,
    /// Weight of a uniform draw (0–1).
    #[arg(long, env = "SLUICE_SELECT_RAND_FREQ", value_name = "W", default_value_t = DEFAULT_SELECT_RAND_FREQ)]
    pub select_rand_freq: f64,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            preferred_regions: Vec::new(),
            select_stake_weight: DEFAULT_SELECT_STAKE_WEIGHT,
            select_price_weight: DEFAULT_SELECT_PRICE_WEIGHT,
            select_rand_freq: DEFAULT_SELECT_RAND_FREQ,
        }
    }
}

/// `[payment]`: paying orchestrators with tickets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Payment")]
pub struct PaymentConfig {
    /// `offchain` (no payments or signatures) or an Ethereum network name such as
    /// arbitrum-one-mainnet, which turns payment tickets on and needs a key.
    #[arg(long, env = "SLUICE_NETWORK", value_name = "NAME", default_value = DEFAULT_NETWORK)]
    pub network: String,
    /// Keystore file or directory (go-livepeer / geth v3 JSON) holding the paying key.
    #[arg(long, env = "SLUICE_ETH_KEYSTORE_PATH", value_name = "PATH")]
    pub eth_keystore_path: Option<PathBuf>,
    /// File holding the keystore password.
    #[arg(long, env = "SLUICE_ETH_PASSWORD", value_name = "FILE")]
    pub eth_password: Option<PathBuf>,
    /// Account to use from a keystore directory (hex address).
    #[arg(long, env = "SLUICE_ETH_ADDR", value_name = "ADDR")]
    pub eth_addr: Option<String>,
    /// File holding a raw hex private key (instead of a keystore).
    #[arg(long, env = "SLUICE_ETH_KEY_FILE", value_name = "FILE")]
    pub eth_key_file: Option<PathBuf>,
    /// Highest price accepted, in wei per --pixels-per-unit pixels; 0: no cap.
    #[arg(long, env = "SLUICE_MAX_PRICE_PER_UNIT", value_name = "WEI", default_value_t = 0)]
    pub max_price_per_unit: i64,
    /// Pixels the --max-price-per-unit price is for.
    #[arg(long, env = "SLUICE_PIXELS_PER_UNIT", value_name = "N", default_value_t = DEFAULT_PIXELS_PER_UNIT)]
    pub pixels_per_unit: i64,
    /// A remote signer (`sluice signer`, go-livepeer -remoteSigner) that signs the
    /// orchestrator-info request and live AI payments instead of a local key.
    #[arg(long, env = "SLUICE_REMOTE_SIGNER_URL", value_name = "URL")]
    pub remote_signer_url: Option<String>,
}

impl Default for PaymentConfig {
    fn default() -> Self {
        PaymentConfig {
            network: DEFAULT_NETWORK.to_owned(),
            eth_keystore_path: None,
            eth_password: None,
            eth_addr: None,
            eth_key_file: None,
            max_price_per_unit: 0,
            pixels_per_unit: DEFAULT_PIXELS_PER_UNIT,
            remote_signer_url: None,
        }
    }
}

/// Lays the settings given on the command line or in the environment over `base` (the
/// file, or the defaults): a leaf of `given` replaces `base`'s when `was_given(name)`
/// says it came from a flag or a variable, not from a default. Both are serialised to a
/// tree and back, so this works for any sectioned configuration.
pub fn overlay<T: Serialize + DeserializeOwned>(
    base: T,
    given: &T,
    was_given: impl Fn(&str) -> bool,
) -> Result<T, ConfigError> {
    fn walk(base: &mut serde_json::Value, given: &serde_json::Value, was_given: &dyn Fn(&str) -> bool) {
        let (Some(base), Some(given)) = (base.as_object_mut(), given.as_object()) else { return };
        for (key, value) in given {
            match base.get_mut(key) {
                Some(b) if b.is_object() && value.is_object() => walk(b, value, was_given),
                _ if was_given(key) => {
                    base.insert(key.clone(), value.clone());
                }
                _ => {}
            }
        }
    }
    let mut tree = serde_json::to_value(base).map_err(|e| ConfigError::Overlay(e.to_string()))?;
    let over = serde_json::to_value(given).map_err(|e| ConfigError::Overlay(e.to_string()))?;
    walk(&mut tree, &over, &was_given);
    serde_json::from_value(tree).map_err(|e| ConfigError::Overlay(e.to_string()))
}

/// Reads a TOML file of any configuration.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source: Box::new(source) })
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// Flags and file could not be combined.
    #[error("combining flags with the config file: {0}")]
    Overlay(String),
    /// A value is out of range.
    #[error("invalid setting {field}: {reason}")]
    Invalid {
        /// Which setting.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
}

impl GatewayConfig {
    /// The cutter's settings: the target duration and the longest segment (twice the
    /// target unless `max_segment_duration` says otherwise).
    pub fn segmenter_config(&self) -> segmenter::SegmenterConfig {
        use media::{MediaTime, Timescale};
        let target = MediaTime::from_secs_f64(self.segmenting.segment_duration, Timescale::MPEG);
        let max = self.segmenting.max_segment_duration.unwrap_or(2.0 * self.segmenting.segment_duration);
        segmenter::SegmenterConfig::with_limits(target, MediaTime::from_secs_f64(max, Timescale::MPEG))
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        read_toml(path)
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason| Err(ConfigError::Invalid { field, reason });
        self.webrtc.validate()?;
        if !(0.2..=10.0).contains(&self.live.live_min_segment) {
            return bad("live_min_segment", "must be between 0.2 and 10 seconds");
        }
        if !(0.2..=10.0).contains(&self.live.live_output_segment) {
            return bad("live_output_segment", "must be between 0.2 and 10 seconds");
        }
        if !(1.0..=300.0).contains(&self.live.live_output_timeout) {
            return bad("live_output_timeout", "must be between 1 and 300 seconds");
        }
        if let Some(u) = &self.live.live_auth_webhook_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return bad("live_auth_webhook_url", "must be an http:// or https:// URL");
        }
        for (field, v, max) in [
            ("ai_image_timeout", self.ai.ai_image_timeout, 3600.0),
            ("ai_video_timeout", self.ai.ai_video_timeout, 86_400.0),
            ("ai_audio_timeout", self.ai.ai_audio_timeout, 86_400.0),
            ("ai_llm_idle_timeout", self.ai.ai_llm_idle_timeout, 3600.0),
            ("ai_result_ttl", self.ai.ai_result_ttl, 30.0 * 86_400.0),
        ] {
            if !(0.1..=max).contains(&v) {
                return Err(ConfigError::Invalid { field, reason: "out of range (0.1 s up to a sensible maximum)" });
            }
        }
        if !(0.1..=60.0).contains(&self.segmenting.segment_duration) {
            return bad("segment_duration", "must be between 0.1 and 60 seconds");
        }
        if !(0.1..=2.0).contains(&self.segmenting.part_duration)
            || self.segmenting.part_duration > self.segmenting.segment_duration
        {
            return bad("part_duration", "must be between 0.1 and 2 seconds, and at most segment_duration");
        }
        if let Some(m) = self.segmenting.max_segment_duration
            && !(self.segmenting.segment_duration..=120.0).contains(&m)
        {
            return bad("max_segment_duration", "must be between segment_duration and 120 seconds");
        }
        if !(0.0..=86_400.0).contains(&self.segmenting.stream_grace) {
            return bad("stream_grace", "must be between 0 and 86400 seconds");
        }
        if self.listen.max_streams == 0 {
            return bad("max_streams", "must be at least 1");
        }
        if self.listen.ingest_threads > 256 {
            return bad("ingest_threads", "must be at most 256");
        }
        if !(1.0..=3600.0).contains(&self.listen.rtmp_idle_timeout) {
            return bad("rtmp_idle_timeout", "must be between 1 and 3600 seconds");
        }
        if self.payment.pixels_per_unit <= 0 {
            return bad("pixels_per_unit", "must be at least 1");
        }
        if self.payment.max_price_per_unit < 0 {
            return bad("max_price_per_unit", "must not be negative");
        }
        if !(1..=10).contains(&self.orchestrators.max_attempts) {
            return bad("max_attempts", "must be between 1 and 10");
        }
        for w in
            [self.selection.select_stake_weight, self.selection.select_price_weight, self.selection.select_rand_freq]
        {
            if !(0.0..=1.0).contains(&w) {
                return bad("select_*_weight", "selection weights must be between 0 and 1");
            }
        }
        if self.payment.network.is_empty() {
            return bad("network", "must be `offchain` or a network name");
        }
        Ok(())
    }

    /// The transcoding profiles `transcoding_options` names (reading the JSON file it
    /// points to, if it is a path).
    pub fn profiles(&self) -> Result<Vec<transport::proto::VideoProfile>, crate::error::ProfilesError> {
        let opt = self.orchestrators.transcoding_options.trim();
        let text = if !opt.starts_with('[') && Path::new(opt).is_file() {
            std::fs::read_to_string(opt)
                .map_err(|source| crate::error::ProfilesError::Read { path: opt.into(), source })?
        } else {
            opt.to_owned()
        };
        Ok(transport::profiles::parse_transcoding_options(&text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let c: GatewayConfig =
            toml::from_str("[segmenting]\nsegment_duration = 4.0\n[listen]\nhttp_addr = \"0.0.0.0:8080\"").unwrap();
        assert_eq!(c.segmenting.segment_duration, 4.0);
        assert_eq!(c.listen.http_addr.port(), 8080);
        assert_eq!(c.listen.rtmp_addr.port(), 1935);
        assert!(toml::from_str::<GatewayConfig>("[segmenting]\nsegment_durration = 4.0").is_err());
        assert!(toml::from_str::<GatewayConfig>("segment_duration = 4.0").is_err(), "keys live in their section");
        assert!(toml::from_str::<GatewayConfig>("[segmentin]\nsegment_duration = 4.0").is_err());
    }

    #[test]
    fn flags_and_environment_win_over_the_file_and_defaults_do_not() {
        let mut file = GatewayConfig::default();
        file.segmenting.segment_duration = 4.0;
        file.listen.max_streams = 7;
        file.orchestrators.orch_addr = "o1".into();
        // What the command line parsed: one flag given, the rest clap's defaults.
        let mut cli = GatewayConfig::default();
        cli.listen.max_streams = 9;
        let merged = overlay(file, &cli, |name| name == "max_streams").unwrap();
        assert_eq!(merged.listen.max_streams, 9, "a flag wins");
        assert_eq!(merged.segmenting.segment_duration, 4.0, "a default does not undo the file");
        assert_eq!(merged.orchestrators.orch_addr, "o1");
    }

    #[test]
    fn validates_ranges() {
        let mut c = GatewayConfig::default();
        assert!(c.validate().is_ok());
        c.segmenting.segment_duration = 0.0;
        assert!(c.validate().is_err());
        let mut c = GatewayConfig::default();
        c.payment.pixels_per_unit = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn transcoding_options_from_presets_json_and_files() {
        let c = GatewayConfig::default();
        let names: Vec<String> = c.profiles().unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["P240p30fps16x9", "P360p30fps16x9"]);
        let json = r#"[{"name":"low","width":320,"height":180,"bitrate":250000,"fps":30}]"#;
        let path = std::env::temp_dir().join(format!("sluice-profiles-{}.json", std::process::id()));
        std::fs::write(&path, json).unwrap();
        for opt in [json.to_owned(), path.to_string_lossy().into_owned()] {
            let mut c = GatewayConfig::default();
            c.orchestrators.transcoding_options = opt;
            let p = c.profiles().unwrap();
            assert_eq!((p[0].name.as_str(), p[0].width, p[0].height), ("low", 320, 180));
        }
        std::fs::remove_file(path).unwrap();
        let mut c = GatewayConfig::default();
        c.orchestrators.transcoding_options = "P999p".into();
        assert!(c.profiles().is_err());
    }
}
