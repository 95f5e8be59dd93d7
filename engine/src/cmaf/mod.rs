//! A stream's CMAF output: the source's access units cut once into CMAF tracks (`video`
//! and `audio`, see [`segmenter::cmaf`]) and kept as init segments and parts for
//! Low-Latency HLS (`/stream/{id}/ll.m3u8`, [`crate::cmaf_http`]).
//!
//! The store is fed by the stream's task (tracks, access units, a new publisher, the
//! end) and read by HTTP handlers. Each change bumps a version on a `watch` channel, which
//! is what blocked playlist reloads and preload-hinted part requests wait on.
use std::collections::VecDeque;

use bytes::Bytes;
use media::{AccessUnit, Payload, TrackInfo, TrackKind};
use segmenter::cmaf::{CmafConfig, CmafCutter, CmafEvent, TrackConfig};
use segmenter::llhls::{PartEntry, SegmentEntry, TrackPlaylist, Variant, gap_parts};
use tokio::sync::watch;

mod mpd;
mod rendition;

pub use rendition::{RenditionUnits, rendition_units};

/// Segments kept per track (the playlist window).
pub const WINDOW: usize = 8;

/// A stream's CMAF output, shared by its tasks (writers) and the HTTP handlers (readers).
pub type SharedCmaf = std::sync::Arc<std::sync::RwLock<CmafOutput>>;

/// Track names: the playlists `ll/{name}.m3u8`.
pub const VIDEO: &str = "video";
/// See [`VIDEO`].
pub const AUDIO: &str = "audio";

#[derive(Debug)]
struct Segment {
    entry: SegmentEntry,
    /// Its parts: each a header and handles to the sample bytes.
    parts: Vec<Payload>,
    /// Earliest presentation time and length in track ticks, once complete (the DASH
    /// timeline).
    ticks: Option<(u64, u64)>,
    /// The publisher it came from (the output's [`CmafOutput::restart`] count).
    epoch: u32,
}

#[derive(Debug)]
struct Track {
    name: String,
    cutter: CmafCutter,
    config: Option<TrackConfig>,
    /// Init segments by id (the last is current).
    inits: Vec<Bytes>,
    segments: VecDeque<Segment>,
    /// Discontinuities before the first kept segment.
    discontinuity_sequence: u64,
    /// The next segment starts a new timeline.
    discontinuity: bool,
    /// Bytes and seconds of the kept complete segments (for the bandwidth).
    bytes: u64,
    /// Where each init segment's timeline began: (init id, program date, media start
    /// in seconds) of its first complete segment. DASH periods, which must not move
    /// while the window slides.
    timelines: Vec<Timeline>,
    /// Publishers so far (a new one starts a new DASH period).
    epoch: u32,
    /// Gaps listed so far: a segment's media sequence number is its file number plus
    /// the gaps before it.
    gaps: u64,
}

/// Where a DASH period of a track begins: the first complete segment of an init segment
/// within one publisher's stream.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    epoch: u32,
    init: u32,
    /// Its program date (Unix seconds).
    date: f64,
    /// Its earliest presentation time on the media timeline, seconds.
    media_start: f64,
}

impl Track {
    fn new(name: &str, kind: TrackKind, cfg: CmafConfig, first_msn: u64) -> Self {
        Track {
            name: name.to_owned(),
            cutter: CmafCutter::new(kind, cfg, first_msn),
            config: None,
            inits: Vec::new(),
            segments: VecDeque::new(),
            discontinuity_sequence: 0,
            discontinuity: false,
            bytes: 0,
            timelines: Vec::new(),
            epoch: 0,
            gaps: 0,
        }
    }

