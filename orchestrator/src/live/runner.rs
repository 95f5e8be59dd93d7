//! One live-video-to-video job on the local orchestrator, run the way ai-runner runs one
//! (spec `trickle-and-live-ai.md` §1.9, §3): it subscribes to the input channel `{mid}`,
//! demuxes each MPEG-TS segment as its bytes arrive, sends the video through the
//! [`EffectPipeline`], cuts the processed video (with the input's AAC carried through) into
//! MPEG-TS segments at its keyframes and publishes them on `{mid}-out` while they are
//! written. Control messages on `{mid}-control` switch the effect; status events go out
//! on `{mid}-events` every few seconds. It ends when the input channel ends or the job is
//! stopped, and closes its output and events channels.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::{AccessUnit, TrackKind};
use segmenter::ts::demux::TsDemuxer;
use segmenter::{Piece, Segmenter, SegmenterConfig};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use transport::trickle_client::{SegmentWriter, TrickleClient, TricklePublisher, TrickleSubscriber};

use super::effects::Effect;
use super::pipeline::{EffectPipeline, Output};

/// Status events go out this often (ai-runner: every 10 s; shorter here so a test sees
/// one soon).
pub const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// Output segments: cut at the first keyframe after this much (the encoder makes one a
/// second at 30 fps).
const OUTPUT_SEGMENT: Duration = Duration::from_secs(1);
/// Largest control message read.
const MAX_CONTROL: usize = 1 << 20;
/// Audio waiting for video to catch up is released past this many frames regardless.
const MAX_HELD_AUDIO: usize = 256;

/// Where a job reads and writes, and what it starts with.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The job's manifest id (`mid`).
    pub mid: String,
    /// The stream id the gateway gave.
    pub stream_id: String,
    /// The model it was started with.
    pub model_id: String,
    /// Its params.
    pub params: serde_json::Value,
    /// The input channel URL.
    pub subscribe_url: String,
    /// The output channel URL.
    pub publish_url: String,
    /// The control channel URL.
    pub control_url: String,
    /// The events channel URL.
    pub events_url: String,
}

/// What the runner tells the status loop.
#[derive(Debug, Default)]
struct Progress {
    frames_in: u64,
    frames_out: u64,
    last_params: serde_json::Value,
    last_error: Option<String>,
}

/// Runs `job` with `effect` until the input ends, `stop` turns true, or `crash` names a
/// failure (the runner then reports it in a last `ERROR` status event).
pub async fn run(
    job: JobSpec,
    effect: Effect,
    client: TrickleClient,
    stop: watch::Receiver<bool>,
    crash: watch::Receiver<Option<String>>,
) {
    let span = tracing::info_span!("live_job", mid = %job.mid, stream_id = %job.stream_id);
    tracing::Instrument::instrument(run_job(job, effect, client, stop, crash), span).await
}

async fn run_job(
    job: JobSpec,
    effect: Effect,
    client: TrickleClient,
    mut stop: watch::Receiver<bool>,
    mut crash: watch::Receiver<Option<String>>,
) {
    let progress = Arc::new(std::sync::Mutex::new(Progress { last_params: job.params.clone(), ..Default::default() }));
    if job.model_id == super::effects::ECHO {
        return echo_job(job, client, stop, progress).await;
    }
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let pipeline = match EffectPipeline::start(effect, out_tx) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            tracing::warn!(error = %e, "live pipeline did not start");
            progress.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(e.to_string());
            status_once(&client, &job, &progress, "ERROR").await;
            return;
        }
    };
    let (done_tx, done_rx) = watch::channel(false);
    let control =
        tokio::spawn(control_loop(client.clone(), job.control_url.clone(), pipeline.clone(), progress.clone()));
    let mut events = tokio::spawn(events_loop(client.clone(), job.clone(), progress.clone(), done_rx));
    let (audio_tx, audio_rx) = mpsc::unbounded_channel();
    // `{"audio": "drop"}` sends video only, as a runner whose audio a gateway cannot use
    // (ai-runner's Opus) looks to it.
    let audio_tx = (job.params.get("audio").and_then(|a| a.as_str()) != Some("drop")).then_some(audio_tx);
    let output = tokio::spawn(output_loop(client.clone(), job.publish_url.clone(), out_rx, audio_rx, progress.clone()));
    let input = input_loop(client.clone(), &job.subscribe_url, &pipeline, audio_tx, progress.clone());
    tokio::select! {
        _ = input => tracing::info!("input channel ended"),
        _ = stop.wait_for(|s| *s) => tracing::info!("job stopped"),
        Ok(reason) = crash.wait_for(|c| c.is_some()) => {
            let reason = reason.clone().unwrap_or_default();
            tracing::warn!(%reason, "runner failed");
            progress.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(reason);
        }
    }
    pipeline.finish();
    let failed = progress.lock().unwrap_or_else(|p| p.into_inner()).last_error.is_some();
    if failed {
        // A failure is told before the output closes, so the gateway hears why first.
        let _ = done_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut events).await;
    }
    // What is in flight comes out, then the output closes.
    if tokio::time::timeout(Duration::from_secs(3), output).await.is_err() {
        tracing::warn!("output did not drain within 3 s");
    }
    control.abort();
    let _ = done_tx.send(true);
    if !failed {
        let _ = tokio::time::timeout(Duration::from_secs(2), events).await;
    }
    if let Ok(p) = Arc::try_unwrap(pipeline) {
        let _ = tokio::task::spawn_blocking(move || p.stop()).await;
    }
}

