//! ICE servers from the configuration: parsed once, handed to `webrtcbin` (its
//! `stun://` and `turn://user:pass@` forms) and announced to WHIP and WHEP clients in
//! `Link` headers (RFC 9725 §4.6: `<turn:host:port?transport=udp>; rel="ice-server";
//! username=…; credential=…; credential-type="password"`).

/// A STUN or TURN server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun`, `stuns`, `turn` or `turns`.
    pub scheme: String,
    /// `host:port` (the port may be absent: 3478, or 5349 for the TLS schemes).
    pub host: String,
    /// The query (`transport=udp`), without `?`.
    pub query: Option<String>,
    /// TURN long-term credentials.
    pub username: Option<String>,
    /// The TURN password.
    pub credential: Option<String>,
}

/// Why a configured ICE server was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IceServerError {
    /// Not `stun:`, `stuns:`, `turn:` or `turns:`.
    #[error("ICE server {0:?}: the scheme is stun:, stuns:, turn: or turns:")]
    Scheme(String),
    /// No host, or characters that cannot go in a header or a URI's credentials.
    #[error(
        "ICE server {0:?}: expected scheme:[user:password@]host[:port][?transport=udp|tcp] (no / # % @ ? : in the credentials)"
    )]
    Malformed(String),
    /// A TURN server without both user name and password.
    #[error("ICE server {0:?}: a TURN server needs user:password@")]
    TurnCredentials(String),
}

impl std::str::FromStr for IceServer {
    type Err = IceServerError;

    /// Parses `scheme:[user:password@]host[:port][?query]` (`//` after the scheme is
    /// allowed too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s.split_once(':').ok_or_else(|| IceServerError::Scheme(s.to_owned()))?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "stun" | "stuns" | "turn" | "turns") {
            return Err(IceServerError::Scheme(s.to_owned()));
        }
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q.to_owned())),
            None => (rest, None),
        };
        let (userinfo, host) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let clean = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic() && !b"\"<>,;\\".contains(&b));
        if !clean(host) || host.contains('/') || query.as_deref().is_some_and(|q| !clean(q)) {
            return Err(IceServerError::Malformed(s.to_owned()));
        }
        let (username, credential) = match userinfo {
            Some(u) => {
                let (name, pass) = u.split_once(':').ok_or_else(|| IceServerError::TurnCredentials(s.to_owned()))?;
                // Credentials go into webrtcbin's URI unencoded: characters with a meaning
                // there are refused rather than silently breaking TURN.
                let plain = |t: &str| clean(t) && !t.contains(['/', '#', '%', '@', '?', ':']);
                if !plain(name) || !plain(pass) {
                    return Err(IceServerError::Malformed(s.to_owned()));
                }
                (Some(name.to_owned()), Some(pass.to_owned()))
            }
            None => (None, None),
        };
        if scheme.starts_with("turn") && username.is_none() {
            return Err(IceServerError::TurnCredentials(s.to_owned()));
        }
        Ok(IceServer { scheme, host: host.to_owned(), query, username, credential })
    }
}

impl IceServer {
    /// A TURN server (relays media), not a STUN one.
    pub fn is_turn(&self) -> bool {
        self.scheme.starts_with("turn")
    }

    /// The URI without credentials: `turn:host:port?transport=udp`.
    pub fn uri(&self) -> String {
        match &self.query {
            Some(q) => format!("{}:{}?{q}", self.scheme, self.host),
            None => format!("{}:{}", self.scheme, self.host),
        }
    }

    /// The `Link` header value announcing this server to a client.
    pub fn link(&self) -> String {
        let mut l = format!("<{}>; rel=\"ice-server\"", self.uri());
        if let (Some(u), Some(c)) = (&self.username, &self.credential) {
            l.push_str(&format!("; username=\"{u}\"; credential=\"{c}\"; credential-type=\"password\""));
        }
        l
    }

    /// The form `webrtcbin` takes: `stun://host:port` or `turn://user:pass@host:port`
    /// (with the query kept for the transport).
    pub fn gstreamer_uri(&self) -> String {
        let port = if self.host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            String::new()
        } else if self.scheme.ends_with('s') {
            ":5349".into()
        } else {
            ":3478".into()
        };
        let auth = match (&self.username, &self.credential) {
            (Some(u), Some(c)) => format!("{u}:{c}@"),
            _ => String::new(),
        };
        let query = self.query.as_ref().map(|q| format!("?{q}")).unwrap_or_default();
        format!("{}://{auth}{}{port}{query}", self.scheme, self.host)
    }
}

