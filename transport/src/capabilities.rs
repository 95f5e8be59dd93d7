//! Capability bitstrings (spec §2.8): what a transcoding job needs, built as go-livepeer's
//! `core.JobCapabilities` builds it, and the compatibility test both sides apply.

use crate::proto::{Capabilities, Format, Profile, VideoCodec, VideoProfile, capabilities::Constraints};

/// Capability numbers of `core/capabilities.go` that a transcoding gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum Capability {
    H264 = 0,
    MpegTs = 1,
    Mp4 = 2,
    FractionalFramerates = 3,
    StorageDirect = 4,
    StorageS3 = 5,
    StorageGcs = 6,
    ProfileH264Baseline = 7,
    ProfileH264Main = 8,
    ProfileH264High = 9,
    ProfileH264ConstrainedHigh = 10,
    Gop = 11,
    AuthToken = 12,
    Mpeg7VideoSignature = 14,
    HevcDecode = 15,
    HevcEncode = 16,
    Vp8Decode = 17,
    Vp9Decode = 18,
    Vp8Encode = 19,
    Vp9Encode = 20,
    SegmentSlicing = 26,
}

/// A set of capability bits, word `n / 64`, bit `n % 64`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitySet(Vec<u64>);

impl CapabilitySet {
    /// Adds capability `n`.
    pub fn insert(&mut self, n: u32) {
        let w = (n / 64) as usize;
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (n % 64);
    }

    /// The words, as the `bitstring` field carries them.
    pub fn words(&self) -> &[u64] {
        &self.0
    }

    /// True if every bit of `self` is in `other`.
    pub fn is_subset_of(&self, other: &[u64]) -> bool {
        self.0.iter().enumerate().all(|(i, w)| w & other.get(i).copied().unwrap_or(0) == *w)
    }
}

/// The capabilities a transcoding job of H.264 input to `profiles` needs (§2.8): AuthToken
/// always; the input codec; per output its container, encoder, fractional frame rate, H.264
/// profile and GOP. `segment_slicing` is set for HTTP-push ingest with clip windows.
pub fn job_capabilities(profiles: &[VideoProfile], segment_slicing: bool, min_version: &str) -> Capabilities {
    let mut set = CapabilitySet::default();
    set.insert(Capability::AuthToken as u32);
    set.insert(Capability::H264 as u32);
    if segment_slicing {
        set.insert(Capability::SegmentSlicing as u32);
    }
    for p in profiles {
        set.insert(match Format::try_from(p.format) {
            Ok(Format::Mp4) => Capability::Mp4,
            _ => Capability::MpegTs,
        } as u32);
        set.insert(match VideoCodec::try_from(p.encoder) {
            Ok(VideoCodec::H265) => Capability::HevcEncode,
            Ok(VideoCodec::Vp8) => Capability::Vp8Encode,
            Ok(VideoCodec::Vp9) => Capability::Vp9Encode,
            _ => Capability::H264,
        } as u32);
        if p.fps_den > 0 {
            set.insert(Capability::FractionalFramerates as u32);
        }
        match Profile::try_from(p.profile) {
            Ok(Profile::H264Baseline) => set.insert(Capability::ProfileH264Baseline as u32),
            Ok(Profile::H264Main) => set.insert(Capability::ProfileH264Main as u32),
            Ok(Profile::H264High) => set.insert(Capability::ProfileH264High as u32),
            Ok(Profile::H264ConstrainedHigh) => set.insert(Capability::ProfileH264ConstrainedHigh as u32),
            _ => {}
        }
        if p.gop != 0 {
            set.insert(Capability::Gop as u32);
        }
    }
    Capabilities {
        bitstring: set.0,
        constraints: (!min_version.is_empty())
            .then(|| Constraints { min_version: min_version.to_owned(), ..Default::default() }),
        ..Default::default()
    }
}

/// The compatibility test (§2.8): the orchestrator's mandatory bits are all in the job, the
/// job's bits are all offered by the orchestrator, and the orchestrator's version is at
/// least the job's `minVersion` (empty = any).
pub fn compatible(job: &Capabilities, orchestrator: &Capabilities) -> bool {
    let job_set = CapabilitySet(job.bitstring.clone());
    let mandatory = CapabilitySet(orchestrator.mandatories.clone());
    let min = job.constraints.as_ref().map_or("", |c| c.min_version.as_str());
    mandatory.is_subset_of(&job.bitstring)
        && job_set.is_subset_of(&orchestrator.bitstring)
        && (min.is_empty() || version_at_least(&orchestrator.version, min))
}

/// Compares dotted numeric versions (`0.8.1` ≥ `0.7.9`); a leading `v` and any suffix after
/// `-` or `+` are ignored. An unparsable version is not at least anything.
fn version_at_least(have: &str, want: &str) -> bool {
    let parse = |s: &str| -> Option<Vec<u64>> {
        let core = s.trim().trim_start_matches('v').split(['-', '+']).next()?;
        core.split('.').map(|p| p.parse().ok()).collect()
    };
    match (parse(have), parse(want)) {
        (Some(mut h), Some(mut w)) => {
            let n = h.len().max(w.len());
            h.resize(n, 0);
            w.resize(n, 0);
            h >= w
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::{DEFAULT_TRANSCODING_OPTIONS, parse_transcoding_options};

    #[test]
    fn default_rtmp_job_is_0x1003() {
        let p = parse_transcoding_options(DEFAULT_TRANSCODING_OPTIONS).unwrap();
        assert_eq!(job_capabilities(&p, false, "").bitstring, vec![0x1003]);
        // HTTP push adds SegmentSlicing (§2.8's second example).
        assert_eq!(job_capabilities(&p, true, "").bitstring, vec![0x400_1003]);
    }

    #[test]
    fn profile_features_set_their_bits() {
        let p = VideoProfile {
            fps_den: 1001,
            profile: Profile::H264Main as i32,
            gop: 2000,
            format: Format::Mp4 as i32,
            encoder: VideoCodec::Vp9 as i32,
            ..Default::default()
        };
        let bits = job_capabilities(&[p], false, "").bitstring[0];
        for n in [0, 2, 3, 8, 11, 12, 20] {
            assert!(bits & (1 << n) != 0, "bit {n}");
        }
        assert_eq!(bits & (1 << 1), 0, "no MPEG-TS output");
    }

    #[test]
    fn compatibility_rules() {
        let job = Capabilities { bitstring: vec![0x1003], ..Default::default() };
        let o = Capabilities { bitstring: vec![0xffff], version: "0.8.1".into(), ..Default::default() };
        assert!(compatible(&job, &o));
        assert!(!compatible(&job, &Capabilities { bitstring: vec![0x0003], ..Default::default() }), "no AuthToken");
        let picky = Capabilities { mandatories: vec![1 << 14], ..o.clone() };
        assert!(!compatible(&job, &picky), "a mandatory bit the job lacks");
        let versioned = job_capabilities(&parse_transcoding_options("P240p30fps16x9").unwrap(), false, "0.8.0");
        assert!(compatible(&versioned, &o));
        assert!(!compatible(&versioned, &Capabilities { version: "0.7.9".into(), ..o.clone() }));
        assert!(compatible(&versioned, &Capabilities { version: "v0.8.0-abc".into(), ..o }));
    }
}
