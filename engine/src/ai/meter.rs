//! Batch AI metrics per pipeline: requests by outcome, failed attempts, latency and the
//! units paid for (`sluice_ai_*` on `/metrics`).
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use transport::ai::Pipeline;

#[derive(Debug, Default)]
struct PerPipeline {
    ok: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    attempt_failures: AtomicU64,
    latency_us: AtomicU64,
    units: AtomicU64,
}

/// Counters per pipeline, indexed as `Pipeline::ALL`.
#[derive(Debug, Default)]
pub struct AiMeter {
    per: [PerPipeline; Pipeline::ALL.len()],
}

fn index(p: Pipeline) -> usize {
    Pipeline::ALL.iter().position(|x| *x == p).unwrap_or(0)
}

impl AiMeter {
    /// A request of `p` answered with `status` after `took`, paying for `units`.
    pub fn answered(&self, p: Pipeline, status: u16, took: Duration, units: u64) {
        let m = &self.per[index(p)];
        match status {
            200..=299 => {
                m.ok.fetch_add(1, Ordering::Relaxed);
                m.latency_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
                m.units.fetch_add(units, Ordering::Relaxed);
            }
            400..=499 => {
                m.client_errors.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                m.server_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// An attempt of `p` failed on an orchestrator.
    pub fn attempt_failed(&self, p: Pipeline) {
        self.per[index(p)].attempt_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Successful requests of `p`.
    pub fn ok(&self, p: Pipeline) -> u64 {
        self.per[index(p)].ok.load(Ordering::Relaxed)
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# HELP sluice_ai_requests_total Batch AI requests by pipeline and outcome.");
        let _ = writeln!(s, "# TYPE sluice_ai_requests_total counter");
        for (i, p) in Pipeline::ALL.iter().enumerate() {
            let m = &self.per[i];
            for (outcome, v) in [("ok", &m.ok), ("client_error", &m.client_errors), ("server_error", &m.server_errors)]
            {
                let _ = writeln!(
                    s,
                    "sluice_ai_requests_total{{pipeline=\"{p}\",outcome=\"{outcome}\"}} {}",
                    v.load(Ordering::Relaxed)
                );
            }
        }
        type Series = (&'static str, &'static str, fn(&PerPipeline) -> f64);
        let series: [Series; 3] = [
            ("sluice_ai_attempt_failures_total", "Failed attempts on orchestrators.", |m| {
                m.attempt_failures.load(Ordering::Relaxed) as f64
            }),
            ("sluice_ai_latency_seconds_total", "Summed latency of successful requests.", |m| {
                m.latency_us.load(Ordering::Relaxed) as f64 / 1e6
            }),
            ("sluice_ai_units_total", "Units paid for (pixels, audio ms, tokens, bytes of text).", |m| {
                m.units.load(Ordering::Relaxed) as f64
            }),
        ];
        for (name, help, f) in series {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
            for (i, p) in Pipeline::ALL.iter().enumerate() {
                let _ = writeln!(s, "{name}{{pipeline=\"{p}\"}} {}", f(&self.per[i]));
            }
        }
        s
    }
}
