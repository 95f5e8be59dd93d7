//! The RTMP server session after a valid handshake: chunk stream, control messages, AMF0
//! commands and media, fed in arbitrary splits. Invariants: no panic; the session never
//! holds more unfinished message bytes than its limit; an error is final.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use ingest::rtmp::handshake::{HANDSHAKE_SIZE, client_c0c1};
use ingest::rtmp::session::{ServerSession, SessionConfig};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Split points for delivering the bytes.
    splits: Vec<u16>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let mut s = ServerSession::new(SessionConfig::default(), 0, 1);
    let mut buf = client_c0c1(7);
    buf.extend_from_slice(&[0u8; HANDSHAKE_SIZE]);
    s.handle_input(&mut buf).expect("a valid handshake is accepted");
    let mut rest = &input.data[..];
    let mut splits = input.splits.iter();
    let mut buf = BytesMut::new();
    while !rest.is_empty() {
        let n = splits.next().map_or(rest.len(), |&k| (k as usize % rest.len()) + 1);
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if s.handle_input(&mut buf).is_err() {
            return;
        }
        while s.poll_transmit().is_some() {}
        while let Some(ev) = s.poll_event() {
            if let ingest::rtmp::session::SessionEvent::Publish { .. } = ev {
                s.accept_publish();
            }
        }
        // Only an incomplete chunk header may stay in the buffer.
        assert!(buf.len() < 64, "decoder left {} bytes unconsumed", buf.len());
    }
});
