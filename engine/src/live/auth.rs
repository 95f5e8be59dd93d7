//! The live AI auth webhook (`[live] live_auth_webhook_url`), compatible with go-livepeer's
//! `-liveAIAuthWebhookUrl` (spec `trickle-and-live-ai.md` §2.1, go-livepeer
//! `server/auth.go`).
//!
//! Before a live AI stream's first job starts (and again when a publisher returns after
//! the stream ended) the gateway `POST`s an [`AuthRequest`] as JSON, with the configured
//! key in both `x-api-key` and `Authorization`. Any 2xx answer whose body is a JSON object
//! admits the stream; its [`AuthReply`] fields, when non-empty, override the publish's
//! query. Anything else refuses it: the publisher is disconnected (RTMP) or the
//! `/start` hook answers 403.
//!
//! Where go-livepeer differs on purpose:
//! - its `update_url` and `status_url` carry a doubled slash (`…/{stream}//update`); these
//!   are the working URLs;
//! - it waits on the webhook without a time limit; this waits [`AUTH_TIMEOUT`].
use std::time::Duration;

use serde::{Deserialize, Serialize};
use transport::client::OrchestratorNet;

use super::{LiveRequest, LiveRequestError};

/// How long the webhook has to answer before the stream is refused.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook request body (go-livepeer `authenticateAIStream`'s JSON).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuthRequest {
    /// The stream name.
    pub stream: String,
    /// The same name (go-livepeer sends the stream name in both fields).
    pub stream_key: String,
    /// How the stream arrives: `rtmp` or `whip`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The ingest URL's raw query string; left out when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub query_params: String,
    /// The gateway's public host (`host:port`).
    pub gateway_host: String,
    /// Where the processed output plays over WHEP (empty while the gateway has none).
    pub whep_url: String,
    /// `GET` here for the stream's status.
    pub status_url: String,
    /// `POST` here to change the stream's params.
    pub update_url: String,
}

/// The webhook's answer; every field is optional and overrides only when non-empty.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct AuthReply {
    /// Where to push the processed output over RTMP (logged; not supported here).
    pub rtmp_output_url: String,
    /// The model, replacing the query's `pipeline`.
    pub pipeline: String,
    /// An id for the pipeline, shown in `/status`.
    pub pipeline_id: String,
    /// The stream id sent to the orchestrator, replacing the query's `streamId`.
    pub stream_id: String,
    /// Params (a JSON object or null), replacing the query's `params` when not empty.
    pub pipeline_parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Why the webhook refused a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// It could not be reached or did not answer in time.
    #[error("auth webhook unreachable: {0}")]
    Unreachable(String),
    /// It answered outside 2xx.
    #[error("auth webhook answered {status}: {body}")]
    Denied {
        /// The HTTP status.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// Its 2xx body is not the JSON object expected (an empty body included, as
    /// go-livepeer).
    #[error("auth webhook reply is not valid: {0}")]
    BadReply(String),
    /// Its overrides are not valid (an unusable pipeline name).
    #[error("auth webhook override refused: {0}")]
    BadOverride(#[from] LiveRequestError),
}

/// The webhook endpoint and its key.
#[derive(Debug, Clone)]
pub struct AuthWebhook {
    /// The URL.
    pub url: String,
    /// Sent raw in `x-api-key` and `Authorization`, when set.
    pub api_key: Option<String>,
}

impl AuthWebhook {
    /// Asks the webhook about `req`; `Ok` admits the stream with the reply's overrides.
    ///
    /// Errors: [`AuthError`] for every refusal (unreachable, non-2xx, a body that is not a
    /// JSON object).
    pub async fn ask(&self, net: &OrchestratorNet, req: &AuthRequest) -> Result<AuthReply, AuthError> {
        let json = serde_json::to_string(req).map_err(|e| AuthError::BadReply(e.to_string()))?;
        let key = self.api_key.as_deref().unwrap_or("");
        let headers: &[(&str, &str)] = if key.is_empty() { &[] } else { &[("x-api-key", key), ("authorization", key)] };
        let (status, body) = net
            .post_json_with(&self.url, &json, headers, AUTH_TIMEOUT)
            .await
            .map_err(|e| AuthError::Unreachable(e.to_string()))?;
        decode_reply(status.as_u16(), &body)
    }
}

/// The webhook's answer `status` + `body` as an admission (`Ok`) or a refusal.
pub fn decode_reply(status: u16, body: &[u8]) -> Result<AuthReply, AuthError> {
    if !(200..300).contains(&status) {
        let text = String::from_utf8_lossy(&body[..body.len().min(256)]).trim().to_owned();
        return Err(AuthError::Denied { status, body: text });
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v @ serde_json::Value::Object(_)) => {
            serde_json::from_value(v).map_err(|e| AuthError::BadReply(e.to_string()))
        }
        Ok(_) => Err(AuthError::BadReply("not a JSON object".into())),
        Err(e) => Err(AuthError::BadReply(e.to_string())),
    }
}

