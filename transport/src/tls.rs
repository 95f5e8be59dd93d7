//! TLS toward orchestrators. Orchestrators serve self-signed certificates (spec §1), so
//! the default is to accept any certificate, exactly as go-livepeer does; handshake
//! signatures are still checked, so the peer proves it holds the certificate's key.
//! Operators who know their orchestrators' certificates can pin them by SHA-256.
//! Services with public certificates (an auth webhook, a remote signer) are verified
//! against the Mozilla root store ([`CertPolicy::PublicRoots`]).
use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, Error, SignatureScheme};
use sha2::{Digest, Sha256};

/// A SHA-256 certificate fingerprint.
pub type Fingerprint = [u8; 32];

/// SHA-256 of a DER certificate, the form `--orch-cert-pin` takes (hex).
pub fn fingerprint(cert_der: &[u8]) -> Fingerprint {
    Sha256::digest(cert_der).into()
}

/// A certificate pin that is not a SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// Not hexadecimal.
    #[error("certificate pin {0:?} is not hex")]
    NotHex(String),
    /// Not 32 bytes.
    #[error("certificate pin {0:?} is not 32 bytes (SHA-256)")]
    Length(String),
}

/// Parses a hex fingerprint, with or without `:` separators.
pub fn parse_fingerprint(text: &str) -> Result<Fingerprint, PinError> {
    let clean: String = text.trim().trim_start_matches("sha256:").chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&clean).map_err(|_| PinError::NotHex(text.to_owned()))?;
    bytes.try_into().map_err(|_| PinError::Length(text.to_owned()))
}

/// Which orchestrator certificates to accept.
#[derive(Clone, Default)]
pub enum CertPolicy {
    /// Any certificate (go-livepeer's `InsecureSkipVerify`); the default.
    #[default]
    AcceptAny,
    /// Only certificates whose SHA-256 is in this list.
    Pinned(Vec<Fingerprint>),
    /// Certificates that chain to a root of the Mozilla store (`webpki-roots`) and name
    /// the host: ordinary web PKI, for services that are not orchestrators.
    PublicRoots,
}

impl fmt::Debug for CertPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertPolicy::AcceptAny => f.write_str("AcceptAny"),
            CertPolicy::Pinned(p) => write!(f, "Pinned({} certificates)", p.len()),
            CertPolicy::PublicRoots => f.write_str("PublicRoots"),
        }
    }
}

#[derive(Debug)]
struct Verifier {
    policy: CertPolicy,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match &self.policy {
            CertPolicy::AcceptAny => Ok(ServerCertVerified::assertion()),
            CertPolicy::Pinned(pins) => {
                if pins.contains(&fingerprint(end_entity)) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(Error::General("orchestrator certificate does not match any pinned fingerprint".into()))
                }
            }
            // Built with the standard verifier instead (see `client_config`).
            CertPolicy::PublicRoots => Err(Error::General("public roots are verified by webpki".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The process-wide crypto provider (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A client config for orchestrators under `policy`, offering `alpn` protocols.
pub fn client_config(policy: CertPolicy, alpn: &[&[u8]]) -> ClientConfig {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let mut cfg = match policy {
        CertPolicy::PublicRoots => {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        policy => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier { policy, algorithms }))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_both_forms() {
        let fp = fingerprint(b"cert");
        let hex: String = fp.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_fingerprint(&hex).unwrap(), fp);
        let colons: Vec<String> = fp.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(parse_fingerprint(&format!("sha256:{}", colons.join(":"))).unwrap(), fp);
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint("zz").is_err());
    }
}
