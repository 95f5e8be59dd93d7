//! Video access units out of a WebRTC publisher's depayloaded H.264, without IO:
//! [`Assembler`] gathers whole pictures, [`access_unit`] writes them in H.264 order,
//! [`ClockGuard`] corrects 1 MHz video clocks, [`KeyframePacer`] times keyframe requests.
use bytes::Bytes;
use media::{AccessUnit, H264Config, MediaTime, Payload, Timescale, TrackKind};

/// The access unit delimiter an MPEG-TS access unit opens with (behind its start code).
const AUD: &[u8] = &[9, 0xf0];

/// `nal`'s type (the low five bits of its header).
fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|h| h & 0x1f)
}

/// When to ask a publisher for a keyframe (PLI) so that one lands just after each segment
/// target: the delay from asking to receiving is measured, and the next request goes out
/// that much ahead. Times in 90 kHz ticks.
#[derive(Debug)]
pub(crate) struct KeyframePacer {
    interval: i64,
    /// The last keyframe that started a segment.
    last: Option<i64>,
    /// `last` is the first picture's time, not a keyframe's: the first keyframe replaces it.
    seeded: bool,
    /// When a keyframe was asked for and has not come yet.
    asked: Option<i64>,
    /// The measured delay from asking to receiving (smoothed).
    lead: i64,
}

/// How far past the target a keyframe is aimed (a little late cuts on time; a little
/// early waits a whole interval).
const KEYFRAME_MARGIN: i64 = 9_000;

impl KeyframePacer {
    pub(crate) fn new(interval: i64) -> Self {
        KeyframePacer { interval: interval.max(1), last: None, seeded: false, asked: None, lead: 0 }
    }

    /// A picture at `pts`: true when a keyframe should be asked for now.
    pub(crate) fn handle_picture(&mut self, pts: i64, keyframe: bool) -> bool {
        if keyframe {
            if let Some(a) = self.asked.take() {
                let observed = (pts - a).clamp(0, self.interval / 2);
                self.lead = (3 * self.lead + observed) / 4;
            }
            // Only a keyframe that starts a segment (an interval or more after the last
            // one that did) moves the aim: one that comes early (the publisher's answer
            // to a loss, say) is no cut, and the next cut is still due on time.
            if self.seeded || self.last.is_none_or(|l| pts - l >= self.interval) {
                (self.last, self.seeded) = (Some(pts), false);
            }
            return false;
        }
        let Some(last) = self.last else {
            // No keyframe yet: aim from here until the first one comes.
            (self.last, self.seeded) = (Some(pts), true);
            return false;
        };
        let ask_at = last + self.interval + KEYFRAME_MARGIN - self.lead;
        // Asked and nothing came within half an interval: ask again.
        let waiting = self.asked.is_some_and(|a| pts - a < self.interval / 2);
        if pts >= ask_at && !waiting {
            self.asked = Some(pts);
            return true;
        }
        false
    }
}

/// Corrects a publisher whose video RTP timestamps run at 1 MHz while its SDP says
/// 90 kHz (iOS WebKit 18.4–18.5; go-livepeer #3603, which compares the first two
/// timestamps): the pictures of the first 300 ms of arrival are held, the timestamps'
/// rate is compared with the arrival rate, and when it is about eleven times too fast
/// every timestamp is scaled by 9/100 from the first picture's. Arrival times in ns.
#[derive(Debug, Default)]
pub(crate) struct ClockGuard {
    /// The first picture's timestamp (ticks) and arrival.
    first: Option<(i64, u64)>,
    held: Vec<Picture>,
    /// Decided: the scale (numerator, denominator).
    scale: Option<(i64, i64)>,
}

/// Arrival time over which the timestamps' rate is measured.
const CLOCK_PROBE_NS: u64 = 300_000_000;

