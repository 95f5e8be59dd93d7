//! The segment request a gateway sends (`POST {transcoder}/segment`, spec §4.1): the
//! signed `SegData`, the `Livepeer-Segment` and `Livepeer-Payment` headers, the timeouts,
//! and checking the orchestrator's signature over the renditions (§4.5).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;

use crate::credentials::{flatten_segment, keccak256};
use crate::identity::{Address, EthSigner, IdentityError, recover_personal};
use crate::proto::{AuthToken, Capabilities, Format, Payment, Profile, SegData, TranscodeResult, VideoProfile};
use crate::refusal::{Failure, FailureReason};

/// Header carrying the base64 `SegData`.
pub const SEGMENT_HEADER: &str = "Livepeer-Segment";
/// Header carrying the base64 `Payment` (empty off-chain).
pub const PAYMENT_HEADER: &str = "Livepeer-Payment";
/// Content-Type of a segment body.
pub const SEGMENT_CONTENT_TYPE: &str = "video/MP2T";
/// What go-livepeer puts in `SegData.profiles`: deliberately not a profile list, so very
/// old orchestrators refuse rather than misread (§2.9).
pub const LEGACY_PROFILES_FIELD: &[u8] = b"invalid";

/// One segment to submit.
#[derive(Debug, Clone)]
pub struct SegmentRequest<'a> {
    /// The stream's manifest id.
    pub manifest_id: &'a str,
    /// Segment sequence number.
    pub seq: u64,
    /// The segment bytes (hashed, not copied).
    pub data: &'a [u8],
    /// keccak256 of `data` if already known (digested while the segment was written).
    pub hash: Option<[u8; 32]>,
    /// Duration in milliseconds.
    pub duration_ms: i32,
    /// Output profiles, in rendition order.
    pub profiles: &'a [VideoProfile],
    /// Job capabilities.
    pub capabilities: &'a Capabilities,
    /// The session's auth token, echoed verbatim.
    pub auth_token: Option<&'a AuthToken>,
}

/// Builds the `SegData` for a segment. With a signer (on-chain) it carries the segment
/// credentials signature (§3.2); off-chain it carries none.
pub fn seg_data(req: &SegmentRequest<'_>, signer: Option<&EthSigner>) -> SegData {
    let hash = req.hash.unwrap_or_else(|| keccak256(req.data));
    let sig = signer.map(|s| {
        let flat =
            flatten_segment(req.manifest_id.as_bytes(), req.seq, &hash, req.profiles.iter().map(|p| p.name.as_str()));
        s.sign_message(&flat).to_vec()
    });
    let mut sd = SegData {
        manifest_id: req.manifest_id.as_bytes().to_vec(),
        seq: req.seq as i64,
        hash: hash.to_vec(),
        profiles: LEGACY_PROFILES_FIELD.to_vec(),
        sig: sig.unwrap_or_default(),
        duration: req.duration_ms,
        capabilities: Some(req.capabilities.clone()),
        auth_token: req.auth_token.cloned(),
        ..Default::default()
    };
    // §2.9: which of the three profile fields carries the list.
    let extended =
        req.profiles.iter().any(|p| p.fps_den != 0 || p.profile != Profile::EncoderDefault as i32 || p.gop != 0);
    let mp4 = req.profiles.iter().any(|p| p.format == Format::Mp4 as i32);
    let list = req.profiles.to_vec();
    if extended {
        sd.full_profiles3 = list;
    } else if mp4 {
        sd.full_profiles2 = list;
    } else {
        sd.full_profiles = list;
    }
    sd
}

/// The `Livepeer-Segment` header value: standard base64 with padding.
pub fn segment_header(sd: &SegData) -> String {
    STANDARD.encode(sd.encode_to_vec())
}

/// The `Livepeer-Payment` header value: standard base64, or empty off-chain.
pub fn payment_header(payment: Option<&Payment>) -> String {
    payment.map(|p| STANDARD.encode(p.encode_to_vec())).unwrap_or_default()
}

/// Decodes a `Livepeer-Segment` header (the orchestrator side, and tests).
pub fn decode_segment_header(value: &str) -> Option<SegData> {
    SegData::decode(STANDARD.decode(value).ok()?.as_slice()).ok()
}

/// Decodes the body of a 200 answer to `/segment` (a `TranscodeResult`, §4.2). Anything
/// else is a [`FailureReason::BadReply`].
pub fn decode_result(body: &[u8]) -> Result<TranscodeResult, Failure> {
    TranscodeResult::decode(body).map_err(|e| Failure::new(FailureReason::BadReply, format!("TranscodeResult: {e}")))
}

/// Deadline for a `GetOrchestrator` call (discovery 3 s connect; refresh 2.5 s).
pub const GRPC_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline for each rendition download (`HTTPTimeout / 2`).
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(4);

/// Per-segment deadlines (§4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentTimeouts {
    /// Until the response headers arrive (the upload): max(2 s, 0.5 × duration).
    pub upload: Duration,
    /// The whole request, transcode and body included: max(8 s, 4 × duration).
    pub total: Duration,
}

