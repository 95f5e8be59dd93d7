//! HLS playlists (RFC 8216): the sliding-window media playlist and the master playlist,
//! written with `m3u8-rs`.

use std::collections::VecDeque;

use m3u8_rs::{MasterPlaylist, MediaPlaylist, MediaPlaylistType, MediaSegment, Resolution, VariantStream};

/// One segment as a playlist lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaylistEntry {
    /// Sequence number (also names the segment).
    pub seq: u64,
    /// Duration in seconds.
    pub duration: f64,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// Marked `EXT-X-GAP` (RFC 8216bis §4.4.4.7): the rendition has no media of its own
    /// for this span.
    pub gap: bool,
    /// Starts with a keyframe (decodes on its own). `EXT-X-INDEPENDENT-SEGMENTS` is
    /// written only while every listed segment is.
    pub independent: bool,
}

/// A media playlist with a sliding window.
#[derive(Debug, Clone)]
pub struct MediaPlaylistBuilder {
    window: usize,
    entries: VecDeque<PlaylistEntry>,
    discontinuity_sequence: u64,
    target_duration: u64,
    ended: bool,
    vod: bool,
}

impl MediaPlaylistBuilder {
    /// A live playlist listing the last `window` segments (0: all of them), announcing
    /// `ceil(target_secs)` as its target duration. A live playlist's target duration must
    /// never change (RFC 8216 §6.2.1), so `target_secs` must bound every segment (the
    /// cutter's maximum duration does); should a longer segment come anyway, the target
    /// grows rather than `EXTINF` exceeding it (§4.3.3.1), the lesser violation.
    pub fn new(window: usize, target_secs: f64) -> Self {
        MediaPlaylistBuilder {
            window,
            entries: VecDeque::new(),
            discontinuity_sequence: 0,
            target_duration: target_secs.ceil().max(1.0) as u64,
            ended: false,
            vod: false,
        }
    }

    /// A finished VOD playlist listing every segment.
    pub fn vod(target_secs: f64) -> Self {
        let mut p = Self::new(0, target_secs);
        p.vod = true;
        p.ended = true;
        p
    }

    /// Appends a segment; returns the sequence numbers that slid out of the window.
    pub fn push(&mut self, entry: PlaylistEntry) -> Vec<u64> {
        // RFC 8216 §4.3.3.1: EXTINF rounded to the nearest integer must not exceed the
        // target duration.
        self.target_duration = self.target_duration.max(entry.duration.round() as u64);
        self.entries.push_back(entry);
        let mut evicted = Vec::new();
        while self.window > 0 && self.entries.len() > self.window {
            let e = self.entries.pop_front().expect("longer than the window, so not empty");
            // §6.2.2: the discontinuity sequence counts the discontinuities removed.
            if e.discontinuity {
                self.discontinuity_sequence += 1;
            }
            evicted.push(e.seq);
        }
        evicted
    }

    /// Marks the playlist finished (`EXT-X-ENDLIST`) or live again.
    pub fn set_ended(&mut self, ended: bool) {
        self.ended = ended;
    }

    /// True once ended.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The listed segments.
    pub fn entries(&self) -> impl Iterator<Item = &PlaylistEntry> {
        self.entries.iter()
    }

    /// Sequence number of the first listed segment.
    pub fn media_sequence(&self) -> u64 {
        self.entries.front().map_or(0, |e| e.seq)
    }

    /// The target duration in seconds.
    pub fn target_duration(&self) -> u64 {
        self.target_duration
    }

    /// Renders the playlist; `uri` names each segment.
    pub fn render(&self, uri: impl Fn(u64) -> String) -> String {
        let pl = MediaPlaylist {
            version: Some(3),
            target_duration: self.target_duration,
            media_sequence: self.media_sequence(),
            discontinuity_sequence: self.discontinuity_sequence,
            end_list: self.ended,
            playlist_type: self.vod.then_some(MediaPlaylistType::Vod),
            independent_segments: self.entries.iter().all(|e| e.independent),
            segments: self
                .entries
                .iter()
                .map(|e| MediaSegment {
                    uri: uri(e.seq),
                    duration: e.duration as f32,
                    discontinuity: e.discontinuity,
                    unknown_tags: if e.gap {
                        vec![m3u8_rs::ExtTag { tag: "X-GAP".into(), rest: None }]
                    } else {
                        Vec::new()
                    },
                    ..MediaSegment::empty()
                })
                .collect(),
            ..MediaPlaylist::default()
        };
        write(|w| pl.write_to(w))
    }
}

/// One entry of a master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Media playlist URI, relative to the master.
    pub uri: String,
    /// Peak bits per second.
    pub bandwidth: u64,
    /// Width and height.
    pub resolution: Option<(u32, u32)>,
    /// RFC 6381 codec list, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: Option<String>,
}

/// Renders a master playlist.
pub fn render_master(variants: &[Variant]) -> String {
    let pl = MasterPlaylist {
        version: Some(3),
        independent_segments: true,
        variants: variants
            .iter()
            .map(|v| VariantStream {
                uri: v.uri.clone(),
                bandwidth: v.bandwidth.max(1),
                codecs: v.codecs.clone(),
                resolution: v
                    .resolution
                    .map(|(width, height)| Resolution { width: width as u64, height: height as u64 }),
                ..VariantStream::default()
            })
            .collect(),
        ..MasterPlaylist::default()
    };
    write(|w| pl.write_to(w))
}

fn write(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::with_capacity(1024);
    // Writing into a Vec cannot fail.
    f(&mut out).expect("writing to a Vec");
    String::from_utf8(out).expect("m3u8-rs writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(seq: u64, d: f64, disc: bool) -> PlaylistEntry {
        PlaylistEntry { seq, duration: d, discontinuity: disc, gap: false, independent: true }
    }

    #[test]
    fn window_slides_and_counts_discontinuities() {
        let mut p = MediaPlaylistBuilder::new(2, 2.0);
        assert!(p.push(e(0, 2.0, false)).is_empty());
        p.push(e(1, 2.0, true));
        assert_eq!(p.push(e(2, 2.0, false)), vec![0]);
        assert_eq!(p.push(e(3, 2.0, false)), vec![1]);
        let s = p.render(|n| format!("{n}.ts"));
        assert!(s.contains("#EXT-X-MEDIA-SEQUENCE:2"), "{s}");
        assert!(s.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"), "{s}");
        assert!(!s.contains("1.ts"));
        assert!(!s.contains("#EXT-X-ENDLIST"));
    }

    #[test]
    fn target_duration_covers_longest_segment() {
        let mut p = MediaPlaylistBuilder::new(0, 2.0);
        p.push(e(0, 4.6, false));
        p.set_ended(true);
        let s = p.render(|n| format!("{n}.ts"));
        assert!(s.contains("#EXT-X-TARGETDURATION:5"), "{s}");
        assert!(s.contains("#EXT-X-ENDLIST"));
    }

    #[test]
    fn master_lists_variants() {
        let s = render_master(&[Variant {
            uri: "abc/source.m3u8".into(),
            bandwidth: 2_000_000,
            resolution: Some((1280, 720)),
            codecs: Some("avc1.64001f,mp4a.40.2".into()),
        }]);
        assert!(s.contains("BANDWIDTH=2000000"), "{s}");
        assert!(s.contains("RESOLUTION=1280x720"), "{s}");
        assert!(s.contains("CODECS=\"avc1.64001f,mp4a.40.2\""), "{s}");
        assert!(s.contains("abc/source.m3u8"));
    }
}
