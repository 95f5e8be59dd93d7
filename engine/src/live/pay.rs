//! Paying a live job (spec `trickle-and-live-ai.md` §2.4, transcode spec §6): tickets for
//! the time since the last payment, from the gateway's own key or a remote signer. Both
//! go through the remote signer's API and its rules ([`session::signer`]): with a local
//! key the gateway is its own signer, in process; with `--remote-signer-url` it asks one
//! over HTTP. Either way the caller keeps the signed state between payments.
//! [`cycle`] is one 5-second payment: token renewal, tickets, `POST /payment`.
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;
use session::signer::{PaymentRequest, PaymentResponse, SignedState, Signer};
use transport::client::OrchestratorNet;
use transport::proto::OrchestratorInfo;

/// A payment to send: the `Livepeer-Payment` and `Livepeer-Segment` values and the state
/// for the next one.
#[derive(Debug, Clone)]
pub struct Paid {
    /// `Livepeer-Payment`.
    pub payment: String,
    /// `Livepeer-Segment`.
    pub seg_creds: String,
    /// Carried to the next payment.
    pub state: SignedState,
}

/// Where live payments come from.
pub enum LivePayer {
    /// The gateway's own key, signing in process.
    Local(Signer),
    /// A remote signer at this base URL.
    Remote {
        /// `http(s)://host:port`.
        url: String,
        /// The HTTP client.
        net: Box<OrchestratorNet>,
    },
}

impl LivePayer {
    /// Tickets for `info`'s orchestrator for job `manifest_id` (empty before the job has
    /// an id), continuing `state`. `Ok(None)`: nothing is due (482).
    #[allow(clippy::disallowed_methods)] // IO shell: the payment's wall-clock time
    pub async fn pay(
        &self,
        info: &OrchestratorInfo,
        manifest_id: &str,
        state: Option<SignedState>,
    ) -> Result<Option<Paid>, String> {
        let req = PaymentRequest {
            orchestrator: STANDARD.encode(info.encode_to_vec()),
            state,
            manifest_id: manifest_id.to_owned(),
            kind: "lv2v".into(),
            ..Default::default()
        };
        let answer: PaymentResponse = match self {
            LivePayer::Local(signer) => match signer.live_payment(&req, std::time::SystemTime::now()) {
                Ok(r) => r,
                Err(e) if e.status == 482 => return Ok(None),
                Err(e) => return Err(e.to_string()),
            },
            LivePayer::Remote { url, net } => {
                let body = serde_json::json!({
                    "orchestrator": req.orchestrator,
                    "state": req.state,
                    "ManifestID": req.manifest_id,
                    "type": req.kind,
                });
                let (status, reply) = net
                    .post_json(&format!("{url}/generate-live-payment"), &body.to_string(), Duration::from_secs(5))
                    .await
                    .map_err(|e| format!("remote signer: {e}"))?;
                match status.as_u16() {
                    200 => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&reply).map_err(|e| format!("remote signer reply: {e}"))?;
                        let field = |k: &str| v[k].as_str().map(str::to_owned).ok_or(format!("remote signer: no {k}"));
                        PaymentResponse {
                            payment: field("payment")?,
                            seg_creds: field("segCreds")?,
                            state: serde_json::from_value(v["state"].clone())
                                .map_err(|e| format!("remote signer state: {e}"))?,
                        }
                    }
                    482 => return Ok(None),
                    s => return Err(format!("remote signer {s}: {}", String::from_utf8_lossy(&reply))),
                }
            }
        };
        Ok(Some(Paid { payment: answer.payment, seg_creds: answer.seg_creds, state: answer.state }))
    }

    /// The address and signature for `OrchestratorRequest` (§3.3).
    pub async fn identity(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        let (address, sig) = match self {
            LivePayer::Local(signer) => signer.orchestrator_info_signature(),
            LivePayer::Remote { url, net } => {
                let (status, reply) = net
                    .post_json(&format!("{url}/sign-orchestrator-info"), "{}", Duration::from_secs(5))
                    .await
                    .map_err(|e| format!("remote signer: {e}"))?;
                if status.as_u16() != 200 {
                    return Err(format!("remote signer {status}: {}", String::from_utf8_lossy(&reply)));
                }
                let v: serde_json::Value = serde_json::from_slice(&reply).map_err(|e| e.to_string())?;
                (
                    v["address"].as_str().unwrap_or_default().to_owned(),
                    v["signature"].as_str().unwrap_or_default().to_owned(),
                )
            }
        };
        let hex = |s: &str| hex::decode(s.trim_start_matches("0x")).map_err(|e| format!("remote signer: {e}"));
        Ok((hex(&address)?, hex(&sig)?))
    }
}

/// How long before its expiry an auth token is renewed (tokens last 30 min).
const TOKEN_RENEWAL: Duration = Duration::from_secs(120);

/// One payment cycle (spec §2.4) for job `mid` on the orchestrator `info` describes:
/// the auth token is renewed with `GetOrchestrator` at `uri` near its expiry, `payer`
/// signs tickets for the time since the last payment (none off-chain), and
/// `POST {transcoder}/payment` sends them.
///
/// Returns (accepted, sent, the renewed info if any, the payer's next state). Nothing is
/// sent when the payer has nothing due (482) or cannot sign.
pub(super) async fn cycle(
    net: &OrchestratorNet,
    payer: Option<std::sync::Arc<LivePayer>>,
    info: OrchestratorInfo,
    mid: &str,
    state: Option<SignedState>,
    uri: Option<String>,
    req: transport::proto::OrchestratorRequest,
) -> (bool, bool, Option<OrchestratorInfo>, Option<SignedState>) {
    use super::driver::START_TIMEOUT;
    // The auth token in the credentials lasts 30 min: renew it first.
    let expires = info.auth_token.as_ref().map_or(i64::MAX, |t| t.expiration);
    let renew = expires.saturating_sub(crate::live::unix_now()) < TOKEN_RENEWAL.as_secs() as i64;
    let fresh = match (renew, uri) {
        (true, Some(uri)) => net.get_orchestrator_within(&uri, req, START_TIMEOUT).await.ok(),
        _ => None,
    };
    let current = fresh.as_ref().unwrap_or(&info);
    let (headers, next) = match &payer {
        Some(p) => match p.pay(current, mid, state).await {
            Ok(Some(paid)) => (Some((paid.seg_creds, paid.payment)), Some(paid.state)),
            Ok(None) => return (true, false, fresh, None),
            Err(e) => {
                tracing::warn!(error = %e, "live payment not signed");
                return (false, false, fresh, None);
            }
        },
        None => (None, None),
    };
    let (creds, payment) = headers.unwrap_or_else(|| (credentials(current), String::new()));
    let ok = net.live_payment(&info.transcoder, &creds, &payment, START_TIMEOUT).await;
    if let Err(e) = &ok {
        tracing::warn!(error = %e, "live payment refused");
    }
    (ok.is_ok(), true, fresh, next)
}

/// Off-chain credentials: the orchestrator's auth token in a `SegData`.
pub(super) fn credentials(info: &OrchestratorInfo) -> String {
    transport::segment::segment_header(&transport::live::offchain_seg_data(info.auth_token.as_ref()))
}
