//! The rendition ladder a source actually gets.
//!
//! A rendition above its source is worse than the source itself (upscaled detail that
//! was never there) and, at a higher bitrate, lures a player's ABR logic to climb to it.
//! So, per source segment:
//! * a profile whose long side or short side exceeds the source's is **not offered**: it
//!   is not sent to orchestrators (nobody pays for it) and leaves the master playlist;
//!   the comparison ignores orientation, so a portrait source keeps a landscape ladder's
//!   smaller rungs;
//! * every offered profile's bitrate is **capped at the source's** measured average
//!   bitrate (transport stream bytes of all tracks over media time), so no rendition is
//!   announced, or encoded, at more bits than the source it comes from;
//! * a source without video has no ladder.
//!
//! go-livepeer sends every configured profile whatever the source; an operator moving
//! from it sees fewer renditions for small sources, by design.

use media::VideoDimensions;
use transport::proto::VideoProfile;

/// `profiles` as offered for a source of `source` dimensions and `source_bps` measured
/// bits per second (`None`: not measured yet): one entry per profile, in order, `None`
/// where the profile is above the source.
pub fn offered(
    profiles: &[VideoProfile],
    source: Option<VideoDimensions>,
    source_bps: Option<u64>,
) -> Vec<Option<VideoProfile>> {
    profiles
        .iter()
        .map(|p| {
            let s = source?;
            if above(p, s) {
                return None;
            }
            let mut p = p.clone();
            if let Some(cap) = source_bps.filter(|&b| b > 0) {
                p.bitrate = p.bitrate.min(cap.min(i32::MAX as u64) as i32);
            }
            Some(p)
        })
        .collect()
}

/// True when the profile's long or short side exceeds the source's.
pub fn above(p: &VideoProfile, s: VideoDimensions) -> bool {
    let (pw, ph) = (p.width.max(0) as u32, p.height.max(0) as u32);
    pw.max(ph) > s.width.max(s.height) || pw.min(ph) > s.width.min(s.height)
}

#[cfg(test)]
mod tests {
    use super::*;
    use transport::profiles::parse_transcoding_options;

    fn dims(width: u32, height: u32) -> Option<VideoDimensions> {
        Some(VideoDimensions { width, height })
    }

    #[test]
    fn renditions_above_the_source_are_not_offered_and_bitrates_are_capped() {
        let ladder = parse_transcoding_options("P240p30fps16x9,P360p30fps16x9,P720p30fps16x9").unwrap();
        let names = |o: &[Option<VideoProfile>]| -> Vec<Option<(String, i32)>> {
            o.iter().map(|p| p.as_ref().map(|p| (p.name.clone(), p.bitrate))).collect()
        };
        // The demo's old case: a 360p source at 0.56 Mb/s. 720p goes; 360p and 240p stay,
        // both capped at the source's bitrate.
        let got = offered(&ladder, dims(640, 360), Some(560_000));
        assert_eq!(
            names(&got),
            vec![Some(("P240p30fps16x9".into(), 560_000)), Some(("P360p30fps16x9".into(), 560_000)), None]
        );
        // A 1080p source at 6 Mb/s keeps the whole ladder at the profiles' own bitrates.
        let got = offered(&ladder, dims(1920, 1080), Some(6_000_000));
        assert_eq!(
            got.iter().map(|p| p.as_ref().unwrap().bitrate).collect::<Vec<_>>(),
            vec![ladder[0].bitrate, ladder[1].bitrate, ladder[2].bitrate]
        );
        // Portrait 720x1280 keeps 720p (1280x720 turned sideways fits).
        assert!(offered(&ladder, dims(720, 1280), None).iter().all(Option::is_some));
        // 320x180 is below every rung; audio-only has no ladder.
        assert!(offered(&ladder, dims(320, 180), None).iter().all(Option::is_none));
        assert!(offered(&ladder, None, Some(128_000)).iter().all(Option::is_none));
    }
}
