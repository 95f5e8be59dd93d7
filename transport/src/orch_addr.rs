//! Orchestrator addresses as operators write them (`--orch-addr`), normalised as
//! go-livepeer's `parseOrchAddrs` does (spec §1): default host 127.0.0.1, default port
//! 8935, `https://` unless the entry already names `http…`.

use std::fmt;

/// Default orchestrator port.
pub const DEFAULT_ORCHESTRATOR_PORT: u16 = 8935;

/// A normalised orchestrator service URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrchestratorUri {
    /// True for `https` (the default), false for cleartext `http`.
    pub tls: bool,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl fmt::Display for OrchestratorUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// An entry that is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid orchestrator address {0:?}")]
pub struct OrchAddrError(pub String);

/// Parses a comma-separated `--orch-addr` list. Empty entries are skipped.
pub fn parse_orch_addrs(list: &str) -> Result<Vec<OrchestratorUri>, OrchAddrError> {
    list.split(',').map(str::trim).filter(|e| !e.is_empty()).map(parse_one).collect()
}

fn parse_one(entry: &str) -> Result<OrchestratorUri, OrchAddrError> {
    let err = || OrchAddrError(entry.to_owned());
    let (tls, rest) = if let Some(r) = entry.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = entry.strip_prefix("http://") {
        (false, r)
    } else if entry.starts_with("http") {
        return Err(err());
    } else {
        (true, entry)
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(err)?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => DEFAULT_ORCHESTRATOR_PORT,
        Some(p) => p.parse().map_err(|_| err())?,
    };
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    if host.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err(err());
    }
    Ok(OrchestratorUri { tls, host: host.to_owned(), port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> String {
        parse_orch_addrs(s).unwrap()[0].to_string()
    }

    #[test]
    fn normalises_like_go_livepeer() {
        assert_eq!(one("1.2.3.4"), "https://1.2.3.4:8935");
        assert_eq!(one("1.2.3.4:9000"), "https://1.2.3.4:9000");
        assert_eq!(one(":9000"), "https://127.0.0.1:9000");
        assert_eq!(one("orch.example.com"), "https://orch.example.com:8935");
        assert_eq!(one("http://localhost:8936"), "http://localhost:8936");
        assert_eq!(one("https://o.example/"), "https://o.example:8935");
        assert_eq!(one("[::1]:8936"), "https://[::1]:8936");
        let list = parse_orch_addrs("a, b:1 ,,http://c").unwrap();
        assert_eq!(list.len(), 3);
        assert!(!list[2].tls);
        assert!(parse_orch_addrs("a:notaport").is_err());
        assert!(parse_orch_addrs("httpx://a").is_err());
    }
}
