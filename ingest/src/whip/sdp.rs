//! What a WHIP publisher offers (RFC 9725 §4.2, SDP per RFC 8866), read without IO: the
//! media sections, their codecs and directions, and the ICE and DTLS credentials. The
//! decision which codecs Sluice takes is [`choose`]: H.264 with packetization mode 1
//! (constrained baseline first, as browsers offer it) and Opus; anything else is refused
//! with the reason, so a publisher sending only VP8 is told why.
use std::collections::HashMap;

/// One `m=` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaSection {
    /// `audio`, `video`, `application`, …
    pub kind: String,
    /// `a=mid`.
    pub mid: Option<String>,
    /// Direction (`sendonly`, `recvonly`, `sendrecv`, `inactive`; `sendrecv` if absent).
    pub direction: String,
    /// Payload types in offer order, with `a=rtpmap` and `a=fmtp`.
    pub formats: Vec<Format>,
    /// The port is 0: the section is rejected or disabled.
    pub disabled: bool,
}

/// One payload type of a section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Format {
    /// RTP payload type.
    pub pt: u8,
    /// Encoding name as offered (`H264`, `opus`, `VP8`, …).
    pub encoding: String,
    /// Clock rate, Hz.
    pub clock_rate: u32,
    /// Channels (audio), if given.
    pub channels: Option<u8>,
    /// `a=fmtp` parameters, keys lower-cased.
    pub params: HashMap<String, String>,
}

/// A parsed offer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// The media sections in order.
    pub sections: Vec<MediaSection>,
    /// ICE username fragment and password were given (session or media level).
    pub has_ice_credentials: bool,
    /// A DTLS fingerprint was given.
    pub has_fingerprint: bool,
}

/// Why an offer was refused: 400 for SDP that is not an offer Sluice can read, 422 for a
/// readable offer it cannot take (codecs, track counts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Not SDP, or an SDP without the lines every offer has.
    #[error("malformed SDP offer: {0}")]
    Malformed(String),
    /// Readable, but not something Sluice takes.
    #[error("{0}")]
    Unsupported(String),
}

impl OfferError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            OfferError::Malformed(_) => 400,
            OfferError::Unsupported(_) => 422,
        }
    }
}

/// Largest offer read.
pub const MAX_OFFER: usize = 64 * 1024;

/// Reads an SDP offer. Lines end in CRLF or LF; unknown lines are ignored.
pub fn parse_offer(text: &str) -> Result<Offer, OfferError> {
    let bad = |m: String| Err(OfferError::Malformed(m));
    if text.len() > MAX_OFFER {
        return bad(format!("larger than {MAX_OFFER} bytes"));
    }
    let mut offer = Offer::default();
    let mut saw_version = false;
    let (mut ufrag, mut pwd) = (false, false);
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return bad(format!("line {} is not `x=value`", n + 1));
        };
        if key.len() != 1 {
            return bad(format!("line {} has a key of {} characters", n + 1, key.len()));
        }
        match key {
            "v" => {
                if value != "0" {
                    return bad(format!("unknown SDP version {value:?}"));
                }
                saw_version = true;
            }
            "m" => offer.sections.push(media_line(value).ok_or_else(|| {
                OfferError::Malformed(format!("line {}: m= needs `<media> <port> <proto> <formats>`", n + 1))
            })?),
            "a" => {
                let (attr, arg) = value.split_once(':').unwrap_or((value, ""));
                match attr {
                    "ice-ufrag" => ufrag = !arg.is_empty(),
                    "ice-pwd" => pwd = !arg.is_empty(),
                    "fingerprint" => offer.has_fingerprint |= !arg.is_empty(),
                    _ => {}
                }
                let Some(section) = offer.sections.last_mut() else { continue };
                match attr {
                    "mid" => section.mid = Some(arg.to_owned()),
                    "sendonly" | "recvonly" | "sendrecv" | "inactive" => attr.clone_into(&mut section.direction),
                    "rtpmap" => rtpmap(section, arg),
                    "fmtp" => fmtp(section, arg),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !saw_version {
        return bad("no `v=0` line".into());
    }
    offer.has_ice_credentials = ufrag && pwd;
    Ok(offer)
}

fn media_line(value: &str) -> Option<MediaSection> {
    let mut it = value.split_ascii_whitespace();
    let kind = it.next()?.to_owned();
    let port = it.next()?.split('/').next()?.parse::<u32>().ok()?;
    let _proto = it.next()?;
    let formats = it.filter_map(|f| f.parse::<u8>().ok()).map(|pt| Format { pt, ..Default::default() }).collect();
    Some(MediaSection { kind, mid: None, direction: "sendrecv".into(), formats, disabled: port == 0 })
}

fn format_mut<'a>(section: &'a mut MediaSection, pt: &str) -> Option<&'a mut Format> {
    let pt: u8 = pt.parse().ok()?;
    section.formats.iter_mut().find(|f| f.pt == pt)
}