impl AuthReply {
    /// Applies the non-empty overrides to `req`; the RTMP output URL, which this gateway
    /// does not push to, is returned for the caller to log.
    ///
    /// Errors: [`LiveRequestError::Pipeline`] when the replacement pipeline is not a
    /// usable model name.
    pub fn apply(self, req: &mut LiveRequest) -> Result<Option<String>, LiveRequestError> {
        if !self.pipeline.is_empty() {
            super::check_pipeline(&self.pipeline)?;
            req.pipeline = self.pipeline;
        }
        if !self.pipeline_id.is_empty() {
            req.pipeline_id = Some(self.pipeline_id);
        }
        if !self.stream_id.is_empty() {
            req.stream_id = Some(self.stream_id);
        }
        if let Some(p) = self.pipeline_parameters.filter(|p| !p.is_empty()) {
            req.params = serde_json::Value::Object(p);
        }
        Ok(Some(self.rtmp_output_url).filter(|u| !u.is_empty()))
    }
}

/// Asks `live`'s webhook, if one is configured, about stream `id` and applies its
/// overrides to `req`; a request already admitted (by the `/start` hook) passes.
///
/// Errors: the refusal, as [`AuthError`].
pub async fn admit(live: &super::Live, id: &str, req: &mut LiveRequest) -> Result<(), AuthError> {
    let Some(url) = live.config().live_auth_webhook_url.clone() else { return Ok(()) };
    if req.authorized {
        return Ok(());
    }
    let hook = AuthWebhook { url, api_key: live.config().live_auth_api_key.clone() };
    let reply = hook.ask(&live.webhook_net, &live.auth_request(id, req)).await?;
    if let Some(rtmp) = reply.clone().apply(req)? {
        tracing::warn!(url = %rtmp, "auth webhook asked for an RTMP output: not supported, ignored");
    }
    req.authorized = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> LiveRequest {
        LiveRequest { pipeline: "negate".into(), params: json!({"a": 1}), ..Default::default() }
    }

    #[test]
    fn request_body_has_go_livepeers_fields() {
        let r = AuthRequest {
            stream: "cam".into(),
            stream_key: "cam".into(),
            kind: "rtmp".into(),
            query_params: String::new(),
            gateway_host: "gw:8935".into(),
            whep_url: String::new(),
            status_url: "http://gw:8935/live/video-to-video/cam/status".into(),
            update_url: "http://gw:8935/live/video-to-video/cam/update".into(),
        };
        let v = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["gateway_host", "status_url", "stream", "stream_key", "type", "update_url", "whep_url"]);
        let with_query = AuthRequest { query_params: "pipeline=x".into(), ..r };
        assert_eq!(serde_json::to_value(&with_query).unwrap()["query_params"], "pipeline=x");
    }

    #[test]
    fn only_a_2xx_json_object_admits() {
        assert_eq!(decode_reply(200, b"{}").unwrap(), AuthReply::default());
        assert!(matches!(decode_reply(200, b""), Err(AuthError::BadReply(_))), "empty body refuses, as go-livepeer");
        assert!(matches!(decode_reply(204, b"[]"), Err(AuthError::BadReply(_))));
        assert_eq!(
            decode_reply(403, b"no such key\n"),
            Err(AuthError::Denied { status: 403, body: "no such key".into() })
        );
        assert!(matches!(decode_reply(302, b"{}"), Err(AuthError::Denied { status: 302, .. })));
        // pipeline_parameters must be an object (or null).
        assert!(decode_reply(200, br#"{"pipeline_parameters": "x"}"#).is_err());
        assert!(decode_reply(200, br#"{"pipeline_parameters": null}"#).is_ok());
    }

    #[test]
    fn non_empty_fields_override() {
        let mut r = request();
        let reply = decode_reply(200, br#"{"pipeline": "", "pipeline_parameters": {}}"#).unwrap();
        assert_eq!(reply.apply(&mut r).unwrap(), None);
        assert_eq!(r, request(), "empty fields leave the query's values");
        let reply = decode_reply(
            200,
            br#"{"pipeline": "edges", "pipeline_id": "p1", "stream_id": "s1",
                 "pipeline_parameters": {"effect": "blur"}, "rtmp_output_url": "rtmp://x/y"}"#,
        )
        .unwrap();
        assert_eq!(reply.apply(&mut r).unwrap().as_deref(), Some("rtmp://x/y"));
        assert_eq!(r.pipeline, "edges");
        assert_eq!(r.params, json!({"effect": "blur"}));
        assert_eq!((r.pipeline_id.as_deref(), r.stream_id.as_deref()), (Some("p1"), Some("s1")));
        let bad = decode_reply(200, br#"{"pipeline": "a b"}"#).unwrap();
        assert_eq!(bad.apply(&mut r), Err(LiveRequestError::Pipeline));
    }
}
