//! The gateway's discovery task (spec §7.2): a round of `GetOrchestrator` to every known
//! orchestrator now and every [`DISCOVERY_INTERVAL`], and the orchestrator webhook read
//! every [`WEBHOOK_REFRESH`]. Answers are judged by `session::discovery::judge`. The task
//! belongs to the gateway and stops when it shuts down.
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};
use transport::orch_addr::parse_orch_addrs;

use super::Transcoding;

/// How often every known orchestrator is asked for its price and capabilities.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(60);
/// A discovery round waits at least this long for answers, doubling while none came
/// (spec §7.2, `-discoveryTimeout`)…
pub const DISCOVERY_MIN_WAIT: Duration = Duration::from_millis(500);
/// …up to this hard cut-off.
pub const DISCOVERY_MAX_WAIT: Duration = Duration::from_secs(6);
/// How often the orchestrator webhook is read (go-livepeer caches it for a minute).
pub const WEBHOOK_REFRESH: Duration = Duration::from_secs(60);
/// Deadline for the webhook request.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(3);

/// One entry of the orchestrator webhook's answer.
#[derive(Debug, serde::Deserialize)]
struct WebhookEntry {
    address: String,
    #[serde(default)]
    region: Option<String>,
}

/// Starts discovery (and the webhook reader, if configured) for `t`; both stop when
/// `shutdown` turns true or its sender is dropped.
pub fn spawn(t: Arc<Transcoding>, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        if let Some(url) = t.webhook.clone() {
            tasks.spawn(webhook_loop(t.clone(), url, shutdown.clone()));
        }
        tasks.spawn(discovery_loop(t, shutdown));
        while tasks.join_next().await.is_some() {}
        debug!("discovery stopped");
    })
}

/// Waits for `period`, or returns false when the gateway is shutting down.
async fn wait_or_stop(period: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(period) => true,
        _ = shutdown.changed() => false,
    }
}

async fn discovery_loop(t: Arc<Transcoding>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = round(&t) => {}
            _ = shutdown.changed() => return,
        }
        if !wait_or_stop(DISCOVERY_INTERVAL, &mut shutdown).await {
            return;
        }
    }
}

/// One round: `GetOrchestrator` to every known orchestrator at once. Unreachable,
/// incompatible or blocklisted ones are suspended and priced ones have their price
/// checked against the cap, before any stream needs them. Host names are resolved again
/// on every connection.
async fn round(t: &Arc<Transcoding>) {
    let started = Instant::now();
    let mut calls = JoinSet::new();
    for (id, addr) in t.pool.addresses() {
        let t = t.clone();
        calls.spawn(async move {
            let r =
                t.net.get_orchestrator_within(&addr.to_string(), t.orchestrator_request(), DISCOVERY_MAX_WAIT).await;
            (id, r.map_err(|e| e.failure()), started.elapsed())
        });
    }
    // At least the minimum wait; then, while nothing has arrived, keep doubling it.
    let mut wait = DISCOVERY_MIN_WAIT;
    let mut answered = 0;
    loop {
        let until = tokio::time::Instant::from_std(started + wait);
        match tokio::time::timeout_at(until, calls.join_next()).await {
            Ok(Some(Ok((id, r, took)))) => {
                answered += 1;
                session::discovery::judge(&t.pool, &t.link, id, r, took, Instant::now());
            }
            Ok(Some(Err(_))) => {}
            Ok(None) => break,
            Err(_) if answered == 0 && wait < DISCOVERY_MAX_WAIT => wait = (wait * 2).min(DISCOVERY_MAX_WAIT),
            Err(_) => break,
        }
    }
    // Late answers still count; the round just stops waiting for them (each call ends
    // within DISCOVERY_MAX_WAIT).
    while let Some(joined) = calls.join_next().await {
        if let Ok((id, r, took)) = joined {
            session::discovery::judge(&t.pool, &t.link, id, r, took, Instant::now());
        }
    }
    debug!(answered, ms = started.elapsed().as_millis() as u64, "discovery round");
}

/// Reads the orchestrator webhook and adds what it lists to the pool (go-livepeer's
/// shape: `[{"address": "https://host:port", "score": 1}]`; an entry may also name its
/// `region`).
async fn webhook_loop(t: Arc<Transcoding>, url: String, mut shutdown: watch::Receiver<bool>) {
    loop {
        let read = t.net.download(&url, WEBHOOK_TIMEOUT).await.map_err(|e| e.to_string()).and_then(|b| {
            serde_json::from_slice::<Vec<WebhookEntry>>(&b).map_err(|e| format!("not the expected JSON: {e}"))
        });
        match read {
            Ok(list) => {
                let entries: Vec<_> = list
                    .into_iter()
                    .filter_map(|e| Some((parse_orch_addrs(&e.address).ok()?.pop()?, e.region)))
                    .collect();
                let added = t.pool.merge(&entries);
                if added > 0 {
                    info!(added, total = entries.len(), "orchestrators from the webhook");
                }
            }
            Err(e) => warn!(%url, error = %e, "orchestrator webhook failed; keeping the known orchestrators"),
        }
        if !wait_or_stop(WEBHOOK_REFRESH, &mut shutdown).await {
            return;
        }
    }
}
