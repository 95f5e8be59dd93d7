//! AMF0 decoding. Invariants: no panic; whatever decodes re-encodes to bytes that decode
//! to the same encoding again (encode ∘ decode is a fixed point).
#![no_main]

use bytes::BytesMut;
use ingest::rtmp::amf0::{decode_all, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(values) = decode_all(data) else { return };
    let mut once = BytesMut::new();
    for v in &values {
        encode(v, &mut once);
    }
    let again = decode_all(&once).expect("our own encoding decodes");
    let mut twice = BytesMut::new();
    for v in &again {
        encode(v, &mut twice);
    }
    assert_eq!(once, twice);
});
