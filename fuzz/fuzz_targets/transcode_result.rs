//! What a gateway does with an orchestrator's `/segment` reply: decode the
//! `TranscodeResult`, take the ticket params and price from its `info`, work out the
//! next segment's tickets and build the payment. All of it is network input.
//! Invariants: no panic, no unbounded work (ticket counts beyond the nonce limit are
//! refused, not signed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use num_rational::BigRational;
use num_traits::Zero;
use prost::Message;
use transport::identity::EthSigner;
use transport::pm::{MAX_SENDER_NONCES, TicketSender, price_per_pixel, segment_fee, tickets_needed};
use transport::proto::{TranscodeResult, transcode_result};

fuzz_target!(|data: &[u8]| {
    let Ok(r) = TranscodeResult::decode(data) else { return };
    if let Some(transcode_result::Result::Data(d)) = &r.result {
        let _pixels: i64 = d.segments.iter().map(|s| s.pixels.max(0)).fold(0i64, |a, p| a.saturating_add(p));
        for s in &d.segments {
            let _ = s.url.parse::<http::Uri>();
        }
    }
    let Some(info) = r.info else { return };
    let signer = EthSigner::from_hex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
    let mut sender = TicketSender::new(signer);
    let Some(tp) = info.ticket_params.as_ref() else { return };
    if sender.update_params(tp).is_err() {
        return;
    }
    let price = info.price_info.clone().unwrap_or_default();
    let Ok(per_pixel) = price_per_pixel(&price) else { return };
    let fee = segment_fee(19_958_400, &per_pixel);
    let batch = tickets_needed(&BigRational::zero(), &fee, &sender.ticket_ev());
    // Only sign what the nonce limit allows; more must be refused without signing.
    match sender.payment(batch.count.min(MAX_SENDER_NONCES + 1).min(4), &price) {
        Ok(p) => assert!(p.ticket_sender_params.len() <= 4),
        Err(_) => {}
    }
    if batch.count > MAX_SENDER_NONCES {
        assert!(sender.payment(batch.count, &price).is_err());
    }
});
