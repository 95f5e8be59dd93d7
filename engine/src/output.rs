//! What players read: one stream's playlists and segments, updated by its stream task
//! (source) and its transcode task (renditions) and read by HTTP handlers. Rendered
//! playlists are cached as `Bytes`, so a request copies nothing.
//!
//! ## Renditions and failed transcodes
//! A segment appears in a rendition's playlist only once its bytes are stored, so a
//! player is never offered a segment that is not there. When a segment's transcode
//! fails, the rendition still lists it, marked `EXT-X-GAP`, and its URL serves the source
//! segment for that span: players that honour the tag skip it, players that do not play
//! one segment at source quality instead of stalling on a 404. After
//! [`WITHDRAW_AFTER`] failures in a row the rendition leaves the master playlist (new
//! players will not pick it); it returns after [`RESTORE_AFTER`] successes in a row.

use std::collections::BTreeMap;

use bytes::Bytes;
use media::{Segment, TrackInfo, TrackSet};
use segmenter::hls::{MediaPlaylistBuilder, PlaylistEntry, Variant, render_master};
use serde::Serialize;
use transport::proto::VideoProfile;

/// Where a stream's media goes for players: its MPEG-TS HLS store and its CMAF tracks.
#[derive(Clone)]
pub struct Stores {
    /// MPEG-TS segments and playlists.
    pub hls: std::sync::Arc<std::sync::RwLock<StreamOutput>>,
    /// CMAF tracks (LL-HLS, DASH).
    pub cmaf: crate::cmaf::SharedCmaf,
}

/// The untranscoded rendition.
pub const SOURCE: &str = "source";
/// Segments kept after they leave the playlist window, for players that fetched the
/// playlist just before it moved (RFC 8216 §6.2.2 asks for at least the playlist's span).
const KEEP_AFTER_WINDOW: usize = 3;
/// Failed transcodes in a row that withdraw a rendition from the master playlist.
pub const WITHDRAW_AFTER: u32 = 3;
/// Successful transcodes in a row that restore a withdrawn rendition.
pub const RESTORE_AFTER: u32 = 2;

/// One rendition's playlist and segments.
struct Rendition {
    name: String,
    playlist: MediaPlaylistBuilder,
    /// Stored segments; `None` marks a gap (served from the source).
    segments: BTreeMap<u64, Option<Bytes>>,
    m3u8: Bytes,
    peak_bitrate: u64,
    /// Bitrate asked of the encoder (for the master before anything is measured).
    nominal_bitrate: u64,
    resolution: Option<(u32, u32)>,
    video_codec: Option<String>,
    failures_in_row: u32,
    successes_in_row: u32,
    withdrawn: bool,
    /// False while the source is below this rendition (see [`crate::ladder`]).
    offered: bool,
    stats: RenditionStats,
}

/// What became of one rendition of one source segment.
#[derive(Debug, Clone, PartialEq)]
pub enum RenditionOutcome {
    /// Transcoded: the rendition segment's bytes.
    Stored(Bytes),
    /// The transcode failed: listed as `EXT-X-GAP`, served from the source.
    Failed,
    /// Not offered for this source (above its resolution): listed as a gap so the
    /// playlist stays aligned, and kept out of the master playlist.
    NotOffered,
    /// Not sent to an orchestrator (cut between keyframes, or skipped as backlog): a gap
    /// that says nothing about the rendition's health, so it never withdraws it.
    NotSent,
}

/// Per-rendition figures shown by the control API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RenditionStats {
    /// Rendition name.
    pub name: String,
    /// Segments stored.
    pub segments: u64,
    /// Segments listed as gaps.
    pub gaps: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// True while listed in the master playlist.
    pub in_master: bool,
}

