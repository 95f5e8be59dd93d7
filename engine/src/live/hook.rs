//! `POST /live/video-to-video/{stream}/start` (and `…/{prefix}/{stream}/start`): the
//! media-server hook (MediaMTX `runOnReady`) that starts a live AI stream whose input a
//! media server has (spec `trickle-and-live-ai.md` §2.1, go-livepeer
//! `server/ai_mediaserver.go` `StartLiveVideo`).
//!
//! The form is multipart (`curl -F`) with `source_id`, `source_type` (`rtmpconn` or
//! `webrtcsession`, any case), `query` (the ingest URL's query string: `pipeline`,
//! `params`, `streamId`) and optionally `rtmp_url`. Checks and answers follow go-livepeer:
//!
//! | case | answer |
//! |---|---|
//! | no `source_id` / `source_type` | 400 `Missing source_id` / `Missing source_type` |
//! | another `source_type` | 400 `unknown media source` |
//! | stream name ending in `-out` | 200, nothing done (a processed output coming back) |
//! | `params` not a JSON object | 400 `Invalid model params` |
//! | no `pipeline` | the `noop` model, as go-livepeer |
//! | the auth webhook refuses | 403 `Forbidden` |
//! | `rtmp_url` not `rtmp://` or `rtmps://` | 400 |
//! | a caller that is not loopback (unless `--live-hook-allow-remote`), or a browser (`Origin`) | 403 |
//! | a stream of that name exists | 409 |
//! | started | 200 with the stream's URLs |
//!
//! Without `rtmp_url` the input is `rtmp://{caller's address}/{prefix/}{stream}`, as
//! go-livepeer's: the media server that called is the one that has the stream.
use std::collections::HashMap;

use super::{LiveRequest, LiveRequestError};

/// go-livepeer's model when the query names none.
pub const DEFAULT_PIPELINE: &str = "noop";

/// A form field longer than this is refused (bytes).
pub const MAX_FIELD: usize = 16 * 1024;

/// What the hook asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct StartHook {
    /// `rtmp` or `whip` (from `source_type`).
    pub source: &'static str,
    /// The media server's id for the connection.
    pub source_id: String,
    /// Where to pull the input; `None`: from the caller, at the stream's path.
    pub rtmp_url: Option<String>,
    /// The live AI request the query makes.
    pub request: LiveRequest,
}

/// Why the hook's form is refused (all 400s, go-livepeer's texts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// A required field is absent or empty.
    #[error("Missing {0}")]
    Missing(&'static str),
    /// `source_type` is neither `rtmpconn` nor `webrtcsession`.
    #[error("unknown media source")]
    UnknownSource,
    /// `params` is not a JSON object.
    #[error("Invalid model params")]
    Params,
    /// `pipeline` is not a usable model name.
    #[error("{0}")]
    Pipeline(LiveRequestError),
    /// The input URL is not an `rtmp://` or `rtmps://` URL.
    #[error("rtmp_url must be an rtmp:// or rtmps:// URL")]
    Source,
}

/// Checks the URL the stream is pulled from: only RTMP(S), so the hook cannot make the
/// gateway read files or other protocols (ffmpeg is also told to allow no others).
///
/// Errors: [`HookError::Source`].
pub fn check_source(url: &str) -> Result<(), HookError> {
    let lower = url.to_ascii_lowercase();
    let ok = (lower.starts_with("rtmp://") || lower.starts_with("rtmps://"))
        && !url.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok { Ok(()) } else { Err(HookError::Source) }
}

/// Reads the hook's form `fields` for stream `stream`; `Ok(None)` for a processed
/// output (`…-out`), which the hook ignores.
///
/// Errors: [`HookError`], answered 400.
pub fn parse_hook(stream: &str, fields: &HashMap<String, String>) -> Result<Option<StartHook>, HookError> {
    let field = |k: &str| fields.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let source_id = field("source_id").ok_or(HookError::Missing("source_id"))?.to_owned();
    let source = match field("source_type").ok_or(HookError::Missing("source_type"))?.to_ascii_lowercase().as_str() {
        "rtmpconn" => "rtmp",
        "webrtcsession" => "whip",
        _ => return Err(HookError::UnknownSource),
    };
    if stream.ends_with("-out") {
        return Ok(None);
    }
    let query = field("query").unwrap_or("").trim_start_matches('?').to_owned();
    let mut pipeline = None;
    let mut params = None;
    let mut stream_id = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "pipeline" => pipeline = Some(v.into_owned()).filter(|p| !p.is_empty()),
            "params" => params = Some(v.into_owned()).filter(|p| !p.trim().is_empty()),
            "streamId" => stream_id = Some(v.into_owned()).filter(|s| !s.is_empty()),
            _ => {}
        }
    }
    let params = match params {
        None => serde_json::json!({}),
        Some(p) => match serde_json::from_str::<serde_json::Value>(&p) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => return Err(HookError::Params),
        },
    };
    let pipeline = pipeline.unwrap_or_else(|| DEFAULT_PIPELINE.to_owned());
    super::check_pipeline(&pipeline).map_err(HookError::Pipeline)?;
    Ok(Some(StartHook {
        source,
        source_id,
        rtmp_url: field("rtmp_url").map(str::to_owned),
        request: LiveRequest { pipeline, params, stream_id, query, source, ..Default::default() },
    }))
}

