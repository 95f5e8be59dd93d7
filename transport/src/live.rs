//! Live video-to-video wire types (spec `trickle-and-live-ai.md` §2.2, §2.4): the job
//! start request and reply, the job's capabilities, and the off-chain credentials.
use serde::{Deserialize, Serialize};

use crate::capabilities::CapabilitySet;
use crate::proto::capabilities::{CapabilityConstraints, Constraints, capability_constraints::ModelConstraint};
use crate::proto::{AuthToken, Capabilities, SegData};

/// Capability number of live video-to-video (§2.8 of the transcode spec).
pub const CAPABILITY: u32 = 35;
/// The model go-livepeer defaults to.
pub const DEFAULT_MODEL: &str = "noop";
/// `Authorization` value the gateway sends with a job start.
pub const AUTHORIZATION: &str = "Livepeer-AI-Worker-1.0";
/// Pixels the first payment of a job covers: 60 s of 720p30 (§2.2).
pub const INITIAL_PIXELS: u64 = 60 * 30 * 720 * 1280;
/// Pixels per second a running job pays for, whatever its real size: 720p30 (§2.4).
pub const PIXELS_PER_SECOND: u64 = 1280 * 720 * 30;

/// The body of `POST {transcoder}/live-video-to-video` (`LiveVideoToVideoParams`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StartRequest {
    /// The pipeline (model) id.
    #[serde(default)]
    pub model_id: String,
    /// Pipeline params: any JSON object.
    #[serde(default)]
    pub params: serde_json::Value,
    /// The gateway's id for this request.
    #[serde(default)]
    pub gateway_request_id: String,
    /// The gateway's stream id.
    #[serde(default)]
    pub stream_id: String,
}

/// The orchestrator's answer: the job's four trickle channels and its id. A URL without
/// a host is relative to the orchestrator's base URL ([`StartReply::absolute`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StartReply {
    /// Input video: the gateway publishes here.
    pub publish_url: String,
    /// Output video: the gateway subscribes here.
    pub subscribe_url: String,
    /// Control messages, gateway to runner (go-livepeer refuses a reply without it).
    pub control_url: String,
    /// Events, runner to gateway.
    #[serde(default)]
    pub events_url: String,
    /// The job's manifest id (`mid`).
    #[serde(default)]
    pub manifest_id: String,
    /// The orchestrator's request id, if it sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl StartReply {
    /// The reply with path-only URLs prefixed by `base` (go-livepeer `AppendHostname`).
    pub fn absolute(mut self, base: &str) -> Self {
        let base = base.trim_end_matches('/');
        for u in [&mut self.publish_url, &mut self.subscribe_url, &mut self.control_url, &mut self.events_url] {
            if u.starts_with('/') {
                *u = format!("{base}{u}");
            }
        }
        self
    }
}

/// The capabilities a live job for `model` asks for: live video-to-video with that model.
pub fn job_capabilities(model: &str) -> Capabilities {
    let mut set = CapabilitySet::default();
    set.insert(CAPABILITY);
    let models = [(model.to_owned(), ModelConstraint::default())].into();
    Capabilities {
        bitstring: set.words().to_vec(),
        constraints: Some(Constraints {
            per_capability: [(CAPABILITY, CapabilityConstraints { models })].into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// True when `caps` (an orchestrator's) offer live video-to-video with `model`: the bit,
/// and the model among its constraints when it lists models. Returns whether the model is
/// warm as the second value.
pub fn offers(caps: &Capabilities, model: &str) -> Option<bool> {
    let word = caps.bitstring.get((CAPABILITY / 64) as usize).copied().unwrap_or(0);
    if word & (1 << (CAPABILITY % 64)) == 0 {
        return None;
    }
    let models = caps.constraints.as_ref().and_then(|c| c.per_capability.get(&CAPABILITY)).map(|c| &c.models);
    match models {
        Some(m) if !m.is_empty() => m.get(model).map(|c| c.warm),
        _ => Some(false),
    }
}

/// The `Livepeer-Segment` credentials of an off-chain live job: a `SegData` carrying only
/// the orchestrator's auth token (§4.1 of the live spec, as the Python gateway sends).
pub fn offchain_seg_data(token: Option<&AuthToken>) -> SegData {
    SegData { auth_token: token.cloned(), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_and_urls() {
        let job = job_capabilities("negate");
        assert_eq!(job.bitstring, vec![1 << 35]);
        let mut orch = job.clone();
        orch.constraints
            .as_mut()
            .unwrap()
            .per_capability
            .get_mut(&CAPABILITY)
            .unwrap()
            .models
            .insert("edges".into(), ModelConstraint { warm: true, ..Default::default() });
        assert_eq!(offers(&orch, "edges"), Some(true));
        assert_eq!(offers(&orch, "negate"), Some(false));
        assert_eq!(offers(&orch, "sd"), None);
        assert_eq!(offers(&Capabilities::default(), "negate"), None);
        assert!(crate::capabilities::compatible(&job, &orch));
        let r = StartReply {
            publish_url: "/ai/trickle/m".into(),
            subscribe_url: "https://o:1/ai/trickle/m-out".into(),
            control_url: "/ai/trickle/m-control".into(),
            events_url: String::new(),
            manifest_id: "m".into(),
            request_id: None,
        }
        .absolute("https://o:8935/");
        assert_eq!(r.publish_url, "https://o:8935/ai/trickle/m");
        assert_eq!(r.subscribe_url, "https://o:1/ai/trickle/m-out");
        let parsed: StartReply = serde_json::from_str(
            r#"{"publish_url":"a","subscribe_url":"b","control_url":"c","events_url":"d","manifest_id":"m","extra":1}"#,
        )
        .unwrap();
        assert_eq!(parsed.events_url, "d");
        assert!(
            serde_json::from_str::<StartReply>(r#"{"publish_url":"a","subscribe_url":"b"}"#).is_err(),
            "control_url is required"
        );
    }
}