    /// Takes the cutter's events; returns the video's segment and part starts, for the
    /// audio to cut there too. `clock` maps track seconds to Unix seconds.
    fn drain(&mut self, clock: Option<(f64, f64)>) -> Vec<CmafEvent> {
        let mut cuts = Vec::new();
        while let Some(e) = self.cutter.poll_event() {
            match e {
                CmafEvent::Init { config, data } => {
                    if !self.inits.is_empty() {
                        self.discontinuity = true;
                    }
                    self.inits.push(data);
                    self.config = Some(config);
                }
                e @ (CmafEvent::SegmentStart { .. } | CmafEvent::PartStart { .. }) => cuts.push(e),
                CmafEvent::Part { msn: file, independent, start, duration, data, .. } => {
                    if self.segments.back().is_none_or(|s| s.entry.gap || s.entry.file != file) {
                        let init = self.inits.len().saturating_sub(1) as u32;
                        let discontinuity = std::mem::take(&mut self.discontinuity);
                        let program_date_time = clock.map(|(media, unix)| unix + (start - media));
                        self.segments.push_back(Segment {
                            entry: SegmentEntry {
                                msn: file + self.gaps,
                                file,
                                gap: false,
                                duration: 0.0,
                                parts: Vec::new(),
                                complete: false,
                                init,
                                discontinuity,
                                program_date_time,
                            },
                            parts: Vec::new(),
                            ticks: None,
                            epoch: self.epoch,
                        });
                    }
                    if let Some(s) = self.segments.back_mut() {
                        s.entry.parts.push(PartEntry { duration, independent });
                        s.entry.duration += duration;
                        s.parts.push(data);
                    }
                }
                CmafEvent::SegmentEnd { msn: file, presented, duration, timescale, .. } => {
                    if let Some(s) = self.segments.iter_mut().find(|s| !s.entry.gap && s.entry.file == file) {
                        s.entry.complete = true;
                        s.ticks = Some((presented, duration));
                        let (epoch, init, date) = (s.epoch, s.entry.init, s.entry.program_date_time);
                        let new = self.timelines.last().is_none_or(|t| (t.epoch, t.init) != (epoch, init));
                        if let Some(date) = date.filter(|_| new) {
                            let media_start = presented as f64 / f64::from(timescale.max(1));
                            self.timelines.push(Timeline { epoch, init, date, media_start });
                        }
                        s.entry.duration = duration as f64 / timescale as f64;
                        self.bytes += s.parts.iter().map(|p| p.len() as u64).sum::<u64>();
                    }
                    self.trim();
                }
            }
        }
        cuts
    }

    /// Drops segments beyond the window.
    fn trim(&mut self) {
        while self.segments.len() > WINDOW {
            if let Some(old) = self.segments.pop_front() {
                self.bytes -= old.parts.iter().map(|p| p.len() as u64).sum::<u64>();
                if self.segments.front().is_some_and(|s| s.entry.discontinuity) {
                    self.discontinuity_sequence += 1;
                }
                if let Some(front) = self.segments.front().map(|s| s.entry.init) {
                    self.timelines.retain(|t| t.init >= front);
                }
            }
        }
    }

    /// The segment whose files have number `file` (not a gap).
    fn segment(&self, file: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| !s.entry.gap && s.entry.file == file)
    }

    /// Lists a gap of `duration` seconds starting at `start` (track seconds): the next
    /// segment's media sequence number moves on by one, its file number does not.
    fn gap(&mut self, start: f64, duration: f64, clock: Option<(f64, f64)>) {
        let file = self.cutter.next_msn();
        self.segments.push_back(Segment {
            entry: SegmentEntry {
                msn: file + self.gaps,
                file,
                gap: true,
                duration,
                parts: Vec::new(),
                complete: true,
                init: self.inits.len().saturating_sub(1) as u32,
                discontinuity: std::mem::take(&mut self.discontinuity),
                program_date_time: clock.map(|(media, unix)| unix + (start - media)),
            },
            parts: Vec::new(),
            ticks: None,
            epoch: self.epoch,
        });
        self.gaps += 1;
        self.trim();
    }

    /// Peak-ish bits per second of the kept segments.
    fn bandwidth(&self) -> u64 {
        let secs: f64 = self.segments.iter().filter(|s| s.entry.complete).map(|s| s.entry.duration).sum();
        if secs > 0.0 { (self.bytes as f64 * 8.0 / secs * 1.2) as u64 } else { 1_000_000 }
    }
}

/// Where a requested part stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartState {
    /// Here it is.
    Ready(Payload),
    /// Not yet: it is the next one or the one after (worth waiting for).
    Soon,
    /// Never: gone from the window, or too far ahead.
    Gone,
}

