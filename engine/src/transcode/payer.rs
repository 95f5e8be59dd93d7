//! The gateway's paying identity and the ticket senders of its sessions (spec §3.3, §5).
use std::collections::HashMap;

use anyhow::{Context, bail};
use num_rational::BigRational;
use session::SessionKey;
use tracing::info;
use transport::identity::{Address, EthSigner, eip55};
use transport::pm::TicketSender;
use transport::proto::{PriceInfo, TicketParams};
use transport::refusal::{Failure, FailureReason};
use transport::segment::payment_header;

use crate::config::GatewayConfig;

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
pub(crate) fn load_payer(config: &GatewayConfig) -> anyhow::Result<Option<Payer>> {
    if config.payment.network == "offchain" {
        return Ok(None);
    }
    let signer = if let Some(path) = &config.payment.eth_key_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading --eth-key-file {}", path.display()))?;
        EthSigner::from_hex(text.trim()).map_err(|e| anyhow::anyhow!("--eth-key-file {}: {e}", path.display()))?
    } else if let Some(path) = &config.payment.eth_keystore_path {
        let Some(pw_file) = &config.payment.eth_password else {
            bail!("--eth-keystore-path needs --eth-password FILE");
        };
        let password = std::fs::read_to_string(pw_file)
            .with_context(|| format!("reading --eth-password {}", pw_file.display()))?;
        let want = match &config.payment.eth_addr {
            Some(a) => Some(parse_address(a)?),
            None => None,
        };
        transport::keystore::load(path, password.trim_end_matches(['\n', '\r']), want.as_ref())
            .map_err(|e| anyhow::anyhow!("keystore {}: {e}", path.display()))?
    } else {
        bail!(
            "--network {} pays orchestrators and needs a key: --eth-keystore-path with --eth-password, or --eth-key-file",
            config.payment.network
        );
    };
    let max_price = if config.payment.max_price_per_unit > 0 {
        Some(BigRational::new(config.payment.max_price_per_unit.into(), config.payment.pixels_per_unit.max(1).into()))
    } else {
        None
    };
    info!(address = %eip55(&signer.address()), network = %config.payment.network, "paying orchestrators with tickets");
    Ok(Some(Payer::new(signer, max_price)))
}

/// A 20-byte address from hex (`0x` optional).
pub(crate) fn parse_address(text: &str) -> anyhow::Result<Address> {
    let raw = hex::decode(text.trim().trim_start_matches("0x")).map_err(|_| anyhow::anyhow!("not hex: {text:?}"))?;
    raw.try_into().map_err(|_| anyhow::anyhow!("not 20 bytes: {text:?}"))
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
