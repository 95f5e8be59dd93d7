//! DASH Media Presentation Descriptions (ISO/IEC 23009-1) over the same CMAF tracks as
//! Low-Latency HLS ([`crate::cmaf`], [`crate::llhls`]): one adaptation set per media type,
//! one representation per rendition, `SegmentTemplate` with a `SegmentTimeline` and
//! `$Number$` addressing, a period per timeline (a new publisher starts a new one).
//!
//! The XML is written by the `dash-mpd-core` crate's serializer from its MPD model; this
//! module decides what goes in it. Times here are Unix seconds (wall clock) or track ticks
//! (a representation's `timescale`), never a clock read: the caller passes `now`.
//!
//! ## Timing
//! A segment that starts at Unix time `w` (its program date, the same as LL-HLS's
//! `EXT-X-PROGRAM-DATE-TIME`) is placed at `w - availabilityStartTime` on the MPD
//! timeline: its period starts at `w0 - availabilityStartTime` for the period's first
//! segment's `w0`, and the period's `presentationTimeOffset` is that segment's earliest
//! presentation time (its `tfdt` plus its first sample's composition offset), which is
//! also what each `S@t` holds.
//! Only complete segments are listed, so a listed segment is available as soon as the
//! player's clock (synchronised through the `UTCTiming` element) passes its end.
use std::fmt::Write;
use std::time::Duration;

use dash_mpd_core as mpd;

/// A wall-clock time, Unix seconds.
pub type UnixSecs = f64;

/// One listed segment of a representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Its number (`$Number$`: the number in its files' names, which LL-HLS shares).
    pub number: u64,
    /// Its earliest presentation time, in the representation's ticks.
    pub start: u64,
    /// Its length, in ticks.
    pub duration: u64,
}

/// What kind of media an adaptation set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `video/mp4`.
    Video,
    /// `audio/mp4`.
    Audio,
}

/// One rendition in a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Representation {
    /// Unique in the MPD (`video`, `audio`, `720p`, …).
    pub id: String,
    /// Peak bits per second.
    pub bandwidth: u64,
    /// RFC 6381 codec string (`avc1.64001f`, `mp4a.40.2`).
    pub codecs: String,
    /// Video width and height, pixels.
    pub resolution: Option<(u32, u32)>,
    /// Audio sampling rate (Hz) and channels.
    pub audio: Option<(u32, u16)>,
    /// Ticks per second of its timeline.
    pub timescale: u32,
    /// Init segment URL, relative to the MPD.
    pub initialization: String,
    /// Media segment URL template with `$Number$`, relative to the MPD.
    pub media: String,
    /// Its complete segments in this period, in order.
    pub timeline: Vec<TimelineEntry>,
}

/// One adaptation set: every representation of one media type.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptationSet {
    /// Its media type.
    pub content: ContentType,
    /// Its representations (at least one).
    pub representations: Vec<Representation>,
}

/// A period: one timeline of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    /// Unique in the MPD.
    pub id: String,
    /// Wall-clock time of its first segment's start.
    pub start: UnixSecs,
    /// That same instant on the tracks' shared media timeline, seconds (the first
    /// segment's earliest presentation time over its timescale): every representation's
    /// `presentationTimeOffset`, so the tracks stay in sync however their first
    /// segments fall.
    pub media_start: f64,
    /// Its adaptation sets.
    pub sets: Vec<AdaptationSet>,
}

/// The whole presentation, as [`render`] writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Presentation {
    /// `dynamic` while the stream is live; `static` after it ended.
    pub live: bool,
    /// `availabilityStartTime`: the start of the MPD timeline.
    pub availability_start: UnixSecs,
    /// `publishTime`: when this MPD was made (the caller's `now`).
    pub publish_time: UnixSecs,
    /// `minimumUpdatePeriod`, seconds (live only).
    pub update_period: f64,
    /// `timeShiftBufferDepth`, seconds (live only): how far back segments stay.
    pub time_shift_buffer: f64,
    /// `minBufferTime`, seconds.
    pub min_buffer: f64,
    /// `ServiceDescription` latency target, seconds (live only): players that honour it
    /// (dash.js) hold playback this far behind the live edge.
    pub target_latency: f64,
    /// URL of the `urn:mpeg:dash:utc:http-iso:2014` clock (live only).
    pub utc_timing: Option<String>,
    /// The periods, in order.
    pub periods: Vec<Period>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn datetime(unix: UnixSecs) -> Option<mpd::XsDatetime> {
    let ms = (unix * 1000.0).round() as i64;
    mpd::XsDatetime::from_timestamp_millis(ms)
}

/// The `S` elements of a timeline: runs of back-to-back segments of equal length become
/// one element with a repeat count; a gap or an overlap starts a new element with `t`.
pub fn timeline(entries: &[TimelineEntry]) -> Vec<mpd::S> {
    let mut out: Vec<mpd::S> = Vec::new();
    let mut end: Option<u64> = None;
    for e in entries {
        let contiguous = end == Some(e.start);
        match out.last_mut() {
            Some(last) if contiguous && last.d == e.duration => last.r = Some(last.r.unwrap_or(0) + 1),
            _ => out.push(mpd::S { t: (!contiguous).then_some(e.start), d: e.duration, ..Default::default() }),
        }
        end = Some(e.start + e.duration);
    }
    out
}