impl SegmentTimeouts {
    /// Deadlines for a segment of `duration`, scaled by `multiplier` when it is above 1.
    pub fn for_duration(duration: Duration, multiplier: f64) -> Self {
        let m = if multiplier > 1.0 { multiplier } else { 1.0 };
        SegmentTimeouts {
            upload: duration.mul_f64(0.5).max(Duration::from_secs(2)).mul_f64(m),
            total: duration.mul_f64(4.0).max(Duration::from_secs(8)).mul_f64(m),
        }
    }
}

/// Checks `TranscodeData.sig` (§4.5): personal_sign by the orchestrator of
/// keccak256(keccak256(r0) ‖ keccak256(r1) ‖ …) over the rendition bytes.
pub fn verify_results(renditions: &[&[u8]], sig: &[u8], orchestrator: &Address) -> Result<(), IdentityError> {
    let mut cat = Vec::with_capacity(32 * renditions.len());
    for r in renditions {
        cat.extend_from_slice(&keccak256(r));
    }
    let who = recover_personal(&keccak256(&cat), sig)?;
    if &who == orchestrator { Ok(()) } else { Err(IdentityError::InvalidSignature("signed by another address")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::job_capabilities;
    use crate::credentials::segment_signing_digest;
    use crate::profiles::{DEFAULT_TRANSCODING_OPTIONS, parse_transcoding_options};

    fn signer() -> EthSigner {
        EthSigner::from_hex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap()
    }

    #[test]
    fn seg_data_is_signed_over_the_flattened_metadata() {
        let profiles = parse_transcoding_options(DEFAULT_TRANSCODING_OPTIONS).unwrap();
        let caps = job_capabilities(&profiles, false, "");
        let token = AuthToken { token: vec![1, 2], session_id: "0a0b0c0d".into(), expiration: 99 };
        let req = SegmentRequest {
            hash: None,
            manifest_id: "abcd",
            seq: 3,
            data: b"",
            duration_ms: 2000,
            profiles: &profiles,
            capabilities: &caps,
            auth_token: Some(&token),
        };
        let s = signer();
        let sd = seg_data(&req, Some(&s));
        assert_eq!(sd.profiles, b"invalid");
        assert_eq!(sd.full_profiles.len(), 2);
        assert!(sd.full_profiles2.is_empty() && sd.full_profiles3.is_empty());
        assert_eq!(sd.auth_token.as_ref(), Some(&token));
        // What an orchestrator checks: the digest of §11's second flatten vector, signed by us.
        let flat = flatten_segment(b"abcd", 3, &keccak256(b""), ["P240p30fps16x9", "P360p30fps16x9"]);
        assert_eq!(
            hex::encode(segment_signing_digest(&flat)),
            "4716812ac4de0084e5e2bc25be92d50081c0a6d44047da94e763a342bc86b9b6"
        );
        assert_eq!(recover_personal(&keccak256(&flat), &sd.sig), Ok(s.address()));
        // Off-chain: no signature.
        assert!(seg_data(&req, None).sig.is_empty());
        // The header round-trips.
        assert_eq!(decode_segment_header(&segment_header(&sd)), Some(sd));
        assert_eq!(payment_header(None), "");
    }

    #[test]
    fn profile_field_selection() {
        let base = parse_transcoding_options("P240p30fps16x9").unwrap();
        let caps = Capabilities::default();
        let req = |p: &[VideoProfile]| {
            seg_data(
                &SegmentRequest {
                    hash: None,
                    manifest_id: "m",
                    seq: 0,
                    data: b"x",
                    duration_ms: 1,
                    profiles: p,
                    capabilities: &caps,
                    auth_token: None,
                },
                None,
            )
        };
        let mp4 = vec![VideoProfile { format: Format::Mp4 as i32, ..base[0].clone() }];
        assert_eq!(req(&mp4).full_profiles2.len(), 1);
        let ntsc = vec![VideoProfile { fps_den: 1001, ..base[0].clone() }];
        assert_eq!(req(&ntsc).full_profiles3.len(), 1);
        let gop = vec![VideoProfile { gop: 2000, format: Format::Mp4 as i32, ..base[0].clone() }];
        assert_eq!(req(&gop).full_profiles3.len(), 1, "extended beats MP4");
    }

    #[test]
    fn timeouts_follow_segment_duration() {
        let t = SegmentTimeouts::for_duration(Duration::from_secs(2), 1.0);
        assert_eq!((t.upload, t.total), (Duration::from_secs(2), Duration::from_secs(8)));
        let t = SegmentTimeouts::for_duration(Duration::from_secs(10), 1.0);
        assert_eq!((t.upload, t.total), (Duration::from_secs(5), Duration::from_secs(40)));
        let t = SegmentTimeouts::for_duration(Duration::from_secs(2), 3.0);
        assert_eq!((t.upload, t.total), (Duration::from_secs(6), Duration::from_secs(24)));
    }

    #[test]
    fn result_signatures() {
        let o = signer();
        let (r0, r1) = (b"rendition zero".as_slice(), b"rendition one".as_slice());
        let mut cat = keccak256(r0).to_vec();
        cat.extend_from_slice(&keccak256(r1));
        let sig = o.personal_sign(&keccak256(&cat));
        assert_eq!(verify_results(&[r0, r1], &sig, &o.address()), Ok(()));
        assert!(verify_results(&[r1, r0], &sig, &o.address()).is_err(), "order matters");
        assert!(verify_results(&[r0, r1], &sig, &[0; 20]).is_err());
    }
}