/// `sdp` (an answer) with only the host candidates on `addresses`: the ICE agent gathers
/// on every interface, and a peer learns of the others only from the answer, so this
/// keeps sessions on the configured interfaces. Server-reflexive and relayed candidates
/// (from STUN and TURN) stay. A candidate line that cannot be read is dropped.
pub fn keep_host_candidates(sdp: &str, addresses: &[std::net::IpAddr]) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if let Some(c) = line.trim_end().strip_prefix("a=candidate:") {
            // foundation component transport priority address port typ type …
            let f: Vec<&str> = c.split_whitespace().collect();
            let host = f.get(7) == Some(&"host");
            let ours =
                f.get(4).and_then(|a| a.parse::<std::net::IpAddr>().ok()).is_some_and(|a| addresses.contains(&a));
            if f.len() < 8 || (host && !ours) {
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_candidates_on_other_interfaces_are_dropped() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=candidate:1 1 UDP 2015363327 10.0.0.5 40000 typ host\r\n\
a=candidate:2 1 UDP 2015363327 192.0.2.2 40001 typ host\r\n\
a=candidate:3 1 UDP 1677732095 203.0.113.9 40002 typ srflx raddr 10.0.0.5 rport 40000\r\n\
a=candidate:4 1 UDP 2015363327 fd00::2 40003 typ host\r\n\
a=candidate:bad\r\na=end-of-candidates\r\n";
        let kept = keep_host_candidates(sdp, &["192.0.2.2".parse().unwrap()]);
        assert!(!kept.contains("10.0.0.5 40000 typ host") && !kept.contains("fd00::2"), "{kept}");
        assert!(kept.contains("192.0.2.2 40001 typ host") && kept.contains("typ srflx"), "{kept}");
        assert!(!kept.contains("candidate:bad") && kept.ends_with("a=end-of-candidates\r\n"), "{kept}");
        assert!(kept.starts_with("v=0\r\nm=video"));
    }

    #[test]
    fn stun_and_turn() {
        let s: IceServer = "stun:stun.example.net:19302".parse().unwrap();
        assert_eq!(s.link(), "<stun:stun.example.net:19302>; rel=\"ice-server\"");
        assert_eq!(s.gstreamer_uri(), "stun://stun.example.net:19302");
        assert!(!s.is_turn());
        let t: IceServer = "turn:user:myPassword@turn.example.net?transport=udp".parse().unwrap();
        assert_eq!(
            t.link(),
            "<turn:turn.example.net?transport=udp>; rel=\"ice-server\"; username=\"user\"; \
credential=\"myPassword\"; credential-type=\"password\""
        );
        assert_eq!(t.gstreamer_uri(), "turn://user:myPassword@turn.example.net:3478?transport=udp");
        let ts: IceServer = "turns://u:p@relay.example.net".parse().unwrap();
        assert_eq!(ts.gstreamer_uri(), "turns://u:p@relay.example.net:5349");
    }

    #[test]
    fn refusals() {
        assert!(matches!("http://x".parse::<IceServer>(), Err(IceServerError::Scheme(_))));
        assert!(matches!("stun:".parse::<IceServer>(), Err(IceServerError::Malformed(_))));
        assert!(matches!("stun:a\"b".parse::<IceServer>(), Err(IceServerError::Malformed(_))));
        assert!(matches!("turn:relay.example.net".parse::<IceServer>(), Err(IceServerError::TurnCredentials(_))));
        assert!(matches!("turn:user@relay".parse::<IceServer>(), Err(IceServerError::TurnCredentials(_))));
        assert!(matches!("turn:u:p;x@relay".parse::<IceServer>(), Err(IceServerError::Malformed(_))));
        assert!(matches!("turn:u:p/w#d@relay".parse::<IceServer>(), Err(IceServerError::Malformed(_))));
    }

    proptest::proptest! {
        /// Whatever parses gives a header value without quotes or angle brackets inside
        /// its fields, and never panics.
        #[test]
        fn parsed_servers_make_clean_headers(s in "[a-z]{3,5}:[ -~]{0,40}") {
            if let Ok(i) = s.parse::<IceServer>() {
                proptest::prop_assert!(!i.uri().contains(['<', '>', '"']));
                proptest::prop_assert!(i.link().is_ascii());
            }
        }
    }
}
