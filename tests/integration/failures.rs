//! Typed step failures: each failure's kind in events, `status` and a
//! fallback's `failure`; retry predicates and `total`; and the plan's line
//! with a caret under the code that failed, after a run.

use crate::{cairn, status_step, step_output, Test};

const KINDS: &str = r#"plan kinds "One failure of each kind"
  allow: sh, fs.read
  on failure: continue

task exits "Exits" using:sh
  run: sh("exit 3")
  on failure -> handle

task handle "Reads the failure"
  run: `${failure.id} ${failure.kind} ${failure.code}`

task reads "Reads" using:fs.read
  run: read_file("missing.txt")

task expects "Expects"
  run: 1
  expect: result == 2

task scripts "Scripts"
  run: fail("by hand")

task refused "Refused" using:fs.read
  run: read_file("/etc/passwd")

task slow "Slow"
  timeout: 100ms
  run: loop {}
"#;

fn kind(test: &Test, step: &str) -> serde_json::Value {
    status_step(test, step)["error_kind"].clone()
}

#[test]
fn every_failure_has_a_kind_in_events_status_and_the_fallback() {
    let test = Test::new().file("kinds.plan", KINDS);
    let run = cairn(&test, &["run", "kinds.plan", "--events", "events.jsonl"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    for (step, expected) in [
        ("exits", "exit"),
        ("reads", "io"),
        ("expects", "expect"),
        ("scripts", "script"),
        ("refused", "capability"),
        ("slow", "timeout"),
    ] {
        assert_eq!(kind(&test, step), expected, "{step}");
    }
    assert_eq!(step_output(&test, "handle"), "exits exit 3");
    let events = std::fs::read_to_string(test.path().join("events.jsonl")).expect("events");
    let failed: serde_json::Value = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|e| e["event"] == "step_failed" && e["step"] == "exits")
        .expect("exits failed");
    assert_eq!(failed["kind"], "exit");
    assert_eq!(failed["code"], 3);
    assert_eq!(failed["at"], serde_json::json!({"line": 6, "column": 8}));
    // A recovered step's failure stays readable, kind and all.
    assert_eq!(status_step(&test, "exits")["status"], "recovered");
}

/// The snippets printed between the progress lines and the summary table.
fn snippets(stderr: &str) -> &str {
    let start = stderr.find("cairn::step_failed").expect(stderr);
    let end = stderr[start..].find("\nstep ").expect("the table") + start;
    &stderr[start..end]
}

#[test]
fn a_failed_run_shows_the_line_that_failed_with_a_caret() {
    let plan = r#"plan caret "Caret"
  allow: sh
  on failure: continue

task build "Build" using:sh
  run: |
    let version = 3;
    sh(`exit ${version}`)

task check "Check"
  run: 41
  expect: result == 42

task items "Items"
  each: [1, 2, 3]
  run: item.missing()
"#;
    let test = Test::new().file("caret.plan", plan);
    let run = cairn(&test, &["run", "caret.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    insta::assert_snapshot!(snippets(&run.stdout));
}

#[test]
fn a_retry_predicate_retries_only_the_failures_it_holds_for() {
    let plan = r#"plan retries "Retries"
  allow: sh
  on failure: continue

task three "Exit 3 is retried" using:sh
  retry: 3 backoff 10ms if error.kind == "exit" && error.code == 3
  run: sh("echo x >> three.txt; exit 3")

task four "Exit 4 is not" using:sh
  retry: 3 backoff 10ms if error.kind == "exit" && error.code == 3
  run: sh("echo x >> four.txt; exit 4")

task message "By its message"
  retry: 2 backoff 10ms if error.message.contains("503")
  run: fail("HTTP 503")

task broken "A predicate that fails"
  retry: 2 backoff 10ms if error.nothing.length() > 0
  run: fail("no")
"#;
    let test = Test::new().file("r.plan", plan);
    let run = cairn(&test, &["run", "r.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let lines = |f: &str| {
        std::fs::read_to_string(test.path().join(f))
            .expect("ran")
            .lines()
            .count()
    };
    assert_eq!(lines("three.txt"), 4);
    assert_eq!(lines("four.txt"), 1);
    assert_eq!(status_step(&test, "three")["attempts"], 4);
    assert_eq!(status_step(&test, "four")["attempts"], 1);
    assert_eq!(status_step(&test, "message")["attempts"], 3);
    let broken = status_step(&test, "broken");
    assert_eq!(broken["attempts"], 1);
    let error = broken["error"].as_str().expect("an error");
    assert!(error.starts_with("retry if: "), "{error}");
}

#[test]
fn retry_total_bounds_every_attempt_together() {
    let plan = r#"plan total "Total"
  on failure: continue

task spins "Spins"
  retry: 50 backoff 20ms factor 1 total 400ms
  timeout: 10s
  run: loop {}

task fails "Fails fast"
  retry: 100 backoff 50ms factor 1 total 300ms
  run: fail("again")
"#;
    let test = Test::new().file("t.plan", plan);
    let started = std::time::Instant::now();
    let run = cairn(&test, &["run", "t.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    // Far below the 10 s timeout and the 100 retries' 5 s of waiting.
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    let spins = status_step(&test, "spins");
    assert_eq!(spins["error_kind"], "timeout");
    assert_eq!(spins["attempts"], 1);
    assert!(
        spins["error"]
            .as_str()
            .is_some_and(|e| e.contains("`retry: … total 400ms` ran out")),
        "{spins}"
    );
    let fails = status_step(&test, "fails");
    let attempts = fails["attempts"].as_i64().expect("attempts");
    assert!((2..=7).contains(&attempts), "{fails}");
    assert_eq!(fails["error"], "again");
}
