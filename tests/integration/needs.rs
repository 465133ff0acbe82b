//! `needs:` entries that name results (`a.failed`, `a.skipped`, `a.done`,
//! `any(…)`), and which handlers start while a run stops for a failure.

use crate::{cairn, status_ids, status_step, Test};

/// Argo's `dag-enhanced-depends`: steps that run on another step's failure
/// or whatever its result.
const ENHANCED: &str = r#"plan enhanced "Enhanced depends"
  on failure: finish

task a "A"
  run: "a"

task b "B"
  needs: a
  run: fail("b broke")

task c "C"
  needs: a
  run: "c"

task on-b-failed "Report B's failure"
  needs: b.failed, c
  run: `b failed, c said ${outputs["c"]}`

task on-b-ok "Only if B succeeded"
  needs: b
  run: "b ok"

task on-c-failed "Only if C failed"
  needs: c.failed
  run: "never"

task either "Either"
  needs: any(b.done, c.skipped)
  run: "either"

task unlikely "None of them"
  needs: any(a.failed, c.skipped)
  run: "never"
"#;

fn events(test: &Test) -> Vec<serde_json::Value> {
    std::fs::read_to_string(test.path().join("events.jsonl"))
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

fn skip_reason(test: &Test, step: &str) -> String {
    events(test)
        .into_iter()
        .find(|e| e["event"] == "step_skipped" && e["step"] == step)
        .and_then(|e| e["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("`{step}` was not skipped"))
}

#[test]
fn qualified_needs_run_on_the_result_they_name_and_skip_saying_why_otherwise() {
    let test = Test::new().file("p.plan", ENHANCED);
    let run = cairn(&test, &["run", "p.plan", "--events", "events.jsonl"]);
    // A handled failure is still a failure.
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    for (step, status) in [
        ("a", "succeeded"),
        ("b", "failed"),
        ("c", "succeeded"),
        ("on-b-failed", "succeeded"),
        ("on-b-ok", "skipped"),
        ("on-c-failed", "skipped"),
        ("either", "succeeded"),
        ("unlikely", "skipped"),
    ] {
        assert_eq!(status_step(&test, step)["status"], status, "{step}");
    }
    assert_eq!(
        status_step(&test, "on-b-failed")["output"],
        "b failed, c said c"
    );
    assert_eq!(
        skip_reason(&test, "on-c-failed"),
        "it needs `c.failed`, but `c` succeeded"
    );
    assert_eq!(
        skip_reason(&test, "unlikely"),
        "it needs any of `a.failed`, `c.skipped`, and none held: `a` succeeded, `c` succeeded"
    );
    // `status` says why, in its table and its JSON.
    assert_eq!(
        status_step(&test, "on-c-failed")["reason"],
        "it needs `c.failed`, but `c` succeeded"
    );
    let table = cairn(&test, &["status"]);
    assert!(
        table
            .stdout
            .contains("it needs `c.failed`, but `c` succeeded"),
        "{}",
        table.stdout
    );
}

#[test]
fn the_graph_and_the_dry_run_show_what_a_step_waits_for() {
    let test = Test::new().file("p.plan", ENHANCED);
    let graph = cairn(&test, &["graph", "p.plan"]);
    assert_eq!(graph.status, 0, "{}", graph.stderr);
    assert!(
        graph.stdout.contains("n1 -->|\"failed\"| n3"),
        "{}",
        graph.stdout
    );
    assert!(
        graph.stdout.contains("n1 -->|\"any: done\"| n6"),
        "{}",
        graph.stdout
    );
    let dry = cairn(&test, &["run", "p.plan", "--dry-run"]);
    assert_eq!(dry.status, 0, "{}", dry.stderr);
    assert!(
        dry.stdout.contains(
            "on-b-failed  task; after `b`, `c`; runs only if `b.failed`; skipped otherwise"
        ),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("runs only if any of `b.done`, `c.skipped` holds; skipped otherwise"),
        "{}",
        dry.stdout
    );
}

/// Under `stop`, a failure's handlers run whichever failure came first:
/// `quick` fails at once and stops the run; `late` fails afterwards, and
/// its fallback and its `late.failed` handler still run.
#[test]
fn under_stop_a_failures_handlers_run_even_after_another_failure_stopped_the_run() {
    let plan = r#"plan p "P"
  allow: sh

task quick "Fails first"
  run: fail("quick")

task late "Fails later, with a fallback" using:sh
  run: |
    sh("sleep 0.3");
    fail("late")
  on failure -> mirror

task mirror "Late's fallback"
  run: `handled ${failure.id}`

task later "Fails later, with a handler" using:sh
  run: |
    sh("sleep 0.3");
    fail("later")

task tell "Tell about later"
  needs: later.failed
  run: "told"

task next "Would start after quick"
  needs: quick.done, later.done
  run: "next"

task unrelated "Needs quick to succeed"
  needs: quick
  run: "never"
"#;
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("run failed: `quick` failed: quick"),
        "{}",
        run.stdout
    );
    assert_eq!(status_step(&test, "late")["status"], "recovered");
    assert_eq!(status_step(&test, "mirror")["output"], "handled late");
    assert_eq!(status_step(&test, "tell")["output"], "told");
    // A handler of `quick`'s failure too (`.done` holds for any result).
    assert_eq!(status_step(&test, "next")["output"], "next");
    // What needs a success does not start once the run stops.
    assert!(!status_ids(&test).contains(&"unrelated".to_owned()));
}

/// Under `abort`, nothing starts after the failure, handlers included.
#[test]
fn under_abort_no_handler_starts() {
    let plan = r#"plan p "P"
  on failure: abort

task quick "Fails"
  run: fail("quick")
  on failure -> mirror

task mirror "Fallback that fails"
  run: fail("mirror too")

task tell "Tell"
  needs: quick.failed
  run: "told"
"#;
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    // The fallback was routed to and ran (the failure was not final
    // yet); once it failed too, the abort stopped everything else.
    assert_eq!(status_step(&test, "mirror")["status"], "failed");
    assert!(!status_ids(&test).contains(&"tell".to_owned()));
}

#[test]
fn needs_from_a_used_template_name_its_steps_with_the_alias() {
    let test = Test::new()
        .file(
            "lib.plan",
            "plan lib \"Lib\"\n\ntask probe \"Probe\"\n  run: fail(\"down\")\n  on failure: continue\n\ntask after \"After\"\n  needs: probe.failed\n  run: \"noticed\"\n",
        )
        .file(
            "p.plan",
            "plan p \"P\"\n  use \"lib.plan\" as lib\n\ntask report \"Report\"\n  needs: lib.probe.failed, lib.after\n  run: outputs[\"lib.after\"]\n",
        );
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(status_step(&test, "lib.after")["output"], "noticed");
    assert_eq!(status_step(&test, "report")["output"], "noticed");
}

fn example(name: &str) -> String {
    std::fs::read_to_string(crate::root().join("examples").join(name)).expect("example")
}

#[test]
fn the_argo_enhanced_depends_example_takes_the_route_its_coin_says() {
    let plan = example("argo-enhanced-depends.plan");
    let tails = Test::new().file("p.plan", &plan);
    assert_eq!(cairn(&tails, &["run", "p.plan"]).status, 0);
    for (step, status) in [
        ("flip", "failed"),
        ("c", "skipped"),
        ("investigate", "succeeded"),
        ("celebrate", "succeeded"),
        ("audit", "succeeded"),
    ] {
        assert_eq!(status_step(&tails, step)["status"], status, "tails: {step}");
    }
    let heads = Test::new().file("p.plan", &plan);
    let run = cairn(&heads, &["run", "p.plan", "--set", "heads=true"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    for (step, status) in [
        ("flip", "succeeded"),
        ("c", "succeeded"),
        ("investigate", "skipped"),
        ("celebrate", "succeeded"),
    ] {
        assert_eq!(status_step(&heads, step)["status"], status, "heads: {step}");
    }
}

#[test]
fn the_ci_example_reports_a_failed_job_and_cleans_up_whatever_happened() {
    let plan = example("ci-finish-finally.plan");
    let green = Test::new().file("ci.plan", &plan);
    assert_eq!(cairn(&green, &["run", "ci.plan"]).status, 0);
    assert_eq!(status_step(&green, "report-failure")["status"], "skipped");
    assert_eq!(status_step(&green, "cleanup")["output"], "succeeded");
    assert!(!green.path().join("ci-out").exists());
    // A lint failure: the other jobs run to their end, `package` is
    // skipped, the failure is reported, and the workspace is removed.
    let red = Test::new().file(
        "ci.plan",
        plan.replace("echo linted > ci-out/lint.txt", "exit 3"),
    );
    let run = cairn(&red, &["run", "ci.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    for (step, status) in [
        ("lint", "failed"),
        ("test", "succeeded"),
        ("package", "skipped"),
        ("report-failure", "succeeded"),
    ] {
        assert_eq!(status_step(&red, step)["status"], status, "{step}");
    }
    assert_eq!(status_step(&red, "cleanup")["output"], "failed");
    assert!(!red.path().join("ci-out").exists());
}
