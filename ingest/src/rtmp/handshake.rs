//! The RTMP handshake (§5.2): C0/C1 → S0/S1/S2 → C2.
//!
//! Sluice answers with the plain handshake: S1 carries a zero version field, which tells
//! clients that offer the Flash Player 9 digest scheme (librtmp as used by OBS, ffmpeg) to
//! skip digest verification, and S2 echoes C1. C2 is read and not checked: clients fill it
//! inconsistently and nothing depends on it.

use bytes::{Buf, BufMut, BytesMut};

use crate::error::RtmpError;

/// Size of C1/C2/S1/S2.
pub const HANDSHAKE_SIZE: usize = 1536;
/// The only RTMP version there is; 6 would be RTMPE, which Sluice does not speak.
pub const RTMP_VERSION: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    WaitC0C1,
    WaitC2,
    Done,
}

/// The server side of the handshake.
pub struct ServerHandshake {
    state: State,
    epoch_ms: u32,
    seed: u64,
}

impl ServerHandshake {
    /// `epoch_ms` goes into S1's time field, `seed` fills its random part.
    pub fn new(epoch_ms: u32, seed: u64) -> Self {
        ServerHandshake { state: State::WaitC0C1, epoch_ms, seed }
    }

    /// True once C2 has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes handshake bytes from `buf` and appends the server's answer to `out`.
    /// Returns true when the handshake is complete.
    pub fn handle(&mut self, buf: &mut BytesMut, out: &mut BytesMut) -> Result<bool, RtmpError> {
        if self.state == State::WaitC0C1 {
            if let Some(&v) = buf.first()
                && v != RTMP_VERSION
            {
                return Err(RtmpError::Version(v));
            }
            if buf.len() < 1 + HANDSHAKE_SIZE {
                return Ok(false);
            }
            let c1 = &buf[1..1 + HANDSHAKE_SIZE];
            out.reserve(1 + 2 * HANDSHAKE_SIZE);
            out.put_u8(RTMP_VERSION);
            out.put_u32(self.epoch_ms);
            out.put_u32(0);
            fill_random(out, HANDSHAKE_SIZE - 8, self.seed);
            out.put_slice(c1);
            buf.advance(1 + HANDSHAKE_SIZE);
            self.state = State::WaitC2;
        }
        if self.state == State::WaitC2 {
            if buf.len() < HANDSHAKE_SIZE {
                return Ok(false);
            }
            buf.advance(HANDSHAKE_SIZE);
            self.state = State::Done;
        }
        Ok(true)
    }
}

/// C0 and C1 for a client handshake.
pub fn client_c0c1(seed: u64) -> BytesMut {
    let mut out = BytesMut::with_capacity(1 + HANDSHAKE_SIZE);
    out.put_u8(RTMP_VERSION);
    out.put_u32(0);
    out.put_u32(0);
    fill_random(&mut out, HANDSHAKE_SIZE - 8, seed);
    out
}

/// Appends `n` pseudo-random bytes (xorshift64*): the handshake needs bytes that differ
/// between connections, not secrecy.
fn fill_random(out: &mut BytesMut, n: usize, seed: u64) {
    let mut x = seed | 1;
    for _ in 0..n / 8 {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.put_u64(x.wrapping_mul(0x2545_f491_4f6c_dd1d));
    }
    for _ in 0..n % 8 {
        out.put_u8(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_c0c1_and_waits_for_c2() {
        let mut hs = ServerHandshake::new(42, 7);
        let mut buf = client_c0c1(1);
        let c1 = buf[1..].to_vec();
        let mut out = BytesMut::new();
        assert!(!hs.handle(&mut buf, &mut out).unwrap());
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(out[0], 3);
        assert_eq!(&out[5..9], &[0, 0, 0, 0], "zero version: no digest handshake");
        assert_eq!(&out[1 + HANDSHAKE_SIZE..], &c1[..], "S2 echoes C1");
        buf.extend_from_slice(&[0u8; HANDSHAKE_SIZE]);
        buf.extend_from_slice(&[1, 2, 3]);
        assert!(hs.handle(&mut buf, &mut out).unwrap());
        assert_eq!(&buf[..], &[1, 2, 3], "bytes after C2 are left for the chunk stream");
    }

    #[test]
    fn rejects_other_versions() {
        let mut hs = ServerHandshake::new(0, 0);
        let mut buf = BytesMut::from(&[6u8, 0, 0][..]);
        assert!(matches!(hs.handle(&mut buf, &mut BytesMut::new()), Err(RtmpError::Version(6))));
    }
}
