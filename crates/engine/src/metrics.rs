//! Gateway counters, exported in the Prometheus text format on the control port.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters. Cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Metrics {
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
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
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
        s
    }
}
