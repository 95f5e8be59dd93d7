//! Hashes that go on the wire: segment credentials (SegData flattening, §3.2), ticket
//! hashes (§5.2) and the Ethereum `personal_sign` digest (§3.1). Pure functions; signing
//! itself takes these 32-byte digests.

use sha3::{Digest, Keccak256};

/// keccak256 (the pre-standard Keccak that Ethereum uses, not SHA3-256).
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// An incremental keccak256, for digesting a segment while it is written.
#[derive(Default, Clone)]
pub struct IncrementalKeccak(Keccak256);

impl IncrementalKeccak {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        sha3::Digest::update(&mut self.0, data);
    }

    /// The digest so far; starts over.
    pub fn finish_reset(&mut self) -> [u8; 32] {
        sha3::Digest::finalize_reset(&mut self.0).into()
    }
}

/// The digest an Ethereum `personal_sign` of the 32-byte value `x` signs (§3.1):
/// keccak256("\x19Ethereum Signed Message:\n32" ‖ x).
pub fn personal_sign_digest(x: &[u8; 32]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(b"\x19Ethereum Signed Message:\n32");
    h.update(x);
    h.finalize().into()
}

/// The SegData profile string (§3.2): for each output profile in order, the first four
/// bytes of keccak256(name), as lower-case hex.
pub fn profiles_hex<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::new();
    for name in names {
        for b in &keccak256(name.as_bytes())[..4] {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 0xf) as usize] as char);
        }
    }
    s
}

/// The "flattened" segment metadata a gateway signs for each segment (§3.2): manifest id ‖
/// seq as 32 bytes big-endian ‖ keccak256 of the segment ‖ [`profiles_hex`] as ASCII.
pub fn flatten_segment<'a>(
    manifest_id: &[u8],
    seq: u64,
    segment_hash: &[u8; 32],
    profile_names: impl IntoIterator<Item = &'a str>,
) -> Vec<u8> {
    let profiles = profiles_hex(profile_names);
    let mut out = Vec::with_capacity(manifest_id.len() + 64 + profiles.len());
    out.extend_from_slice(manifest_id);
    out.extend_from_slice(&[0u8; 24]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(segment_hash);
    out.extend_from_slice(profiles.as_bytes());
    out
}

/// The digest a gateway signs for a segment: personal_sign(keccak256(flatten)) (§3.2).
pub fn segment_signing_digest(flattened: &[u8]) -> [u8; 32] {
    personal_sign_digest(&keccak256(flattened))
}

/// A probabilistic micropayment ticket (§5.1). Amounts are 256-bit big-endian.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ticket {
    /// The orchestrator's address.
    pub recipient: [u8; 20],
    /// The gateway's address.
    pub sender: [u8; 20],
    /// Face value in wei.
    pub face_value: [u8; 32],
    /// Win probability numerator over 2^256 − 1.
    pub win_prob: [u8; 32],
    /// Per-recipientRandHash counter, from 1.
    pub sender_nonce: u32,
    /// keccak256 of the orchestrator's recipientRand.
    pub recipient_rand_hash: [u8; 32],
    /// Round the ticket was created in (0 with a zero block hash: no auxData).
    pub creation_round: i64,
    /// L1 block hash of that round.
    pub creation_round_block_hash: [u8; 32],
}

impl Ticket {
    /// The ticket hash (§5.2): keccak256 of the `abi.encodePacked` fields, auxData omitted
    /// when the round is 0 and the block hash is zero.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Keccak256::new();
        h.update(self.recipient);
        h.update(self.sender);
        h.update(self.face_value);
        h.update(self.win_prob);
        h.update(u256_from_u64(self.sender_nonce as u64));
        h.update(self.recipient_rand_hash);
        if self.creation_round != 0 || self.creation_round_block_hash != [0; 32] {
            h.update(u256_from_u64(self.creation_round as u64));
            h.update(self.creation_round_block_hash);
        }
        h.finalize().into()
    }
}

/// A 256-bit big-endian value from a `u64`.
pub fn u256_from_u64(v: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[24..].copy_from_slice(&v.to_be_bytes());
    out
}

/// A 256-bit big-endian value from protobuf's minimal big-endian bytes (§2.4); `None` if
/// longer than 32 bytes.
pub fn u256_from_minimal(b: &[u8]) -> Option<[u8; 32]> {
    if b.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - b.len()..].copy_from_slice(b);
    Some(out)
}

#[cfg(test)]
mod tests {
    //! The test vectors of spec/livepeer-transcode-protocol.md §11.
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn ticket_all_zero_with_max_nonce() {
        let t = Ticket { sender_nonce: u32::MAX, ..Default::default() };
        assert_eq!(hex::encode(t.hash()), "e1393fc7f6de093780674022f96cb8e3872235167d037c04d554e58c0e63d280");
    }

    #[test]
    fn ticket_face_value_and_win_prob() {
        let t = Ticket { face_value: u256_from_u64(1), win_prob: u256_from_u64(500), ..Default::default() };
        assert_eq!(hex::encode(t.hash()), "87ef13f2d37e4d5352a01d3c77b8179d80e0887f1953bfabfd0bfd7b0f689ddd");
    }

    #[test]
    fn ticket_with_aux_data() {
        let block_hash = keccak256(b"foo");
        assert_eq!(block_hash, hex32("41b1a0649752af1b28b3dc29a1556eee781e4a4c3a1f7f53f90fa834de098c4d"));
        let t = Ticket { creation_round: 10, creation_round_block_hash: block_hash, ..Default::default() };
        assert_eq!(hex::encode(t.hash()), "e502907c16036ab3d11b78c5a2e93c20f3d6415c67f91de4ed01348182b3b2e2");
    }

    #[test]
    fn flatten_go_livepeer_vector() {
        let mut hash = [0u8; 32];
        hash[..6].copy_from_slice(b"browns");
        let f = flatten_segment(b"abcdef", 1234, &hash, ["P144p30fps16x9", "P240p30fps16x9"]);
        assert_eq!(hex::encode(keccak256(&f)), "08a398e7e7a5a545b0b07d9e7e1eab52b4131e0df1621bd53ee6e7550a15465b");
    }

    #[test]
    fn default_profiles_hex() {
        assert_eq!(profiles_hex(["P240p30fps16x9", "P360p30fps16x9"]), "c0a6517a93c717e7");
    }

    #[test]
    fn flatten_layout_and_signed_digest() {
        let f = flatten_segment(b"abcd", 3, &keccak256(b""), ["P240p30fps16x9", "P360p30fps16x9"]);
        let mut want = b"abcd".to_vec();
        want.extend_from_slice(&[0u8; 31]);
        want.push(3);
        want.extend_from_slice(&hex32("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"));
        want.extend_from_slice(b"c0a6517a93c717e7");
        assert_eq!(f.len(), 84);
        assert_eq!(f, want);
        assert_eq!(hex::encode(keccak256(&f)), "455ec504aaa29bde42992cd2ea55632eb5253e5b9481d8dfb4239a6e31f73e89");
        assert_eq!(
            hex::encode(segment_signing_digest(&f)),
            "4716812ac4de0084e5e2bc25be92d50081c0a6d44047da94e763a342bc86b9b6"
        );
    }

    #[test]
    fn minimal_big_endian_numbers() {
        assert_eq!(u256_from_minimal(&[]), Some([0; 32]));
        assert_eq!(u256_from_minimal(&[1, 0]), Some(u256_from_u64(256)));
        assert_eq!(u256_from_minimal(&[1; 33]), None);
    }
}
