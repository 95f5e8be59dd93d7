//! Ethereum keystore files (Web3 Secret Storage v3), as go-livepeer's `-ethKeystorePath`
//! reads them: scrypt or PBKDF2-HMAC-SHA256 derives a key from the password, AES-128-CTR
//! decrypts the private key, and keccak256(derived[16..32] ‖ ciphertext) must equal `mac`.

use std::path::{Path, PathBuf};

use aes::cipher::{KeyIvInit, StreamCipher};
use serde::Deserialize;

use crate::credentials::keccak256;
use crate::identity::{Address, EthSigner, IdentityError};

/// Why a keystore could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// Reading a file or directory failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a v3 keystore.
    #[error("not a keystore file: {0}")]
    Format(String),
    /// A KDF or cipher this reader does not support.
    #[error("unsupported keystore {0}")]
    Unsupported(String),
    /// Wrong password (the MAC does not match).
    #[error("wrong password for the keystore")]
    WrongPassword,
    /// The decrypted key is invalid.
    #[error("{0}")]
    Key(#[from] IdentityError),
    /// A directory with no key for the wanted address.
    #[error("no keystore in {0} matches")]
    NotFound(PathBuf),
    /// A directory with several keys and no address to choose.
    #[error("{0} holds several keys; name one with its address")]
    Ambiguous(PathBuf),
}

#[derive(Deserialize)]
struct KeyFile {
    version: u32,
    #[serde(alias = "Crypto")]
    crypto: Crypto,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Deserialize)]
struct Crypto {
    cipher: String,
    cipherparams: CipherParams,
    ciphertext: String,
    kdf: String,
    kdfparams: serde_json::Value,
    mac: String,
}

#[derive(Deserialize)]
struct CipherParams {
    iv: String,
}

fn unhex(field: &str, s: &str) -> Result<Vec<u8>, KeystoreError> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if !s.len().is_multiple_of(2) {
        return Err(KeystoreError::Format(format!("{field} is not hex")));
    }
    (0..s.len() / 2)
        .map(|i| {
            u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|_| KeystoreError::Format(format!("{field} is not hex")))
        })
        .collect()
}

/// Decrypts a keystore file's JSON with `password`.
pub fn decrypt(json: &str, password: &str) -> Result<EthSigner, KeystoreError> {
    let kf: KeyFile = serde_json::from_str(json).map_err(|e| KeystoreError::Format(e.to_string()))?;
    if kf.version != 3 {
        return Err(KeystoreError::Unsupported(format!("version {}", kf.version)));
    }
    let c = &kf.crypto;
    if c.cipher != "aes-128-ctr" {
        return Err(KeystoreError::Unsupported(format!("cipher {}", c.cipher)));
    }
    let p = &c.kdfparams;
    let num = |k: &str| {
        p.get(k).and_then(serde_json::Value::as_u64).ok_or_else(|| KeystoreError::Format(format!("kdfparams.{k}")))
    };
    let salt = unhex("salt", p.get("salt").and_then(serde_json::Value::as_str).unwrap_or_default())?;
    let dklen = num("dklen")? as usize;
    if dklen < 32 {
        return Err(KeystoreError::Format("dklen below 32".into()));
    }
    let mut derived = vec![0u8; dklen];
    match c.kdf.as_str() {
        "scrypt" => {
            let n = num("n")?;
            if !n.is_power_of_two() || n < 2 {
                return Err(KeystoreError::Format("scrypt n is not a power of two".into()));
            }
            let params = scrypt::Params::new(n.trailing_zeros() as u8, num("r")? as u32, num("p")? as u32, dklen)
                .map_err(|e| KeystoreError::Format(format!("scrypt params: {e}")))?;
            scrypt::scrypt(password.as_bytes(), &salt, &params, &mut derived)
                .map_err(|e| KeystoreError::Format(format!("scrypt: {e}")))?;
        }
        "pbkdf2" => {
            let prf = p.get("prf").and_then(serde_json::Value::as_str).unwrap_or_default();
            if prf != "hmac-sha256" {
                return Err(KeystoreError::Unsupported(format!("prf {prf}")));
            }
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, num("c")? as u32, &mut derived);
        }
        other => return Err(KeystoreError::Unsupported(format!("kdf {other}"))),
    }
    let ciphertext = unhex("ciphertext", &c.ciphertext)?;
    let mut mac_input = derived[16..32].to_vec();
    mac_input.extend_from_slice(&ciphertext);
    if keccak256(&mac_input).to_vec() != unhex("mac", &c.mac)? {
        return Err(KeystoreError::WrongPassword);
    }
    let iv = unhex("iv", &c.cipherparams.iv)?;
    if iv.len() != 16 {
        return Err(KeystoreError::Format("iv is not 16 bytes".into()));
    }
    let mut key = ciphertext;
    let mut cipher = ctr::Ctr128BE::<aes::Aes128>::new(derived[..16].into(), iv.as_slice().into());
    cipher.apply_keystream(&mut key);
    let signer = EthSigner::from_private_key(&key)?;
    if let Some(addr) = kf.address.as_deref() {
        let want = unhex("address", addr)?;
        if want != signer.address() {
            return Err(KeystoreError::Format("address does not match the decrypted key".into()));
        }
    }
    Ok(signer)
}

