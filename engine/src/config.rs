//! Gateway configuration: one TOML file, overridden by `SLUICE_*` environment variables
//! and command-line flags (flags win, then environment, then file, then defaults).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default RTMP ingest address (go-livepeer's `-rtmpAddr` default port).
pub const DEFAULT_RTMP_ADDR: &str = "127.0.0.1:1935";
/// Default HTTP address for playback (go-livepeer's `-httpAddr` default port).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9935";
/// Default control API / metrics address (go-livepeer's gateway `-cliAddr` default port).
pub const DEFAULT_CLI_ADDR: &str = "127.0.0.1:5935";

/// Everything `sluice gateway` can be told.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// RTMP listen address. Loopback by default, as go-livepeer: expose it deliberately.
    pub rtmp_addr: SocketAddr,
    /// HTTP listen address for playback (HLS, player page).
    pub http_addr: SocketAddr,
    /// Control API and `/metrics` listen address.
    pub cli_addr: SocketAddr,
    /// Target segment duration in seconds (go-livepeer segments at 2 s).
    pub segment_duration: f64,
    /// Longest segment in seconds; unset means twice `segment_duration`. Segments are cut
    /// at keyframes, so this bounds how long a GOP may be before a segment is cut without
    /// one. Playlists announce `ceil(max_segment_duration)` as their fixed
    /// `EXT-X-TARGETDURATION` (RFC 8216 §6.2.1: it never changes).
    pub max_segment_duration: Option<f64>,
    /// Segments listed in a live media playlist (0 lists all of them). Six 2 s segments
    /// give players 12 s of buffer to choose from, as go-livepeer does.
    pub playlist_window: usize,
    /// Seconds an ended stream stays playable (and resumable by its publisher) before it
    /// is removed.
    pub stream_grace: f64,
    /// Most live streams at once; publishes beyond it are refused.
    pub max_streams: usize,
    /// Seconds without data after which an RTMP connection is closed.
    pub rtmp_idle_timeout: f64,
    /// Threads dedicated to RTMP ingest (connections and their streams' segmenting), each
    /// with a single-threaded runtime; 0 runs ingest on the main runtime. One thread
    /// serves hundreds of 6 Mb/s streams; more help only past that.
    pub ingest_threads: usize,
    /// Directory holding `hls.min.js` for the player page (installed by the setup script).
    /// When it is missing the page loads hls.js from a public CDN.
    pub web_dir: Option<PathBuf>,
    /// Orchestrators to transcode with (go-livepeer `-orchAddr`): comma-separated host
    /// names or IPs, default port 8935, `https://` unless given as `http://`. Empty: no
    /// transcoding, the source is the only rendition.
    pub orch_addr: String,
    /// Renditions (go-livepeer `-transcodingOptions`): comma-separated preset names, a
    /// JSON array of profiles, or the path of a file holding that JSON.
    pub transcoding_options: String,
    /// `offchain` (no payments, the default) or the name of an Ethereum network, which
    /// turns payment tickets on and needs a key.
    pub network: String,
    /// go-livepeer style keystore: a key file or a directory of them.
    pub eth_keystore_path: Option<PathBuf>,
    /// File holding the keystore password.
    pub eth_password: Option<PathBuf>,
    /// Which account of a keystore directory to use (hex address).
    pub eth_addr: Option<String>,
    /// File holding a raw hex private key (alternative to the keystore).
    pub eth_key_file: Option<PathBuf>,
    /// Highest price accepted, in wei per `pixels_per_unit` pixels (0: no cap).
    pub max_price_per_unit: i64,
    /// Pixels `max_price_per_unit` is quoted for.
    pub pixels_per_unit: i64,
    /// SHA-256 fingerprints of the only orchestrator certificates to accept. Empty:
    /// accept any (orchestrators use self-signed certificates, as go-livepeer does).
    pub orch_cert_pins: Vec<String>,
    /// Attempts per segment, each on another orchestrator when the previous one failed.
    pub max_attempts: u32,
    /// go-livepeer `-orchWebhookUrl`: a URL answering `[{"address": "https://host:port"}]`
    /// (optionally `"region"`), read every minute; its orchestrators join the pool.
    pub orch_webhook_url: Option<String>,
    /// Orchestrator ETH addresses never to use (hex, `0x` optional).
    pub orch_blocklist: Vec<String>,
    /// Regions to prefer (orchestrators whose webhook entry names one of them).
    pub preferred_regions: Vec<String>,
    /// go-livepeer `-selectStakeWeight`: weight of stake when drawing among untried
    /// orchestrators.
    pub select_stake_weight: f64,
    /// go-livepeer `-selectPriceWeight`: weight of (low) price in that draw.
    pub select_price_weight: f64,
    /// go-livepeer `-selectRandFreq`: weight of a uniform draw.
    pub select_rand_freq: f64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            rtmp_addr: DEFAULT_RTMP_ADDR.parse().expect("valid literal"),
            http_addr: DEFAULT_HTTP_ADDR.parse().expect("valid literal"),
            cli_addr: DEFAULT_CLI_ADDR.parse().expect("valid literal"),
            segment_duration: 2.0,
            max_segment_duration: None,
            playlist_window: 6,
            stream_grace: 60.0,
            max_streams: 1000,
            rtmp_idle_timeout: 30.0,
            ingest_threads: 1,
            web_dir: None,
            orch_addr: String::new(),
            transcoding_options: transport::profiles::DEFAULT_TRANSCODING_OPTIONS.to_owned(),
            network: "offchain".to_owned(),
            eth_keystore_path: None,
            eth_password: None,
            eth_addr: None,
            eth_key_file: None,
            max_price_per_unit: 0,
            pixels_per_unit: 1,
            orch_cert_pins: Vec::new(),
            max_attempts: 3,
            orch_webhook_url: None,
            orch_blocklist: Vec::new(),
            preferred_regions: Vec::new(),
            select_stake_weight: 0.7,
            select_price_weight: 0.0,
            select_rand_freq: 0.3,
        }
    }
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
        source: toml::de::Error,
    },
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
        let target = MediaTime::from_secs_f64(self.segment_duration, Timescale::MPEG);
        let max = self.max_segment_duration.unwrap_or(2.0 * self.segment_duration);
        segmenter::SegmenterConfig::with_limits(target, MediaTime::from_secs_f64(max, Timescale::MPEG))
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason| Err(ConfigError::Invalid { field, reason });
        if !(0.1..=60.0).contains(&self.segment_duration) {
            return bad("segment_duration", "must be between 0.1 and 60 seconds");
        }
        if let Some(m) = self.max_segment_duration
            && !(self.segment_duration..=120.0).contains(&m)
        {
            return bad("max_segment_duration", "must be between segment_duration and 120 seconds");
        }
        if !(0.0..=86_400.0).contains(&self.stream_grace) {
            return bad("stream_grace", "must be between 0 and 86400 seconds");
        }
        if self.max_streams == 0 {
            return bad("max_streams", "must be at least 1");
        }
        if self.ingest_threads > 256 {
            return bad("ingest_threads", "must be at most 256");
        }
        if !(1.0..=3600.0).contains(&self.rtmp_idle_timeout) {
            return bad("rtmp_idle_timeout", "must be between 1 and 3600 seconds");
        }
        if self.pixels_per_unit <= 0 {
            return bad("pixels_per_unit", "must be at least 1");
        }
        if self.max_price_per_unit < 0 {
            return bad("max_price_per_unit", "must not be negative");
        }
        if !(1..=10).contains(&self.max_attempts) {
            return bad("max_attempts", "must be between 1 and 10");
        }
        for w in [self.select_stake_weight, self.select_price_weight, self.select_rand_freq] {
            if !(0.0..=1.0).contains(&w) {
                return bad("select_*_weight", "selection weights must be between 0 and 1");
            }
        }
        if self.network.is_empty() {
            return bad("network", "must be `offchain` or a network name");
        }
        Ok(())
    }

    /// The transcoding profiles `transcoding_options` names (reading the JSON file it
    /// points to, if it is a path).
    pub fn profiles(&self) -> anyhow::Result<Vec<transport::proto::VideoProfile>> {
        let opt = self.transcoding_options.trim();
        let text = if !opt.starts_with('[') && Path::new(opt).is_file() {
            std::fs::read_to_string(opt).map_err(|e| anyhow::anyhow!("reading --transcoding-options {opt}: {e}"))?
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
        let c: GatewayConfig = toml::from_str("segment_duration = 4.0\nhttp_addr = \"0.0.0.0:8080\"").unwrap();
        assert_eq!(c.segment_duration, 4.0);
        assert_eq!(c.http_addr.port(), 8080);
        assert_eq!(c.rtmp_addr.port(), 1935);
        assert!(toml::from_str::<GatewayConfig>("segment_durration = 4.0").is_err());
    }

    #[test]
    fn validates_ranges() {
        let c = GatewayConfig { segment_duration: 0.0, ..Default::default() };
        assert!(c.validate().is_err());
        assert!(GatewayConfig::default().validate().is_ok());
        let c = GatewayConfig { pixels_per_unit: 0, ..Default::default() };
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
            let c = GatewayConfig { transcoding_options: opt, ..Default::default() };
            let p = c.profiles().unwrap();
            assert_eq!((p[0].name.as_str(), p[0].width, p[0].height), ("low", 320, 180));
        }
        std::fs::remove_file(path).unwrap();
        assert!(GatewayConfig { transcoding_options: "P999p".into(), ..Default::default() }.profiles().is_err());
    }
}
