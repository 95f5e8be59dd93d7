//! What a WHIP publisher or WHEP viewer sends, fed arbitrary text: the SDP offer
//! (`ingest::whip::sdp::parse_offer`, then `choose_for` in both roles), a trickle-ICE
//! sdpfrag (`ingest::whip::session::parse_sdpfrag`) and, line by line, the ICE server
//! URIs of the configuration (`ingest::whip::ice::IceServer`). Invariants: no panic; a
//! chosen codec is a payload type its section offered, of the right kind; every
//! candidate parsed starts with `candidate:`; a parsed ICE server makes a `Link` header
//! value without control characters.
#![no_main]

use ingest::whip::ice::IceServer;
use ingest::whip::sdp::{Role, choose_for, parse_offer};
use ingest::whip::session::parse_sdpfrag;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(offer) = parse_offer(&text) {
        let profile = data.first().copied();
        for role in [Role::Publish, Role::Play { profile_idc: profile }] {
            let Ok(c) = choose_for(&offer, role) else { continue };
            if let Some((i, pt, _)) = c.video {
                assert_eq!(offer.sections[i].kind, "video");
                assert!(
                    offer.sections[i].formats.iter().any(|f| f.pt == pt && f.encoding.eq_ignore_ascii_case("h264"))
                );
            }
            if let Some((i, pt)) = c.audio {
                assert_eq!(offer.sections[i].kind, "audio");
                assert!(offer.sections[i].formats.iter().any(|f| f.pt == pt));
            }
        }
    }
    for c in parse_sdpfrag(&text) {
        assert!(c.candidate.starts_with("candidate:"));
    }
    for line in text.lines() {
        if let Ok(s) = line.parse::<IceServer>() {
            assert!(!s.link().chars().any(|c| c.is_control()));
            let _ = s.gstreamer_uri();
        }
    }
});
