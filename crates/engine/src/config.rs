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
    /// Directory holding `hls.min.js` for the player page (installed by the setup script).
    /// When it is missing the page loads hls.js from a public CDN.
    pub web_dir: Option<PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            rtmp_addr: DEFAULT_RTMP_ADDR.parse().expect("valid literal"),
            http_addr: DEFAULT_HTTP_ADDR.parse().expect("valid literal"),
            cli_addr: DEFAULT_CLI_ADDR.parse().expect("valid literal"),
            segment_duration: 2.0,
            playlist_window: 6,
            stream_grace: 60.0,
            max_streams: 1000,
            rtmp_idle_timeout: 30.0,
            web_dir: None,
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
        if !(0.0..=86_400.0).contains(&self.stream_grace) {
            return bad("stream_grace", "must be between 0 and 86400 seconds");
        }
        if self.max_streams == 0 {
            return bad("max_streams", "must be at least 1");
        }
        if !(1.0..=3600.0).contains(&self.rtmp_idle_timeout) {
            return bad("rtmp_idle_timeout", "must be between 1 and 3600 seconds");
        }
        Ok(())
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
    }
}
