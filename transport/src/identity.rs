//! The gateway's Ethereum identity: a secp256k1 key, its address, and the `personal_sign`
//! signatures go-livepeer expects (spec §3.1): 65 bytes R ‖ S ‖ V, S in the lower half of
//! the curve order, V = 27 or 28.

use std::fmt;

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};

use crate::credentials::{keccak256, personal_sign_digest};

/// An identity or signature problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Not a valid secp256k1 private key (wrong length, zero, or not below the order).
    #[error("invalid private key")]
    InvalidKey,
    /// A signature that §3.1's verifier rejects.
    #[error("invalid signature: {0}")]
    InvalidSignature(&'static str),
}

/// A 20-byte Ethereum address.
pub type Address = [u8; 20];

/// Signs as the gateway. `Debug` shows the address only.
#[derive(Clone)]
pub struct EthSigner {
    key: SigningKey,
    address: Address,
}

impl fmt::Debug for EthSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EthSigner({})", eip55(&self.address))
    }
}

impl EthSigner {
    /// From a raw 32-byte private key.
    pub fn from_private_key(key: &[u8]) -> Result<Self, IdentityError> {
        let key = SigningKey::from_slice(key).map_err(|_| IdentityError::InvalidKey)?;
        let address = address_of(key.verifying_key());
        Ok(EthSigner { key, address })
    }

    /// From a hex private key as found in a key file (optional `0x`, surrounding
    /// whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, IdentityError> {
        let t = text.trim();
        let t = t.strip_prefix("0x").unwrap_or(t);
        if t.len() != 64 {
            return Err(IdentityError::InvalidKey);
        }
        let mut key = [0u8; 32];
        for (i, chunk) in t.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(chunk).map_err(|_| IdentityError::InvalidKey)?;
            key[i] = u8::from_str_radix(s, 16).map_err(|_| IdentityError::InvalidKey)?;
        }
        Self::from_private_key(&key)
    }

    /// The address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// `personal_sign` of a 32-byte value (ticket hashes and result hashes are signed so).
    pub fn personal_sign(&self, x: &[u8; 32]) -> [u8; 65] {
        self.sign_prehash(&personal_sign_digest(x))
    }

    /// Signs a finished 32-byte digest: R ‖ S ‖ V with low S and V = 27/28.
    fn sign_prehash(&self, digest: &[u8; 32]) -> [u8; 65] {
        let (sig, recid) =
            self.key.sign_prehash_recoverable(digest).expect("a 32-byte prehash is always signable with a valid key");
        // k256 signs deterministically (RFC 6979) and go-livepeer's verifier wants low-S.
        let (sig, recid) = match sig.normalize_s() {
            Some(low) => (low, RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced())),
            None => (sig, recid),
        };
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = 27 + recid.to_byte();
        out
    }

    /// go-livepeer's node-level `Sign(msg)`: personal_sign(keccak256(msg)) (segment
    /// credentials, the OrchestratorRequest address signature).
    pub fn sign_message(&self, msg: &[u8]) -> [u8; 65] {
        self.personal_sign(&keccak256(msg))
    }
}

/// The address that produced `sig`, a `personal_sign` of `x`, under the rules of
/// go-livepeer's verifier (§3.1): 65 bytes, low S, V 27 or 28.
pub fn recover_personal(x: &[u8; 32], sig: &[u8]) -> Result<Address, IdentityError> {
    if sig.len() != 65 {
        return Err(IdentityError::InvalidSignature("length is not 65"));
    }
    let v = sig[64];
    if v != 27 && v != 28 {
        return Err(IdentityError::InvalidSignature("V is not 27 or 28"));
    }
    let s = Signature::from_slice(&sig[..64]).map_err(|_| IdentityError::InvalidSignature("R or S out of range"))?;
    if s.normalize_s().is_some() {
        return Err(IdentityError::InvalidSignature("S is in the upper half of the curve order"));
    }
    let recid = RecoveryId::from_byte(v - 27).ok_or(IdentityError::InvalidSignature("bad recovery id"))?;
    let vk = VerifyingKey::recover_from_prehash(&personal_sign_digest(x), &s, recid)
        .map_err(|_| IdentityError::InvalidSignature("no key recovers"))?;
    Ok(address_of(&vk))
}

