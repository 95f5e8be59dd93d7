//! What players read: one stream's playlists and segments, updated by its stream task
//! and read by HTTP handlers. Rendered playlists are cached as `Bytes`, so a request
//! copies nothing.

use std::collections::BTreeMap;

use bytes::Bytes;
use media::{Segment, TrackInfo};
use segmenter::hls::{MediaPlaylistBuilder, PlaylistEntry, Variant, render_master};
use serde::Serialize;

/// The one rendition a gateway without transcoding publishes.
pub const SOURCE: &str = "source";
/// Segments kept after they leave the playlist window, for players that fetched the
/// playlist just before it moved (RFC 8216 §6.2.2 asks for at least the playlist's span).
const KEEP_AFTER_WINDOW: usize = 3;

/// One stream's output.
pub struct StreamOutput {
    id: String,
    playlist: MediaPlaylistBuilder,
    segments: BTreeMap<u64, Bytes>,
    window: usize,
    tracks: TrackInfo,
    peak_bitrate: u64,
    media_m3u8: Bytes,
    master_m3u8: Bytes,
    /// Counters for the control API.
    pub stats: StreamStats,
}

/// Per-stream figures shown by the control API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamStats {
    /// Segments produced.
    pub segments: u64,
    /// Seconds of media segmented.
    pub duration_secs: f64,
    /// Segment bytes produced.
    pub bytes: u64,
    /// Publisher sessions so far (1 + reconnects).
    pub publishers: u64,
    /// Discontinuities (reconnects, timestamp jumps, new encoder settings).
    pub discontinuities: u64,
    /// True while a publisher is connected.
    pub live: bool,
}

impl StreamOutput {
    /// An empty output for stream `id`.
    pub fn new(id: &str, window: usize, target_secs: f64) -> Self {
        let mut o = StreamOutput {
            id: id.to_owned(),
            playlist: MediaPlaylistBuilder::new(window, target_secs),
            segments: BTreeMap::new(),
            window,
            tracks: TrackInfo::default(),
            peak_bitrate: 0,
            media_m3u8: Bytes::new(),
            master_m3u8: Bytes::new(),
            stats: StreamStats::default(),
        };
        o.render();
        o
    }

    /// Adds a finished segment and republishes the playlist.
    pub fn add_segment(&mut self, seg: Segment) {
        let secs = seg.duration.as_secs_f64();
        if secs > 0.0 {
            let bitrate = (seg.data.len() as f64 * 8.0 / secs) as u64;
            self.peak_bitrate = self.peak_bitrate.max(bitrate);
        }
        self.stats.segments += 1;
        self.stats.duration_secs += secs;
        self.stats.bytes += seg.data.len() as u64;
        if seg.discontinuity {
            self.stats.discontinuities += 1;
        }
        // Store first, list second: a playlist never names a segment that is not there.
        self.segments.insert(seg.seq, seg.data);
        self.playlist.push(PlaylistEntry { seq: seg.seq, duration: secs, discontinuity: seg.discontinuity });
        if self.window > 0 {
            let keep_from = self.playlist.media_sequence().saturating_sub(KEEP_AFTER_WINDOW as u64);
            self.segments = self.segments.split_off(&keep_from);
        }
        self.render();
    }

    /// New track configuration (codecs and resolution in the master playlist).
    pub fn set_tracks(&mut self, tracks: TrackInfo) {
        self.tracks = tracks;
        self.render();
    }

    /// Marks the stream ended (`EXT-X-ENDLIST`) or live again.
    pub fn set_live(&mut self, live: bool) {
        self.stats.live = live;
        self.playlist.set_ended(!live && self.stats.segments > 0);
        self.render();
    }

    /// True once the playlist carries `EXT-X-ENDLIST`.
    pub fn is_ended(&self) -> bool {
        self.playlist.is_ended()
    }

    /// The master playlist.
    pub fn master(&self) -> Bytes {
        self.master_m3u8.clone()
    }

    /// A rendition's media playlist.
    pub fn media(&self, rendition: &str) -> Option<Bytes> {
        (rendition == SOURCE).then(|| self.media_m3u8.clone())
    }

    /// A segment.
    pub fn segment(&self, rendition: &str, seq: u64) -> Option<Bytes> {
        if rendition != SOURCE {
            return None;
        }
        self.segments.get(&seq).cloned()
    }

    /// The track configuration.
    pub fn tracks(&self) -> &TrackInfo {
        &self.tracks
    }

    fn render(&mut self) {
        self.media_m3u8 = Bytes::from(self.playlist.render(|seq| format!("{SOURCE}/{seq}.ts")));
        let mut codecs = vec![];
        if let Some(v) = &self.tracks.video {
            codecs.push(v.codec_string());
        }
        if let Some(a) = &self.tracks.audio {
            codecs.push(a.codec_string());
        }
        let resolution = self.tracks.video.as_ref().map(|v| (v.dimensions.width, v.dimensions.height));
        self.master_m3u8 = Bytes::from(render_master(&[Variant {
            uri: format!("{}/{SOURCE}.m3u8", self.id),
            // Until a segment is measured, announce a typical 720p bitrate.
            bandwidth: if self.peak_bitrate > 0 { self.peak_bitrate } else { 3_000_000 },
            resolution,
            codecs: (!codecs.is_empty()).then(|| codecs.join(",")),
        }]));
    }
}
