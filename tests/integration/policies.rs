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
