//! Orchestrator selection per segment with 1,000 known orchestrators: the pool builds the
//! usable candidates (skipping suspended and over-price ones) and the default selector
//! ranks them.
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use session::pool::{Candidate, DefaultSelector, OrchId, OrchestratorPool, Selector};
use transport::refusal::FailureReason;

fn pool(n: usize, known: bool) -> OrchestratorPool {
    let addr = |i: usize| {
        transport::orch_addr::parse_orch_addrs(&format!("https://10.0.{}.{}:8935", i / 256, i % 256)).unwrap().remove(0)
    };
    let p =
        OrchestratorPool::new((0..n).map(|i| (addr(i), None)).collect(), Box::new(DefaultSelector::default()), vec![]);
    let now = Instant::now();
    for i in 0..n {
        let uri = OrchId(i);
        if known && i % 3 != 0 {
            // Two thirds have history, a few are slow or failing, one in ten suspended.
            let ms = 200 + (i * 37 % 3000) as u64;
            p.success(uri, Duration::from_millis(ms), Duration::from_millis(3), Duration::from_secs(2));
        }
        if i % 10 == 0 {
            p.failure(uri, FailureReason::Timeout, true, now);
        }
        p.price(uri, (i % 50) as f64 * 0.1, i % 97 == 0, now);
    }
    p
}

fn selection(c: &mut Criterion) {
    let mut g = c.benchmark_group("select");
    for (name, known) in [("1000_orchestrators_with_history", true), ("1000_untried", false)] {
        let p = pool(1000, known);
        let now = Instant::now();
        let mut r = 0.123f64;
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                r = (r * 9.87 + 0.31).fract();
                p.choose(&[], now, r).unwrap()
            })
        });
    }
    let p = pool(1000, true);
    let now = Instant::now();
    let tried: Vec<OrchId> = (0..2).map(OrchId).collect();
    g.bench_function("1000_orchestrators_excluding_2_tried", |b| b.iter(|| p.choose(&tried, now, 0.5).unwrap()));
    // The selector alone, over prepared candidates.
    let cands: Vec<Candidate> = (0..1000)
        .map(|i| Candidate {
            index: i,
            latency_score: (i % 3 != 0).then_some(0.1 + (i % 17) as f64 * 0.1),
            success_rate: 0.9,
            price: Some((i % 50) as f64 * 0.1),
            stake: None,
            preferred_region: false,
        })
        .collect();
    let s = DefaultSelector::default();
    g.bench_function("selector_only_1000", |b| b.iter(|| s.select(&cands, 0.5)));
    g.finish();
}

criterion_group!(benches, selection);
criterion_main!(benches);