impl Rendition {
    fn new(name: &str, window: usize, target_secs: f64) -> Self {
        let mut r = Rendition {
            name: name.to_owned(),
            playlist: MediaPlaylistBuilder::new(window, target_secs),
            segments: BTreeMap::new(),
            m3u8: Bytes::new(),
            peak_bitrate: 0,
            nominal_bitrate: 0,
            resolution: None,
            video_codec: None,
            failures_in_row: 0,
            successes_in_row: 0,
            withdrawn: false,
            offered: true,
            stats: RenditionStats { name: name.to_owned(), ..Default::default() },
        };
        r.render();
        r
    }

    /// Stores first, lists second: a playlist never names a segment that is not there.
    /// Returns the bytes of segments dropped from the store.
    fn push(&mut self, entry: PlaylistEntry, data: Option<Bytes>, window: usize) -> Vec<Bytes> {
        if let Some(d) = &data {
            if entry.duration > 0.0 {
                self.peak_bitrate = self.peak_bitrate.max((d.len() as f64 * 8.0 / entry.duration) as u64);
            }
            self.stats.segments += 1;
            self.stats.bytes += d.len() as u64;
        } else {
            self.stats.gaps += 1;
        }
        self.segments.insert(entry.seq, data);
        self.playlist.push(entry);
        let mut dropped = Vec::new();
        if window > 0 {
            let keep_from = self.playlist.media_sequence().saturating_sub(KEEP_AFTER_WINDOW as u64);
            let kept = self.segments.split_off(&keep_from);
            dropped.extend(std::mem::replace(&mut self.segments, kept).into_values().flatten());
        }
        self.render();
        dropped
    }

    fn render(&mut self) {
        let name = self.name.clone();
        self.m3u8 = Bytes::from(self.playlist.render(|seq| format!("{name}/{seq}.ts")));
    }

    fn has_media(&self) -> bool {
        self.stats.segments > 0
    }
}

/// One stream's output: the source rendition and any transcoded ones.
pub struct StreamOutput {
    id: String,
    window: usize,
    /// `renditions[0]` is the source.
    renditions: Vec<Rendition>,
    tracks: TrackInfo,
    /// The tracks the latest source segment carries: the master's `CODECS` names only
    /// these (a configured track with no media is not announced).
    carried: TrackSet,
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
    /// An empty output for stream `id` with a rendition per transcoding profile.
    pub fn new(id: &str, window: usize, target_secs: f64, profiles: &[VideoProfile]) -> Self {
        let mut renditions = vec![Rendition::new(SOURCE, window, target_secs)];
        for p in profiles {
            let mut r = Rendition::new(&p.name, window, target_secs);
            r.nominal_bitrate = p.bitrate.max(0) as u64;
            r.resolution = Some((p.width.max(0) as u32, p.height.max(0) as u32));
            renditions.push(r);
        }
        let mut o = StreamOutput {
            id: id.to_owned(),
            window,
            renditions,
            tracks: TrackInfo::default(),
            carried: TrackSet::default(),
            master_m3u8: Bytes::new(),
            stats: StreamStats::default(),
        };
        o.render_master();
        o
    }

    /// Adds a finished source segment and republishes the playlist. Returns the bytes of
    /// the source segments that left the store, so the cutter can reuse their memory
    /// (`Segmenter::recycle`) instead of faulting in fresh pages for every segment.
    pub fn add_segment(&mut self, seg: Segment) -> Vec<Bytes> {
        let secs = seg.duration.as_secs_f64();
        self.stats.segments += 1;
        self.stats.duration_secs += secs;
        self.stats.bytes += seg.data.len() as u64;
        if seg.discontinuity {
            self.stats.discontinuities += 1;
        }
        let entry = PlaylistEntry {
            seq: seg.seq,
            duration: secs,
            discontinuity: seg.discontinuity,
            gap: false,
            independent: seg.independent,
        };
        self.carried = seg.tracks;
        let dropped = self.renditions[0].push(entry, Some(seg.data), self.window);
        // The source's measured bitrate feeds the master's BANDWIDTH.
        self.render_master();
        dropped
    }

