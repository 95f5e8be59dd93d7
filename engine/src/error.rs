//! What can stop a gateway from starting, typed so callers can tell a bad setting from a
//! busy port or an unreadable key. Sources (I/O, parse and key errors) are kept.
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::ConfigError;

/// Why [`crate::Gateway::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is out of range or the file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The transcoding setup is unusable.
    #[error(transparent)]
    Transcoding(#[from] TranscodingError),
    /// A listener could not be bound.
    #[error("binding {what} {addr}: {source}")]
    Bind {
        /// Which listener (RTMP, HTTP, control).
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The ingest threads could not be started.
    #[error("starting ingest threads: {0}")]
    IngestThreads(#[source] std::io::Error),
    /// The API key file is unusable.
    #[error("--api-keys: {0}")]
    Keys(#[source] crate::ai::keys::KeyFileError),
    /// The AI settings are unusable (the price list).
    #[error("[ai]: {0}")]
    Ai(String),
}

/// Why the transcoding settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum TranscodingError {
    /// An `--orch-addr` entry is not an address.
    #[error("--orch-addr: {0}")]
    OrchAddr(#[from] transport::orch_addr::OrchAddrError),
    /// `--transcoding-options` is not preset names, JSON or a readable JSON file.
    #[error(transparent)]
    Profiles(#[from] ProfilesError),
    /// `--transcoding-options` names no profile.
    #[error("--transcoding-options names no profiles")]
    NoProfiles,
    /// The paying key cannot be loaded.
    #[error(transparent)]
    Payer(#[from] PayerError),
    /// An `--orch-cert-pin` is not a fingerprint.
    #[error("--orch-cert-pin: {0}")]
    Pin(#[from] transport::tls::PinError),
    /// An `--orch-blocklist` entry is not an address.
    #[error("--orch-blocklist: {0:?} is not a 20-byte hex address")]
    Blocklist(String),
}

/// Why `--transcoding-options` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfilesError {
    /// The JSON file it names cannot be read.
    #[error("reading --transcoding-options {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not preset names or profile JSON.
    #[error("--transcoding-options: {0}")]
    Parse(#[from] transport::profiles::ProfileError),
}

/// Why the paying key cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PayerError {
    /// A key or password file cannot be read.
    #[error("reading {what} {path}: {source}")]
    Read {
        /// Which setting named it.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `--eth-key-file` does not hold a private key.
    #[error("--eth-key-file {path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: transport::identity::IdentityError,
    },
    /// The keystore cannot be opened with the password.
    #[error("keystore {path}: {source}")]
    Keystore {
        /// The keystore.
        path: PathBuf,
        /// Why.
        #[source]
        source: transport::keystore::KeystoreError,
    },
    /// A keystore without a password file.
    #[error("--eth-keystore-path needs --eth-password FILE")]
    NoPassword,
    /// `--eth-addr` is not an address.
    #[error("--eth-addr {0:?} is not a 20-byte hex address")]
    Address(String),
    /// A paying network without a key.
    #[error(
        "--network {0} pays orchestrators and needs a key: --eth-keystore-path with --eth-password, or --eth-key-file"
    )]
    NoKey(String),
}
