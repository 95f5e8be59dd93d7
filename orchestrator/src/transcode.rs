//! Turning one source segment into renditions.
//!
//! [`GstTranscoder`] runs GStreamer (`gst-launch-1.0`) as a child process per segment:
//! decode once, then per profile scale, encode with x264 and mux to MPEG-TS. Child
//! processes keep GStreamer off the tokio workers entirely; a semaphore bounds how many
//! run at once. The renditions are then re-timed so each carries the source segment's
//! timestamps (a player switching renditions sees one timeline) and the source's AAC
//! audio is muxed in unchanged.
//!
//! [`EchoTranscoder`] returns the source as every rendition, for load tests where
//! encoding would only measure x264.
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use media::{AccessUnit, TrackKind};
use segmenter::ts::demux::TsDemuxer;
use segmenter::ts::mux::{TsMuxer, TsTracks};
use tokio::sync::Semaphore;
use transport::proto::VideoProfile;

/// One transcoded rendition.
#[derive(Debug, Clone)]
pub struct Rendition {
    /// MPEG-TS bytes.
    pub data: Bytes,
    /// Output pixels: width × height × frames.
    pub pixels: i64,
}

/// Why a segment could not be transcoded. The `Display` text is what goes back to the
/// gateway in `TranscodeResult.error` (go-livepeer's strings where it has them).
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The transcoder is shutting down.
    #[error("transcoder shut down")]
    ShutDown,
    /// A scratch file or directory could not be used.
    #[error("scratch {what}: {source}")]
    Scratch {
        /// Which step.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `gst-launch-1.0` could not be run.
    #[error("cannot run gst-launch-1.0: {0}")]
    Launch(#[source] std::io::Error),
    /// The pipeline ran past its deadline and was killed.
    #[error("GStreamer timed out")]
    Timeout,
    /// The pipeline failed on this input.
    #[error("TranscoderInvalidVideo: {0}")]
    InvalidVideo(String),
    /// A worker task died.
    #[error("transcode task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// The input or an output is not MPEG-TS the demuxer can read.
    #[error("MediaStats Failure: {0}")]
    Demux(#[source] segmenter::TsError),
    /// An output had no video.
    #[error("ZeroSegments")]
    ZeroSegments,
    /// GStreamer or one of its elements is not installed.
    #[error("{0}")]
    NotInstalled(String),
}

/// The future a transcoder returns.
pub type TranscodeFuture = Pin<Box<dyn Future<Output = Result<Vec<Rendition>, TranscodeError>> + Send>>;

/// Produces one rendition per profile, in profile order.
pub trait Transcoder: Send + Sync + 'static {
    /// Transcodes `input` (an MPEG-TS segment) to `profiles`.
    fn transcode(&self, input: Bytes, profiles: Vec<VideoProfile>) -> TranscodeFuture;
}

/// Returns the input as every rendition.
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoTranscoder;

impl Transcoder for EchoTranscoder {
    fn transcode(&self, input: Bytes, profiles: Vec<VideoProfile>) -> TranscodeFuture {
        Box::pin(async move {
            let frames = demux(&input)?.iter().filter(|a| a.track == TrackKind::Video).count() as i64;
            Ok(profiles
                .iter()
                .map(|p| Rendition { data: input.clone(), pixels: p.width as i64 * p.height as i64 * frames })
                .collect())
        })
    }
}

/// Transcodes with `gst-launch-1.0` child processes.
#[derive(Debug)]
pub struct GstTranscoder {
    slots: Arc<Semaphore>,
    work_dir: PathBuf,
    jobs: AtomicU64,
    timeout: Duration,
}

impl GstTranscoder {
    /// A transcoder running at most `parallel` GStreamer processes, with scratch files
    /// under `work_dir`.
    pub fn new(parallel: usize, work_dir: PathBuf) -> Self {
        GstTranscoder {
            slots: Arc::new(Semaphore::new(parallel.max(1))),
            work_dir,
            jobs: AtomicU64::new(0),
            timeout: Duration::from_secs(60),
        }
    }

    /// Checks that `gst-launch-1.0` and the elements the pipeline needs are installed.
    pub fn check_installed() -> Result<(), TranscodeError> {
        for element in ["tsdemux", "h264parse", "avdec_h264", "videoscale", "x264enc", "mpegtsmux"] {
            let ok = std::process::Command::new("gst-inspect-1.0")
                .arg("--exists")
                .arg(element)
                .status()
                .map_err(|e| {
                    TranscodeError::NotInstalled(format!(
                        "gst-inspect-1.0 not runnable ({e}); install GStreamer (scripts/setup.sh)"
                    ))
                })?
                .success();
            if !ok {
                return Err(TranscodeError::NotInstalled(format!(
                    "GStreamer element {element} is missing; install GStreamer plugins (scripts/setup.sh)"
                )));
            }
        }
        Ok(())
    }
}

/// The gst-launch pipeline: one decode, then scale + x264 + TS mux per profile. A
/// profile whose frame rate is below the source's (`source_fps`) also drops frames down
/// to it, as go-livepeer's renditions do; the source rate is never raised.
fn pipeline(input: &str, outputs: &[String], profiles: &[VideoProfile], source_fps: Option<f64>) -> Vec<String> {
    let mut p = format!("filesrc location={input} ! tsdemux ! h264parse ! avdec_h264 ! tee name=t");
    for (out, prof) in outputs.iter().zip(profiles) {
        let kbps = (prof.bitrate / 1000).max(100);
        let den = prof.fps_den.max(1);
        let lower = prof.fps > 0 && source_fps.is_some_and(|src| src > prof.fps as f64 / den as f64 * 1.05);
        let (rate, caps) = if lower {
            ("videorate drop-only=true ! ".to_owned(), format!(",framerate={}/{den}", prof.fps))
        } else {
            (String::new(), String::new())
        };
        p.push_str(&format!(
            " t. ! queue ! videoscale ! videoconvert ! {rate}video/x-raw,width={w},height={h},pixel-aspect-ratio=1/1{caps} \
             ! x264enc bitrate={kbps} speed-preset=veryfast tune=zerolatency key-int-max=600 \
             ! video/x-h264,profile=main ! h264parse ! mpegtsmux ! filesink location={out}",
            w = prof.width.max(2) & !1,
            h = prof.height.max(2) & !1,
        ));
    }
    p.split_whitespace().map(str::to_owned).collect()
}

/// Frames per second of the video in `aus`, from its presentation times.
fn frame_rate(aus: &[AccessUnit]) -> Option<f64> {
    let mut pts: Vec<_> = aus.iter().filter(|a| a.track == TrackKind::Video).map(|a| a.pts).collect();
    pts.sort();
    let span = (*pts.last()? - *pts.first()?).as_secs_f64();
    (pts.len() > 1 && span > 0.0).then(|| (pts.len() - 1) as f64 / span)
}

impl Transcoder for GstTranscoder {
    fn transcode(&self, input: Bytes, profiles: Vec<VideoProfile>) -> TranscodeFuture {
        let slots = self.slots.clone();
        let job = self.jobs.fetch_add(1, Ordering::Relaxed);
        let dir = self.work_dir.join(format!("job-{}-{job}", std::process::id()));
        let timeout = self.timeout;
        Box::pin(async move {
            let _permit = slots.acquire_owned().await.map_err(|_| TranscodeError::ShutDown)?;
            tokio::fs::create_dir_all(&dir).await.map_err(|source| TranscodeError::Scratch { what: "dir", source })?;
            // Demuxing, re-timing and muxing are CPU work on a few MB: off the async workers.
            let src = input.clone();
            let source = tokio::task::spawn_blocking(move || demux(&src)).await.map_err(TranscodeError::Task)??;
            let fps = frame_rate(&source);
            let result = run_gst(&dir, &input, &profiles, fps, timeout).await;
            let _ = tokio::fs::remove_dir_all(&dir).await;
            let outputs = result?;
            tokio::task::spawn_blocking(move || {
                outputs
                    .iter()
                    .zip(&profiles)
                    .map(|(out, prof)| retime(&source, out, prof))
                    .collect::<Result<Vec<_>, TranscodeError>>()
            })
            .await
            .map_err(TranscodeError::Task)?
        })
    }
}

async fn run_gst(
    dir: &std::path::Path,
    input: &[u8],
    profiles: &[VideoProfile],
    source_fps: Option<f64>,
    timeout: Duration,
) -> Result<Vec<Bytes>, TranscodeError> {
    let in_path = dir.join("in.ts");
    tokio::fs::write(&in_path, input).await.map_err(|source| TranscodeError::Scratch { what: "write", source })?;
    let outs: Vec<String> =
        (0..profiles.len()).map(|i| dir.join(format!("out{i}.ts")).to_string_lossy().into_owned()).collect();
    let args = pipeline(&in_path.to_string_lossy(), &outs, profiles, source_fps);
    let child = tokio::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(TranscodeError::Launch)?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| TranscodeError::Timeout)?
        .map_err(TranscodeError::Launch)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().find(|l| l.contains("ERROR")).unwrap_or(err.trim());
        return Err(TranscodeError::InvalidVideo(line.trim().to_owned()));
    }
    let mut renditions = Vec::with_capacity(outs.len());
    for o in &outs {
        renditions.push(Bytes::from(
            tokio::fs::read(o).await.map_err(|source| TranscodeError::Scratch { what: "rendition read", source })?,
        ));
    }
    Ok(renditions)
}

