//! Transcoding profiles: go-livepeer's preset names and its JSON profile format (spec §8.4,
//! lpms `ffmpeg/videoprofile.go`), turned into the protobuf [`VideoProfile`]s a segment
//! request carries.

use serde::Deserialize;

use crate::proto::{Format, Profile, VideoCodec, VideoProfile};

/// go-livepeer's default `-transcodingOptions`.
pub const DEFAULT_TRANSCODING_OPTIONS: &str = "P240p30fps16x9,P360p30fps16x9";

/// Why a profile list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// A preset name go-livepeer does not know.
    #[error("unknown transcoding preset {0:?}")]
    UnknownPreset(String),
    /// Invalid JSON profile list.
    #[error("invalid JSON profiles: {0}")]
    Json(String),
    /// A JSON profile field out of range or unknown.
    #[error("profile {name:?}: {what}")]
    Invalid {
        /// Profile name.
        name: String,
        /// What is wrong.
        what: &'static str,
    },
    /// An empty list.
    #[error("no transcoding profiles given")]
    Empty,
}

/// (name, width, height, kbit/s, fps): the presets of lpms' lookup table.
const PRESETS: &[(&str, i32, i32, i32, u32)] = &[
    ("P720p60fps16x9", 1280, 720, 6000, 60),
    ("P720p30fps16x9", 1280, 720, 4000, 30),
    ("P720p25fps16x9", 1280, 720, 3500, 25),
    ("P720p30fps4x3", 960, 720, 3500, 30),
    ("P576p30fps16x9", 1024, 576, 1500, 30),
    ("P576p25fps16x9", 1024, 576, 1500, 25),
    ("P360p30fps16x9", 640, 360, 1200, 30),
    ("P360p25fps16x9", 640, 360, 1000, 25),
    ("P360p30fps4x3", 480, 360, 1000, 30),
    ("P240p30fps16x9", 426, 240, 600, 30),
    ("P240p25fps16x9", 426, 240, 600, 25),
    ("P240p30fps4x3", 320, 240, 600, 30),
    ("P144p30fps16x9", 256, 144, 400, 30),
];

/// The preset called `name`.
pub fn preset(name: &str) -> Option<VideoProfile> {
    PRESETS.iter().find(|p| p.0 == name).map(|&(name, width, height, kbps, fps)| VideoProfile {
        name: name.to_owned(),
        width,
        height,
        bitrate: kbps * 1000,
        fps,
        ..Default::default()
    })
}

/// Parses `--transcoding-options`: a JSON array of profiles (text starting with `[`), or a
/// comma-separated list of preset names.
pub fn parse_transcoding_options(text: &str) -> Result<Vec<VideoProfile>, ProfileError> {
    let t = text.trim();
    let out = if t.starts_with('[') {
        let list: Vec<JsonProfile> = serde_json::from_str(t).map_err(|e| ProfileError::Json(e.to_string()))?;
        list.into_iter().map(JsonProfile::into_profile).collect::<Result<Vec<_>, _>>()?
    } else {
        t.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| preset(n).ok_or_else(|| ProfileError::UnknownPreset(n.to_owned())))
            .collect::<Result<Vec<_>, _>>()?
    };
    if out.is_empty() {
        return Err(ProfileError::Empty);
    }
    Ok(out)
}

/// go-livepeer's JSON profile (`JsonProfile`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonProfile {
    #[serde(default)]
    name: String,
    width: i32,
    height: i32,
    /// Bits per second.
    bitrate: i32,
    #[serde(default)]
    fps: u32,
    #[serde(default)]
    fps_den: u32,
    #[serde(default)]
    profile: String,
    /// "intra", or seconds as a string.
    #[serde(default)]
    gop: String,
    #[serde(default)]
    encoder: String,
    #[serde(default)]
    color_depth: i32,
    #[serde(default)]
    chroma_format: i32,
    #[serde(default)]
    quality: u32,
}