/// A stream's CMAF tracks and what players read of them.
#[derive(Debug)]
pub struct CmafOutput {
    cfg: CmafConfig,
    video: Track,
    audio: Track,
    /// Transcoded renditions' video, by profile name, in ladder order.
    renditions: Vec<Track>,
    has_video: bool,
    ended: bool,
    /// A media time (seconds) and the Unix time it was received: the program date of
    /// every segment (set by the first access unit of each publisher).
    clock: Option<(f64, f64)>,
    /// The DASH `availabilityStartTime` (Unix seconds): a second before the first
    /// publisher's first access unit, kept for the stream's life.
    availability_start: Option<f64>,
    version: watch::Sender<u64>,
    /// Media playlists as last rendered: (track, version, text). A thousand blocked
    /// reloads woken by one part share one rendering.
    rendered: std::sync::Mutex<Vec<(String, u64, Bytes)>>,
    /// The source's units for WebRTC (WHEP) viewers.
    frames: std::sync::Arc<crate::webrtc::feed::FrameFeed>,
}

impl CmafOutput {
    /// An empty output cut with `cfg`.
    pub fn new(cfg: CmafConfig) -> Self {
        CmafOutput {
            cfg,
            video: Track::new(VIDEO, TrackKind::Video, cfg, 0),
            audio: Track::new(AUDIO, TrackKind::Audio, cfg, 0),
            renditions: Vec::new(),
            has_video: false,
            ended: false,
            clock: None,
            availability_start: None,
            version: watch::channel(0).0,
            rendered: std::sync::Mutex::new(Vec::new()),
            frames: Default::default(),
        }
    }

    /// The source's units for WebRTC viewers (fed with everything this output is fed).
    pub fn frames(&self) -> std::sync::Arc<crate::webrtc::feed::FrameFeed> {
        self.frames.clone()
    }

    /// Changes to wait on (bumped on every new part, segment or init).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// The stream's track configurations.
    pub fn handle_tracks(&mut self, t: &TrackInfo) {
        self.frames.handle_tracks(t);
        self.has_video = t.video.is_some();
        self.audio.cutter.follow_video(self.has_video);
        if let Some(v) = &t.video {
            self.video.cutter.handle_config(TrackConfig::Video(v.clone()));
        }
        if let Some(a) = &t.audio {
            self.audio.cutter.handle_config(TrackConfig::Audio(a.clone()));
        }
        self.drain();
    }

    /// One access unit of the source, received at `now_unix` (Unix seconds).
    pub fn handle_access_unit(&mut self, au: &AccessUnit, now_unix: f64) {
        self.frames.handle_access_unit(au);
        self.ended = false;
        if self.clock.is_none() {
            self.clock = Some((au.dts.as_secs_f64(), now_unix));
            self.availability_start.get_or_insert((now_unix - 1.0).floor());
            // Segments carry `prft` from here on (the renditions share the timeline).
            for t in
                std::iter::once(&mut self.video).chain(std::iter::once(&mut self.audio)).chain(&mut self.renditions)
            {
                t.cutter.set_clock(au.dts, now_unix);
            }
        }
        match au.track {
            TrackKind::Video => self.video.cutter.handle_access_unit(au),
            TrackKind::Audio => self.audio.cutter.handle_access_unit(au),
        }
        self.drain();
    }

    fn drain(&mut self) {
        let before = self.video.segments.back().map(|s| (s.entry.msn, s.parts.len()));
        let before_audio = self.audio.segments.back().map(|s| (s.entry.msn, s.parts.len()));
        for cut in self.video.drain(self.clock) {
            self.audio.cutter.follow_event(&cut);
        }
        self.audio.drain(self.clock);
        let after = self.video.segments.back().map(|s| (s.entry.msn, s.parts.len()));
        let after_audio = self.audio.segments.back().map(|s| (s.entry.msn, s.parts.len()));
        if before != after || before_audio != after_audio {
            self.bump();
        }
    }

