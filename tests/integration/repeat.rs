//! `repeat:`: a task's body run as a bounded loop of iterations, `task#n`,
//! until `until` holds over the result or `max` iterations have run.

use crate::durable::{spawn, wait_for};
use crate::{
    assert_replays_identically, cairn, status_ids, status_step, step_output as output, Test,
};

const IMPROVE: &str = r#"plan p "P"

task improve "Draft until the reviewer is satisfied"
  repeat: max 5 until result.score >= 8
  run: |
    let draft = if iteration.previous == () { "first draft" } else { iteration.previous.text + "+" };
    #{ text: draft, score: iteration.index * 3 }
  on failure -> give-up

task give-up "Give up"
  run: `gave up: ${failure.error}`

task report "Report"
  needs: improve
  run: outputs["improve"].text
"#;

/// Iterations run one after another, each with `iteration.index` and the
/// output before it, until `until` holds; the task's output is the last
/// iteration's, and each iteration is a step of its own in the log and
/// `status`.
#[test]
fn a_loop_runs_until_its_condition_holds() {
    let test = Test::new().file("p.plan", IMPROVE);
    let run = cairn(&test, &["run", "p.plan", "--events", "-"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    // Scores 3, 6, 9: the third iteration ends the loop.
    assert_eq!(
        output(&test, "improve"),
        serde_json::json!({ "text": "first draft++", "score": 9 })
    );
    assert_eq!(output(&test, "report"), serde_json::json!("first draft++"));
    assert_eq!(
        output(&test, "improve#1"),
        serde_json::json!({ "text": "first draft", "score": 3 })
    );
    assert_eq!(status_step(&test, "give-up")["status"], "skipped");
    let until: Vec<(String, serde_json::Value)> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_succeeded")
        .map(|e| {
            (
                e["step"].as_str().unwrap_or_default().to_owned(),
                e["until"].clone(),
            )
        })
        .collect();
    assert_eq!(
        until,
        [
            ("improve#1".to_owned(), serde_json::json!(false)),
            ("improve#2".to_owned(), serde_json::json!(false)),
            ("improve#3".to_owned(), serde_json::json!(true)),
            ("improve".to_owned(), serde_json::Value::Null),
            ("report".to_owned(), serde_json::Value::Null),
        ]
    );
    assert_eq!(
        status_ids(&test),
        [
            "improve",
            "improve#1",
            "improve#2",
            "improve#3",
            "give-up",
            "report"
        ]
    );
    // A replay runs the same iterations to the same outcomes.
    assert_replays_identically(&test);
}

/// Reaching `max` with `until` still false fails the task with a clear
/// error, which `on failure ->` routes; the task keeps the last
/// iteration's output.
#[test]
fn a_loop_that_does_not_converge_fails_and_routes() {
    let plan = IMPROVE.replace("result.score >= 8", "result.score >= 100");
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let error = "did not converge after 5 iterations: `until result.score >= 100` is still false";
    assert_eq!(status_step(&test, "improve")["error"], error);
    assert_eq!(status_step(&test, "improve")["status"], "recovered");
    assert_eq!(status_step(&test, "improve#5")["status"], "succeeded");
    // A recovered task's dependents run, with its last iteration's output.
    assert_eq!(
        output(&test, "report"),
        serde_json::json!("first draft++++")
    );
    assert_eq!(
        output(&test, "give-up"),
        serde_json::json!(format!("gave up: {error}"))
    );
}

/// Without `until` the body runs exactly `max` times; a failing iteration
/// (after its own retries) fails the task, naming the iteration.
#[test]
fn a_loop_without_until_runs_max_times_and_a_failed_iteration_fails_it() {
    let plan = r#"plan p "P"

task count "Count"
  repeat: max 3
  run: if iteration.previous == () { 1 } else { iteration.previous * 10 }
"#;
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(output(&test, "count"), serde_json::json!(100));
    assert_eq!(status_step(&test, "count#3")["status"], "succeeded");
    assert!(!status_ids(&test).contains(&"count#4".to_owned()));

    let failing = plan.replace(
        "  run: if iteration.previous",
        "  retry: 1\n  run: if iteration.index == 2 { fail(\"no\") } else if iteration.previous",
    );
    let test = Test::new().file("p.plan", &failing);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(status_step(&test, "count#2")["attempts"], 2);
    // The iteration's own error is its own; the task's names the iteration.
    assert_eq!(status_step(&test, "count#2")["error"], "no");
    assert_eq!(status_step(&test, "count")["error"], "`count#2` failed: no");
    assert!(!run.stdout.contains("start     count#3"), "{}", run.stdout);

    // Under `continue`, its dependents read the last output an iteration gave.
    let going_on = failing.replace("  retry: 1\n", "  retry: 1\n  on failure: continue\n")
        + "\ntask after \"After\"\n  needs: count\n  run: outputs[\"count\"]\n";
    let test = Test::new().file("p.plan", going_on);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(output(&test, "after"), serde_json::json!(1));
}

/// The graph shows a loop once, marked; the dry run says its bound.
#[test]
fn the_graph_and_dry_run_show_the_loop() {
    let test = Test::new().file("p.plan", IMPROVE);
    let graph = cairn(&test, &["graph", "p.plan"]);
    assert!(
        graph
            .stdout
            .contains("repeat at most 5 until result.score #gt;= 8"),
        "{}",
        graph.stdout
    );
    let dry = cairn(&test, &["run", "p.plan", "--dry-run"]);
    assert!(
        dry.stdout
            .contains("runs up to 5 times until `result.score >= 8` (fails if it never holds)"),
        "{}",
        dry.stdout
    );
}

/// Killed during an iteration, a resumed run keeps the iterations that
/// finished (they never run again) and goes on from the one that had not.
#[test]
fn a_resumed_loop_runs_only_the_iterations_that_had_not_finished() {
    let plan = r#"plan p "P"
  allow: sh

task grow "Grow" using:sh
  repeat: max 6 until result >= 5
  run: |
    let n = iteration.index;
    sh(`echo ${n} >> started.txt; if [ ${n} -ge 3 ] && [ -e slow ]; then sleep 30; fi; echo ${n} >> ended.txt`);
    n
"#;
    let test = Test::new().file("p.plan", plan).file("slow", "");
    let mut child = spawn(&test, &["run", "p.plan"]);
    let read = |name: &str| {
        std::fs::read_to_string(test.path().join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    wait_for(|| read("started.txt").len() == 3);
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert_eq!(read("ended.txt"), ["1", "2"]);
    std::fs::remove_file(test.path().join("slow")).expect("quick now");
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 0, "{}{}", resumed.stdout, resumed.stderr);
    // Iterations 1 and 2 ran once; 3 started again, then 4 and 5.
    assert_eq!(read("started.txt"), ["1", "2", "3", "3", "4", "5"]);
    assert_eq!(read("ended.txt"), ["1", "2", "3", "4", "5"]);
    assert_eq!(output(&test, "grow"), serde_json::json!(5));
    // The loop itself is not begun again: its start was recorded.
    assert!(
        !resumed.stdout.contains("start     grow\n"),
        "{}",
        resumed.stdout
    );
    assert!(
        !resumed.stdout.contains("start     grow#1"),
        "{}",
        resumed.stdout
    );
}

/// Another step failing stops the run mid-loop: no next iteration starts,
/// the loop is cancelled (not left "running"), `status` lists the
/// iterations right after their task, and the progress counts plan steps.
#[test]
fn a_run_that_stops_mid_loop_cancels_the_loop() {
    let plan = r#"plan p "P"
  allow: sh

task grow "Grow" using:sh
  repeat: max 50 until false
  run: sh("sleep 0.2").code

task boom "Boom" using:sh
  run: |
    sh("sleep 0.5");
    fail("boom")
"#;
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("not run"), "{}", run.stdout);
    assert_eq!(status_step(&test, "grow")["status"], "cancelled");
    let ids = status_ids(&test);
    assert_eq!(ids[0], "grow");
    assert_eq!(ids.last().map(String::as_str), Some("boom"));
    assert!(
        ids[1..ids.len() - 1]
            .iter()
            .all(|id| id.starts_with("grow#")),
        "{ids:?}"
    );
    let runs = cairn(&test, &["runs"]);
    let cells: Vec<&str> = runs
        .stdout
        .lines()
        .nth(1)
        .expect("a run")
        .split_whitespace()
        .collect();
    assert_eq!(cells[3], "1/2", "{}", runs.stdout);
}

/// Under `on failure: compensate`, the iterations are undone one by one
/// with `iteration` in scope, also those a resumed run kept from an
/// earlier process; the task itself is not undone twice.
#[test]
fn compensation_undoes_each_iteration_also_after_a_resume() {
    let plan = r#"plan p "P"
  on failure: compensate
  allow: fs.write(*)

task grow "Grow" using:fs.write
  repeat: max 2
  run: write_file(`f${iteration.index}.txt`, "x")
  compensate: log(`undo ${iteration.index}`)

gate ok "OK"
  needs: grow

task boom "Boom"
  needs: ok
  run: fail("boom")
"#;
    let test = Test::new().file("p.plan", plan);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    assert!(test.path().join("f1.txt").exists() && test.path().join("f2.txt").exists());
    let approve = cairn(&test, &["approve", "ok", "--reason", "yes"]);
    assert_eq!(approve.status, 0, "{}", approve.stderr);
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 1, "{}{}", resumed.stdout, resumed.stderr);
    assert!(resumed.stdout.contains("undo 2"), "{}", resumed.stdout);
    assert!(resumed.stdout.contains("undo 1"), "{}", resumed.stdout);
    assert!(!test.path().join("f1.txt").exists(), "{}", resumed.stdout);
    assert!(!test.path().join("f2.txt").exists(), "{}", resumed.stdout);
    assert_eq!(status_step(&test, "grow#1")["status"], "compensated");
    let log = cairn(&test, &["log", "--json"]).stdout;
    assert!(
        !log.contains(r#""event":"compensating","step":"grow","#),
        "the task itself is not undone: {log}"
    );
}