/// The `echo` model: each input segment goes back out on the output channel as its bytes
/// arrive, undecoded (what is measured is the transport), with status events.
async fn echo_job(
    job: JobSpec,
    client: TrickleClient,
    mut stop: watch::Receiver<bool>,
    progress: Arc<std::sync::Mutex<Progress>>,
) {
    let (done_tx, done_rx) = watch::channel(false);
    let events = tokio::spawn(events_loop(client.clone(), job.clone(), progress.clone(), done_rx));
    let copy = async {
        let Ok(mut publisher) = TricklePublisher::start(client.clone(), &job.publish_url).await else { return };
        let mut sub = TrickleSubscriber::new(client.clone(), &job.subscribe_url, -2);
        loop {
            let mut seg = match sub.next_segment().await {
                Ok(Some(seg)) => seg,
                Ok(None) => {
                    tracing::debug!("echo: input ended");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "echo: input failed");
                    break;
                }
            };
            let mut w = publisher.segment();
            loop {
                match seg.chunk().await {
                    Ok(Some(chunk)) => {
                        if let Err(e) = w.write(chunk).await {
                            tracing::warn!(error = %e, "echo: write failed");
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "echo: read failed");
                        break;
                    }
                }
            }
            let _ = w.finish().await;
            let mut p = progress.lock().unwrap_or_else(|p| p.into_inner());
            p.frames_in += 1;
            p.frames_out += 1;
        }
        let _ = publisher.close().await;
    };
    tokio::select! {
        _ = copy => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    let _ = done_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), events).await;
}

/// Reads the input channel: video to the pipeline, audio (unless it is dropped) to the
/// output as it is.
async fn input_loop(
    client: TrickleClient,
    url: &str,
    pipeline: &EffectPipeline,
    audio: Option<mpsc::UnboundedSender<AccessUnit>>,
    progress: Arc<std::sync::Mutex<Progress>>,
) {
    let mut sub = TrickleSubscriber::new(client, url, -2);
    let mut demux = TsDemuxer::new();
    let mut first = true;
    let route = |demux: &mut TsDemuxer| {
        while let Some(r) = demux.poll() {
            let Ok(au) = r else { continue };
            match au.track {
                TrackKind::Video => {
                    progress.lock().unwrap_or_else(|p| p.into_inner()).frames_in += 1;
                    if let Err(e) = pipeline.push(&au) {
                        tracing::warn!(error = %e, "frame refused by the pipeline");
                    }
                }
                TrackKind::Audio => {
                    if let Some(audio) = &audio {
                        let _ = audio.send(au);
                    }
                }
            }
        }
    };
    loop {
        let mut seg = match sub.next_segment().await {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(e) => {
                tracing::info!(error = %e, "input subscription ended");
                break;
            }
        };
        if first {
            tracing::info!(seq = seg.seq, "runner_receive_first_ingest_segment");
            first = false;
        }
        while let Ok(Some(chunk)) = seg.chunk().await {
            demux.push(&chunk);
            route(&mut demux);
        }
    }
    // The input ended: its last frame is still in the demuxer, waiting for a next PES.
    demux.flush();
    route(&mut demux);
}