    /// A new publisher (a new timeline): the open segments end, and the next ones start
    /// with a fresh init segment after a discontinuity.
    pub fn restart(&mut self) {
        self.frames.restart();
        let clock = self.clock.take();
        for t in [&mut self.video, &mut self.audio] {
            t.cutter.flush();
            t.drain(clock);
            let kind = if t.name == AUDIO { TrackKind::Audio } else { TrackKind::Video };
            let next = t.cutter.next_msn();
            t.cutter = CmafCutter::new(kind, self.cfg, next);
            if let Some(c) = t.config.take() {
                t.cutter.handle_config(c);
            }
        }
        self.audio.cutter.follow_video(self.has_video);
        for t in std::iter::once(&mut self.video).chain(std::iter::once(&mut self.audio)).chain(&mut self.renditions) {
            t.epoch += 1;
        }
        self.drain();
        self.bump();
    }

    /// The publisher left: the last segments go out and the playlists end.
    pub fn end(&mut self) {
        self.video.cutter.flush();
        self.audio.cutter.flush();
        self.drain();
        self.ended = true;
        self.bump();
    }

    fn track(&self, name: &str) -> Option<&Track> {
        match name {
            VIDEO if self.video.config.is_some() => Some(&self.video),
            AUDIO if self.audio.config.is_some() => Some(&self.audio),
            VIDEO | AUDIO => None,
            _ => self.renditions.iter().find(|r| r.name == name && r.config.is_some()),
        }
    }

    /// Renditions with a complete segment (the ones players are offered).
    fn joined(&self) -> impl Iterator<Item = &Track> {
        self.renditions.iter().filter(|r| r.config.is_some() && r.segments.iter().any(|s| s.entry.complete))
    }

    /// The multivariant playlist (`ll.m3u8`); `None` before any track is configured.
    pub fn multivariant(&self) -> Option<String> {
        let audio_bw = self.track(AUDIO).map_or(0, Track::bandwidth);
        let variants: Vec<Variant> = self
            .track(VIDEO)
            .into_iter()
            .chain(self.joined())
            .filter_map(|t| {
                let Some(TrackConfig::Video(v)) = &t.config else { return None };
                Some(Variant {
                    name: t.name.clone(),
                    bandwidth: t.bandwidth() + audio_bw,
                    codecs: t.config.as_ref().map(TrackConfig::codecs).unwrap_or_default(),
                    resolution: Some((v.dimensions.width, v.dimensions.height)),
                })
            })
            .collect();
        let audio = self.track(AUDIO).and_then(|t| t.config.as_ref()).map(TrackConfig::codecs);
        if variants.is_empty() && audio.is_none() {
            return None;
        }
        Some(segmenter::llhls::render_multivariant("ll", &variants, audio.as_deref().map(|c| (AUDIO, c))))
    }

    /// Whether track `name` exists (has a configuration).
    pub fn has_track(&self, name: &str) -> bool {
        self.track(name).is_some()
    }