fn rtpmap(section: &mut MediaSection, arg: &str) {
    let Some((pt, enc)) = arg.split_once(' ') else { return };
    let Some(f) = format_mut(section, pt) else { return };
    let mut parts = enc.trim().split('/');
    f.encoding = parts.next().unwrap_or("").to_owned();
    f.clock_rate = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    f.channels = parts.next().and_then(|c| c.parse().ok());
}

fn fmtp(section: &mut MediaSection, arg: &str) {
    let Some((pt, params)) = arg.split_once(' ') else { return };
    let Some(f) = format_mut(section, pt) else { return };
    for p in params.split(';') {
        if let Some((k, v)) = p.trim().split_once('=') {
            f.params.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
}

/// The codecs Sluice takes from an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The video section's index and payload type, and its `profile-level-id`.
    pub video: Option<(usize, u8, String)>,
    /// The audio section's index and payload type (Opus).
    pub audio: Option<(usize, u8)>,
}

/// `profile-level-id` preference for a publisher: constrained baseline (`42e0xx`),
/// baseline (`4200xx`), then any other H.264 profile.
fn profile_rank(plid: &str) -> u8 {
    let p = plid.to_ascii_lowercase();
    if p.starts_with("42e0") {
        0
    } else if p.starts_with("4200") {
        1
    } else {
        2
    }
}

/// `profile-level-id` preference for a viewer of a stream whose video has `profile_idc`:
/// the same profile first (the answer then describes what is sent), then the others by
/// how much they decode (high, main, baseline).
fn playback_rank(plid: &str, profile_idc: Option<u8>) -> u8 {
    let idc = u8::from_str_radix(plid.get(..2).unwrap_or(""), 16).ok();
    match idc {
        Some(i) if Some(i) == profile_idc => 0,
        Some(100) => 1,
        Some(77) => 2,
        Some(66) => 3,
        _ => 4,
    }
}

/// Who sends: the offerer (a WHIP publisher) or Sluice (a WHEP viewer's offer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A publisher's offer: its sections send (`sendonly` or `sendrecv`).
    Publish,
    /// A viewer's offer: its sections receive (`recvonly` or `sendrecv`); the stream's
    /// H.264 `profile_idc`, if known, picks the matching format.
    Play {
        /// The stream's H.264 `profile_idc` (66 baseline, 77 main, 100 high).
        profile_idc: Option<u8>,
    },
}

