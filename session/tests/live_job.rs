//! `session::live::LiveJob` driven with virtual time: start tries and refusals, the start
//! deadline, the watchdogs (no output while input is recent, silent runner, slow
//! orchestrator, lost channel), the chained swap limit, payments and input end.
#![allow(clippy::disallowed_methods)] // tests take one real instant as their epoch

use std::time::{Duration, Instant};

use session::live::{Action, Attempt, DetachReason, EndReason, Event, LiveConfig, LiveJob, StartRefusal};
use session::pool::OrchId;

const A: OrchId = OrchId(0);
const B: OrchId = OrchId(1);
const C: OrchId = OrchId(2);

fn drain(j: &mut LiveJob) -> Vec<Action> {
    std::iter::from_fn(|| j.poll_action()).collect()
}

fn started(j: &mut LiveJob) -> Attempt {
    match drain(j).as_slice() {
        [.., Action::Start { attempt, .. }] => *attempt,
        other => panic!("expected a start, got {other:?}"),
    }
}

fn attach(j: &mut LiveJob, now: Instant, candidates: Vec<OrchId>) {
    j.start(now, candidates);
    let a = started(j);
    j.handle(now, Event::StartAnswered { attempt: a, result: Ok(()) });
    assert!(matches!(drain(j).as_slice(), [Action::Attached { .. }]));
}

