//! Gateway counters, exported in the Prometheus text format on the control port.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transport::refusal::FailureReason;

/// Upper bounds (seconds) of the transcode latency histogram buckets.
pub const LATENCY_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0];

/// Upper bounds (seconds) of the dispatch histogram: segment closed to request handed to
/// the HTTP client (credentials, tickets, queueing behind the stream's previous segment).
pub const DISPATCH_BUCKETS: &[f64] = &[
    25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 750e-6, 1e-3, 1.5e-3, 2.5e-3, 3.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
    250e-3, 1.0,
];

/// Upper bounds (seconds) of the live AI per-frame round trip: an input access unit
/// received to the same frame, processed, back at the gateway.
pub const ROUND_TRIP_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0, 5.0];

/// A Prometheus histogram (cumulative buckets) plus a failure count.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
    failures: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, buckets: vec![0; bounds.len()], count: 0, sum: 0.0, failures: 0 }
    }

    fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        for (n, le) in self.buckets.iter_mut().zip(self.bounds) {
            if secs <= *le {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    /// `name_bucket`, `_sum` and `_count` lines, with `labels` (`k="v"` pairs or empty).
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (le, n) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// What a live AI histogram measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveTiming {
    /// An input access unit received to the same frame back from the orchestrator.
    RoundTrip = 0,
    /// An input access unit cut to its bytes handed to the orchestrator's POST.
    InputHandoff = 1,
    /// Output bytes received to written into the gateway's channel and HLS cutter.
    OutputHandoff = 2,
    /// Job start to its first output segment (go-livepeer's "first segment delay").
    FirstSegment = 3,
}

impl LiveTiming {
    const ALL: [LiveTiming; 4] =
        [LiveTiming::RoundTrip, LiveTiming::InputHandoff, LiveTiming::OutputHandoff, LiveTiming::FirstSegment];

    fn describe(self) -> (&'static str, &'static str) {
        match self {
            LiveTiming::RoundTrip => (
                "sluice_live_frame_round_trip_seconds",
                "Live AI: input access unit received to the processed frame back at the gateway.",
            ),
            LiveTiming::InputHandoff => (
                "sluice_live_input_handoff_seconds",
                "Live AI: input access unit cut to its bytes handed to the orchestrator's POST.",
            ),
            LiveTiming::OutputHandoff => (
                "sluice_live_output_handoff_seconds",
                "Live AI: output bytes received to available to trickle readers and the HLS cutter.",
            ),
            LiveTiming::FirstSegment => {
                ("sluice_live_first_segment_delay_seconds", "Live AI: job start to its first output segment.")
            }
        }
    }
}

fn live_histograms() -> [Histogram; 4] {
    [
        Histogram::new(ROUND_TRIP_BUCKETS),
        Histogram::new(DISPATCH_BUCKETS),
        Histogram::new(DISPATCH_BUCKETS),
        Histogram::new(LATENCY_BUCKETS),
    ]
}

/// Process-wide counters. Cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Batch AI per pipeline.
    pub ai: Arc<crate::ai::meter::AiMeter>,
    /// WHIP publishers and WHEP viewers.
    pub webrtc: Arc<crate::webrtc::WebrtcGauges>,
    /// API key usage, when keys are on.
    pub keys: std::sync::OnceLock<Arc<crate::ai::keys::KeyRing>>,
    /// Streams currently registered (live or in their grace period).
    pub streams_active: AtomicU64,
    /// Publishes accepted.
    pub publishes_total: AtomicU64,
    /// Publishes refused (bad name, limit).
    pub publishes_rejected_total: AtomicU64,
    /// Segments produced over all streams.
    pub segments_total: AtomicU64,
    /// Segment bytes produced.
    pub segment_bytes_total: AtomicU64,
    /// Access unit payload bytes received.
    pub ingest_bytes_total: AtomicU64,
    /// Timeline discontinuities (publisher restarts, timestamp jumps).
    pub discontinuities_total: AtomicU64,
    /// HTTP playback requests that found nothing.
    pub http_not_found_total: AtomicU64,
    /// Segments whose renditions were all stored.
    pub transcoded_total: AtomicU64,
    /// Segments whose renditions are gaps.
    pub transcode_failures_total: AtomicU64,
    /// Segments never sent to an orchestrator (cut between keyframes, or backlog).
    pub segments_not_sent_total: AtomicU64,
    /// Failed attempts by reason, indexed as `FailureReason::ALL`.
    attempt_failures_by_reason: [AtomicU64; FailureReason::ALL.len()],
    /// Segment bytes sent to orchestrators (attempts included).
    pub transcode_bytes_out_total: AtomicU64,
    /// Rendition bytes downloaded from orchestrators.
    pub transcode_bytes_in_total: AtomicU64,
    /// Orchestrator sessions opened.
    pub orchestrator_sessions_total: AtomicU64,
    /// Payment tickets sent.
    pub tickets_sent_total: AtomicU64,
    /// Expected value of the tickets sent, wei (an f64's bits).
    ev_paid_wei_bits: AtomicU64,
    /// Transcode latency per orchestrator.
    latency: Mutex<BTreeMap<String, Histogram>>,
    dispatch: Mutex<Option<Histogram>>,
    /// Live AI streams started.
    pub live_streams_total: AtomicU64,
    /// Live AI orchestrators given up (swaps).
    pub live_swaps_total: AtomicU64,
    /// Live AI job starts refused.
    pub live_start_failures_total: AtomicU64,
    /// Live AI streams the auth webhook refused.
    pub live_auth_refused_total: AtomicU64,
    /// Live AI payments sent, and refused.
    pub live_payments_total: AtomicU64,
    /// Live AI payments refused or failed.
    pub live_payment_failures_total: AtomicU64,
    /// Live AI histograms: round trip, input and output hand-off, first segment delay.
    live: Mutex<Option<[Histogram; 4]>>,
    /// The orchestrator pool, for per-orchestrator error, suspension and session series.
    pool: std::sync::OnceLock<std::sync::Arc<session::pool::OrchestratorPool>>,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds `wei` to the expected value paid.
    pub fn add_ev_paid(&self, wei: f64) {
        let _ = self
            .ev_paid_wei_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some((f64::from_bits(b) + wei).to_bits()));
    }

    /// Expected value paid so far, in wei.
    pub fn ev_paid_wei(&self) -> f64 {
        f64::from_bits(self.ev_paid_wei_bits.load(Ordering::Relaxed))
    }

    /// Records one transcode attempt on `orchestrator` (submission to renditions in hand).
    pub fn observe_transcode(&self, orchestrator: &str, took: Duration, ok: bool) {
        let mut m = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = m.entry(orchestrator.to_owned()).or_insert_with(|| Histogram::new(LATENCY_BUCKETS));
        if ok {
            h.observe(took);
        } else {
            h.failures += 1;
        }
    }

    /// Counts a failed attempt under its reason.
    pub fn count_failure(&self, reason: FailureReason) {
        if let Some(i) = FailureReason::ALL.iter().position(|r| *r == reason) {
            Metrics::add(&self.attempt_failures_by_reason[i], 1);
        }
    }

    /// Exports the pool's per-orchestrator figures too.
    pub fn set_pool(&self, pool: std::sync::Arc<session::pool::OrchestratorPool>) {
        let _ = self.pool.set(pool);
    }

    /// Records a live AI measurement.
    pub fn observe_live(&self, what: LiveTiming, took: Duration) {
        let mut l = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let h = l.get_or_insert_with(live_histograms);
        h[what as usize].observe(took);
    }

    /// The upper bound of the live histogram bucket holding quantile `q` (0..1), the count
    /// and the mean; `None` before any sample.
    pub fn live_quantile(&self, what: LiveTiming, q: f64) -> Option<(f64, u64, f64)> {
        let l = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let h = l.as_ref().map(|h| &h[what as usize]).filter(|h| h.count > 0)?;
        let want = (q * h.count as f64).ceil() as u64;
        let bound = h.bounds.iter().zip(&h.buckets).find(|(_, n)| **n >= want).map_or(f64::INFINITY, |(b, _)| *b);
        Some((bound, h.count, h.sum / h.count as f64))
    }

    /// Records how long a closed segment took to be handed to the HTTP client.
    pub fn observe_dispatch(&self, took: Duration) {
        let mut d = self.dispatch.lock().unwrap_or_else(|e| e.into_inner());
        d.get_or_insert_with(|| Histogram::new(DISPATCH_BUCKETS)).observe(took);
    }

    /// The upper bound of the dispatch bucket holding quantile `q` (0..1), the count and
    /// the mean; `None` before any dispatch.
    pub fn dispatch_quantile(&self, q: f64) -> Option<(f64, u64, f64)> {
        let d = self.dispatch.lock().unwrap_or_else(|e| e.into_inner());
        let d = d.as_ref().filter(|d| d.count > 0)?;
        let want = (q * d.count as f64).ceil() as u64;
        let bound = d.bounds.iter().zip(&d.buckets).find(|(_, n)| **n >= want).map_or(f64::INFINITY, |(b, _)| *b);
        Some((bound, d.count, d.sum / d.count as f64))
    }

    /// The Prometheus exposition.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(1024);
        let mut one = |name: &str, kind: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", v.load(Ordering::Relaxed));
        };
        one("sluice_streams_active", "gauge", "Streams registered (live or ending).", &self.streams_active);
        one("sluice_publishes_total", "counter", "Publishes accepted.", &self.publishes_total);
        one("sluice_publishes_rejected_total", "counter", "Publishes refused.", &self.publishes_rejected_total);
        one("sluice_segments_total", "counter", "Source segments produced.", &self.segments_total);
        one("sluice_segment_bytes_total", "counter", "Bytes of source segments produced.", &self.segment_bytes_total);
        one(
            "sluice_ingest_bytes_total",
            "counter",
            "Access unit bytes received from publishers.",
            &self.ingest_bytes_total,
        );
        one("sluice_discontinuities_total", "counter", "Timeline discontinuities.", &self.discontinuities_total);
        one("sluice_http_not_found_total", "counter", "Playback requests answered 404.", &self.http_not_found_total);
        one(
            "sluice_transcoded_segments_total",
            "counter",
            "Segments transcoded into every rendition.",
            &self.transcoded_total,
        );
        one(
            "sluice_transcode_failures_total",
            "counter",
            "Segments whose renditions are gaps (all attempts failed).",
            &self.transcode_failures_total,
        );
        one(
            "sluice_segments_not_sent_total",
            "counter",
            "Segments never sent to an orchestrator (cut between keyframes, or skipped as backlog).",
            &self.segments_not_sent_total,
        );
        one(
            "sluice_transcode_bytes_out_total",
            "counter",
            "Segment bytes sent to orchestrators.",
            &self.transcode_bytes_out_total,
        );
        one(
            "sluice_transcode_bytes_in_total",
            "counter",
            "Rendition bytes received from orchestrators.",
            &self.transcode_bytes_in_total,
        );
        one(
            "sluice_orchestrator_sessions_total",
            "counter",
            "Orchestrator sessions opened.",
            &self.orchestrator_sessions_total,
        );
        one("sluice_tickets_sent_total", "counter", "Payment tickets sent.", &self.tickets_sent_total);
        series(
            &mut s,
            "sluice_transcode_attempt_failures_by_reason_total",
            "counter",
            "Failed transcode attempts, by reason.",
            FailureReason::ALL
                .iter()
                .zip(&self.attempt_failures_by_reason)
                .map(|(r, n)| (format!("reason=\"{r}\""), n.load(Ordering::Relaxed))),
        );
        let _ = writeln!(
            s,
            "# HELP sluice_ev_paid_wei_total Expected value of the tickets sent, in wei.\n# TYPE sluice_ev_paid_wei_total counter\nsluice_ev_paid_wei_total {}",
            self.ev_paid_wei()
        );
        let _ = writeln!(
            s,
            "# HELP sluice_segment_dispatch_seconds Segment closed to its request handed to the HTTP client.\n# TYPE sluice_segment_dispatch_seconds histogram"
        );
        let dispatch = self.dispatch.lock().unwrap_or_else(|e| e.into_inner()).clone();
        dispatch.unwrap_or_else(|| Histogram::new(DISPATCH_BUCKETS)).write(
            &mut s,
            "sluice_segment_dispatch_seconds",
            "",
        );
        for (name, n, help) in [
            ("sluice_live_streams_total", &self.live_streams_total, "Live AI streams started."),
            ("sluice_live_swaps_total", &self.live_swaps_total, "Live AI orchestrators given up and replaced."),
            ("sluice_live_start_failures_total", &self.live_start_failures_total, "Live AI job starts refused."),
            (
                "sluice_live_auth_refused_total",
                &self.live_auth_refused_total,
                "Live AI streams the auth webhook refused.",
            ),
            ("sluice_live_payments_total", &self.live_payments_total, "Live AI payments sent."),
            (
                "sluice_live_payment_failures_total",
                &self.live_payment_failures_total,
                "Live AI payments refused or failed.",
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", n.load(Ordering::Relaxed));
        }
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_else(live_histograms);
        for (t, h) in LiveTiming::ALL.iter().zip(live.iter()) {
            let (name, help) = t.describe();
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
            h.write(&mut s, name, "");
        }
        let lat = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            s,
            "# HELP sluice_transcode_seconds Segment submission to renditions downloaded, per orchestrator.\n# TYPE sluice_transcode_seconds histogram"
        );
        for (orch, h) in lat.iter() {
            h.write(&mut s, "sluice_transcode_seconds", &format!("orchestrator=\"{orch}\""));
        }
        let label = |orch: &str| format!("orchestrator=\"{orch}\"");
        series(
            &mut s,
            "sluice_transcode_attempt_failures_total",
            "counter",
            "Failed transcode attempts, per orchestrator.",
            lat.iter().map(|(orch, h)| (label(orch), h.failures)),
        );
        if let Some(pool) = self.pool.get() {
            let ranking = pool.ranking(std::time::Instant::now());
            series(
                &mut s,
                "sluice_orchestrator_errors_total",
                "counter",
                "Failed attempts per orchestrator and reason.",
                ranking.iter().flat_map(|o| {
                    o.failures.iter().map(|(reason, n)| (format!("{},reason=\"{reason}\"", label(&o.uri)), *n))
                }),
            );
            let per_orch: [PerOrchestrator; 4] = [
                ("sluice_orchestrator_successes_total", "counter", "Successful attempts per orchestrator.", |o| {
                    o.successes
                }),
                ("sluice_orchestrator_suspensions_total", "counter", "Times each orchestrator was suspended.", |o| {
                    o.suspensions
                }),
                ("sluice_orchestrator_usable", "gauge", "1 if the orchestrator is offered to the selector now.", |o| {
                    o.excluded.is_none() as u64
                }),
                ("sluice_orchestrator_sessions", "gauge", "Streams with a session on the orchestrator now.", |o| {
                    o.sessions
                }),
            ];
            for (name, kind, help, value) in per_orch {
                series(&mut s, name, kind, help, ranking.iter().map(|o| (label(&o.uri), value(o))));
            }
        }
        s.push_str(&self.ai.render());
        s.push_str(&self.webrtc.render());
        if let Some(k) = self.keys.get() {
            s.push_str(&k.render());
        }
        s
    }
}

