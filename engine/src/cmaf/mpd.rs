//! The DASH MPD of a stream's CMAF tracks: periods from each publisher's timeline,
//! representations from the tracks, rendered by [`segmenter::dash`].
use segmenter::cmaf::TrackConfig;

use super::{AUDIO, CmafOutput, Segment, Timeline, Track, VIDEO, WINDOW};

impl CmafOutput {
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
        let mut starts: Vec<Timeline> = leader.timelines.iter().copied().filter(|t| t.init >= oldest).collect();
        if self.ended {
            // A static presentation starts where what is kept starts.
            let scale = f64::from(leader.config.as_ref()?.timescale());
            for p in &mut starts {
                let first =
                    leader.segments.iter().find(|s| (s.epoch, s.entry.init) == (p.epoch, p.init) && s.ticks.is_some());
                if let Some((s, (ticks, _))) = first.and_then(|s| Some((s, s.ticks?))) {
                    p.date = s.entry.program_date_time.unwrap_or(p.date);
                    p.media_start = ticks as f64 / scale;
                }
            }
        }
        if starts.is_empty() {
            return None;
        }
        // Another track's segments belong to a period if they come from the same
        // publisher and start in its time span. A segment a little before the period's
        // first video segment (audio frames do not line up with video frames) still
        // belongs to it.
        const SLACK: f64 = 0.5;
        let mut periods = Vec::new();
        for (i, p) in starts.iter().enumerate() {
            let (epoch, init, start, media_start) = (p.epoch, p.init, p.date, p.media_start);
            let end = starts.get(i + 1).filter(|n| n.epoch == epoch).map_or(f64::INFINITY, |n| n.date);
            let mut sets = Vec::new();
            let video: Vec<&Track> = self.track(VIDEO).into_iter().chain(self.joined()).collect();
            let audio: Vec<&Track> = self.track(AUDIO).into_iter().collect();
            for (tracks, content) in [(video, dash::ContentType::Video), (audio, dash::ContentType::Audio)] {
                let representations: Vec<dash::Representation> = tracks
                    .into_iter()
                    .filter_map(|t| {
                        let is_leader = std::ptr::eq(t, leader);
                        let in_period = |s: &&Segment| {
                            let at = s.entry.program_date_time.unwrap_or(f64::NAN);
                            let span =
                                if is_leader { s.entry.init == init } else { at >= start - SLACK && at < end - SLACK };
                            s.ticks.is_some() && s.epoch == epoch && span
                        };
                        let t_init = if is_leader { init } else { t.segments.iter().find(in_period)?.entry.init };
                        let timeline = t
                            .segments
                            .iter()
                            .filter(in_period)
                            .filter(|s| s.entry.init == t_init)
                            .filter_map(|s| {
                                let (start, duration) = s.ticks?;
                                Some(dash::TimelineEntry { number: s.entry.file, start, duration })
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
            periods.push(dash::Period { id: format!("{epoch}.{init}"), start, media_start, sets });
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
}
