//! The helper tasks of a live job's attachment: the input publisher, the runner events
//! reader and the control publisher. Each reports what happens through `note`, tagged by
//! the driver with the attachment it belongs to.
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use segmenter::Piece;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::warn;
use transport::trickle_client::{SegmentWriter, TrickleClient, TricklePublisher, TrickleSubscriber};

use super::driver::{KEEPALIVE, MAX_EVENT, Note};
use crate::metrics::{LiveTiming, Metrics};

/// How long the orchestrator may take to answer a finished input segment's POST.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes the input: each segment into its own POST as its pieces come. Every segment
/// begun is reported taken when its POST ends, however it ends.
#[allow(clippy::disallowed_methods)] // IO shell: hand-off times
pub(super) async fn input_task(
    client: TrickleClient,
    url: String,
    mut pieces: mpsc::UnboundedReceiver<(Piece, Option<Instant>)>,
    note: impl Fn(Note) + Send + Clone + 'static,
    metrics: Arc<Metrics>,
) {
    let mut publisher = match TricklePublisher::start(client, &url).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "input channel refused");
            note(Note::ChannelGone("input"));
            return;
        }
    };
    // Finishing POSTs; aborted with this task.
    let mut finishing = JoinSet::new();
    let mut writer: Option<(u64, SegmentWriter)> = None;
    while let Some((p, cut_at)) = pieces.recv().await {
        while finishing.try_join_next().is_some() {}
        let ended = match p {
            Piece::Bytes { seq, data } => {
                let done = match writer.take() {
                    Some((s, w)) if s != seq => Some(w),
                    other => {
                        writer = other;
                        None
                    }
                };
                if let Some(w) = done {
                    let n = note.clone();
                    finishing.spawn(async move {
                        let _ = tokio::time::timeout(FINISH_TIMEOUT, w.finish()).await;
                        n(Note::InputTaken);
                    });
                }
                let (_, w) = writer.get_or_insert_with(|| (seq, publisher.segment()));
                if w.write(data).await.is_err() {
                    // The POST ended early: the orchestrator is gone or refused the
                    // segment; either way its job cannot go on.
                    warn!("input segment cut off by the orchestrator");
                    note(Note::InputTaken);
                    note(Note::ChannelGone("input"));
                    return;
                }
                if let Some(t) = cut_at {
                    metrics.observe_live(LiveTiming::InputHandoff, t.elapsed());
                }
                None
            }
            Piece::End(_) => writer.take().map(|(_, w)| w),
        };
        if let Some(w) = ended {
            let n = note.clone();
            finishing.spawn(async move {
                let _ = tokio::time::timeout(FINISH_TIMEOUT, w.finish()).await;
                n(Note::InputTaken);
            });
        }
    }
}

/// Reads runner events (one JSON per segment).
pub(super) async fn events_task(client: TrickleClient, url: String, note: impl Fn(Note) + Send + 'static) {
    let mut sub = TrickleSubscriber::new(client, &url, -2);
    while let Ok(Some(mut seg)) = sub.next_segment().await {
        let mut body = Vec::new();
        while let Ok(Some(c)) = seg.chunk().await {
            if body.len() + c.len() <= MAX_EVENT {
                body.extend_from_slice(&c);
            }
        }
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) => note(Note::RunnerEvent(v)),
            Err(e) if !body.is_empty() => tracing::debug!(error = %e, "runner event is not JSON"),
            Err(_) => {}
        }
    }
    note(Note::ChannelGone("events"));
}

/// Publishes control messages: the latest `/update` (newer ones replace one not sent yet),
/// and a keepalive every 10 s.
pub(super) async fn control_task(
    client: TrickleClient,
    url: String,
    mut latest: watch::Receiver<Option<Bytes>>,
    note: impl Fn(Note) + Send + 'static,
) {
    let Ok(mut publisher) = TricklePublisher::start(client, &url).await else {
        warn!("control channel refused");
        note(Note::ChannelGone("control"));
        return;
    };
    // What was cached before this orchestrator came goes first.
    latest.mark_changed();
    let mut tick = tokio::time::interval(KEEPALIVE);
    tick.tick().await;
    loop {
        let msg = tokio::select! {
            changed = latest.changed() => match changed {
                Ok(()) => match latest.borrow_and_update().clone() {
                    Some(m) => m,
                    None => continue,
                },
                Err(_) => return,
            },
            _ = tick.tick() => Bytes::from_static(br#"{"keep":"alive"}"#),
        };
        let mut w = publisher.segment();
        if w.write(msg).await.is_err() || w.finish().await.is_err() {
            warn!("control message refused");
        }
    }
}
