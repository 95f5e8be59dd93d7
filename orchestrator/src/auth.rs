//! Session auth tokens (spec §2.3, §3.4): minted on every `GetOrchestrator`, echoed by the
//! gateway in each segment, checked by HMAC and expiry.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use transport::proto::AuthToken;

/// Lifetime of a token (`authTokenValidPeriod`).
pub const AUTH_TOKEN_VALIDITY_SECS: i64 = 30 * 60;

/// Why a token was refused; the text is what go-livepeer answers (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in the segment.
    #[error("missing auth token")]
    Missing,
    /// The HMAC does not match.
    #[error("invalid auth token")]
    Invalid,
    /// Past its expiration.
    #[error("expired auth token")]
    Expired,
}

/// Mints and checks tokens with the orchestrator's secret.
pub struct AuthTokens {
    secret: Vec<u8>,
}

impl AuthTokens {
    /// Tokens keyed by `secret`.
    pub fn new(secret: &[u8]) -> Self {
        AuthTokens { secret: secret.to_vec() }
    }

    fn mac(&self, session_id: &str, expiration: i64) -> Vec<u8> {
        let mut m = <Hmac<Sha256>>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        m.update(session_id.as_bytes());
        m.update(&minimal_be(expiration as u64));
        m.finalize().into_bytes().to_vec()
    }

    /// A new token for session `session_id` (8 hex characters from 4 random bytes),
    /// valid for 30 minutes from `now` (Unix seconds).
    pub fn mint(&self, random: [u8; 4], now: i64) -> AuthToken {
        let session_id: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let expiration = now + AUTH_TOKEN_VALIDITY_SECS;
        AuthToken { token: self.mac(&session_id, expiration), session_id, expiration }
    }

    /// Checks a token at `now`.
    pub fn verify(&self, token: Option<&AuthToken>, now: i64) -> Result<(), AuthError> {
        let t = token.ok_or(AuthError::Missing)?;
        let mut m = <Hmac<Sha256>>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        m.update(t.session_id.as_bytes());
        m.update(&minimal_be(t.expiration as u64));
        m.verify_slice(&t.token).map_err(|_| AuthError::Invalid)?;
        if now > t.expiration {
            return Err(AuthError::Expired);
        }
        Ok(())
    }
}

/// Minimal big-endian bytes of `v` (Go's `big.Int.Bytes()`: zero is empty).
pub(crate) fn minimal_be(v: u64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let first = b.iter().position(|&x| x != 0).unwrap_or(8);
    b[first..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_verify_expire_tamper() {
        let a = AuthTokens::new(b"secret");
        let t = a.mint([0xde, 0xad, 0xbe, 0xef], 1_000);
        assert_eq!(t.session_id, "deadbeef");
        assert_eq!(t.expiration, 1_000 + 1800);
        assert_eq!(a.verify(Some(&t), 1_500), Ok(()));
        assert_eq!(a.verify(Some(&t), 2_801), Err(AuthError::Expired));
        assert_eq!(a.verify(None, 0), Err(AuthError::Missing));
        let forged = AuthToken { expiration: t.expiration + 3600, ..t.clone() };
        assert_eq!(a.verify(Some(&forged), 1_500), Err(AuthError::Invalid));
        assert_eq!(AuthTokens::new(b"other").verify(Some(&t), 1_500), Err(AuthError::Invalid));
        assert_eq!(minimal_be(0), Vec::<u8>::new());
        assert_eq!(minimal_be(0x0102), vec![1, 2]);
    }
}
