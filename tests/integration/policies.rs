//! `on failure: finish`: a failed task's dependents are skipped, every
//! other branch runs to its end, and the plan fails at the end.

use crate::{cairn, status_step, Test};

const CI: &str = r#"plan ci "CI that finishes every job"
  allow: sh
  on failure: finish

task lint "Lint" using:sh
  run: sh("exit 1")

task build "Build"
  run: "built"

task test "Test"
  needs: build
  run: "tested"

task package "Package"
  needs: lint, test
  run: "packaged"

task publish "Publish"
  needs: package
  run: "published"

task shards "Shards"
  each: [1, 2, 3]
  run: if item == 2 { fail("shard 2") } else { item }
"#;

#[test]
fn finish_skips_what_stands_on_a_failure_and_runs_the_rest_to_the_end() {
    let test = Test::new().file("ci.plan", CI);
    let run = cairn(&test, &["run", "ci.plan", "--events", "events.jsonl"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    // (Which failure the message names is the first to happen.)
    assert!(run.stdout.contains("run failed: `"), "{}", run.stdout);
    for (step, status) in [
        ("lint", "failed"),
        ("build", "succeeded"),
        ("test", "succeeded"),
        ("package", "skipped"),
        ("publish", "skipped"),
        ("shards", "failed"),
        // Under `finish` every instance runs, as every branch does.
        ("shards[0]", "succeeded"),
        ("shards[1]", "failed"),
        ("shards[2]", "succeeded"),
    ] {
        assert_eq!(status_step(&test, step)["status"], status, "{step}");
    }
    let events = std::fs::read_to_string(test.path().join("events.jsonl")).expect("events");
    let reason = |step: &str| {
        events
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .find(|e| e["event"] == "step_skipped" && e["step"] == step)
            .map(|e| e["reason"].clone())
    };
    let why = serde_json::json!("`lint` failed (`on failure: finish`)");
    assert_eq!(reason("package"), Some(why.clone()));
    // The reason names the failure the skip started from.
    assert_eq!(reason("publish"), Some(why));
}

/// `abort` interrupts what runs (killing its commands) where `stop` lets it
/// finish; the run fails, it is not cancelled.
#[test]
fn abort_interrupts_running_steps_where_stop_lets_them_finish() {
    for (policy, slow_status, wrote) in [("abort", "cancelled", false), ("stop", "succeeded", true)]
    {
        let plan = format!(
            r#"plan p "P"
  allow: sh
  on failure: {policy}

task slow "Slow" using:sh
  run: sh("sleep 2; echo done > slow.txt")

task breaks "Breaks"
  run: |
    sleep("200ms");
    fail("broke")

task after "After"
  needs: breaks
  run: 1
"#
        );
        let test = Test::new().file("p.plan", plan);
        let started = std::time::Instant::now();
        let run = cairn(&test, &["run", "p.plan"]);
        assert_eq!(run.status, 1, "{policy}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stdout.contains("run failed: `breaks` failed: broke"),
            "{}",
            run.stdout
        );
        assert_eq!(
            status_step(&test, "slow")["status"],
            slow_status,
            "{policy}"
        );
        // (A step that never started has no row in `status`.)
        let steps = crate::status_ids(&test);
        assert!(!steps.contains(&"after".to_owned()), "{policy}: {steps:?}");
        // The killed command never wrote its file, even after it would have.
        std::thread::sleep(std::time::Duration::from_millis(
            if wrote { 0_u64 } else { 2_500 }.saturating_sub(started.elapsed().as_millis() as u64),
        ));
        assert_eq!(test.path().join("slow.txt").exists(), wrote, "{policy}");
    }
}