/// Loads the key at `path` (a keystore file, or a directory of them as go-livepeer's
/// `-ethKeystorePath` allows; with several, `address` picks one).
pub fn load(path: &Path, password: &str, address: Option<&Address>) -> Result<EthSigner, KeystoreError> {
    let io = |source| KeystoreError::Io { path: path.to_owned(), source };
    if path.is_dir() {
        let mut found = vec![];
        for entry in std::fs::read_dir(path).map_err(io)? {
            let p = entry.map_err(io)?.path();
            if !p.is_file() {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&p) else { continue };
            let Ok(kf) = serde_json::from_str::<KeyFile>(&text) else { continue };
            let file_addr = kf.address.as_deref().and_then(|a| unhex("address", a).ok());
            if let (Some(want), Some(have)) = (address, &file_addr)
                && want.as_slice() != have.as_slice()
            {
                continue;
            }
            found.push(text);
        }
        match found.as_slice() {
            [] => Err(KeystoreError::NotFound(path.to_owned())),
            [one] => decrypt(one, password),
            _ if address.is_none() => Err(KeystoreError::Ambiguous(path.to_owned())),
            many => {
                for text in many {
                    if let Ok(s) = decrypt(text, password)
                        && Some(&s.address()) == address
                    {
                        return Ok(s);
                    }
                }
                Err(KeystoreError::NotFound(path.to_owned()))
            }
        }
    } else {
        let text = std::fs::read_to_string(path).map_err(io)?;
        decrypt(&text, password)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Password "testpassword", private key 7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d.
    // The PBKDF2 file is the Web3 Secret Storage definition's test vector.
    const PBKDF2: &str = r#"{"crypto":{"cipher":"aes-128-ctr","cipherparams":{"iv":"6087dab2f9fdbbfaddc31a909735c1e6"},
        "ciphertext":"5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46","kdf":"pbkdf2",
        "kdfparams":{"c":262144,"dklen":32,"prf":"hmac-sha256","salt":"ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"},
        "mac":"517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"},
        "id":"3198bc9c-6672-5ab3-d995-4942343ae5b6","version":3}"#;
    // geth's default scrypt parameters (n 2^18, r 8, p 1), generated for the same key and
    // password by an independent implementation (Python eth-account). (The definition's own
    // scrypt vector uses r 1 with n 2^18, which RFC 7914 forbids and no geth writes.)
    const SCRYPT: &str = r#"{"address":"008AeEda4D805471dF9b2A5B0f38A0C3bCBA786b","crypto":{"cipher":"aes-128-ctr",
        "cipherparams":{"iv":"20a8118682cde1f2e35227bc0525c784"},
        "ciphertext":"c46f48dbb48c108425841a35de9c24ae1a02c4c3c7b25aa8b45447f8ff955c21","kdf":"scrypt",
        "kdfparams":{"dklen":32,"n":262144,"r":8,"p":1,"salt":"6c522d0cffa73d8a4868460a124cdd21"},
        "mac":"d0aceef869e8d4ae8d21881a014ee12d475be69cd18a01c09de656ba088248c3"},
        "id":"6f10ace7-b89b-4d42-81a8-bf51f82f8a20","version":3}"#;

    fn expected() -> EthSigner {
        EthSigner::from_hex("7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d").unwrap()
    }

    #[test]
    fn pbkdf2_vector() {
        assert_eq!(decrypt(PBKDF2, "testpassword").unwrap().address(), expected().address());
        assert!(matches!(decrypt(PBKDF2, "wrong"), Err(KeystoreError::WrongPassword)));
    }

    #[test]
    fn scrypt_vector() {
        let s = decrypt(SCRYPT, "testpassword").unwrap();
        assert_eq!(s.address(), expected().address());
        assert_eq!(crate::identity::eip55(&s.address()), "0x008AeEda4D805471dF9b2A5B0f38A0C3bCBA786b");
    }

    #[test]
    fn malformed_files_are_refused() {
        assert!(matches!(decrypt("{}", "x"), Err(KeystoreError::Format(_))));
        assert!(matches!(
            decrypt(&PBKDF2.replace("aes-128-ctr", "aes-256-gcm"), "x"),
            Err(KeystoreError::Unsupported(_))
        ));
        assert!(matches!(
            decrypt(&PBKDF2.replace("\"version\":3", "\"version\":1"), "x"),
            Err(KeystoreError::Unsupported(_))
        ));
    }

    #[test]
    fn loads_from_a_file_or_a_directory() {
        let dir = std::env::temp_dir().join(format!("sluice-keystore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("UTC--key");
        std::fs::write(&file, PBKDF2).unwrap();
        std::fs::write(dir.join("notes.txt"), "not a key").unwrap();
        let want = expected().address();
        assert_eq!(load(&file, "testpassword", None).unwrap().address(), want);
        assert_eq!(load(&dir, "testpassword", None).unwrap().address(), want);
        assert_eq!(load(&dir, "testpassword", Some(&want)).unwrap().address(), want);
        // A second file for the same key: ambiguous without an address, fine with one.
        std::fs::write(dir.join("UTC--second"), SCRYPT).unwrap();
        assert!(matches!(load(&dir, "testpassword", None), Err(KeystoreError::Ambiguous(_))));
        assert_eq!(load(&dir, "testpassword", Some(&want)).unwrap().address(), want);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
