//! Log-safe display of client addresses: publishers' IPs are personal data, so logs show
//! the network, not the host (`203.0.113.x`, `2001:db8:85a3::x`). Loopback is shown as is;
//! it identifies nobody and matters when debugging locally.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// A client address that displays with its host part masked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RedactedAddr(pub SocketAddr);

impl fmt::Display for RedactedAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.ip() {
            ip if ip.is_loopback() => write!(f, "{}", self.0),
            IpAddr::V4(v4) => {
                let o = v4.octets();
                write!(f, "{}.{}.{}.x", o[0], o[1], o[2])
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                write!(f, "{:x}:{:x}:{:x}::x", s[0], s[1], s[2])
            }
        }
    }
}

impl fmt::Debug for RedactedAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_hosts_but_not_loopback() {
        let r = |s: &str| RedactedAddr(s.parse().unwrap()).to_string();
        assert_eq!(r("203.0.113.7:5000"), "203.0.113.x");
        assert_eq!(r("[2001:db8:85a3::8a2e:370:7334]:1935"), "2001:db8:85a3::x");
        assert_eq!(r("127.0.0.1:4000"), "127.0.0.1:4000");
    }
}
