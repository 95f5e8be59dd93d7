//! The orchestrator's `/segment` admission on arbitrary header contents: protobuf bytes
//! (base64-encoded, so the fuzzer works on what the decoder sees) or raw header strings.
//! Invariants: no panic; every refusal maps to one of the spec's statuses; an admitted
//! segment carries a duration within bounds.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use orchestrator::admission::SegmentGate;
use orchestrator::auth::AuthTokens;
use orchestrator::recipient::{DEFAULT_TICKET_EV, Recipient};
use transport::proto::Capabilities;

#[derive(Arbitrary, Debug)]
struct Input {
    on_chain: bool,
    raw_headers: bool,
    segment: Vec<u8>,
    payment: Vec<u8>,
    now: i64,
    block: u64,
}

fuzz_target!(|input: Input| {
    let mut gate = SegmentGate {
        auth: AuthTokens::new(b"fuzz"),
        recipient: input.on_chain.then(|| Recipient::new([7; 20], b"fuzz", DEFAULT_TICKET_EV)),
        capabilities: Capabilities { bitstring: vec![u64::MAX], ..Default::default() },
    };
    let (seg, pay) = if input.raw_headers {
        (String::from_utf8_lossy(&input.segment).into_owned(), String::from_utf8_lossy(&input.payment).into_owned())
    } else {
        (STANDARD.encode(&input.segment), STANDARD.encode(&input.payment))
    };
    match gate.admit(&seg, &pay, input.now, input.block) {
        Ok(a) => {
            assert!((0..=orchestrator::admission::MAX_DURATION_MS).contains(&a.duration_ms));
            let _ = SegmentGate::check_body(&a, &input.segment);
        }
        Err(r) => assert!(matches!(r.status(), 400 | 402 | 403)),
    }
});