impl JsonProfile {
    fn into_profile(self) -> Result<VideoProfile, ProfileError> {
        let name = if self.name.is_empty() {
            format!("custom_{}x{}_{}", self.width, self.height, self.bitrate)
        } else {
            self.name
        };
        let bad = |what| ProfileError::Invalid { name: name.clone(), what };
        if self.width <= 0 || self.height <= 0 {
            return Err(bad("width and height must be positive"));
        }
        if self.bitrate <= 0 {
            return Err(bad("bitrate must be positive"));
        }
        let profile = match self.profile.to_ascii_lowercase().as_str() {
            "" | "none" => Profile::EncoderDefault,
            "h264baseline" => Profile::H264Baseline,
            "h264main" => Profile::H264Main,
            "h264high" => Profile::H264High,
            "h264constrainedhigh" => Profile::H264ConstrainedHigh,
            _ => return Err(bad("unknown H.264 profile")),
        };
        let gop = match self.gop.as_str() {
            "" => 0,
            "intra" => -1,
            secs => {
                let s: f64 = secs.parse().map_err(|_| bad("gop must be \"intra\" or seconds"))?;
                if !(0.0..=3600.0).contains(&s) {
                    return Err(bad("gop out of range"));
                }
                (s * 1000.0).round() as i32
            }
        };
        let encoder = match self.encoder.as_str() {
            "" | "H.264" | "H264" | "h264" => VideoCodec::H264,
            "HEVC" | "H.265" | "H265" | "hevc" => VideoCodec::H265,
            "VP8" | "vp8" => VideoCodec::Vp8,
            "VP9" | "vp9" => VideoCodec::Vp9,
            _ => return Err(bad("unknown encoder")),
        };
        Ok(VideoProfile {
            name,
            width: self.width,
            height: self.height,
            bitrate: self.bitrate,
            fps: self.fps,
            fps_den: self.fps_den,
            format: Format::Mpegts as i32,
            profile: profile as i32,
            gop,
            encoder: encoder as i32,
            color_depth: self.color_depth,
            chroma_format: self.chroma_format,
            quality: self.quality,
        })
    }
}

/// Estimated output pixels of one segment, what a gateway pays for (spec §5.6): for each
/// profile width × height × ceil(fps) × ceil(duration in seconds), with fps 0 counted as 60
/// and fpsDen 0 as 1.
pub fn estimated_pixels(profiles: &[VideoProfile], segment_secs: f64) -> u64 {
    let secs = segment_secs.max(0.0).ceil() as u64;
    profiles
        .iter()
        .map(|p| {
            let fps = if p.fps == 0 { 60.0 } else { p.fps as f64 / p.fps_den.max(1) as f64 };
            p.width.max(0) as u64 * p.height.max(0) as u64 * fps.ceil() as u64 * secs
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_presets() {
        let p = parse_transcoding_options(DEFAULT_TRANSCODING_OPTIONS).unwrap();
        assert_eq!(p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["P240p30fps16x9", "P360p30fps16x9"]);
        assert_eq!((p[0].width, p[0].height, p[0].bitrate, p[0].fps), (426, 240, 600_000, 30));
        assert_eq!((p[1].width, p[1].height, p[1].bitrate, p[1].fps), (640, 360, 1_200_000, 30));
        assert_eq!(parse_transcoding_options("P720p60fps16x9 , P144p30fps16x9").unwrap().len(), 2);
        assert_eq!(parse_transcoding_options("P999p"), Err(ProfileError::UnknownPreset("P999p".into())));
        assert_eq!(parse_transcoding_options(" , "), Err(ProfileError::Empty));
    }

    #[test]
    fn json_profiles() {
        let p = parse_transcoding_options(
            r#"[{"name":"hd","width":1280,"height":720,"bitrate":3000000,"fps":30000,"fpsDen":1001,
                "profile":"H264High","gop":"2.5"},
               {"width":320,"height":180,"bitrate":250000,"gop":"intra","encoder":"HEVC"}]"#,
        )
        .unwrap();
        assert_eq!(p[0].name, "hd");
        assert_eq!((p[0].fps, p[0].fps_den, p[0].profile, p[0].gop), (30000, 1001, Profile::H264High as i32, 2500));
        assert_eq!(p[1].name, "custom_320x180_250000");
        assert_eq!((p[1].gop, p[1].encoder), (-1, VideoCodec::H265 as i32));
        assert!(matches!(
            parse_transcoding_options(r#"[{"width":0,"height":1,"bitrate":1}]"#),
            Err(ProfileError::Invalid { .. })
        ));
        assert!(matches!(parse_transcoding_options("[{]"), Err(ProfileError::Json(_))));
    }

    #[test]
    fn pixel_estimate_matches_the_spec_example() {
        // §5.6: P240p30fps16x9 + P360p30fps16x9 for a 2 s segment.
        let p = parse_transcoding_options(DEFAULT_TRANSCODING_OPTIONS).unwrap();
        assert_eq!(estimated_pixels(&p, 2.0), 19_958_400);
        // A partial second counts as a whole one; fps 0 counts as 60.
        let keep = VideoProfile { width: 10, height: 10, fps: 0, ..Default::default() };
        assert_eq!(estimated_pixels(&[keep], 1.2), 10 * 10 * 60 * 2);
        let ntsc = VideoProfile { width: 10, height: 10, fps: 30000, fps_den: 1001, ..Default::default() };
        assert_eq!(estimated_pixels(&[ntsc], 2.0), 10 * 10 * 30 * 2);
    }
}