    /// Track `name`'s media playlist; `None` if there is no such track. Rendered once per
    /// change of the output and shared (as `Bytes`) until the next.
    pub fn media_playlist(&self, name: &str) -> Option<Bytes> {
        let version = *self.version.borrow();
        let mut cache = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, text)) = cache.iter().find(|(n, v, _)| n == name && *v == version) {
            return Some(text.clone());
        }
        let text = Bytes::from(self.render_media_playlist(name)?);
        cache.retain(|(n, _, _)| n != name);
        cache.push((name.to_owned(), version, text.clone()));
        Some(text)
    }

    fn render_media_playlist(&self, name: &str) -> Option<String> {
        let t = self.track(name)?;
        let entries: Vec<SegmentEntry> = t.segments.iter().map(|s| s.entry.clone()).collect();
        // A report for every other playlist of the multivariant (RFC 8216bis §4.4.5.4),
        // so a player switching to one knows where its live edge is.
        let part_target = self.cfg.part_target.as_secs_f64();
        let reports: Vec<(String, u64, Option<u32>)> = self
            .track(VIDEO)
            .into_iter()
            .chain(self.track(AUDIO))
            .chain(self.joined())
            .filter(|o| o.name != name)
            .filter_map(|o| {
                let last = &o.segments.back()?.entry;
                // A gap is listed as parts too (GAP=YES).
                let parts = if last.gap { gap_parts(last.duration, part_target) } else { last.parts.len() };
                Some((o.name.clone(), last.msn, parts.checked_sub(1).map(|p| p as u32)))
            })
            .collect();
        let p = TrackPlaylist {
            name: &t.name,
            segments: &entries,
            discontinuity_sequence: t.discontinuity_sequence,
            part_target: self.cfg.part_target.as_secs_f64(),
            ended: self.ended,
            reports: &reports,
        };
        Some(p.render())
    }

    /// Whether a segment is complete (what [`CmafOutput::mpd`] needs before it has anything
    /// to list).
    pub fn has_complete_segment(&self) -> bool {
        let leader = self.track(VIDEO).or_else(|| self.track(AUDIO));
        leader.is_some_and(|t| t.segments.iter().any(|s| s.ticks.is_some()))
    }

    /// Whether track `name`'s playlist already holds segment `msn` (and, with `part`,
    /// that part of it, or the segment complete): what a blocked reload waits for.
    pub fn has(&self, name: &str, msn: u64, part: Option<u32>) -> bool {
        let Some(t) = self.track(name) else { return false };
        if self.ended || t.segments.back().is_some_and(|s| s.entry.msn > msn) {
            return true;
        }
        match t.segments.iter().find(|s| s.entry.msn == msn) {
            Some(s) => match part {
                Some(p) => s.entry.complete || s.parts.len() > p as usize,
                None => s.entry.complete,
            },
            None => false,
        }
    }

    /// The newest part of track `name`: (segment number, part index).
    pub fn last_part(&self, name: &str) -> Option<(u64, u32)> {
        let last = self.track(name)?.segments.back()?;
        Some((last.entry.msn, last.parts.len().checked_sub(1)? as u32))
    }

    /// The last segment's number in track `name`'s playlist.
    pub fn last_msn(&self, name: &str) -> Option<u64> {
        self.track(name)?.segments.back().map(|s| s.entry.msn)
    }

    /// Init segment `n` of track `name`.
    pub fn init(&self, name: &str, n: u32) -> Option<Bytes> {
        self.track(name)?.inits.get(n as usize).cloned()
    }

    /// Complete segment of track `name` whose files have number `file`: its parts' bytes
    /// in order, as handles (nothing is copied).
    pub fn segment(&self, name: &str, file: u64) -> Option<Payload> {
        let s = self.track(name)?.segment(file).filter(|s| s.entry.complete)?;
        let mut out = Payload::with_capacity(s.parts.iter().map(|p| p.parts().len()).sum());
        for f in s.parts.iter().flat_map(Payload::parts) {
            out.push(f.clone());
        }
        Some(out)
    }

    /// Parts of the segment with file number `file` of track `name` from index `from`
    /// on, and whether the segment is complete: what a request for a segment still being
    /// written streams. `None` if the segment is not in the window (yet, or any more).
    pub fn segment_parts(&self, name: &str, file: u64, from: usize) -> Option<(Vec<Payload>, bool)> {
        let s = self.track(name)?.segment(file)?;
        Some((s.parts.get(from..).unwrap_or_default().to_vec(), s.entry.complete || self.ended))
    }

    /// Part `part` of the segment with file number `msn` of track `name`.
    pub fn part(&self, name: &str, msn: u64, part: u32) -> PartState {
        let Some(t) = self.track(name) else { return PartState::Gone };
        if let Some(p) = t.segment(msn).and_then(|s| s.parts.get(part as usize)) {
            return PartState::Ready(p.clone());
        }
        if self.ended {
            return PartState::Gone;
        }
        // The hinted part (next in the open segment, or the first of the next segment)
        // and the one after are worth waiting for.
        let last = t.segments.back().map(|s| (s.entry.file, s.parts.len() as u32, s.entry.complete));
        let soon = match last {
            Some((m, n, false)) => (msn == m && part <= n + 1) || (msn == m + 1 && part == 0),
            // After a complete segment or a gap (or before any): the next segment's files.
            _ => msn == t.cutter.next_msn() && part <= 1,
        };
        if soon { PartState::Soon } else { PartState::Gone }
    }
}

#[cfg(test)]
mod tests;