/// Cuts the processed video (and the input's audio, interleaved by time) into MPEG-TS
/// segments and publishes each while it is written.
async fn output_loop(
    client: TrickleClient,
    url: String,
    mut frames: mpsc::UnboundedReceiver<Output>,
    mut audio: mpsc::UnboundedReceiver<AccessUnit>,
    progress: Arc<std::sync::Mutex<Progress>>,
) {
    let mut publisher = match TricklePublisher::start(client, &url).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "output channel refused");
            return;
        }
    };
    let secs = |s: f64| media::MediaTime::from_secs_f64(s, media::Timescale::MPEG);
    let target = OUTPUT_SEGMENT.as_secs_f64();
    let mut cutter = Segmenter::new(SegmenterConfig::with_limits(secs(target), secs(4.0 * target)), 0).streaming();
    let mut configured = false;
    let mut held: Vec<AccessUnit> = Vec::new();
    let mut audio_q: VecDeque<AccessUnit> = VecDeque::new();
    let mut writer: Option<SegmentWriter> = None;
    let mut first_out = true;
    let mut audio_open = true;
    loop {
        let next = tokio::select! {
            f = frames.recv() => f,
            a = audio.recv(), if audio_open => {
                match a {
                    Some(a) => {
                        audio_q.push_back(a);
                        if audio_q.len() > MAX_HELD_AUDIO {
                            let a = audio_q.pop_front().expect("not empty");
                            feed(&mut cutter, &mut configured, &mut held, a);
                        }
                    }
                    None => audio_open = false,
                }
                continue;
            }
        };
        let video = match next {
            Some(Output::Frame(au)) => au,
            Some(Output::Error(e)) => {
                tracing::warn!(error = %e, "live pipeline failed");
                progress.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(e);
                break;
            }
            Some(Output::End) | None => break,
        };
        progress.lock().unwrap_or_else(|p| p.into_inner()).frames_out += 1;
        while audio_q.front().is_some_and(|a| a.dts <= video.dts) {
            let a = audio_q.pop_front().expect("checked");
            feed(&mut cutter, &mut configured, &mut held, a);
        }
        feed(&mut cutter, &mut configured, &mut held, video);
        if publish(&mut cutter, &mut publisher, &mut writer, &mut first_out).await.is_err() {
            tracing::info!("output channel gone");
            return;
        }
    }
    for a in audio_q {
        feed(&mut cutter, &mut configured, &mut held, a);
    }
    cutter.flush();
    let _ = publish(&mut cutter, &mut publisher, &mut writer, &mut first_out).await;
    if let Some(w) = writer.take() {
        let _ = w.finish().await;
    }
    let _ = publisher.close().await;
}

/// Feeds one access unit to the output cutter, holding units until the video's SPS/PPS
/// (and, if audio came, its ADTS configuration) are known.
fn feed(cutter: &mut Segmenter, configured: &mut bool, held: &mut Vec<AccessUnit>, au: AccessUnit) {
    if *configured {
        cutter.handle_access_unit(&au);
        return;
    }
    held.push(au);
    let has_audio = held.iter().any(|a| a.track == TrackKind::Audio);
    if let Some(t) = segmenter::ts::track_info(held, true, has_audio) {
        cutter.handle_tracks(t);
        *configured = true;
        held.sort_by_key(|a| a.dts);
        for a in held.drain(..) {
            cutter.handle_access_unit(&a);
        }
    } else if held.len() > 1000 {
        held.remove(0);
    }
}

/// Hands the cutter's pieces to the output channel: a segment's bytes into its POST as
/// they come, its end closing the POST.
async fn publish(
    cutter: &mut Segmenter,
    publisher: &mut TricklePublisher,
    writer: &mut Option<SegmentWriter>,
    first_out: &mut bool,
) -> Result<(), ()> {
    while let Some(piece) = cutter.poll_piece() {
        match piece {
            Piece::Bytes { data, .. } => {
                let w = writer.get_or_insert_with(|| publisher.segment());
                if *first_out {
                    tracing::info!(seq = w.seq(), "runner_send_first_processed_segment");
                    *first_out = false;
                }
                w.write(data).await.map_err(|_| ())?;
            }
            Piece::End(_) => {
                if let Some(w) = writer.take() {
                    w.finish().await.map_err(|_| ())?;
                }
            }
        }
    }
    Ok(())
}

