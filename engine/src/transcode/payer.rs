//! The gateway's paying identity and the ticket senders of its sessions (spec §3.3, §5).
use std::collections::HashMap;

use num_rational::BigRational;
use session::SessionKey;
use tracing::info;
use transport::identity::{Address, EthSigner, eip55};
use transport::pm::TicketSender;
use transport::proto::{PriceInfo, TicketParams};
use transport::refusal::{Failure, FailureReason};
use transport::segment::payment_header;

use crate::config::GatewayConfig;
use crate::error::PayerError;

/// The gateway's paying identity.
pub struct Payer {
    pub(crate) signer: EthSigner,
    /// `OrchestratorRequest.sig`: static, over the EIP-55 address string (§3.3).
    pub(crate) request_sig: Vec<u8>,
    /// Highest acceptable price per pixel, in wei.
    pub(crate) max_price: Option<BigRational>,
}

impl Payer {
    /// A payer signing as `signer`, refusing orchestrators priced above `max_price`.
    pub fn new(signer: EthSigner, max_price: Option<BigRational>) -> Self {
        let request_sig = signer.sign_message(eip55(&signer.address()).as_bytes()).to_vec();
        Payer { signer, request_sig, max_price }
    }
}

/// The ticket senders of one stream's sessions (nonces and presigned tickets live with
/// the params they were signed under). The session manager decides what to pay; this
/// signs it.
pub(crate) struct TicketBook {
    signer: EthSigner,
    senders: HashMap<SessionKey, TicketSender>,
}

impl TicketBook {
    pub(crate) fn new(signer: EthSigner) -> Self {
        TicketBook { signer, senders: HashMap::new() }
    }

    fn sender(&mut self, session: SessionKey) -> &mut TicketSender {
        let signer = &self.signer;
        self.senders.entry(session).or_insert_with(|| TicketSender::new(signer.clone()))
    }

    /// The `Livepeer-Payment` value for `tickets` tickets under `params`.
    pub(crate) fn pay(
        &mut self,
        session: SessionKey,
        params: Option<&TicketParams>,
        price_info: &PriceInfo,
        tickets: u32,
    ) -> Result<String, Failure> {
        let sender = self.sender(session);
        if let Some(tp) = params {
            sender
                .update_params(tp)
                .map_err(|e| Failure::new(FailureReason::Payment, format!("ticket params: {e}")))?;
        }
        let payment = sender
            .payment(tickets, price_info)
            .map_err(|e| Failure::new(FailureReason::Payment, format!("payment: {e}")))?;
        Ok(payment_header(Some(&payment)))
    }

    /// Signs `count` tickets ahead under `params` (the ones a result just brought), so
    /// the next segment's signatures are off its path to the wire.
    pub(crate) fn presign(&mut self, session: SessionKey, params: Option<&TicketParams>, count: u32) {
        let Some(sender) = self.senders.get_mut(&session) else { return };
        if let Some(tp) = params
            && let Err(e) = sender.update_params(tp)
        {
            tracing::warn!(error = %e, "orchestrator sent unusable ticket params");
            return;
        }
        if count > 0
            && let Err(e) = sender.presign(count)
        {
            tracing::debug!(error = %e, "cannot presign tickets");
        }
    }

    /// The session ended.
    pub(crate) fn forget(&mut self, session: SessionKey) {
        self.senders.remove(&session);
    }
}

/// The payer `config` describes: `None` off-chain, else the key from `--eth-key-file` or
/// the keystore.
pub(crate) fn load_payer(config: &GatewayConfig) -> Result<Option<Payer>, PayerError> {
    let p = &config.payment;
    if p.network == crate::config::DEFAULT_NETWORK {
        return Ok(None);
    }
    let signer = load_key(
        p.eth_key_file.as_deref(),
        p.eth_keystore_path.as_deref(),
        p.eth_password.as_deref(),
        p.eth_addr.as_deref(),
    )?
    .ok_or_else(|| PayerError::NoKey(p.network.clone()))?;
    let max_price = (p.max_price_per_unit > 0)
        .then(|| BigRational::new(p.max_price_per_unit.into(), p.pixels_per_unit.max(1).into()));
    info!(address = %eip55(&signer.address()), network = %p.network, "paying orchestrators with tickets");
    Ok(Some(Payer::new(signer, max_price)))
}

/// The Ethereum key named by `--eth-key-file` (raw hex) or `--eth-keystore-path` with
/// `--eth-password` (and `--eth-addr` to pick an account of a directory); `None` when
/// neither is given. Shared by the gateway, the orchestrator and the remote signer.
pub fn load_key(
    key_file: Option<&std::path::Path>,
    keystore: Option<&std::path::Path>,
    password: Option<&std::path::Path>,
    address: Option<&str>,
) -> Result<Option<EthSigner>, PayerError> {
    let read = |what, path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|source| PayerError::Read { what, path: path.to_owned(), source })
    };
    if let Some(path) = key_file {
        let text = read("--eth-key-file", path)?;
        return EthSigner::from_hex(text.trim())
            .map(Some)
            .map_err(|source| PayerError::Key { path: path.to_owned(), source });
    }
    let Some(path) = keystore else { return Ok(None) };
    let pw_file = password.ok_or(PayerError::NoPassword)?;
    let password = read("--eth-password", pw_file)?;
    let want = match address {
        Some(a) => Some(parse_address(a).ok_or_else(|| PayerError::Address(a.to_owned()))?),
        None => None,
    };
    transport::keystore::load(path, password.trim_end_matches(['\n', '\r']), want.as_ref())
        .map(Some)
        .map_err(|source| PayerError::Keystore { path: path.to_owned(), source })
}

/// A 20-byte address from hex (`0x` optional).
pub(crate) fn parse_address(text: &str) -> Option<Address> {
    hex::decode(text.trim().trim_start_matches("0x")).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_signature_recovers_to_the_payer() {
        let signer = EthSigner::from_hex("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
        let p = Payer::new(signer.clone(), None);
        // §3.3: personal_sign(keccak256(EIP-55 address string)).
        let digest = transport::credentials::keccak256(eip55(&signer.address()).as_bytes());
        let who = transport::identity::recover_personal(&digest, &p.request_sig).unwrap();
        assert_eq!(who, signer.address());
    }
}