impl ClockGuard {
    /// A picture arrived at `arrival_ns`: the pictures to pass on now (held ones first).
    pub(crate) fn push(&mut self, p: Picture, arrival_ns: u64) -> Vec<Picture> {
        if self.scale.is_some() {
            return vec![self.rescaled(p)];
        }
        let (p0, a0) = *self.first.get_or_insert((p.pts.ticks(), arrival_ns));
        let (pts, elapsed) = (p.pts.ticks(), arrival_ns.saturating_sub(a0));
        self.held.push(p);
        if elapsed < CLOCK_PROBE_NS && self.held.len() < 64 {
            return Vec::new();
        }
        // Timestamp seconds per arrival second, at the 90 kHz the SDP promised.
        let rate = (pts - p0) as f64 / 90_000.0 / (elapsed.max(1) as f64 / 1e9);
        self.scale = Some(if (8.0..15.0).contains(&rate) {
            tracing::warn!(rate, "video timestamps run at 1 MHz, not the 90 kHz announced (iOS WebKit): rescaled");
            (9, 100)
        } else {
            (1, 1)
        });
        let held = std::mem::take(&mut self.held);
        held.into_iter().map(|p| self.rescaled(p)).collect()
    }

    fn rescaled(&self, mut p: Picture) -> Picture {
        if let (Some((n, d)), Some((p0, _))) = (self.scale, self.first)
            && n != d
        {
            let f = |t: MediaTime| MediaTime::new(p0 + (t.ticks() - p0) * n / d, Timescale::MPEG);
            p.pts = f(p.pts);
            p.dts = f(p.dts);
        }
        p
    }
}

/// One picture's NAL units, gathered from the depayloader's buffers.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    pts: Option<MediaTime>,
    dts: Option<MediaTime>,
    nals: Vec<Bytes>,
    /// A slice (a picture's coded data) is among them.
    slices: bool,
}

/// An access unit's parts.
#[derive(Debug, PartialEq)]
pub(crate) struct Picture {
    pts: MediaTime,
    dts: MediaTime,
    nals: Vec<Bytes>,
}

impl Assembler {
    /// Adds one buffer's NAL units at `pts`: returns the picture before it when this
    /// buffer starts the next one. A picture is its slices and everything with their
    /// timestamp, plus what came ahead of them (parameter sets at the next timestamp start
    /// the next picture), so pictures of several slices sent with parameter sets between
    /// them, and parameter sets sent ahead, stay whole (one picture of delay).
    pub(crate) fn push(&mut self, pts: MediaTime, dts: Option<MediaTime>, nals: Vec<Bytes>) -> Option<Picture> {
        let slices = nals.iter().any(|n| matches!(nal_type(n), Some(1..=5)));
        // Another timestamp after slices: a new picture (parameter sets sent ahead of the
        // next picture included).
        let next_picture = self.slices && self.pts.is_some_and(|p| p.ticks() != pts.ticks());
        let done = if next_picture { self.take() } else { None };
        if slices || self.pts.is_none() {
            self.pts = Some(pts);
            self.dts = dts;
        }
        self.slices |= slices;
        // A runaway of parameter sets without pictures is bounded.
        if self.nals.len() < 512 {
            self.nals.extend(nals);
        }
        done
    }

    /// The picture gathered so far, if it has slices.
    fn take(&mut self) -> Option<Picture> {
        let a = std::mem::take(self);
        let pts = a.pts?;
        a.slices.then(|| Picture { pts, dts: a.dts.unwrap_or(pts), nals: a.nals })
    }
}