    /// Records the transcode outcome of source segment `seg`: one outcome per rendition in
    /// profile order (a list of another length counts as failed throughout). Must be
    /// called in segment order.
    pub fn add_renditions(&mut self, seg: &Segment, outcomes: Vec<RenditionOutcome>) {
        let mut master_changed = false;
        let n = self.renditions.len() - 1;
        let outcomes = if outcomes.len() == n { outcomes } else { vec![RenditionOutcome::Failed; n] };
        for (r, outcome) in self.renditions[1..].iter_mut().zip(outcomes) {
            let not_sent = outcome == RenditionOutcome::NotSent;
            let offered = if not_sent { r.offered } else { outcome != RenditionOutcome::NotOffered };
            if offered != r.offered {
                r.offered = offered;
                master_changed = true;
            }
            let data = match outcome {
                RenditionOutcome::Stored(b) => Some(b),
                _ => None,
            };
            let ok = data.is_some();
            if let Some(d) = &data
                && r.video_codec.is_none()
            {
                r.video_codec = rendition_codec(d);
                master_changed = true;
            }
            let entry = PlaylistEntry {
                seq: seg.seq,
                duration: seg.duration.as_secs_f64(),
                discontinuity: seg.discontinuity,
                gap: !ok,
                independent: seg.independent,
            };
            let had_media = r.has_media();
            r.push(entry, data, self.window);
            master_changed |= had_media != r.has_media();
            if !offered || not_sent {
                continue;
            }
            if ok {
                r.failures_in_row = 0;
                r.successes_in_row += 1;
                if r.withdrawn && r.successes_in_row >= RESTORE_AFTER {
                    r.withdrawn = false;
                    master_changed = true;
                    tracing::info!(rendition = %r.name, "rendition restored to the master playlist");
                }
            } else {
                r.successes_in_row = 0;
                r.failures_in_row += 1;
                if !r.withdrawn && r.failures_in_row >= WITHDRAW_AFTER {
                    r.withdrawn = true;
                    master_changed = true;
                    tracing::warn!(rendition = %r.name, failures = r.failures_in_row, "rendition withdrawn from the master playlist");
                }
            }
        }
        if master_changed {
            self.render_master();
        }
    }

    /// New track configuration (codecs and resolution in the master playlist).
    pub fn set_tracks(&mut self, tracks: TrackInfo) {
        self.tracks = tracks;
        self.render_master();
    }

    /// Marks the stream's source ended (`EXT-X-ENDLIST`) or live again. Transcoded
    /// renditions end separately, once their last segment is in ([`Self::end_renditions`]).
    pub fn set_live(&mut self, live: bool) {
        self.stats.live = live;
        let ended = !live && self.stats.segments > 0;
        self.renditions[0].playlist.set_ended(ended);
        self.renditions[0].render();
        if live {
            for r in &mut self.renditions[1..] {
                r.playlist.set_ended(false);
                r.render();
            }
        }
    }

    /// Ends the transcoded renditions' playlists (the transcoder has caught up with the
    /// end of a publisher). Ignored while the source is live again: a publisher that
    /// came back before the transcoder caught up keeps the renditions going, and an
    /// `EXT-X-ENDLIST` there would make players stop reloading them for good.
    pub fn end_renditions(&mut self) {
        if self.stats.live {
            return;
        }
        for r in &mut self.renditions[1..] {
            r.playlist.set_ended(r.stats.segments + r.stats.gaps > 0);
            r.render();
        }
    }

    /// True once the source playlist carries `EXT-X-ENDLIST`.
    pub fn is_ended(&self) -> bool {
        self.renditions[0].playlist.is_ended()
    }

    /// The master playlist.
    pub fn master(&self) -> Bytes {
        self.master_m3u8.clone()
    }

    /// A rendition's media playlist.
    pub fn media(&self, rendition: &str) -> Option<Bytes> {
        self.renditions.iter().find(|r| r.name == rendition).map(|r| r.m3u8.clone())
    }

