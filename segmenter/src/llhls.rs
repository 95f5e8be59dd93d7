//! Low-Latency HLS playlists (RFC 8216bis) over CMAF tracks: a multivariant playlist
//! with an audio group, and per-track media playlists with `EXT-X-PART`,
//! `EXT-X-PRELOAD-HINT`, `EXT-X-SERVER-CONTROL` (blocking reload, part hold-back),
//! `EXT-X-MAP` and `EXT-X-RENDITION-REPORT`. A client that ignores the LL-HLS tags reads
//! an ordinary fMP4 playlist.
//!
//! These are written here rather than with `m3u8-rs`, whose writer (6.x) has no place
//! for playlist-level tags (`SERVER-CONTROL`, `PART-INF`, the open segment's parts, the
//! hint, the reports); the tests parse every playlist back with `m3u8-rs`.
use std::fmt::Write;

/// A part of a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct PartEntry {
    /// Seconds.
    pub duration: f64,
    /// Starts with a sync sample.
    pub independent: bool,
}

/// A segment of a track, complete or still being written, or a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentEntry {
    /// Media sequence number.
    pub msn: u64,
    /// The number in its files' names ([`segment_uri`], [`part_uri`]): the media sequence
    /// number less the gaps before it (DASH numbers the same files and has no gaps). For
    /// a gap, the number of the next segment's files.
    pub file: u64,
    /// `EXT-X-GAP` (RFC 8216bis §4.4.4.7): the track has no media for this span (a
    /// transcode that failed). Complete, without parts of its own: near the live edge it
    /// is listed as parts with `GAP=YES`, none longer than the part target.
    pub gap: bool,
    /// Seconds (complete segments).
    pub duration: f64,
    /// Its parts so far.
    pub parts: Vec<PartEntry>,
    /// Complete: its URI is listed.
    pub complete: bool,
    /// Which init segment it needs.
    pub init: u32,
    /// A new timeline starts here.
    pub discontinuity: bool,
    /// Wall-clock time of its first sample, Unix seconds (`EXT-X-PROGRAM-DATE-TIME`,
    /// which players use to line up the audio and video playlists).
    pub program_date_time: Option<f64>,
}

/// Unix seconds as RFC 3339 UTC with milliseconds (`2026-12-06T00:37:12.123Z`).
pub fn rfc3339(unix: f64) -> String {
    let ms = (unix * 1000.0).round() as i64;
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// What a track's media playlist shows.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackPlaylist<'a> {
    /// The track's name: its playlist is `{name}.m3u8`, its files `{name}-…` beside it.
    pub name: &'a str,
    /// Its segments, oldest first; the last may be open.
    pub segments: &'a [SegmentEntry],
    /// Discontinuities before the first listed segment.
    pub discontinuity_sequence: u64,
    /// Seconds; no part is longer.
    pub part_target: f64,
    /// The stream ended.
    pub ended: bool,
    /// Other tracks' names and their last (msn, part) for `EXT-X-RENDITION-REPORT`.
    pub reports: &'a [(String, u64, Option<u32>)],
}

/// Parts are listed for segments within this many target durations of the end (the
/// RFC asks for at least three).
const PART_WINDOW_TARGETS: f64 = 3.0;

/// URIs of track `name`'s files, beside its playlist: `{name}-init{n}.mp4`,
/// `{name}-{msn}.m4s`, `{name}-{msn}.{part}.m4s`.
pub fn init_uri(name: &str, n: u32) -> String {
    format!("{name}-init{n}.mp4")
}

/// See [`init_uri`].
pub fn segment_uri(name: &str, msn: u64) -> String {
    format!("{name}-{msn}.m4s")
}

/// See [`init_uri`].
pub fn part_uri(name: &str, msn: u64, part: u32) -> String {
    format!("{name}-{msn}.{part}.m4s")
}

/// How many `GAP=YES` parts a gap of `duration` seconds is listed as near the live edge:
/// the fewest that keep each within `part_target` seconds (at least one).
pub fn gap_parts(duration: f64, part_target: f64) -> usize {
    if part_target > 0.0 { (duration / part_target).ceil().max(1.0) as usize } else { 1 }
}

