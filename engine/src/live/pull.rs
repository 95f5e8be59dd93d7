//! The `/start` hook's input (spec `trickle-and-live-ai.md` §2.1): a media server
//! (MediaMTX's `runOnReady`) has the stream, and the gateway pulls it.
//!
//! `ffmpeg -i {url} -c copy -f flv` reads the stream (RTMP by default, any URL ffmpeg
//! reads) without decoding it; its FLV output goes through the same demuxer as an RTMP
//! publish and into the registry as the stream's publisher, so the stream is then an
//! ordinary live AI stream. ffmpeg runs as a child process (never on a tokio worker), is
//! killed when the stream is kicked or the gateway stops, and its exit ends the stream.
//! Only H.264 video and AAC audio pass (what FLV and the cutter carry).
use std::process::Stdio;
use std::sync::Arc;

use bytes::BytesMut;
use ingest::flv::{FlvDemuxer, FlvTagDecoder};
use ingest::server::PublishRequest;
use media::{Payload, StreamEvent};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tracing::{info, warn};

use super::LiveRequest;
use crate::registry::Registry;

/// Why a pull could not start.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// ffmpeg could not be run.
    #[error("cannot run ffmpeg: {0}")]
    Spawn(#[source] std::io::Error),
    /// The registry refused the stream (bad name, stream limit).
    #[error("{}", .0.reason)]
    Refused(ingest::server::PublishRejected),
}

/// Starts pulling `url` as stream `name` (an RTMP-style `app`/`name` pair) with the live
/// request `live`; returns the stream id once ffmpeg runs and the stream is registered.
/// The pull then runs on its own task until ffmpeg ends or the stream is kicked (the
/// gateway kicks every stream when it stops).
///
/// Errors: [`PullError`] when ffmpeg cannot start or the registry refuses the stream.
pub fn start(
    registry: Arc<Registry>,
    app: &str,
    name: &str,
    url: &str,
    live: LiveRequest,
    remote: std::net::SocketAddr,
) -> Result<String, PullError> {
    // The registry's checks (name, stream limit) come before any process is started.
    let req =
        PublishRequest { conn_id: u64::from(crate::random_u32()), remote, app: app.to_owned(), name: name.to_owned() };
    let accepted = registry.publish_live(&req, live).map_err(PullError::Refused)?;
    let id = accepted.stream_id.clone();
    let spawned = tokio::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-rw_timeout", "10000000"])
        // Only RTMP(S) and what it runs on: no files, no other protocols.
        .args(["-protocol_whitelist", "rtmp,rtmps,rtmpt,tcp,tls", "-i", url])
        .args(["-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy", "-f", "flv", "pipe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = accepted.sink.try_send(StreamEvent::End);
            return Err(PullError::Spawn(e));
        }
    };
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = accepted.sink.try_send(StreamEvent::End);
        return Err(PullError::Spawn(std::io::Error::other("ffmpeg has no pipes")));
    };
    // The path may carry a stream key: only the scheme and host are logged.
    let url = url.split('/').take(3).collect::<Vec<_>>().join("/");
    let span = tracing::info_span!(parent: None, "pull", stream_id = %id);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            info!(%url, "pulling the stream");
            // ffmpeg's complaints, as they come, into the log.
            tokio::spawn(tracing::Instrument::in_current_span(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    warn!(ffmpeg = %line, "pull");
                }
            }));
            let sink = accepted.sink;
            let mut kick = accepted.kick;
            let mut decoder = FlvTagDecoder::new();
            let mut demux = FlvDemuxer::new();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut events = Vec::with_capacity(2);
            let why = 'pull: loop {
                if buf.capacity() - buf.len() < 16 * 1024 {
                    buf.reserve(64 * 1024);
                }
                let n = tokio::select! {
                    r = stdout.read_buf(&mut buf) => r,
                    reason = &mut kick => break 'pull reason.unwrap_or("stream removed").to_owned(),
                };
                match n {
                    Ok(0) => break "the source ended".to_owned(),
                    Ok(_) => {}
                    Err(e) => break format!("reading ffmpeg: {e}"),
                }
                loop {
                    let tag = match decoder.decode(&mut buf) {
                        Ok(Some(tag)) => tag,
                        Ok(None) => break,
                        Err(e) => break 'pull format!("ffmpeg's FLV: {e}"),
                    };
                    events.clear();
                    if let Err(e) = demux.handle_tag(tag.tag_type, tag.timestamp, &Payload::from(tag.body), &mut events)
                    {
                        break 'pull format!("source media refused: {e}");
                    }
                    while let Some(notice) = demux.poll_notice() {
                        warn!(%notice, "tolerated source input");
                    }
                    for ev in events.drain(..) {
                        if sink.send(ev).await.is_err() {
                            break 'pull "stream closed by the gateway".to_owned();
                        }
                    }
                }
            };
            let _ = child.start_kill();
            let exit = child.wait().await;
            let _ = sink.send(StreamEvent::End).await;
            info!(reason = %why, ffmpeg = ?exit, "pull ended");
        },
        span,
    ));
    Ok(id)
}
