//! Offline segmenting (`sluice segment`): an FLV or MPEG-TS file in, a VOD HLS playlist and
//! its segments out, through the same cutter the gateway uses.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ingest::flv::{FlvDemuxer, FlvTagDecoder};
use media::{AccessUnit, MediaTime, Payload, Segment, StreamEvent, Timescale, TrackInfo};
use segmenter::hls::{MediaPlaylistBuilder, PlaylistEntry};
use segmenter::ts::demux::TsDemuxer;
use segmenter::{Segmenter, SegmenterConfig};

/// What a segmenting run did.
#[derive(Debug, Clone)]
pub struct SegmentReport {
    /// Segments written.
    pub segments: u64,
    /// Seconds of media.
    pub duration_secs: f64,
    /// Input bytes.
    pub input_bytes: u64,
    /// Segment bytes.
    pub output_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Bytes read from the input at a time.
const READ_BLOCK: usize = 1 << 20;
/// Access units held while looking for the codec configuration of an MPEG-TS input.
const MAX_PENDING: usize = 10_000;

/// Why a file could not be segmented.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// Reading the input or writing the output failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading the input stream failed.
    #[error("reading the input: {0}")]
    Read(#[from] std::io::Error),
    /// The FLV input is malformed.
    #[error("FLV input: {0}")]
    Flv(#[from] ingest::FlvError),
    /// No codec configuration in the first frames of an MPEG-TS input.
    #[error("no H.264 SPS/PPS or AAC header in the first {0} frames")]
    NoConfigurationYet(usize),
    /// No codec configuration anywhere in the input.
    #[error("no codec configuration found in the input")]
    NoConfiguration,
    /// Neither FLV nor MPEG-TS.
    #[error("input is neither FLV nor MPEG-TS")]
    UnknownFormat,
}

/// Segments a stream of FLV or MPEG-TS bytes (detected from the first bytes), handing each
/// segment to `sink`. Reads in 1 MiB blocks, so memory stays bounded whatever the input's
/// size. Returns the tracks found.
pub fn segment_stream(
    mut input: impl Read,
    target_secs: f64,
    mut sink: impl FnMut(&Segment),
) -> Result<TrackInfo, OfflineError> {
    let cfg = SegmenterConfig::with_target(MediaTime::from_secs_f64(target_secs, Timescale::MPEG));
    let mut seg = Segmenter::new(cfg, 0);
    let mut drain = |seg: &mut Segmenter| {
        while let Some(s) = seg.poll_segment() {
            sink(&s);
            seg.recycle(s.data);
        }
    };
    let mut buf = BytesMut::new();
    let mut read_block = |buf: &mut BytesMut| -> std::io::Result<usize> {
        let len = buf.len();
        // Zero-filling the block costs far less than the page faults a fresh buffer per
        // block would; it lets the read go straight into the buffer the tags are cut from.
        buf.resize(len + READ_BLOCK, 0);
        let n = loop {
            match input.read(&mut buf[len..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        buf.truncate(len + n);
        Ok(n)
    };
    let mut n = read_block(&mut buf)?;
    if buf.starts_with(b"FLV") {
        let mut reader = FlvTagDecoder::new();
        let mut demux = FlvDemuxer::new();
        let mut events = Vec::with_capacity(4);
        loop {
            while let Some(tag) = reader.decode(&mut buf)? {
                demux.handle_tag(tag.tag_type, tag.timestamp, &Payload::from(tag.body), &mut events)?;
                for ev in events.drain(..) {
                    match ev {
                        StreamEvent::Tracks(t) => seg.handle_tracks(t),
                        StreamEvent::Media(au) => seg.handle_access_unit(&au),
                        StreamEvent::End => {}
                    }
                }
                drain(&mut seg);
            }
            if n == 0 {
                break;
            }
            n = read_block(&mut buf)?;
        }
        if !buf.is_empty() {
            tracing::warn!(bytes = buf.len(), "input ends inside an FLV tag; ignored");
        }
    } else if buf.first() == Some(&segmenter::ts::SYNC) {
        let mut demux = TsDemuxer::new();
        let mut pending: Vec<AccessUnit> = Vec::new();
        let mut configured = false;
        let mut pump =
            |demux: &mut TsDemuxer, seg: &mut Segmenter, configured: &mut bool| -> Result<(), OfflineError> {
                while let Some(r) = demux.poll() {
                    let au = match r {
                        Ok(au) => au,
                        Err(e) => {
                            tracing::warn!(%e, "skipping malformed input");
                            continue;
                        }
                    };
                    if *configured {
                        seg.handle_access_unit(&au);
                        drain(seg);
                        continue;
                    }
                    pending.push(au);
                    let declared = demux.tracks();
                    if let Some(t) = segmenter::ts::track_info(&pending, declared.video, declared.audio) {
                        seg.handle_tracks(t);
                        *configured = true;
                        // What arrived before the configuration was known, in decode order.
                        pending.sort_by_key(|a| a.dts);
                        for au in pending.drain(..) {
                            seg.handle_access_unit(&au);
                            drain(seg);
                        }
                    } else if pending.len() > MAX_PENDING {
                        return Err(OfflineError::NoConfigurationYet(MAX_PENDING));
                    }
                }
                Ok(())
            };
        loop {
            demux.push(&buf);
            buf.clear();
            pump(&mut demux, &mut seg, &mut configured)?;
            if n == 0 {
                break;
            }
            n = read_block(&mut buf)?;
        }
        demux.flush();
        pump(&mut demux, &mut seg, &mut configured)?;
        if !configured && !pending.is_empty() {
            return Err(OfflineError::NoConfiguration);
        }
    } else {
        return Err(OfflineError::UnknownFormat);
    }
    seg.flush();
    drain(&mut seg);
    Ok(seg.tracks().clone())
}

/// Segments `input` into `out_dir` (`index.m3u8` and `{seq}.ts`).
pub fn segment_file(input: &Path, out_dir: &Path, target_secs: f64) -> Result<SegmentReport, OfflineError> {
    #[allow(clippy::disallowed_methods)] // timing a command, not a protocol core
    let started = Instant::now();
    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OfflineError + use<> {
        let path = path.to_owned();
        move |source| OfflineError::Io { what, path, source }
    }
    let file = std::fs::File::open(input).map_err(io("opening", input))?;
    let input_bytes = file.metadata().map_err(io("reading", input))?.len();
    std::fs::create_dir_all(out_dir).map_err(io("creating", out_dir))?;
    let mut playlist = MediaPlaylistBuilder::vod(target_secs);
    let mut report =
        SegmentReport { segments: 0, duration_secs: 0.0, input_bytes, output_bytes: 0, elapsed: Duration::ZERO };
    let mut write_err = None;
    segment_stream(file, target_secs, |s| {
        let path = out_dir.join(format!("{}.ts", s.seq));
        if let Err(e) = std::fs::write(&path, &s.data) {
            write_err.get_or_insert(OfflineError::Io { what: "writing", path, source: e });
        }
        report.segments += 1;
        report.duration_secs += s.duration.as_secs_f64();
        report.output_bytes += s.data.len() as u64;
        playlist.push(PlaylistEntry {
            seq: s.seq,
            duration: s.duration.as_secs_f64(),
            discontinuity: s.discontinuity,
            gap: false,
            independent: s.independent,
        });
    })?;
    if let Some(e) = write_err {
        return Err(e);
    }
    let index = out_dir.join("index.m3u8");
    std::fs::write(&index, playlist.render(|seq| format!("{seq}.ts"))).map_err(io("writing", &index))?;
    report.elapsed = started.elapsed();
    Ok(report)
}