    /// True if the rendition's playlist is ended.
    pub fn media_ended(&self, rendition: &str) -> bool {
        self.renditions.iter().find(|r| r.name == rendition).is_some_and(|r| r.playlist.is_ended())
    }

    /// A segment. A gap in a rendition serves the source segment of the same span.
    pub fn segment(&self, rendition: &str, seq: u64) -> Option<Bytes> {
        let r = self.renditions.iter().find(|r| r.name == rendition)?;
        match r.segments.get(&seq)? {
            Some(b) => Some(b.clone()),
            None => self.renditions[0].segments.get(&seq).cloned().flatten(),
        }
    }

    /// The source's average bitrate so far (transport stream bytes of every track over
    /// media time), or `None` before any media.
    pub fn source_bps(&self) -> Option<u64> {
        (self.stats.duration_secs > 0.0).then(|| (self.stats.bytes as f64 * 8.0 / self.stats.duration_secs) as u64)
    }

    /// The track configuration.
    pub fn tracks(&self) -> &TrackInfo {
        &self.tracks
    }

    /// Per-rendition figures (source first).
    pub fn rendition_stats(&self) -> Vec<RenditionStats> {
        self.renditions
            .iter()
            .enumerate()
            .map(|(i, r)| RenditionStats { in_master: self.in_master(i), ..r.stats.clone() })
            .collect()
    }

    fn in_master(&self, i: usize) -> bool {
        let r = &self.renditions[i];
        i == 0 || (r.has_media() && !r.withdrawn && r.offered)
    }

    fn render_master(&mut self) {
        // Until a segment says which tracks carry media, announce every configured one.
        let carried = if self.stats.segments > 0 {
            self.carried
        } else {
            TrackSet { video: self.tracks.video.is_some(), audio: self.tracks.audio.is_some() }
        };
        let audio = self.tracks.audio.as_ref().filter(|_| carried.audio).map(|a| a.codec_string());
        let mut variants = Vec::with_capacity(self.renditions.len());
        for (i, r) in self.renditions.iter().enumerate() {
            if !self.in_master(i) {
                continue;
            }
            let (video, resolution, bandwidth) = if i == 0 {
                let v = self.tracks.video.as_ref().filter(|_| carried.video);
                // Until a segment is measured, announce a typical 720p bitrate.
                let bw = if r.peak_bitrate > 0 { r.peak_bitrate } else { 3_000_000 };
                (v.map(|v| v.codec_string()), v.map(|v| (v.dimensions.width, v.dimensions.height)), bw)
            } else {
                let bw = if r.peak_bitrate > 0 { r.peak_bitrate } else { r.nominal_bitrate.max(1) };
                (r.video_codec.clone(), r.resolution, bw)
            };
            let codecs: Vec<String> = video.into_iter().chain(audio.clone()).collect();
            variants.push(Variant {
                uri: format!("{}/{}.m3u8", self.id, r.name),
                bandwidth,
                resolution,
                codecs: (!codecs.is_empty()).then(|| codecs.join(",")),
            });
        }
        self.master_m3u8 = Bytes::from(render_master(&variants));
    }
}

