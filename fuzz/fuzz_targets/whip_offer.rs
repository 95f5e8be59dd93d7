//! What a WHIP publisher sends, fed arbitrary text: the SDP offer
//! (`ingest::whip::sdp::parse_offer`, then `choose`) and a trickle-ICE sdpfrag
//! (`ingest::whip::session::parse_sdpfrag`). Invariants: no panic; a chosen codec is a
//! payload type its section offered, of the right kind; every candidate parsed starts
//! with `candidate:`.
#![no_main]

use ingest::whip::sdp::{choose, parse_offer};
use ingest::whip::session::parse_sdpfrag;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(offer) = parse_offer(&text)
        && let Ok(c) = choose(&offer)
    {
        if let Some((i, pt, _)) = c.video {
            assert_eq!(offer.sections[i].kind, "video");
            assert!(offer.sections[i].formats.iter().any(|f| f.pt == pt && f.encoding.eq_ignore_ascii_case("h264")));
        }
        if let Some((i, pt)) = c.audio {
            assert_eq!(offer.sections[i].kind, "audio");
            assert!(offer.sections[i].formats.iter().any(|f| f.pt == pt));
        }
    }
    for c in parse_sdpfrag(&text) {
        assert!(c.candidate.starts_with("candidate:"));
    }
});