/// The access unit of a whole picture (H.264 §7.4.1.2.3 order): an AUD, each parameter
/// set once, the SEI and other non-picture units, then the slices; and its configuration
/// when it is a keyframe. A sender may repeat parameter sets before every slice, which a
/// decoder would take for the start of another picture. NAL units are sliced, not copied.
pub(crate) fn access_unit(p: Picture, known: Option<&H264Config>) -> (AccessUnit, Option<H264Config>) {
    let (mut sps, mut pps, mut other, mut slices, mut end) = (vec![], vec![], vec![], vec![], vec![]);
    for nal in p.nals {
        let list = match nal_type(&nal) {
            Some(9) | Some(12) | None => continue, // delimiters (one is added), filler
            Some(7) => &mut sps,
            Some(8) => &mut pps,
            Some(1..=5) => &mut slices,
            Some(10 | 11) => &mut end,
            _ => &mut other,
        };
        if !(matches!(nal_type(&nal), Some(7 | 8)) && list.contains(&nal)) {
            list.push(nal);
        }
    }
    // A keyframe is a picture with an IDR slice (whatever the depayloader flagged).
    let keyframe = slices.iter().any(|n| nal_type(n) == Some(5));
    // A keyframe whose parameter sets were lost (or never sent in band) gets the last
    // ones, so every segment starting on it decodes.
    if keyframe && let Some(k) = known {
        if sps.is_empty() {
            sps = k.sps.clone();
        }
        if pps.is_empty() {
            pps = k.pps.clone();
        }
    }
    let config = (keyframe && !sps.is_empty() && !pps.is_empty())
        .then(|| H264Config::from_parameter_sets(sps.clone(), pps.clone(), 4).ok())
        .flatten();
    let mut payload = Payload::with_capacity(2 + 2 * (sps.len() + pps.len() + other.len() + slices.len() + end.len()));
    payload.push_start_code();
    payload.push(Bytes::from_static(AUD));
    for nal in sps.into_iter().chain(pps).chain(other).chain(slices).chain(end) {
        payload.push_start_code();
        payload.push(nal);
    }
    (AccessUnit { track: TrackKind::Video, pts: p.pts, dts: p.dts, keyframe, data: payload }, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1280x720 high-profile SPS.
    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x6a, 0x02, 0x02, 0x02, 0x80, 0x00, 0x00,
        0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18, 0xcb,
    ];

    fn nal(t: u8, n: u8) -> Bytes {
        if t == 0x67 { Bytes::from_static(SPS) } else { Bytes::from(vec![t, n, n]) }
    }

    fn t(ticks: i64) -> MediaTime {
        MediaTime::new(ticks, Timescale::MPEG)
    }

    #[test]
    fn pictures_of_several_slices_and_repeated_parameter_sets_stay_whole() {
        let mut a = Assembler::default();
        // Parameter sets ahead of the picture, then an IDR in two buffers (parameter sets
        // repeated before the second slice), then a P picture.
        assert_eq!(a.push(t(0), None, vec![nal(0x67, 1), nal(0x68, 1)]), None);
        assert_eq!(a.push(t(0), None, vec![nal(0x09, 0), nal(0x65, 1)]), None);
        assert_eq!(a.push(t(0), None, vec![nal(0x67, 1), nal(0x68, 1), nal(0x65, 2)]), None);
        let idr = a.push(t(3000), None, vec![nal(0x09, 0), nal(0x41, 3), nal(0x41, 4)]).unwrap();
        assert_eq!(idr.pts.ticks(), 0);
        assert_eq!(idr.nals.len(), 7);
        let (au, config) = access_unit(idr, None);
        assert!(au.keyframe);
        let c = config.unwrap_or_else(|| panic!("parameter sets: {:?}", au.data));
        assert_eq!((c.sps.len(), c.pps.len()), (1, 1), "each once");
        let bytes = au.data.to_contiguous();
        let types: Vec<u8> = media::annexb_nal_units(&bytes).iter().map(|n| n[0] & 0x1f).collect();
        assert_eq!(types, [9, 7, 8, 5, 5], "AUD, parameter sets once, then the slices");
        let p = a.take().unwrap();
        assert_eq!(p.pts.ticks(), 3000);
        let (au, config) = access_unit(p, None);
        assert!(!au.keyframe && config.is_none());
        // An IDR whose parameter sets were lost gets the known ones.
        a.push(t(6000), None, vec![nal(0x65, 5)]);
        let (au, _) = access_unit(a.take().unwrap(), Some(&c));
        let types: Vec<u8> = media::annexb_nal_units(&au.data.to_contiguous()).iter().map(|n| n[0] & 0x1f).collect();
        assert_eq!(types, [9, 7, 8, 5]);
        assert_eq!(a.take(), None);
    }

    #[test]
    fn parameter_sets_at_the_next_timestamp_go_with_the_next_picture() {
        let mut a = Assembler::default();
        assert_eq!(a.push(t(0), None, vec![nal(0x41, 1)]), None);
        // New parameter sets with the next picture's timestamp, then its IDR.
        let p = a.push(t(3000), None, vec![nal(0x67, 2), nal(0x68, 2)]).unwrap();
        assert_eq!(p.nals.len(), 1, "the P picture alone");
        assert_eq!(a.push(t(3000), None, vec![nal(0x65, 2)]), None);
        let idr = a.take().unwrap();
        let types: Vec<u8> = idr.nals.iter().map(|n| n[0] & 0x1f).collect();
        assert_eq!(types, [7, 8, 5]);
    }

    #[test]
    fn keyframes_are_asked_ahead_by_the_measured_delay() {
        // 2 s segments, 30 fps (3000 ticks a frame), a publisher answering in 300 ms.
        let mut p = KeyframePacer::new(180_000);
        let mut asked_at = vec![];
        let mut keyframes = vec![0i64];
        let mut pending: Option<i64> = None;
        p.handle_picture(0, true);
        for f in 1..600i64 {
            let pts = f * 3000;
            let key = pending.is_some_and(|a| pts >= a + 27_000);
            if key {
                pending = None;
                keyframes.push(pts);
            }
            if p.handle_picture(pts, key) {
                asked_at.push(pts);
                pending = Some(pts);
            }
        }
        let gaps: Vec<i64> = keyframes.windows(2).map(|w| w[1] - w[0]).collect();
        // The first lands 100 ms + 300 ms late; the delay is learnt and the rest land
        // within a frame or two of 2.1 s.
        assert!(gaps[0] >= 180_000 + 27_000, "{gaps:?}");
        for g in &gaps[4..] {
            assert!((180_000..=180_000 + 9_000 + 9_000).contains(g), "{gaps:?}");
        }
    }

    #[test]
    fn an_early_keyframe_does_not_delay_the_next_cut() {
        // The publisher's encoder keeps its own 2 s grid, counted from its last keyframe,
        // and answers a request in 300 ms; at 1.7 s it sends one keyframe of its own
        // (a loss it repaired). The cut after it must still come near 2 s, not at 3.7 s.
        let mut p = KeyframePacer::new(180_000);
        let (mut last_key, mut pending, mut cuts) = (0i64, None::<i64>, vec![0i64]);
        p.handle_picture(0, true);
        for f in 1..300i64 {
            let pts = f * 3000;
            let asked = pending.is_some_and(|a| pts >= a + 27_000);
            let key = asked || f == 51 || pts - last_key >= 180_000;
            if key {
                pending = None;
                last_key = pts;
                if pts - cuts.last().unwrap() >= 180_000 {
                    cuts.push(pts);
                }
            }
            if p.handle_picture(pts, key) {
                pending = Some(pts);
            }
        }
        let gaps: Vec<i64> = cuts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g <= 180_000 + 9_000 + 27_000), "segments of {gaps:?} ticks");
    }

    #[test]
    fn the_first_keyframe_replaces_the_first_picture_as_the_aim() {
        // The stream opens on a P picture; the first keyframe, which starts the first
        // segment, comes 0.5 s later. The request is aimed from that keyframe.
        let mut p = KeyframePacer::new(180_000);
        assert!(!p.handle_picture(0, false));
        assert!(!p.handle_picture(45_000, true));
        let first_ask = (1..200i64).map(|f| 45_000 + f * 3000).find(|&pts| p.handle_picture(pts, false));
        assert_eq!(first_ask, Some(45_000 + 180_000 + KEYFRAME_MARGIN));
    }

    fn picture(ticks: i64) -> Picture {
        Picture { pts: t(ticks), dts: t(ticks), nals: vec![] }
    }

    #[test]
    fn microsecond_video_timestamps_are_rescaled() {
        // 30 fps for 0.43 s, timestamps at 1 MHz (33,333 ticks a frame read as 90 kHz).
        let mut g = ClockGuard::default();
        let mut out = vec![];
        for f in 0..13u64 {
            out.extend(g.push(picture(1_000 + f as i64 * 33_333), f * 33_333_333));
        }
        assert_eq!(out.len(), 13, "held for 300 ms, then passed on");
        let gaps: Vec<i64> = out.windows(2).map(|w| w[1].pts.ticks() - w[0].pts.ticks()).collect();
        assert!(gaps.iter().all(|g| (2_999..=3_000).contains(g)), "{gaps:?}");
        assert_eq!(out[0].pts.ticks(), 1_000);
        // A normal publisher is left alone.
        let mut g = ClockGuard::default();
        let mut out = vec![];
        for f in 0..13u64 {
            out.extend(g.push(picture(f as i64 * 3_000), f * 33_333_333));
        }
        assert_eq!(
            out.iter().map(|p| p.pts.ticks()).collect::<Vec<_>>(),
            (0..13).map(|f| f * 3_000).collect::<Vec<_>>()
        );
    }

    #[test]
    fn parameter_sets_alone_are_no_picture() {
        let mut a = Assembler::default();
        assert_eq!(a.push(t(0), None, vec![nal(0x67, 1), nal(0x68, 1)]), None);
        assert_eq!(a.take(), None);
    }
}