/// A `profile-level-id` is exactly six hex digits (it ends up in the answer's caps).
fn valid_plid(p: &str) -> bool {
    p.len() == 6 && p.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Picks the codecs of a WHIP offer: at most one sending video section (H.264,
/// packetization mode 1, 90 kHz) and one sending audio section (Opus, 48 kHz). Refuses
/// an offer with nothing Sluice can take, more than one section of a kind, a section
/// that does not send, or missing ICE/DTLS credentials, saying which.
pub fn choose(offer: &Offer) -> Result<Chosen, OfferError> {
    choose_for(offer, Role::Publish)
}

/// Picks the codecs of an offer made by a publisher ([`Role::Publish`], as [`choose`]) or
/// by a WHEP viewer ([`Role::Play`]: its sections receive), with the same refusals.
pub fn choose_for(offer: &Offer, role: Role) -> Result<Chosen, OfferError> {
    if !offer.has_ice_credentials {
        return Err(OfferError::Malformed("no a=ice-ufrag and a=ice-pwd".into()));
    }
    if !offer.has_fingerprint {
        return Err(OfferError::Malformed("no a=fingerprint (DTLS)".into()));
    }
    let mut chosen = Chosen { video: None, audio: None };
    for (i, s) in offer.sections.iter().enumerate() {
        if s.disabled || !matches!(s.kind.as_str(), "video" | "audio") {
            continue;
        }
        match role {
            Role::Publish if !matches!(s.direction.as_str(), "sendonly" | "sendrecv") => {
                return Err(OfferError::Unsupported(format!(
                    "the {} section is {}: a WHIP publisher sends (sendonly)",
                    s.kind, s.direction
                )));
            }
            Role::Play { .. } if !matches!(s.direction.as_str(), "recvonly" | "sendrecv") => {
                return Err(OfferError::Unsupported(format!(
                    "the {} section is {}: a WHEP viewer receives (recvonly)",
                    s.kind, s.direction
                )));
            }
            _ => {}
        }
        // The codecs offered, once each, without retransmission and FEC formats.
        let offered = || {
            let mut names: Vec<&str> = Vec::new();
            for f in &s.formats {
                let e = f.encoding.as_str();
                let aux = ["rtx", "red", "ulpfec", "flexfec-03", "cn", "telephone-event"]
                    .iter()
                    .any(|a| e.eq_ignore_ascii_case(a));
                if !e.is_empty() && !aux && !names.contains(&e) {
                    names.push(e);
                }
            }
            names.join(", ")
        };
        if s.kind == "video" {
            if chosen.video.is_some() {
                return Err(OfferError::Unsupported("more than one video section; Sluice takes one".into()));
            }
            let best = s
                .formats
                .iter()
                .filter(|f| {
                    f.encoding.eq_ignore_ascii_case("H264")
                        && f.clock_rate == 90_000
                        && f.params.get("packetization-mode").map(String::as_str) == Some("1")
                        && f.params.get("profile-level-id").is_none_or(|p| valid_plid(p))
                })
                .min_by_key(|f| {
                    let plid = f.params.get("profile-level-id").map_or("42001f", String::as_str);
                    match role {
                        Role::Publish => profile_rank(plid),
                        Role::Play { profile_idc } => playback_rank(plid, profile_idc),
                    }
                });
            let Some(f) = best else {
                return Err(OfferError::Unsupported(format!(
                    "no supported video codec: offered {}; Sluice takes H.264 (packetization-mode=1)",
                    offered()
                )));
            };
            let plid = f.params.get("profile-level-id").cloned().unwrap_or_else(|| "42001f".into());
            chosen.video = Some((i, f.pt, plid));
        } else {
            if chosen.audio.is_some() {
                return Err(OfferError::Unsupported("more than one audio section; Sluice takes one".into()));
            }
            let Some(f) = s.formats.iter().find(|f| f.encoding.eq_ignore_ascii_case("opus") && f.clock_rate == 48_000)
            else {
                return Err(OfferError::Unsupported(format!(
                    "no supported audio codec: offered {}; Sluice takes Opus",
                    offered()
                )));
            };
            chosen.audio = Some((i, f.pt));
        }
    }
    if chosen.video.is_none() && chosen.audio.is_none() {
        return Err(OfferError::Unsupported("the offer sends no audio or video".into()));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An offer as Chromium makes one for a camera and microphone (trimmed).
    pub(crate) const CHROME: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
a=fingerprint:sha-256 12:34:56\r\na=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=rtpmap:9 G722/8000\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 106 107\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\n\
a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
a=rtpmap:103 rtx/90000\r\na=rtpmap:106 H264/90000\r\n\
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:107 H264/90000\r\na=fmtp:107 packetization-mode=0;profile-level-id=42e01f\r\n";

    #[test]
    fn chrome_offer_chooses_constrained_baseline_and_opus() {
        let o = parse_offer(CHROME).unwrap();
        assert_eq!(o.sections.len(), 2);
        assert!(o.has_ice_credentials && o.has_fingerprint);
        assert_eq!(o.sections[1].formats[2].params["profile-level-id"], "42001f");
        let c = choose(&o).unwrap();
        assert_eq!(c.video, Some((1, 106, "42e01f".into())), "constrained baseline, mode 1");
        assert_eq!(c.audio, Some((0, 111)));
    }

    #[test]
    fn viewer_offers_choose_the_streams_profile() {
        let recv = CHROME.replace("a=sendonly", "a=recvonly").replace(
            "a=rtpmap:107 H264/90000\r\n",
            "a=rtpmap:107 H264/90000\r\na=rtpmap:108 H264/90000\r\n\
a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f\r\n",
        );
        let recv = recv.replace("96 97 102 103 106 107", "96 97 102 103 106 107 108");
        let o = parse_offer(&recv).unwrap();
        assert!(choose(&o).unwrap_err().to_string().contains("a WHIP publisher sends"));
        let play = |idc| choose_for(&o, Role::Play { profile_idc: idc }).unwrap();
        assert_eq!(play(Some(100)).video, Some((1, 108, "64001f".into())), "high for a high-profile stream");
        assert_eq!(play(Some(66)).video.unwrap().1, 102, "baseline for baseline");
        assert_eq!(play(None).video.unwrap().1, 108, "unknown: the most capable");
        assert_eq!(play(None).audio, Some((0, 111)));
        let send = parse_offer(CHROME).unwrap();
        let e = choose_for(&send, Role::Play { profile_idc: None }).unwrap_err();
        assert_eq!(e.to_string(), "the audio section is sendonly: a WHEP viewer receives (recvonly)");
    }

    #[test]
    fn refusals_say_why() {
        let vp8_only = CHROME
            .replace("a=rtpmap:102 H264/90000", "a=rtpmap:102 VP9/90000")
            .replace("a=rtpmap:106 H264/90000", "a=rtpmap:106 VP9/90000")
            .replace("a=rtpmap:107 H264/90000", "a=rtpmap:107 VP9/90000");
        let e = choose(&parse_offer(&vp8_only).unwrap()).unwrap_err();
        assert_eq!(e.status(), 422);
        assert_eq!(
            e.to_string(),
            "no supported video codec: offered VP8, VP9; Sluice takes H.264 (packetization-mode=1)"
        );
        let recv = CHROME.replace("a=mid:1\r\na=sendonly", "a=mid:1\r\na=recvonly");
        assert!(choose(&parse_offer(&recv).unwrap()).unwrap_err().to_string().contains("video section is recvonly"));
        let no_ice = CHROME.replace("a=ice-pwd:0123456789abcdefghijklmn\r\n", "");
        assert_eq!(choose(&parse_offer(&no_ice).unwrap()).unwrap_err().status(), 400);
        let injected = CHROME.replace("profile-level-id=42e01f", "profile-level-id=42e01f,encoding-name=VP8");
        assert_eq!(
            choose(&parse_offer(&injected).unwrap()).unwrap().video.unwrap().1,
            102,
            "a malformed id is not taken"
        );
        let two_video = format!("{CHROME}m=video 9 UDP/TLS/RTP/SAVPF 106\r\na=sendonly\r\na=rtpmap:106 H264/90000\r\n");
        assert!(choose(&parse_offer(&two_video).unwrap()).unwrap_err().to_string().contains("more than one video"));
        let g722 = CHROME.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 PCMU/8000");
        assert!(choose(&parse_offer(&g722).unwrap()).unwrap_err().to_string().contains("Sluice takes Opus"));
    }

    #[test]
    fn malformed() {
        for bad in ["", "hello", "v=1\r\n", "m=video\r\nv=0\r\n", "vv=0\r\n"] {
            assert_eq!(parse_offer(bad).map_err(|e| e.status()), Err(400), "{bad:?}");
        }
        assert_eq!(parse_offer(&"a".repeat(MAX_OFFER + 1)).unwrap_err().status(), 400);
        // Disabled and data sections are skipped; audio alone is taken.
        let audio_only = "v=0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\na=fingerprint:sha-256 AA\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=rtpmap:111 OPUS/48000/2\r\n";
        assert_eq!(choose(&parse_offer(audio_only).unwrap()).unwrap(), Chosen { video: None, audio: Some((2, 111)) });
    }

    proptest::proptest! {
        /// Arbitrary text never panics; an offer with a chosen codec names a section that
        /// exists and offered that payload type.
        #[test]
        fn never_panics(text in ".{0,400}", lines in proptest::collection::vec("[vma]=[ -~]{0,40}", 0..20)) {
            let _ = parse_offer(&text).map(|o| choose(&o));
            let joined = format!("v=0\n{}", lines.join("\n"));
            if let Ok(o) = parse_offer(&joined)
                && let Ok(c) = choose(&o)
            {
                if let Some((i, pt, _)) = c.video {
                    proptest::prop_assert!(o.sections[i].formats.iter().any(|f| f.pt == pt));
                }
                if let Some((i, pt)) = c.audio {
                    proptest::prop_assert!(o.sections[i].formats.iter().any(|f| f.pt == pt));
                }
            }
        }
    }
}