/// A per-orchestrator series: name, type, help and how to read its value.
type PerOrchestrator = (&'static str, &'static str, &'static str, fn(&session::pool::OrchestratorState) -> u64);

/// One labelled series: its HELP and TYPE lines, then `name{labels} value` per row.
fn series(out: &mut String, name: &str, kind: &str, help: &str, rows: impl Iterator<Item = (String, u64)>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_and_quantiles() {
        let m = Metrics::default();
        assert!(m.dispatch_quantile(0.99).is_none());
        m.observe_transcode("https://o:8935", Duration::from_millis(300), true);
        m.observe_transcode("https://o:8935", Duration::from_millis(3), true);
        m.observe_transcode("https://o:8935", Duration::ZERO, false);
        for us in [10, 40, 40, 900] {
            m.observe_dispatch(Duration::from_micros(us));
        }
        let text = m.render();
        assert!(
            text.contains("sluice_transcode_seconds_bucket{orchestrator=\"https://o:8935\",le=\"0.05\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("sluice_transcode_seconds_bucket{orchestrator=\"https://o:8935\",le=\"0.5\"} 2\n"));
        assert!(text.contains("sluice_transcode_seconds_bucket{orchestrator=\"https://o:8935\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("sluice_transcode_seconds_count{orchestrator=\"https://o:8935\"} 2\n"));
        assert!(text.contains("sluice_transcode_attempt_failures_total{orchestrator=\"https://o:8935\"} 1\n"));
        assert!(text.contains("sluice_segment_dispatch_seconds_bucket{le=\"0.00005\"} 3\n"), "{text}");
        assert!(text.contains("sluice_segment_dispatch_seconds_count 4\n"));
        let (p50, n, _) = m.dispatch_quantile(0.5).unwrap();
        assert_eq!((p50, n), (50e-6, 4));
        assert_eq!(m.dispatch_quantile(0.99).unwrap().0, 1e-3);
    }
}