/// The RFC 6381 codec string of a rendition segment, from the SPS of its first keyframe.
fn rendition_codec(ts: &Bytes) -> Option<String> {
    let mut d = segmenter::ts::demux::TsDemuxer::new();
    // The first keyframe is at the start; 64 KiB holds its SPS several times over.
    d.push(&ts[..ts.len().min(64 * 1024)]);
    while let Some(au) = d.poll() {
        let Ok(au) = au else { continue };
        if au.track != media::TrackKind::Video {
            continue;
        }
        let nals = media::annexb_nal_units(&au.data.to_contiguous());
        let of_type = |t: u8| nals.iter().filter(|n| n.first().is_some_and(|h| h & 0x1f == t)).cloned().collect();
        return media::H264Config::from_parameter_sets(of_type(7), of_type(8), 4).ok().map(|c| c.codec_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::{MediaTime, Timescale};

    fn seg(seq: u64) -> Segment {
        Segment {
            seq,
            start: MediaTime::new(seq as i64 * 2, Timescale::new(1)),
            duration: MediaTime::new(2, Timescale::new(1)),
            discontinuity: false,
            independent: true,
            tracks: TrackSet { video: true, audio: true },
            data: Bytes::from(format!("source {seq}")),
            digest: None,
        }
    }

    fn listed(o: &StreamOutput) -> usize {
        String::from_utf8_lossy(&o.master()).matches("#EXT-X-STREAM-INF").count()
    }

    #[test]
    fn failed_renditions_are_gaps_then_withdrawn_then_restored() {
        let profiles = transport::profiles::parse_transcoding_options("P240p30fps16x9").unwrap();
        let mut o = StreamOutput::new("s", 0, 2.0, &profiles);
        let r = "P240p30fps16x9";
        o.add_segment(seg(0));
        assert_eq!(listed(&o), 1, "no rendition media yet");
        assert_eq!(o.media(r).map(|m| !m.is_empty()), Some(true));
        assert!(o.segment(r, 0).is_none(), "not listed before its result");
        o.add_renditions(&seg(0), vec![RenditionOutcome::Stored(Bytes::from_static(b"rendition 0"))]);
        assert_eq!(listed(&o), 2);
        for seq in 1..=WITHDRAW_AFTER as u64 {
            o.add_segment(seg(seq));
            o.add_renditions(&seg(seq), vec![RenditionOutcome::Failed]);
            // A gap serves the source bytes, never a 404.
            assert_eq!(o.segment(r, seq), Some(Bytes::from(format!("source {seq}"))));
        }
        let pl = String::from_utf8_lossy(&o.media(r).unwrap()).into_owned();
        assert_eq!(pl.matches("#EXT-X-GAP").count(), WITHDRAW_AFTER as usize, "{pl}");
        assert_eq!(listed(&o), 1, "withdrawn after {WITHDRAW_AFTER} failures in a row");
        let mut seq = WITHDRAW_AFTER as u64 + 1;
        for i in 0..RESTORE_AFTER {
            assert_eq!(listed(&o), 1, "still withdrawn after {i} successes");
            o.add_segment(seg(seq));
            o.add_renditions(&seg(seq), vec![RenditionOutcome::Stored(Bytes::from_static(b"ok"))]);
            seq += 1;
        }
        assert_eq!(listed(&o), 2, "restored after {RESTORE_AFTER} successes");
        // A result with the wrong number of renditions is a failure, not a partial store.
        o.add_segment(seg(seq));
        o.add_renditions(&seg(seq), vec![]);
        assert_eq!(o.segment(r, seq), Some(Bytes::from(format!("source {seq}"))));
        // Not offered (the source shrank below it): out of the master at once, the
        // playlist still aligned, and back when offered again.
        seq += 1;
        o.add_segment(seg(seq));
        o.add_renditions(&seg(seq), vec![RenditionOutcome::NotOffered]);
        assert_eq!(listed(&o), 1);
        assert!(String::from_utf8_lossy(&o.media(r).unwrap()).contains(&format!("{r}/{seq}.ts")));
        seq += 1;
        o.add_segment(seg(seq));
        o.add_renditions(&seg(seq), vec![RenditionOutcome::Stored(Bytes::from_static(b"ok"))]);
        assert_eq!(listed(&o), 2);
        // The source ends first; renditions end when the transcoder catches up.
        // A publisher that comes back before the transcoder catches up: the renditions
        // must not end under it.
        o.set_live(false);
        o.set_live(true);
        o.end_renditions();
        assert!(!o.media_ended(r));
        o.set_live(false);
        assert!(o.is_ended() && !o.media_ended(r));
        o.end_renditions();
        assert!(o.media_ended(r));
    }
}