/// The input URL when the form gives none: the caller at the stream's path.
pub fn default_input(caller: std::net::IpAddr, prefix: Option<&str>, stream: &str) -> String {
    let host = match caller {
        std::net::IpAddr::V6(v6) if v6.is_loopback() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    };
    match prefix {
        Some(p) => format!("rtmp://{host}/{p}/{stream}"),
        None => format!("rtmp://{host}/{stream}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn checks_follow_go_livepeer() {
        assert_eq!(parse_hook("cam", &form(&[("source_type", "rtmpconn")])), Err(HookError::Missing("source_id")));
        assert_eq!(parse_hook("cam", &form(&[("source_id", "1")])), Err(HookError::Missing("source_type")));
        let odd = form(&[("source_id", "1"), ("source_type", "srtconn")]);
        assert_eq!(parse_hook("cam", &odd), Err(HookError::UnknownSource));
        let out = form(&[("source_id", "1"), ("source_type", "rtmpConn"), ("query", "params=nope")]);
        assert_eq!(parse_hook("cam-out", &out), Ok(None), "outputs are ignored before params are read");
        assert_eq!(parse_hook("cam", &out), Err(HookError::Params));
        let array = form(&[("source_id", "1"), ("source_type", "rtmpconn"), ("query", "params=%5B1%5D")]);
        assert_eq!(parse_hook("cam", &array), Err(HookError::Params));
        assert_eq!(parse_hook("cam", &array).unwrap_err().to_string(), "Invalid model params");
    }

    #[test]
    fn the_query_makes_the_request() {
        let f = form(&[
            ("source_id", "conn-1"),
            ("source_type", "WebRTCSession"),
            ("query", "pipeline=negate&params=%7B%22effect%22%3A%22hue%22%7D&streamId=s9"),
            ("rtmp_url", "rtmp://mtx:1935/cam"),
        ]);
        let h = parse_hook("cam", &f).unwrap().unwrap();
        assert_eq!(
            (h.source, h.source_id.as_str(), h.rtmp_url.as_deref()),
            ("whip", "conn-1", Some("rtmp://mtx:1935/cam"))
        );
        assert_eq!(h.request.pipeline, "negate");
        assert_eq!(h.request.params["effect"], "hue");
        assert_eq!(h.request.stream_id.as_deref(), Some("s9"));
        assert!(!h.request.authorized);
        let bare = parse_hook("cam", &form(&[("source_id", "1"), ("source_type", "rtmpconn")])).unwrap().unwrap();
        assert_eq!((bare.request.pipeline.as_str(), bare.rtmp_url), (DEFAULT_PIPELINE, None));
        let bad = form(&[("source_id", "1"), ("source_type", "rtmpconn"), ("query", "pipeline=a%20b")]);
        assert!(matches!(parse_hook("cam", &bad), Err(HookError::Pipeline(_))));
    }

    #[test]
    fn only_rtmp_sources_are_pulled() {
        assert!(check_source("rtmp://mtx:1935/live/cam").is_ok());
        assert!(check_source("RTMPS://mtx/cam").is_ok());
        for bad in ["file:///etc/passwd", "http://x/a.m3u8", "concat:a|b", "rtmp://x/a b", "tcp://x:1"] {
            assert_eq!(check_source(bad), Err(HookError::Source), "{bad}");
        }
    }

    #[test]
    fn the_default_input_is_the_caller() {
        use std::net::IpAddr;
        assert_eq!(default_input("10.0.0.5".parse::<IpAddr>().unwrap(), None, "cam"), "rtmp://10.0.0.5/cam");
        assert_eq!(default_input("::1".parse::<IpAddr>().unwrap(), Some("live"), "cam"), "rtmp://127.0.0.1/live/cam");
        assert_eq!(default_input("2001:db8::1".parse::<IpAddr>().unwrap(), None, "c"), "rtmp://[2001:db8::1]/c");
    }
}