fn representation(r: &Representation, media_start: f64) -> mpd::Representation {
    let first = r.timeline.first();
    mpd::Representation {
        id: Some(r.id.clone()),
        bandwidth: Some(r.bandwidth),
        codecs: Some(r.codecs.clone()),
        width: r.resolution.map(|(w, _)| u64::from(w)),
        height: r.resolution.map(|(_, h)| u64::from(h)),
        audioSamplingRate: r.audio.map(|(rate, _)| rate.to_string()),
        AudioChannelConfiguration: r
            .audio
            .map(|(_, ch)| mpd::AudioChannelConfiguration {
                schemeIdUri: "urn:mpeg:dash:23003:3:audio_channel_configuration:2011".into(),
                value: Some(ch.to_string()),
                id: None,
            })
            .into_iter()
            .collect(),
        SegmentTemplate: Some(mpd::SegmentTemplate {
            timescale: Some(u64::from(r.timescale)),
            initialization: Some(r.initialization.clone()),
            media: Some(r.media.clone()),
            startNumber: Some(first.map_or(0, |e| e.number)),
            // Time 0 of the period, in this representation's ticks.
            presentationTimeOffset: Some((media_start.max(0.0) * f64::from(r.timescale)).round() as u64),
            SegmentTimeline: Some(mpd::SegmentTimeline { segments: timeline(&r.timeline) }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn adaptation_set(i: usize, s: &AdaptationSet, media_start: f64) -> mpd::AdaptationSet {
    let (content, mime) = match s.content {
        ContentType::Video => ("video", "video/mp4"),
        ContentType::Audio => ("audio", "audio/mp4"),
    };
    mpd::AdaptationSet {
        id: Some(i.to_string()),
        contentType: Some(content.into()),
        mimeType: Some(mime.into()),
        segmentAlignment: Some(true),
        startWithSAP: Some(1),
        representations: s.representations.iter().map(|r| representation(r, media_start)).collect(),
        ..Default::default()
    }
}

/// Writes `p` as an MPD (UTF-8 XML with its declaration).
///
/// A static MPD (after the end) starts its timeline at the first listed period, and its
/// `mediaPresentationDuration` runs to the end of the last listed segment.
///
/// A period without segments is kept (a player skips it).
///
/// # Errors
/// [`RenderError`] if the XML serializer refuses the model (not expected for any
/// presentation built from this module's types).
pub fn render(p: &Presentation) -> Result<String, RenderError> {
    let origin = if p.live { p.availability_start } else { p.periods.first().map_or(0.0, |f| f.start) };
    let end = p
        .periods
        .iter()
        .flat_map(|per| {
            per.sets.iter().flat_map(|s| &s.representations).filter_map(|r| {
                let last = r.timeline.last()?;
                let end = (last.start + last.duration) as f64 / f64::from(r.timescale.max(1));
                Some(per.start + (end - per.media_start))
            })
        })
        .fold(origin, f64::max);
    let max_segment = p
        .periods
        .iter()
        .flat_map(|per| per.sets.iter().flat_map(|s| &s.representations))
        .flat_map(|r| r.timeline.iter().map(|e| e.duration as f64 / f64::from(r.timescale.max(1))))
        .fold(0.0, f64::max);
    let periods = p
        .periods
        .iter()
        .map(|per| mpd::Period {
            id: Some(per.id.clone()),
            start: Some(secs(per.start - origin)),
            adaptations: per.sets.iter().enumerate().map(|(i, s)| adaptation_set(i, s, per.media_start)).collect(),
            ..Default::default()
        })
        .collect();
    let live = p.live;
    let doc = mpd::MPD {
        xmlns: Some("urn:mpeg:dash:schema:mpd:2011".into()),
        profiles: Some("urn:mpeg:dash:profile:isoff-live:2011".into()),
        mpdtype: Some(if live { "dynamic" } else { "static" }.into()),
        availabilityStartTime: if live { datetime(p.availability_start) } else { None },
        publishTime: datetime(p.publish_time),
        minimumUpdatePeriod: live.then(|| secs(p.update_period)),
        timeShiftBufferDepth: live.then(|| secs(p.time_shift_buffer)),
        mediaPresentationDuration: (!live).then(|| secs(end - origin)),
        maxSegmentDuration: (max_segment > 0.0).then(|| secs(max_segment)),
        minBufferTime: Some(secs(p.min_buffer)),
        ServiceDescription: if live {
            vec![mpd::ServiceDescription {
                id: Some("0".into()),
                Latency: vec![mpd::Latency {
                    target: Some((p.target_latency * 1000.0).round()),
                    referenceId: Some("0".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }]
        } else {
            Vec::new()
        },
        periods,
        UTCTiming: match (&p.utc_timing, live) {
            (Some(url), true) => vec![mpd::UTCTiming {
                id: None,
                schemeIdUri: "urn:mpeg:dash:utc:http-iso:2014".into(),
                value: Some(url.clone()),
            }],
            _ => Vec::new(),
        },
        ..Default::default()
    };
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    write!(out, "{doc}").map_err(|_| RenderError)?;
    out.push('\n');
    Ok(out)
}

/// The MPD serializer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the MPD could not be serialized")]
pub struct RenderError;