fn address_of(vk: &VerifyingKey) -> Address {
    let point = vk.to_encoded_point(false);
    let hash = keccak256(&point.as_bytes()[1..]);
    let mut a = [0u8; 20];
    a.copy_from_slice(&hash[12..]);
    a
}

/// EIP-55 mixed-case checksummed hex with `0x` (what go-livepeer's `Address.Hex()` gives
/// and what the OrchestratorRequest signature covers, §3.3).
pub fn eip55(addr: &Address) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let lower: Vec<u8> = addr.iter().flat_map(|b| [HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]).collect();
    let hash = keccak256(&lower);
    let mut s = String::with_capacity(42);
    s.push_str("0x");
    for (i, &c) in lower.iter().enumerate() {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0xf;
        s.push(if c.is_ascii_alphabetic() && nibble >= 8 { c.to_ascii_uppercase() } else { c } as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_one_has_the_well_known_address() {
        let mut k = [0u8; 32];
        k[31] = 1;
        let s = EthSigner::from_private_key(&k).unwrap();
        assert_eq!(eip55(&s.address()), "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf");
        assert_eq!(format!("{s:?}"), "EthSigner(0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf)");
        let h = EthSigner::from_hex(" 0x0000000000000000000000000000000000000000000000000000000000000001\n").unwrap();
        assert_eq!(h.address(), s.address());
        assert!(EthSigner::from_private_key(&[0u8; 32]).is_err());
        assert!(EthSigner::from_hex("12").is_err());
    }

    #[test]
    fn eip55_examples() {
        // The examples of EIP-55 itself.
        for a in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            let mut bytes = [0u8; 20];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = u8::from_str_radix(&a[2 + 2 * i..4 + 2 * i], 16).unwrap();
            }
            assert_eq!(eip55(&bytes), a);
        }
    }

    #[test]
    fn signatures_are_low_s_with_v_27_28_and_recover() {
        let s = EthSigner::from_hex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
        for i in 0..64u8 {
            let x = keccak256(&[i]);
            let sig = s.personal_sign(&x);
            assert!(sig[64] == 27 || sig[64] == 28);
            assert_eq!(recover_personal(&x, &sig), Ok(s.address()));
            // Tampering breaks it: another value recovers another address (or none).
            assert_ne!(recover_personal(&keccak256(&[i, 1]), &sig).ok(), Some(s.address()));
        }
        let x = keccak256(b"m");
        let mut sig = s.personal_sign(&x);
        sig[64] = 1;
        assert!(recover_personal(&x, &sig).is_err());
        assert!(recover_personal(&x, &sig[..64]).is_err());
    }

    #[test]
    fn matches_the_web3_documentation_vector() {
        // web3.eth.accounts.sign('Some data', '0x4c08…2318') as documented by web3.js:
        // personal_sign of a 9-byte message, so the prefix says 9.
        let s = EthSigner::from_hex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
        assert_eq!(eip55(&s.address()), "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
        let digest = keccak256(b"\x19Ethereum Signed Message:\n9Some data");
        let sig = s.sign_prehash(&digest);
        let want = "b91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd\
                    6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a029\
                    1c";
        let want: String = want.split_whitespace().collect();
        assert_eq!(hex::encode(sig), want);
    }

    #[test]
    fn high_s_is_rejected() {
        let s = EthSigner::from_hex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
        let x = keccak256(b"m");
        let sig = s.personal_sign(&x);
        // Flip S to N - S (and V): mathematically valid, but go-livepeer rejects it.
        let low = Signature::from_slice(&sig[..64]).unwrap();
        let (r, s_low) = low.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s_low).to_bytes()).unwrap();
        let mut bad = [0u8; 65];
        bad[..64].copy_from_slice(&high.to_bytes());
        bad[64] = if sig[64] == 27 { 28 } else { 27 };
        assert_eq!(
            recover_personal(&x, &bad),
            Err(IdentityError::InvalidSignature("S is in the upper half of the curve order"))
        );
    }
}