/// The URI listed for a gap segment or part (`{name}-gap{msn}[.{part}].m4s`): never
/// loaded by a client, and not one of [`parse_file_name`]'s names (the server answers 404).
fn gap_uri(name: &str, msn: u64, part: Option<usize>) -> String {
    match part {
        Some(k) => format!("{name}-gap{msn}.{k}.m4s"),
        None => format!("{name}-gap{msn}.m4s"),
    }
}

/// A file name of [`init_uri`], [`segment_uri`] or [`part_uri`], read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileName<'a> {
    /// `{name}-init{n}.mp4`
    Init(&'a str, u32),
    /// `{name}-{msn}.m4s`
    Segment(&'a str, u64),
    /// `{name}-{msn}.{part}.m4s`
    Part(&'a str, u64, u32),
}

/// A decimal number written as [`init_uri`] writes one: ASCII digits only (no sign, no
/// spaces), no leading zero unless it is `0`.
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

/// Parses a file name made by [`init_uri`], [`segment_uri`] or [`part_uri`]; any
/// other spelling of the same numbers (`+1`, `01`) is not one of ours.
pub fn parse_file_name(file: &str) -> Option<FileName<'_>> {
    if let Some(stem) = file.strip_suffix(".mp4") {
        let (name, n) = stem.rsplit_once("-init")?;
        return Some(FileName::Init(name, number(n)?));
    }
    let stem = file.strip_suffix(".m4s")?;
    let (name, rest) = stem.rsplit_once('-')?;
    match rest.split_once('.') {
        Some((msn, part)) => Some(FileName::Part(name, number(msn)?, number(part)?)),
        None => Some(FileName::Segment(name, number(rest)?)),
    }
}

/// What a media playlist request asks to wait for (RFC 8216bis §6.2.5.2): segment
/// `msn` (`_HLS_msn`), and with `part` (`_HLS_part`) that part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockingRequest {
    /// `_HLS_msn`.
    pub msn: u64,
    /// `_HLS_part`.
    pub part: Option<u32>,
}

/// Why a playlist request's query is refused (HTTP 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlockingQueryError {
    /// `_HLS_part` without `_HLS_msn`.
    #[error("_HLS_part needs _HLS_msn")]
    PartWithoutMsn,
    /// A value that is not a decimal number in range.
    #[error("_HLS_msn and _HLS_part are decimal numbers")]
    NotANumber,
    /// The same directive twice.
    #[error("_HLS_msn or _HLS_part given twice")]
    Repeated,
}

/// Reads the delivery directives of a media playlist request's query string (without
/// the `?`): `None` for a plain request. Other parameters are ignored, as the RFC asks
/// of unknown ones.
///
/// # Errors
/// [`BlockingQueryError`], which the server answers with 400.
pub fn parse_blocking_query(query: &str) -> Result<Option<BlockingRequest>, BlockingQueryError> {
    let (mut msn, mut part) = (None, None);
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "_HLS_msn" => &mut msn,
            "_HLS_part" => &mut part,
            _ => continue,
        };
        if slot.is_some() {
            return Err(BlockingQueryError::Repeated);
        }
        // RFC 8216's decimal-integer: digits, leading zeros allowed.
        let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
        *slot = Some(value.parse::<u64>().ok().filter(|_| digits).ok_or(BlockingQueryError::NotANumber)?);
    }
    match (msn, part) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(BlockingQueryError::PartWithoutMsn),
        (Some(msn), None) => Ok(Some(BlockingRequest { msn, part: None })),
        (Some(msn), Some(p)) => {
            let part = u32::try_from(p).map_err(|_| BlockingQueryError::NotANumber)?;
            Ok(Some(BlockingRequest { msn, part: Some(part) }))
        }
    }
}

/// The target duration: the longest complete segment rounded to the nearest second (RFC
/// 8216bis §4.4.3.1 compares rounded `EXTINF`s with it), at least 1.
pub fn target_duration(segments: &[SegmentEntry]) -> u64 {
    segments.iter().filter(|s| s.complete).map(|s| s.duration.round() as u64).max().unwrap_or(1).max(1)
}