/// All access units of a TS segment.
pub fn demux(ts: &[u8]) -> Result<Vec<AccessUnit>, TranscodeError> {
    let mut d = TsDemuxer::new();
    d.push(ts);
    d.flush();
    let mut aus = Vec::new();
    while let Some(r) = d.poll() {
        aus.push(r.map_err(TranscodeError::Demux)?);
    }
    Ok(aus)
}

/// Gives GStreamer's video the source's timestamps and muxes it with the source audio.
/// Frames map one to one (no frame-rate change, no B-frames in the output), so output
/// frame `i` takes the `i`-th source presentation time; if the counts differ the whole
/// rendition is shifted to start where the source starts.
fn retime(source: &[AccessUnit], out: &[u8], prof: &VideoProfile) -> Result<Rendition, TranscodeError> {
    let mut video: Vec<AccessUnit> = demux(out)?.into_iter().filter(|a| a.track == TrackKind::Video).collect();
    if video.is_empty() {
        return Err(TranscodeError::ZeroSegments);
    }
    let mut src_pts: Vec<_> = source.iter().filter(|a| a.track == TrackKind::Video).map(|a| a.pts).collect();
    src_pts.sort();
    if src_pts.len() == video.len() {
        for (au, pts) in video.iter_mut().zip(&src_pts) {
            au.pts = *pts;
            au.dts = *pts;
        }
    } else if let Some(first) = src_pts.first() {
        let base = video[0].dts;
        for au in &mut video {
            let pts_off = au.pts - base;
            let dts_off = au.dts - base;
            au.pts = *first + pts_off;
            au.dts = *first + dts_off;
        }
    }
    let frames = video.len() as i64;
    let audio: Vec<&AccessUnit> = source.iter().filter(|a| a.track == TrackKind::Audio).collect();
    let mut mux = TsMuxer::new(TsTracks { video: true, audio: !audio.is_empty() });
    let mut buf = BytesMut::with_capacity(out.len() + audio.iter().map(|a| a.data.len() + 64).sum::<usize>() + 4096);
    mux.write_tables(&mut buf);
    let (mut v, mut a) = (video.iter().peekable(), audio.into_iter().peekable());
    loop {
        let next = match (v.peek(), a.peek()) {
            (Some(x), Some(y)) => {
                if x.dts <= y.dts {
                    v.next()
                } else {
                    a.next()
                }
            }
            (Some(_), None) => v.next(),
            (None, Some(_)) => a.next(),
            (None, None) => break,
        };
        if let Some(au) = next {
            mux.write_access_unit(au, &mut buf);
        }
    }
    Ok(Rendition { data: buf.freeze(), pixels: prof.width as i64 * prof.height as i64 * frames })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_has_one_branch_per_profile() {
        let profs = transport::profiles::parse_transcoding_options("P240p30fps16x9,P360p30fps16x9").unwrap();
        let args = pipeline("/tmp/in.ts", &["/tmp/a.ts".into(), "/tmp/b.ts".into()], &profs, Some(30.0));
        let text = args.join(" ");
        assert_eq!(text.matches("x264enc").count(), 2);
        assert!(text.contains("width=426,height=240,pixel-aspect-ratio=1/1 "));
        assert!(text.contains("width=640,height=360"));
        assert!(text.contains("location=/tmp/b.ts"));
        assert!(!text.contains("videorate"), "a 30 fps source keeps its rate");
        let text = pipeline("/tmp/in.ts", &["/tmp/a.ts".into(), "/tmp/b.ts".into()], &profs, Some(59.94)).join(" ");
        assert_eq!(text.matches("videorate drop-only=true").count(), 2);
        assert!(text.contains("pixel-aspect-ratio=1/1,framerate=30/1"));
    }
}
