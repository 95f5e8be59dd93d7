//! A stream's CMAF output: the source's access units cut once into CMAF tracks (`video`
//! and `audio`, see [`segmenter::cmaf`]) and kept as init segments and parts for
//! Low-Latency HLS (`/stream/{id}/ll.m3u8`, [`crate::cmaf_http`]).
//!
//! The store is fed by the stream's task (tracks, access units, a new publisher, the
//! end) and read by HTTP handlers. Each change bumps a version on a `watch` channel, which
//! is what blocked playlist reloads and preload-hinted part requests wait on.
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use media::{AccessUnit, TrackInfo, TrackKind};
use segmenter::cmaf::{CmafConfig, CmafCutter, CmafEvent, TrackConfig};
use segmenter::llhls::{PartEntry, SegmentEntry, TrackPlaylist, Variant};
use tokio::sync::watch;

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
    parts: Vec<Bytes>,
    /// Earliest presentation time and length in track ticks, once complete (the DASH
    /// timeline).
    ticks: Option<(u64, u64)>,
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
    timelines: Vec<(u32, f64, f64)>,
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
                CmafEvent::Part { msn, independent, start, duration, data, .. } => {
                    if self.segments.back().is_none_or(|s| s.entry.msn != msn) {
                        let init = self.inits.len().saturating_sub(1) as u32;
                        let discontinuity = std::mem::take(&mut self.discontinuity);
                        let program_date_time = clock.map(|(media, unix)| unix + (start - media));
                        self.segments.push_back(Segment {
                            entry: SegmentEntry {
                                msn,
                                duration: 0.0,
                                parts: Vec::new(),
                                complete: false,
                                init,
                                discontinuity,
                                program_date_time,
                            },
                            parts: Vec::new(),
                            ticks: None,
                        });
                    }
                    if let Some(s) = self.segments.back_mut() {
                        s.entry.parts.push(PartEntry { duration, independent });
                        s.entry.duration += duration;
                        s.parts.push(data);
                    }
                }
                CmafEvent::SegmentEnd { msn, presented, duration, timescale, .. } => {
                    if let Some(s) = self.segments.iter_mut().find(|s| s.entry.msn == msn) {
                        s.entry.complete = true;
                        s.ticks = Some((presented, duration));
                        let (init, date) = (s.entry.init, s.entry.program_date_time);
                        if let Some(date) = date.filter(|_| self.timelines.last().is_none_or(|t| t.0 != init)) {
                            self.timelines.push((init, date, presented as f64 / f64::from(timescale.max(1))));
                        }
                        s.entry.duration = duration as f64 / timescale as f64;
                        self.bytes += s.parts.iter().map(|p| p.len() as u64).sum::<u64>();
                    }
                    while self.segments.len() > WINDOW {
                        if let Some(old) = self.segments.pop_front() {
                            self.bytes -= old.parts.iter().map(|p| p.len() as u64).sum::<u64>();
                            if self.segments.front().is_some_and(|s| s.entry.discontinuity) {
                                self.discontinuity_sequence += 1;
                            }
                            if let Some(front) = self.segments.front().map(|s| s.entry.init) {
                                self.timelines.retain(|t| t.0 >= front);
                            }
                        }
                    }
                }
            }
        }
        cuts
    }

    fn segment(&self, msn: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.entry.msn == msn)
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
    Ready(Bytes),
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
        }
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
        self.ended = false;
        if self.clock.is_none() {
            self.clock = Some((au.dts.as_secs_f64(), now_unix));
            self.availability_start.get_or_insert((now_unix - 1.0).floor());
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
            match cut {
                CmafEvent::SegmentStart { at } => self.audio.cutter.cut_at(at),
                CmafEvent::PartStart { at } => self.audio.cutter.part_cut_at(at),
                _ => {}
            }
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
        for r in &mut self.renditions {
            r.discontinuity = true;
        }
        self.drain();
        self.bump();
    }

    /// Transcoded segment `data` (MPEG-TS) of rendition `name` (a profile name; not
    /// `video` or `audio`), made from a source segment `duration` long: its video is cut
    /// into one CMAF segment of that rendition's track, as long as the source segment. Renditions join as their first segment arrives; a segment that never
    /// arrives leaves a gap in that rendition only. The rendition's segment numbers run
    /// on without gaps (DASH's `$Number$`), its times follow the transcoder's timestamps.
    pub fn handle_rendition_segment(&mut self, name: &str, data: &[u8], duration: media::MediaTime) {
        if name == VIDEO || name == AUDIO {
            return;
        }
        let mut demux = segmenter::ts::demux::TsDemuxer::new();
        demux.push(data);
        demux.flush();
        let mut aus = Vec::new();
        while let Some(r) = demux.poll() {
            match r {
                Ok(au) if au.track == TrackKind::Video => aus.push(au),
                Ok(_) => {}
                Err(e) => tracing::debug!(rendition = name, error = %e, "rendition segment: TS error"),
            }
        }
        let Some(video) = segmenter::ts::track_info(&aus, true, false).and_then(|t| t.video) else {
            tracing::debug!(rendition = name, "rendition segment without decodable H.264: left out of CMAF");
            return;
        };
        let i = match self.renditions.iter().position(|r| r.name == name) {
            Some(i) => i,
            None => {
                self.renditions.push(Track::new(name, TrackKind::Video, self.cfg, 0));
                self.renditions.len() - 1
            }
        };
        let clock = self.clock;
        let r = &mut self.renditions[i];
        let config = TrackConfig::Video(video);
        if r.config.as_ref() != Some(&config) {
            r.cutter.handle_config(config);
        }
        for au in &aus {
            r.cutter.handle_access_unit(au);
        }
        let first = aus.iter().map(|a| a.dts).min();
        r.cutter
            .flush_until(first.map(|f| f.rescale(media::Timescale::MPEG) + duration.rescale(media::Timescale::MPEG)));
        r.drain(clock);
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

    fn other(&self, name: &str) -> Option<&Track> {
        self.track(if name == VIDEO { AUDIO } else { VIDEO })
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

    /// Track `name`'s media playlist; `None` if there is no such track.
    pub fn media_playlist(&self, name: &str) -> Option<String> {
        let t = self.track(name)?;
        let entries: Vec<SegmentEntry> = t.segments.iter().map(|s| s.entry.clone()).collect();
        let reports: Vec<(String, u64, Option<u32>)> = self
            .other(name)
            .and_then(|o| {
                let last = o.segments.back()?;
                let part = last.entry.parts.len().checked_sub(1).map(|p| p as u32);
                Some((o.name.clone(), last.entry.msn, part))
            })
            .into_iter()
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

    /// The DASH MPD (`/stream/{id}.mpd`, [`segmenter::dash`]): `None` before a segment is
    /// complete. `prefix` leads every fragment URL (the MPD-relative path of the
    /// fragments, `{id}/ll/`); `utc_timing` is the clock URL players synchronise with.
    ///
    /// A period per publisher (per init segment of the video track, or of the audio
    /// track when there is no video); the other track's segments join the period their
    /// program date falls in.
    pub fn mpd(&self, prefix: &str, now_unix: f64, utc_timing: Option<String>) -> Option<String> {
        use segmenter::dash;
        let leader = self.track(VIDEO).or_else(|| self.track(AUDIO))?;
        let ast = self.availability_start?;
        // The periods that still have segments in the window.
        let oldest = leader.segments.front()?.entry.init;
        let mut starts: Vec<(u32, f64, f64)> = leader.timelines.iter().copied().filter(|t| t.0 >= oldest).collect();
        if self.ended {
            // A static presentation starts where what is kept starts.
            let scale = f64::from(leader.config.as_ref()?.timescale());
            for p in &mut starts {
                let first = leader.segments.iter().find(|s| s.entry.init == p.0 && s.ticks.is_some());
                if let Some((s, (ticks, _))) = first.and_then(|s| Some((s, s.ticks?))) {
                    *p = (p.0, s.entry.program_date_time.unwrap_or(p.1), ticks as f64 / scale);
                }
            }
        }
        if starts.is_empty() {
            return None;
        }
        // A follower segment a little before its period's first video segment (audio
        // frames do not line up with video frames) still belongs to it.
        const SLACK: f64 = 0.5;
        let mut periods = Vec::new();
        for (i, &(init, start, media_start)) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(f64::INFINITY, |n| n.1);
            let mut sets = Vec::new();
            let video: Vec<&Track> = self.track(VIDEO).into_iter().chain(self.joined()).collect();
            let audio: Vec<&Track> = self.track(AUDIO).into_iter().collect();
            for (tracks, content) in [(video, dash::ContentType::Video), (audio, dash::ContentType::Audio)] {
                let representations: Vec<dash::Representation> = tracks
                    .into_iter()
                    .filter_map(|t| {
                        let in_period = |s: &&Segment| {
                            let at = s.entry.program_date_time.unwrap_or(f64::NAN);
                            s.ticks.is_some() && at >= start - SLACK && at < end - SLACK
                        };
                        let t_init =
                            if std::ptr::eq(t, leader) { init } else { t.segments.iter().find(in_period)?.entry.init };
                        let timeline = t
                            .segments
                            .iter()
                            .filter(in_period)
                            .filter(|s| s.entry.init == t_init)
                            .filter_map(|s| {
                                let (start, duration) = s.ticks?;
                                Some(dash::TimelineEntry { number: s.entry.msn, start, duration })
                            })
                            .collect();
                        let config = t.config.as_ref()?;
                        let (resolution, audio) = match config {
                            TrackConfig::Video(v) => (Some((v.dimensions.width, v.dimensions.height)), None),
                            TrackConfig::Audio(a) => (None, Some((a.sample_rate, u16::from(a.channel_config)))),
                        };
                        Some(dash::Representation {
                            id: t.name.clone(),
                            bandwidth: t.bandwidth(),
                            codecs: config.codecs(),
                            resolution,
                            audio,
                            timescale: config.timescale(),
                            initialization: format!("{prefix}{}", segmenter::llhls::init_uri(&t.name, t_init)),
                            media: format!("{prefix}{}-$Number$.m4s", t.name),
                            timeline,
                        })
                    })
                    .collect();
                if !representations.is_empty() {
                    sets.push(dash::AdaptationSet { content, representations });
                }
            }
            periods.push(dash::Period { id: init.to_string(), start, media_start, sets });
        }
        let target = self.cfg.segment_target.as_secs_f64();
        let p = dash::Presentation {
            live: !self.ended,
            availability_start: ast,
            publish_time: now_unix,
            update_period: self.cfg.part_target.as_secs_f64().max(0.2) * 2.0,
            time_shift_buffer: target * (WINDOW as f64 - 1.0),
            min_buffer: target,
            // Segments are listed once complete: a segment ends up to one target behind
            // the live edge, and its listing waits for the next MPD reload.
            target_latency: target + 1.5,
            utc_timing,
            periods,
        };
        dash::render(&p).ok()
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
        match t.segment(msn) {
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

    /// Complete segment `msn` of track `name` (its parts, in order).
    pub fn segment(&self, name: &str, msn: u64) -> Option<Bytes> {
        let s = self.track(name)?.segment(msn).filter(|s| s.entry.complete)?;
        let mut out = BytesMut::with_capacity(s.parts.iter().map(Bytes::len).sum());
        for p in &s.parts {
            out.extend_from_slice(p);
        }
        Some(out.freeze())
    }

    /// Parts of segment `msn` of track `name` from index `from` on, and whether the
    /// segment is complete: what a request for a segment still being written streams.
    /// `None` if the segment is not in the window (yet, or any more).
    pub fn segment_parts(&self, name: &str, msn: u64, from: usize) -> Option<(Vec<Bytes>, bool)> {
        let s = self.track(name)?.segment(msn)?;
        Some((s.parts.get(from..).unwrap_or_default().to_vec(), s.entry.complete || self.ended))
    }

    /// Part `part` of segment `msn` of track `name`.
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
        let last = t.segments.back().map(|s| (s.entry.msn, s.parts.len() as u32, s.entry.complete));
        let soon = match last {
            Some((m, n, false)) => (msn == m && part <= n + 1) || (msn == m + 1 && part == 0),
            Some((m, _, true)) => msn == m + 1 && part <= 1,
            None => msn == t.cutter.next_msn() && part <= 1,
        };
        if soon { PartState::Soon } else { PartState::Gone }
    }
}