impl TrackPlaylist<'_> {
    /// The file number and part index the next part will have (the preload hint).
    pub fn next_part(&self) -> Option<(u64, u32)> {
        match self.segments.last() {
            Some(s) if !s.complete => Some((s.file, s.parts.len() as u32)),
            Some(s) if s.gap => Some((s.file, 0)),
            Some(s) => Some((s.file + 1, 0)),
            None => None,
        }
    }

    /// The last complete part, as `(msn, part)`.
    pub fn last_part(&self) -> Option<(u64, u32)> {
        self.segments.iter().rev().find(|s| !s.parts.is_empty()).map(|s| (s.msn, s.parts.len() as u32 - 1))
    }

    /// The media playlist text.
    pub fn render(&self) -> String {
        let target = target_duration(self.segments);
        let mut out = String::with_capacity(256 + self.segments.len() * 96);
        out.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
        if !self.ended {
            let _ = writeln!(
                out,
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}",
                self.part_target * 3.0
            );
        }
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={:.3}", self.part_target);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.segments.first().map_or(0, |s| s.msn));
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_sequence);
        }
        // Parts are listed near the live edge only.
        let mut since_end = 0.0;
        let mut with_parts = 0;
        for s in self.segments.iter().rev() {
            if since_end >= PART_WINDOW_TARGETS * target as f64 {
                break;
            }
            since_end += if s.complete { s.duration } else { s.parts.iter().map(|p| p.duration).sum() };
            with_parts += 1;
        }
        let first_with_parts = self.segments.len() - with_parts;
        let mut init = None;
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 && s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if let Some(t) = s.program_date_time {
                let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339(t));
            }
            if init != Some(s.init) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", init_uri(self.name, s.init));
                init = Some(s.init);
            }
            if i >= first_with_parts && !self.ended {
                if s.gap {
                    let n = gap_parts(s.duration, self.part_target);
                    for k in 0..n {
                        let uri = gap_uri(self.name, s.msn, Some(k));
                        let _ =
                            writeln!(out, "#EXT-X-PART:DURATION={:.5},URI=\"{uri}\",GAP=YES", s.duration / n as f64);
                    }
                }
                for (k, p) in s.parts.iter().enumerate() {
                    let uri = part_uri(self.name, s.file, k as u32);
                    let _ = write!(out, "#EXT-X-PART:DURATION={:.5},URI=\"{uri}\"", p.duration);
                    out.push_str(if p.independent { ",INDEPENDENT=YES\n" } else { "\n" });
                }
            }
            if s.gap {
                let _ = writeln!(out, "#EXT-X-GAP\n#EXTINF:{:.5},\n{}", s.duration, gap_uri(self.name, s.msn, None));
            } else if s.complete {
                let _ = writeln!(out, "#EXTINF:{:.5},\n{}", s.duration, segment_uri(self.name, s.file));
            }
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
            return out;
        }
        if let Some((msn, part)) = self.next_part() {
            let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"", part_uri(self.name, msn, part));
        }
        for (name, msn, part) in self.reports {
            let _ = write!(out, "#EXT-X-RENDITION-REPORT:URI=\"{name}.m3u8\",LAST-MSN={msn}");
            if let Some(p) = part {
                let _ = write!(out, ",LAST-PART={p}");
            }
            out.push('\n');
        }
        out
    }
}

/// A video variant of the multivariant playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Its media playlist's name (`{name}.m3u8`).
    pub name: String,
    /// Bits per second (peak).
    pub bandwidth: u64,
    /// RFC 6381 codecs of its video (the audio's are added).
    pub codecs: String,
    /// Width × height.
    pub resolution: Option<(u32, u32)>,
}