#[test]
fn starts_move_on_after_capacity_and_retry_retryable_three_times() {
    let t0 = Instant::now();
    let mut j = LiveJob::new(LiveConfig::default());
    j.start(t0, vec![A, B, C]);
    let a = started(&mut j);
    j.handle(t0, Event::StartAnswered { attempt: a, result: Err(StartRefusal::Capacity) });
    assert_eq!(drain(&mut j), vec![Action::Start { attempt: Attempt(2), orch: B }], "no suspension for capacity");
    for n in 2..=4u64 {
        let r = Err(StartRefusal::Retryable("ticketparams expired".into()));
        j.handle(t0, Event::StartAnswered { attempt: Attempt(n), result: r });
        let acts = drain(&mut j);
        if n < 4 {
            assert_eq!(acts, vec![Action::Start { attempt: Attempt(n + 1), orch: B }], "B asked again");
        } else {
            assert_eq!(acts, vec![Action::Suspend { orch: B }, Action::Start { attempt: Attempt(5), orch: C }]);
        }
    }
    // A stale answer (attempt 2) changes nothing.
    j.handle(t0, Event::StartAnswered { attempt: Attempt(2), result: Ok(()) });
    assert!(drain(&mut j).is_empty());
    j.handle(t0, Event::StartAnswered { attempt: Attempt(5), result: Err(StartRefusal::Other("500".into())) });
    match drain(&mut j).as_slice() {
        [Action::Suspend { orch: C }, Action::Ended(EndReason::NoOrchestrator(why))] => {
            assert!(why.contains("500"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert!(j.ended());
}

#[test]
fn start_deadline_and_no_candidates_end_the_stream() {
    let t0 = Instant::now();
    let mut j = LiveJob::new(LiveConfig::default());
    j.start(t0, vec![]);
    assert!(matches!(drain(&mut j).as_slice(), [Action::Ended(EndReason::NoOrchestrator(_))]));
    let mut j = LiveJob::new(LiveConfig::default());
    j.start(t0, vec![A]);
    started(&mut j);
    assert_eq!(j.poll_timeout(), Some(t0 + LiveConfig::default().start_deadline));
    j.handle_timeout(t0 + Duration::from_secs(31));
    assert!(matches!(drain(&mut j).as_slice(), [Action::Ended(EndReason::NoOrchestrator(_))]));
}

#[test]
fn no_output_swaps_only_while_input_is_recent() {
    let t0 = Instant::now();
    let cfg = LiveConfig::default();
    let mut j = LiveJob::new(cfg.clone());
    attach(&mut j, t0, vec![A, B]);
    // Input flows, output never comes: at 30 s the orchestrator is given up.
    for s in 0..30 {
        let t = t0 + Duration::from_secs(s);
        j.handle(t, Event::InputSegmentSent);
        j.handle(t, Event::InputSegmentTaken);
        j.handle(t, Event::RunnerEvent);
        j.handle_timeout(t);
    }
    drain(&mut j);
    j.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(
        drain(&mut j),
        vec![Action::Detach { orch: A, reason: DetachReason::NoOutput }, Action::Suspend { orch: A }]
    );
    assert!(j.needs_candidates());
    // A second stream whose publisher stops: nobody is blamed.
    let mut j = LiveJob::new(cfg);
    attach(&mut j, t0, vec![A]);
    j.handle(t0, Event::InputSegmentSent);
    for s in 1..=90 {
        let t = t0 + Duration::from_secs(s);
        j.handle(t, Event::RunnerEvent);
        j.handle_timeout(t);
    }
    assert!(!drain(&mut j).iter().any(|a| matches!(a, Action::Detach { .. } | Action::Suspend { .. })));
    assert_eq!(j.attached(), Some(A));
}

#[test]
fn slow_orchestrators_silent_runners_and_gone_channels_are_detached() {
    let t0 = Instant::now();
    let mut j = LiveJob::new(LiveConfig::default());
    attach(&mut j, t0, vec![A]);
    // Three segments in flight are allowed; a fourth starting while they are is not.
    for _ in 0..3 {
        j.handle(t0, Event::InputSegmentSent);
    }
    assert!(drain(&mut j).is_empty());
    j.handle(t0, Event::InputSegmentTaken);
    j.handle(t0, Event::InputSegmentSent);
    assert!(drain(&mut j).is_empty(), "one was taken: three in flight again");
    j.handle(t0, Event::InputSegmentSent);
    assert_eq!(
        drain(&mut j),
        vec![Action::Detach { orch: A, reason: DetachReason::Slow }, Action::Suspend { orch: A }]
    );
    attach(&mut j, t0, vec![B]);
    j.handle_timeout(t0 + Duration::from_secs(30));
    assert!(drain(&mut j).contains(&Action::Detach { orch: B, reason: DetachReason::NoEvents }));
    // A channel of the job gone (a crashed orchestrator): detached and suspended, so
    // the next start tries another one first.
    let mut j = LiveJob::new(LiveConfig::default());
    attach(&mut j, t0, vec![C]);
    j.handle(t0, Event::ChannelGone);
    assert_eq!(
        drain(&mut j),
        vec![Action::Detach { orch: C, reason: DetachReason::ChannelGone }, Action::Suspend { orch: C }]
    );
}

#[test]
fn swaps_chain_within_three_minutes_of_each_other() {
    let t0 = Instant::now();
    let mut j = LiveJob::new(LiveConfig::default());
    let swap_at = |j: &mut LiveJob, secs: u64| {
        let t = t0 + Duration::from_secs(secs);
        attach(j, t, vec![A]);
        j.handle(t, Event::ChannelGone);
        let acts = drain(j);
        acts.into_iter().filter(|a| !matches!(a, Action::Suspend { .. })).collect::<Vec<_>>()
    };
    // Swaps at 0, 170 and 340 s: each within 3 min of the previous, so one chain of
    // three, although no 3-minute window holds more than two. The third ends it.
    assert!(!swap_at(&mut j, 0).iter().any(|a| matches!(a, Action::Ended(_))));
    assert!(!swap_at(&mut j, 170).iter().any(|a| matches!(a, Action::Ended(_))));
    assert!(swap_at(&mut j, 340).contains(&Action::Ended(EndReason::TooManySwaps)));
    // With a gap of more than 3 min the chain starts over.
    let mut j = LiveJob::new(LiveConfig::default());
    for secs in [0, 100, 300, 400, 700, 800] {
        assert!(!swap_at(&mut j, secs).iter().any(|a| matches!(a, Action::Ended(_))), "swap at {secs}");
    }
}

#[test]
fn payments_every_interval_only_while_input_flows_and_a_refusal_detaches() {
    let t0 = Instant::now();
    let mut j = LiveJob::new(LiveConfig::default());
    attach(&mut j, t0, vec![A]);
    let mut pays = 0;
    for ms in (0..20_000).step_by(100) {
        let t = t0 + Duration::from_millis(ms);
        if ms < 12_000 && ms % 1000 == 0 {
            j.handle(t, Event::InputSegmentSent);
            j.handle(t, Event::InputSegmentTaken);
            j.handle(t, Event::OutputSegment);
        }
        j.handle(t, Event::RunnerEvent);
        if j.poll_timeout().is_some_and(|d| d <= t) {
            j.handle_timeout(t);
        }
        pays += drain(&mut j).iter().filter(|a| matches!(a, Action::Pay { .. })).count();
    }
    assert_eq!(pays, 3, "at 5, 10 and 15 s (input until 12 s), none after");
    // Refusals are tolerated (go-livepeer only logs them) until three in a row.
    for ok in [false, false, true, false, false] {
        j.handle(t0, Event::PaymentAnswered { ok });
    }
    assert!(drain(&mut j).is_empty(), "an accepted payment resets the count");
    j.handle(t0, Event::PaymentAnswered { ok: false });
    assert_eq!(drain(&mut j), vec![Action::Detach { orch: A, reason: DetachReason::PaymentRefused }]);
    // The orchestrator that refused is not tried again for this stream; with no other
    // one the stream ends, saying why.
    assert!(j.needs_candidates());
    j.start(t0, vec![A]);
    match drain(&mut j).as_slice() {
        [Action::Ended(EndReason::NoOrchestrator(why))] => {
            assert!(why.contains("refused the stream's payments"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_payment_refusal_moves_the_stream_to_another_orchestrator() {
    let t0 = Instant::now();
    let mut j = LiveJob::new(LiveConfig::default());
    attach(&mut j, t0, vec![A, B]);
    for _ in 0..3 {
        j.handle(t0, Event::PaymentAnswered { ok: false });
    }
    drain(&mut j);
    j.start(t0, vec![A, B]);
    assert!(matches!(drain(&mut j).as_slice(), [Action::Start { orch: B, .. }]));
}

#[test]
fn a_refused_stream_ends_without_a_start_and_says_why() {
    let mut j = LiveJob::new(LiveConfig::default());
    j.refuse("auth webhook answered 403".into());
    assert_eq!(drain(&mut j), vec![Action::Ended(EndReason::Refused("auth webhook answered 403".into()))]);
    assert!(j.ended() && !j.needs_candidates());
    j.refuse("again".into());
    assert!(drain(&mut j).is_empty(), "an ended job is left alone");
}

#[test]
fn input_end_detaches_and_ends() {
    let t0 = Instant::now();
    let mut j = LiveJob::new(LiveConfig::default());
    attach(&mut j, t0, vec![A]);
    j.handle(t0, Event::InputEnded);
    assert_eq!(
        drain(&mut j),
        vec![Action::Detach { orch: A, reason: DetachReason::InputEnded }, Action::Ended(EndReason::InputEnded)]
    );
    assert!(j.ended() && j.poll_timeout().is_none());
}
