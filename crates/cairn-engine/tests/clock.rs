//! A run on a clock the test moves: hours of retry backoff and `sleep`
//! pass at once, and `now()` and the events' times read that clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::clock::{Clock, ManualClock};
use cairn_engine::run::{Event, Options, RunStatus};

const PLAN: &str = r#"plan p "P"

task flaky "Flaky"
  retry: 2 backoff 1h
  run: |
    if task.attempt < 3 { fail("not yet") }
    sleep("2h");
    now()
"#;

#[test]
fn hours_of_backoff_and_sleep_pass_at_once_on_a_manual_clock() {
    let engine = cairn_engine::Engine::new();
    let plan = engine.load_str("p.plan", PLAN).expect("the plan checks");
    let clock = Arc::new(ManualClock::at(1_000));
    let options = Options {
        clock: Some(clock.clone()),
        ..Options::default()
    };
    let began = Instant::now();
    let mut delays = Vec::new();
    let mut last_at = 0;
    let report = engine
        .run_blocking(plan, options, |event| {
            if let Event::Retrying { delay_ms, .. } = event {
                delays.push(*delay_ms);
            }
            if let Event::RunFinished { at_ms, .. } = event {
                last_at = *at_ms;
            }
        })
        .expect("runs");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "nothing really waited"
    );
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.message);
    assert_eq!(delays.len(), 2, "two backoffs before the third attempt");
    assert!(delays.iter().all(|&d| d >= 3_600_000), "{delays:?}");
    let waited: u64 = delays.iter().sum::<u64>() + 2 * 3_600_000;
    let now = report.steps[0].output.as_ref().and_then(|v| v.as_u64());
    assert!(
        now.is_some_and(|now| now >= 1_000 + waited),
        "now() reads the run's clock after the waits: {now:?}"
    );
    assert!(clock.unix_ms() >= 1_000 + waited);
    assert!(
        last_at >= waited,
        "the events' times are the clock's: {last_at}"
    );
}
