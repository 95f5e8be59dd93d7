//! Transcoded renditions into CMAF: each returned MPEG-TS segment demuxed (outside the
//! output's lock) and cut into one segment of that rendition's track.
use media::{AccessUnit, TrackKind};
use segmenter::cmaf::{CmafConfig, TrackConfig};

use super::{AUDIO, CmafOutput, Track, VIDEO};

/// A transcoded segment's video, read from its MPEG-TS (outside any lock) for
/// [`CmafOutput::handle_rendition_segment`].
#[derive(Debug)]
pub struct RenditionUnits {
    pub(super) config: media::H264Config,
    pub(super) units: Vec<AccessUnit>,
}

/// Demuxes a transcoded segment: its H.264 configuration and video access units.
/// `None` (logged) if it has no decodable H.264.
pub fn rendition_units(data: &[u8]) -> Option<RenditionUnits> {
    let mut demux = segmenter::ts::demux::TsDemuxer::new();
    demux.push(data);
    demux.flush();
    let mut units = Vec::new();
    while let Some(r) = demux.poll() {
        match r {
            Ok(au) if au.track == TrackKind::Video => units.push(au),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "rendition segment: TS error"),
        }
    }
    match segmenter::ts::track_info(&units, true, false).and_then(|t| t.video) {
        Some(config) => Some(RenditionUnits { config, units }),
        None => {
            tracing::debug!("rendition segment without decodable H.264: a gap in CMAF");
            None
        }
    }
}

impl CmafOutput {
    /// Rendition `name`'s video (a profile name; not `video` or `audio`) for one source
    /// segment, as [`rendition_units`] read it from the transcoded MPEG-TS: cut into one
    /// CMAF segment of that rendition's track. Its times are moved onto the source
    /// segment's (`source.start`, the first frame's presentation time), whatever offset
    /// the transcoder added, and it lasts as long as the source segment, so the next one
    /// follows without a gap. Renditions join as their first segment arrives; a segment
    /// that never arrives is a gap in that rendition only
    /// ([`CmafOutput::handle_rendition_gap`]). A rendition's file numbers run on without
    /// gaps (DASH's `$Number$`); its media sequence numbers count them.
    pub fn handle_rendition_segment(&mut self, name: &str, units: RenditionUnits, source: &media::Segment) {
        if name == VIDEO || name == AUDIO {
            return;
        }
        let RenditionUnits { config, mut units } = units;
        let i = match self.renditions.iter().position(|r| r.name == name) {
            Some(i) => i,
            None => {
                // One segment per source segment: the rendition never cuts on its own.
                let cfg = CmafConfig {
                    segment_target: media::MediaTime::from_secs_f64(3600.0, media::Timescale::MPEG),
                    ..self.cfg
                };
                let mut t = Track::new(name, TrackKind::Video, cfg, 0);
                t.epoch = self.video.epoch;
                if let Some((media, unix)) = self.clock {
                    t.cutter.set_clock(media::MediaTime::from_secs_f64(media, media::Timescale::MPEG), unix);
                }
                self.renditions.push(t);
                self.renditions.len() - 1
            }
        };
        let mpeg = |t: media::MediaTime| t.rescale(media::Timescale::MPEG);
        let Some(first_pts) = units.iter().map(|a| mpeg(a.pts)).min() else { return };
        let shift = mpeg(source.start) - first_pts;
        for au in &mut units {
            au.pts = mpeg(au.pts) + shift;
            au.dts = mpeg(au.dts) + shift;
        }
        let clock = self.clock;
        let r = &mut self.renditions[i];
        if source.discontinuity {
            r.discontinuity = true;
        }
        let config = TrackConfig::Video(config);
        if r.config.as_ref() != Some(&config) {
            r.cutter.handle_config(config);
        }
        for au in &units {
            r.cutter.handle_access_unit(au);
        }
        let first_dts = units.iter().map(|a| a.dts).min();
        r.cutter.flush_until(first_dts.map(|f| f + mpeg(source.duration)));
        r.drain(clock);
        self.bump();
    }

    /// Rendition `name` has nothing for source segment `source` (its transcode failed,
    /// it was not sent or not offered, or what came back does not decode): once the rendition has joined, its LL-HLS playlist lists the
    /// span as `EXT-X-GAP`, as the TS playlists do, so the next segment keeps its place
    /// in time. DASH numbers only real segments: its timeline jumps over the span.
    pub fn handle_rendition_gap(&mut self, name: &str, source: &media::Segment) {
        let clock = self.clock;
        let Some(r) = self.renditions.iter_mut().find(|r| r.name == name && r.config.is_some()) else { return };
        if source.discontinuity {
            r.discontinuity = true;
        }
        r.gap(source.start.as_secs_f64(), source.duration.as_secs_f64(), clock);
        self.bump();
    }
}
