//! `finally: true` steps: they run after every other step has settled,
//! whatever happened, with `run` in scope.

use crate::durable::{spawn, wait_for};
use crate::{cairn, status_ids, status_step, Test};

fn plan(body: &str) -> String {
    format!(
        "plan p \"P\"\n  allow: sh\n{body}\n\ntask cleanup \"Clean up\" using:sh\n  finally: true\n  run: |\n    sh(\"echo cleaned >> cleanup.txt\");\n    run\n\ntask last \"Also last\"\n  finally: true\n  run: `after ${{outputs[\"cleanup\"].status}}`\n"
    )
}

#[test]
fn finally_steps_run_after_a_success_in_file_order_and_do_not_change_it() {
    let test = Test::new().file(
        "p.plan",
        plan("\ntask build \"Build\"\n  run: \"built\"\n\ntask test \"Test\"\n  needs: build\n  run: \"tested\""),
    );
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let cleanup = status_step(&test, "cleanup");
    assert_eq!(
        cleanup["output"],
        serde_json::json!({"status": "succeeded", "failed": [], "skipped": [], "cancelled": []})
    );
    // `last` runs after `cleanup`, and reads its output.
    assert_eq!(status_step(&test, "last")["output"], "after succeeded");
    let test_at = run.stdout.find("ok        test").expect("test ran");
    let cleanup_at = run.stdout.find("start     cleanup").expect("cleanup ran");
    let last_at = run.stdout.find("start     last").expect("last ran");
    assert!(
        test_at < cleanup_at && cleanup_at < last_at,
        "{}",
        run.stdout
    );
}

#[test]
fn finally_steps_see_a_failed_run_and_its_failures_and_skips() {
    let test = Test::new().file(
        "p.plan",
        plan("\ntask build \"Build\"\n  run: fail(\"broken\")\n\ntask test \"Test\"\n  needs: build\n  run: 1\n\ntask docs \"Docs\"\n  when: false\n  run: 2"),
    );
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("run failed: `build` failed: broken"));
    assert_eq!(
        status_step(&test, "cleanup")["output"],
        serde_json::json!({"status": "failed", "failed": ["build"], "skipped": ["docs"], "cancelled": []})
    );
    assert_eq!(status_step(&test, "last")["output"], "after failed");
}

#[test]
fn a_failing_finally_step_fails_a_succeeded_run_and_the_next_still_runs() {
    let plan = "plan p \"P\"\n\ntask build \"Build\"\n  run: 1\n\ntask check \"Check the leftovers\"\n  finally: true\n  run: fail(\"leftovers found\")\n\ntask last \"Last\"\n  finally: true\n  run: \"ran\"\n";
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("run failed: `check` failed: leftovers found"),
        "{}",
        run.stdout
    );
    assert_eq!(status_step(&test, "last")["output"], "ran");
}

#[test]
fn finally_steps_run_when_the_time_budget_cancels_the_run() {
    let test = Test::new().file(
        "p.plan",
        plan("  budget: time 1s\n\ntask slow \"Slow\" using:sh\n  run: sh(\"sleep 20\")"),
    );
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        status_step(&test, "cleanup")["output"],
        serde_json::json!({"status": "failed", "failed": [], "skipped": [], "cancelled": ["slow"]})
    );
    assert_eq!(
        std::fs::read_to_string(test.path().join("cleanup.txt")).expect("cleaned"),
        "cleaned\n"
    );
}

#[test]
fn finally_steps_run_on_ctrl_c_and_again_at_the_end_of_the_resumed_run() {
    let test = Test::new().file(
        "p.plan",
        plan("\ntask slow \"Slow\" using:sh\n  run: sh(\"echo started > started.txt; sleep 30\")"),
    );
    let child = spawn(&test, &["run", "p.plan"]);
    wait_for(|| test.path().join("started.txt").exists());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().expect("exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert_eq!(
        status_step(&test, "cleanup")["output"],
        serde_json::json!({"status": "cancelled", "failed": [], "skipped": [], "cancelled": ["slow"]})
    );
    // The resumed run runs `slow` again, then its finally steps again.
    std::fs::write(
        test.path().join("p.plan"),
        std::fs::read_to_string(test.path().join("p.plan"))
            .expect("plan")
            .replace("; sleep 30", ""),
    )
    .expect("edit");
    let resumed = cairn(&test, &["resume", "--allow-changed"]);
    assert_eq!(resumed.status, 0, "{}{}", resumed.stdout, resumed.stderr);
    assert_eq!(
        status_step(&test, "cleanup")["output"]["status"],
        "succeeded"
    );
    assert_eq!(
        std::fs::read_to_string(test.path().join("cleanup.txt")).expect("cleaned"),
        "cleaned\ncleaned\n"
    );
}

#[test]
fn a_run_paused_at_a_gate_runs_its_finally_steps_only_when_it_ends() {
    let test = Test::new().file(
        "p.plan",
        plan("\ngate ship \"Ship?\"\n\ntask publish \"Publish\"\n  needs: ship\n  run: 1"),
    );
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    assert!(!test.path().join("cleanup.txt").exists());
    assert!(!status_ids(&test).contains(&"cleanup".to_owned()));
    assert_eq!(
        cairn(&test, &["approve", "ship", "--reason", "ok"]).status,
        0
    );
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 0, "{}{}", resumed.stdout, resumed.stderr);
    assert_eq!(
        std::fs::read_to_string(test.path().join("cleanup.txt")).expect("cleaned"),
        "cleaned\n"
    );
}

#[test]
fn the_graph_and_the_dry_run_mark_finally_steps() {
    let test = Test::new().file(
        "p.plan",
        plan("\ntask build \"Build\"\n  run: 1\n\ntask test \"Test\"\n  needs: build\n  run: 2"),
    );
    let graph = cairn(&test, &["graph", "p.plan"]);
    assert!(
        graph
            .stdout
            .contains("n2[\"cleanup<br/>Clean up<br/>finally: after every other step\"]"),
        "{}",
        graph.stdout
    );
    let dry = cairn(&test, &["run", "p.plan", "--dry-run"]);
    assert!(
        dry.stdout.contains(
            "wave 3\n  cleanup  task; finally: after every other step, whatever happened"
        ),
        "{}",
        dry.stdout
    );
}