/// Reads control messages (one JSON object per segment) and applies them to the effect.
async fn control_loop(
    client: TrickleClient,
    url: String,
    pipeline: Arc<EffectPipeline>,
    progress: Arc<std::sync::Mutex<Progress>>,
) {
    let mut sub = TrickleSubscriber::new(client, &url, -2);
    while let Ok(Some(mut seg)) = sub.next_segment().await {
        let mut body = Vec::new();
        while let Ok(Some(c)) = seg.chunk().await {
            if body.len() + c.len() > MAX_CONTROL {
                tracing::warn!("control message over {MAX_CONTROL} bytes; ignored");
                body.clear();
                break;
            }
            body.extend_from_slice(&c);
        }
        let Ok(params) = serde_json::from_slice::<serde_json::Value>(&body) else {
            if !body.is_empty() {
                tracing::warn!("control message is not JSON; ignored");
            }
            continue;
        };
        if params.get("keep").is_some() {
            continue; // the gateway's keepalive
        }
        let mut e = pipeline.effect.lock().unwrap_or_else(|p| p.into_inner());
        *e = e.update(&params);
        tracing::info!(effect = e.name(), "params updated");
        progress.lock().unwrap_or_else(|p| p.into_inner()).last_params = params;
    }
}

/// Publishes a status event every [`STATUS_INTERVAL`] until `done`.
async fn events_loop(
    client: TrickleClient,
    job: JobSpec,
    progress: Arc<std::sync::Mutex<Progress>>,
    mut done: watch::Receiver<bool>,
) {
    let Ok(mut publisher) = TricklePublisher::start(client, &job.events_url).await else { return };
    let started = Instant::now();
    let mut last = (0u64, 0u64, Instant::now());
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.wait_for(|d| *d) => break,
        }
        let event = {
            let p = progress.lock().unwrap_or_else(|p| p.into_inner());
            let secs = last.2.elapsed().as_secs_f64().max(0.001);
            let fps_in = (p.frames_in - last.0) as f64 / secs;
            let fps_out = (p.frames_out - last.1) as f64 / secs;
            last = (p.frames_in, p.frames_out, Instant::now());
            status_event(&job, &p, if p.last_error.is_some() { "ERROR" } else { "ONLINE" }, fps_in, fps_out, started)
        };
        if send_event(&mut publisher, event).await.is_err() {
            return;
        }
    }
    // A last word: how the runner ended.
    let event = {
        let p = progress.lock().unwrap_or_else(|p| p.into_inner());
        status_event(&job, &p, if p.last_error.is_some() { "ERROR" } else { "OFFLINE" }, 0.0, 0.0, started)
    };
    let _ = send_event(&mut publisher, event).await;
    let _ = publisher.close().await;
}

fn status_event(job: &JobSpec, p: &Progress, state: &str, fps_in: f64, fps_out: f64, started: Instant) -> Bytes {
    let event = json!({
        "queue_event_type": "ai_stream_events",
        "event": {
            "type": "status",
            "pipeline": job.model_id,
            "stream_id": job.stream_id,
            "request_id": job.mid,
            "state": state,
            "input_status": { "fps": fps_in, "frames": p.frames_in },
            "inference_status": {
                "fps": fps_out,
                "frames": p.frames_out,
                "last_params": p.last_params,
                "last_error": p.last_error,
                "restart_count": 0,
            },
            "uptime_secs": started.elapsed().as_secs_f64(),
            "timestamp": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        }
    });
    Bytes::from(event.to_string())
}

async fn send_event(publisher: &mut TricklePublisher, event: Bytes) -> Result<(), ()> {
    let mut w = publisher.segment();
    w.write(event).await.map_err(|_| ())?;
    w.finish().await.map_err(|_| ())
}

/// One status event, for a job that could not start.
async fn status_once(client: &TrickleClient, job: &JobSpec, progress: &std::sync::Mutex<Progress>, state: &str) {
    let Ok(mut publisher) = TricklePublisher::start(client.clone(), &job.events_url).await else { return };
    let event = status_event(job, &progress.lock().unwrap_or_else(|p| p.into_inner()), state, 0.0, 0.0, Instant::now());
    let _ = send_event(&mut publisher, event).await;
    let _ = publisher.close().await;
}