/// The multivariant playlist: `variants` (video, each a media playlist under `dir`) and
/// one audio rendition `audio` = (name, codecs) they all play with.
pub fn render_multivariant(dir: &str, variants: &[Variant], audio: Option<(&str, &str)>) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    if let Some((name, _)) = audio {
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"{name}\",DEFAULT=YES,AUTOSELECT=YES,URI=\"{dir}/{name}.m3u8\""
        );
    }
    for v in variants {
        let codecs = match audio {
            Some((_, a)) => format!("{},{a}", v.codecs),
            None => v.codecs.clone(),
        };
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={},CODECS=\"{codecs}\"", v.bandwidth.max(1));
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if audio.is_some() {
            out.push_str(",AUDIO=\"audio\"");
        }
        let _ = writeln!(out, "\n{dir}/{}.m3u8", v.name);
    }
    if variants.is_empty()
        && let Some((name, codecs)) = audio
    {
        // Audio only: the audio playlist is the one variant.
        let _ = writeln!(out, "#EXT-X-STREAM-INF:BANDWIDTH=128000,CODECS=\"{codecs}\"\n{dir}/{name}.m3u8");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(msn: u64, parts: usize, complete: bool) -> SegmentEntry {
        SegmentEntry {
            msn,
            file: msn,
            gap: false,
            duration: parts as f64 * 0.5,
            parts: (0..parts).map(|k| PartEntry { duration: 0.5, independent: k == 0 }).collect(),
            complete,
            init: 0,
            discontinuity: false,
            program_date_time: None,
        }
    }

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_517_432.123_4), "2026-12-06T00:37:12.123Z");
        assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn a_live_playlist_lists_recent_parts_the_hint_and_reports() {
        let segs: Vec<SegmentEntry> = (3..10).map(|m| seg(m, 4, true)).chain([seg(10, 2, false)]).collect();
        let reports = vec![("audio".to_owned(), 10, Some(1))];
        let p = TrackPlaylist {
            name: "video",
            segments: &segs,
            discontinuity_sequence: 0,
            part_target: 0.5,
            ended: false,
            reports: &reports,
        };
        let text = p.render();
        assert!(text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500\n"), "{text}");
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.500\n"));
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:3\n"));
        assert!(text.contains("#EXT-X-MAP:URI=\"video-init0.mp4\"\n"));
        assert!(!text.contains("URI=\"video-6.0.m4s\""), "old parts are not listed: {text}");
        assert!(text.contains("#EXT-X-PART:DURATION=0.50000,URI=\"video-10.1.m4s\"\n"));
        assert!(text.contains("#EXT-X-PART:DURATION=0.50000,URI=\"video-9.0.m4s\",INDEPENDENT=YES\n"));
        assert!(text.ends_with(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"video-10.2.m4s\"\n#EXT-X-RENDITION-REPORT:URI=\"audio.m3u8\",LAST-MSN=10,LAST-PART=1\n"
        ));
        assert_eq!(p.next_part(), Some((10, 2)));
        assert_eq!(p.last_part(), Some((10, 1)));
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("m3u8-rs parses it");
        assert_eq!(parsed.segments.len(), 7, "the open segment has no URI yet");
        assert_eq!(parsed.media_sequence, 3);
        assert_eq!(parsed.target_duration, 2);
    }

    #[test]
    fn a_gap_is_listed_with_its_own_number_and_no_media() {
        // A rendition whose segment 5 failed: its files are numbered without the gap.
        let mut segs: Vec<SegmentEntry> = (3..8).map(|m| seg(m, 4, true)).collect();
        segs[2] = SegmentEntry { gap: true, file: 5, parts: vec![], duration: 2.0, ..seg(5, 0, true) };
        for s in &mut segs[3..] {
            s.file = s.msn - 1;
        }
        let p = TrackPlaylist {
            name: "P240p",
            segments: &segs,
            discontinuity_sequence: 0,
            part_target: 0.5,
            ended: false,
            reports: &[],
        };
        let text = p.render();
        assert!(text.contains("#EXT-X-GAP\n#EXTINF:2.00000,\nP240p-gap5.m4s\n"), "{text}");
        assert_eq!(text.matches(",GAP=YES\n").count(), 4, "2 s of gap parts of 0.5 s: {text}");
        assert!(text.contains("#EXTINF:2.00000,\nP240p-5.m4s\n#EXT-X-PART:DURATION=0.50000,URI=\"P240p-6.0.m4s\""));
        assert!(text.contains("PRELOAD-HINT:TYPE=PART,URI=\"P240p-7.0.m4s\""), "{text}");
        assert_eq!(parse_file_name("P240p-gap5.m4s"), None, "a gap's URI is not a file");
        assert_eq!(parse_file_name("P240p-gap5.0.m4s"), None);
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("m3u8-rs parses it");
        assert_eq!(parsed.segments.len(), 5);
        assert!(parsed.segments[2].unknown_tags.iter().any(|t| t.tag == "X-GAP"), "{:?}", parsed.segments[2]);
        // The gap as the newest segment: the hint names the next segment's first file.
        let p = TrackPlaylist { segments: &segs[..3], ..p };
        assert_eq!(p.next_part(), Some((5, 0)));
    }

    #[test]
    fn an_ended_playlist_is_plain_fmp4_hls() {
        let mut segs = vec![seg(0, 4, true), seg(1, 4, true)];
        segs[1].discontinuity = true;
        segs[1].init = 1;
        let p = TrackPlaylist {
            name: "video",
            segments: &segs,
            discontinuity_sequence: 0,
            part_target: 0.5,
            ended: true,
            reports: &[],
        };
        let text = p.render();
        assert!(!text.contains("PART:") && !text.contains("PRELOAD") && !text.contains("SERVER-CONTROL"));
        assert!(
            text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"video-init1.mp4\"\n#EXTINF:2.00000,\nvideo-1.m4s\n"),
            "{text}"
        );
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
        assert!(parsed.end_list && parsed.segments[1].discontinuity);
    }

    #[test]
    fn file_names_read_back() {
        assert_eq!(parse_file_name(&init_uri("audio", 2)), Some(FileName::Init("audio", 2)));
        assert_eq!(parse_file_name(&segment_uri("video", 17)), Some(FileName::Segment("video", 17)));
        assert_eq!(parse_file_name(&part_uri("video", 17, 3)), Some(FileName::Part("video", 17, 3)));
        for bad in [
            "video.m3u8",
            "video-x.m4s",
            "video-1.x.m4s",
            "init.mp4",
            "video-initx.mp4",
            "-",
            "video-+1.m4s",
            "video-01.m4s",
            "video-1.+2.m4s",
            "audio-init 1.mp4",
            "video-99999999999999999999.m4s",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
        // Rendition names may hold dashes.
        assert_eq!(parse_file_name("P240p-30fps-0.1.m4s"), Some(FileName::Part("P240p-30fps", 0, 1)));
    }

    #[test]
    fn blocking_directives_read_from_the_query() {
        let b = |msn, part| Ok(Some(BlockingRequest { msn, part }));
        assert_eq!(parse_blocking_query(""), Ok(None));
        assert_eq!(parse_blocking_query("x=1&y"), Ok(None));
        assert_eq!(parse_blocking_query("_HLS_msn=7"), b(7, None));
        assert_eq!(parse_blocking_query("_HLS_msn=007"), b(7, None));
        assert_eq!(parse_blocking_query("_HLS_part=2&_HLS_msn=7&_HLS_skip=YES"), b(7, Some(2)));
        assert_eq!(parse_blocking_query("_HLS_part=2"), Err(BlockingQueryError::PartWithoutMsn));
        for bad in ["_HLS_msn=", "_HLS_msn", "_HLS_msn=-1", "_HLS_msn=x", "_HLS_msn=1&_HLS_part=4294967296"] {
            assert_eq!(parse_blocking_query(bad), Err(BlockingQueryError::NotANumber), "{bad}");
        }
        assert_eq!(parse_blocking_query("_HLS_msn=1&_HLS_msn=2"), Err(BlockingQueryError::Repeated));
    }

    #[test]
    fn the_multivariant_playlist_groups_audio() {
        let v = vec![Variant {
            name: "source".into(),
            bandwidth: 2_000_000,
            codecs: "avc1.64001f".into(),
            resolution: Some((1280, 720)),
        }];
        let text = render_multivariant("ll", &v, Some(("audio", "mp4a.40.2")));
        let parsed = m3u8_rs::parse_master_playlist_res(text.as_bytes()).expect("m3u8-rs parses it");
        assert_eq!(parsed.variants.len(), 1);
        assert_eq!(parsed.variants[0].uri, "ll/source.m3u8");
        assert_eq!(parsed.variants[0].codecs.as_deref(), Some("avc1.64001f,mp4a.40.2"));
        assert_eq!(parsed.variants[0].audio.as_deref(), Some("audio"));
        assert_eq!(parsed.alternatives[0].uri.as_deref(), Some("ll/audio.m3u8"));
    }
}
