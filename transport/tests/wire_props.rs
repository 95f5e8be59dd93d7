//! Property tests of the wire formats the gateway and orchestrator exchange: header
//! encodings round-trip, decoders never panic on arbitrary bytes, and what the gateway
//! computes from an orchestrator's reply stays bounded.
use num_rational::BigRational;
use num_traits::Zero;
use proptest::prelude::*;
use prost::Message;
use transport::identity::EthSigner;
use transport::orch_addr::parse_orch_addrs;
use transport::pm::{MAX_SENDER_NONCES, TicketSender, price_per_pixel, segment_fee, tickets_needed};
use transport::proto::{
    AuthToken, Capabilities, OrchestratorInfo, PriceInfo, SegData, TicketParams, TranscodeData, TranscodeResult,
    TranscodedSegmentData, VideoProfile, transcode_result,
};
use transport::segment::{decode_segment_header, segment_header};

fn arb_profile() -> impl Strategy<Value = VideoProfile> {
    ("[A-Za-z0-9]{1,16}", 0i32..4096, 0i32..4096, 0i32..20_000_000, 0u32..120, 0u32..2).prop_map(
        |(name, width, height, bitrate, fps, fps_den)| VideoProfile {
            name,
            width,
            height,
            bitrate,
            fps,
            fps_den,
            ..Default::default()
        },
    )
}

fn arb_segdata() -> impl Strategy<Value = SegData> {
    (
        proptest::collection::vec(any::<u8>(), 0..40),
        any::<i64>(),
        proptest::collection::vec(any::<u8>(), 32),
        proptest::collection::vec(any::<u8>(), 0..65),
        any::<i32>(),
        proptest::collection::vec(any::<u64>(), 0..3),
        proptest::option::of(("[0-9a-f]{8}", any::<i64>())),
        proptest::collection::vec(arb_profile(), 0..4),
    )
        .prop_map(|(manifest_id, seq, hash, sig, duration, bits, token, profiles)| SegData {
            manifest_id,
            seq,
            hash,
            profiles: b"invalid".to_vec(),
            sig,
            duration,
            capabilities: Some(Capabilities { bitstring: bits, ..Default::default() }),
            auth_token: token.map(|(session_id, expiration)| AuthToken { token: vec![1; 32], session_id, expiration }),
            full_profiles: profiles,
            ..Default::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn segment_header_round_trips(sd in arb_segdata()) {
        let h = segment_header(&sd);
        prop_assert!(h.bytes().all(|b| b.is_ascii_graphic()), "a valid HTTP header value");
        prop_assert_eq!(decode_segment_header(&h), Some(sd));
    }

    #[test]
    fn transcode_result_round_trips(
        seq in any::<i64>(),
        urls in proptest::collection::vec(("[a-z0-9:/._-]{0,60}", any::<i64>()), 0..4),
        err in proptest::option::of("[ -~]{0,40}"),
        sig in proptest::collection::vec(any::<u8>(), 0..65),
    ) {
        let result = match err {
            Some(e) => transcode_result::Result::Error(e),
            None => transcode_result::Result::Data(TranscodeData {
                segments: urls.into_iter().map(|(url, pixels)| TranscodedSegmentData { url, pixels, ..Default::default() }).collect(),
                sig,
            }),
        };
        let r = TranscodeResult { seq, result: Some(result), info: Some(OrchestratorInfo::default()) };
        prop_assert_eq!(TranscodeResult::decode(&r.encode_to_vec()[..]).unwrap(), r);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), text in "[ -~]{0,200}") {
        let _ = TranscodeResult::decode(&bytes[..]);
        let _ = OrchestratorInfo::decode(&bytes[..]);
        let _ = SegData::decode(&bytes[..]);
        let _ = decode_segment_header(&text);
        let _ = parse_orch_addrs(&text);
    }

    /// Whatever params and price an orchestrator quotes, the gateway's ticket count is
    /// finite and a payment beyond the nonce limit is refused rather than signed.
    #[test]
    fn quoted_params_give_bounded_payments(
        face in proptest::collection::vec(any::<u8>(), 0..33),
        win in proptest::collection::vec(any::<u8>(), 0..33),
        price in 0i64..1_000_000, ppu in 1i64..1_000_000,
    ) {
        let mut s = TicketSender::new(EthSigner::from_hex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap());
        let tp = TicketParams { recipient: vec![1; 20], face_value: face, win_prob: win, recipient_rand_hash: vec![2; 32], ..Default::default() };
        if s.update_params(&tp).is_err() {
            return Ok(());
        }
        let pi = PriceInfo { price_per_unit: price, pixels_per_unit: ppu, ..Default::default() };
        let fee = segment_fee(19_958_400, &price_per_pixel(&pi).unwrap());
        let batch = tickets_needed(&BigRational::zero(), &fee, &s.ticket_ev());
        if batch.count > MAX_SENDER_NONCES {
            prop_assert!(s.payment(batch.count, &pi).is_err());
        } else if batch.count <= 8 {
            let p = s.payment(batch.count, &pi).unwrap();
            prop_assert_eq!(p.ticket_sender_params.len() as u32, batch.count);
        }
    }
}
