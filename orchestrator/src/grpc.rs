//! The orchestrator's gRPC service (`net.Orchestrator`, spec §3.3–§3.4):
//! `GetOrchestrator` (request signature, capabilities, session cap, auth token and quote),
//! `EndTranscodingSession` and `Ping`.
use std::sync::Arc;

use tonic::{Status, async_trait};
use transport::credentials::keccak256;
use transport::identity::{Address, eip55, recover_personal};
use transport::proto::orchestrator_server::Orchestrator;
use transport::proto::{
    EndTranscodingSessionRequest, EndTranscodingSessionResponse, OrchestratorInfo, OrchestratorRequest, PingPong,
};

use crate::service::{Shared, random, unix_now};

/// The gRPC half of a running orchestrator.
pub(crate) struct Grpc(pub(crate) Arc<Shared>);

#[async_trait]
impl Orchestrator for Grpc {
    async fn get_orchestrator(
        &self,
        request: tonic::Request<OrchestratorRequest>,
    ) -> Result<tonic::Response<OrchestratorInfo>, Status> {
        let s = &self.0;
        let req = request.into_inner();
        let sender: Address = req.address.as_slice().try_into().unwrap_or([0; 20]);
        if s.paid() {
            // §3.3: personal_sign(keccak256(EIP-55 address string)).
            let digest = keccak256(eip55(&sender).as_bytes());
            if sender == [0; 20] || recover_personal(&digest, &req.sig) != Ok(sender) {
                return Err(Status::permission_denied("invalid orchestrator request signature"));
            }
        }
        let job = req.capabilities.unwrap_or_default();
        if !transport::capabilities::compatible(&job, &s.capabilities) {
            return Err(Status::failed_precondition("incompatible capabilities"));
        }
        if s.sessions.lock().expect("sessions lock").is_full() {
            return Err(Status::resource_exhausted(transport::refusal::wire::CAPPED));
        }
        let token = s.gate.lock().expect("gate lock").auth.mint(random(), unix_now());
        s.stats.lock().expect("stats lock").get_orchestrator_calls += 1;
        let ai_price = s.ai.price_for(&job);
        Ok(tonic::Response::new(s.info_priced(&sender, token, ai_price)))
    }

    async fn end_transcoding_session(
        &self,
        request: tonic::Request<EndTranscodingSessionRequest>,
    ) -> Result<tonic::Response<EndTranscodingSessionResponse>, Status> {
        let s = &self.0;
        let token = request.into_inner().auth_token;
        s.gate
            .lock()
            .expect("gate lock")
            .auth
            .verify(token.as_ref(), unix_now())
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        let id = token.map(|t| t.session_id).unwrap_or_default();
        s.sessions.lock().expect("sessions lock").end(&id);
        s.stats.lock().expect("stats lock").sessions_ended += 1;
        tracing::info!(session = %id, "session ended by gateway");
        Ok(tonic::Response::new(EndTranscodingSessionResponse {}))
    }

    async fn ping(&self, request: tonic::Request<PingPong>) -> Result<tonic::Response<PingPong>, Status> {
        let value = request.into_inner().value;
        let value = match &self.0.signer {
            Some(signer) => signer.sign_message(&value).to_vec(),
            None => value,
        };
        Ok(tonic::Response::new(PingPong { value }))
    }
}
