//! `cairn retry`: a failed run goes again with every success kept, only
//! what failed (or was never reached) running, in child runs too; and
//! `cairn fork`: a new run from a recorded one's step.

use crate::{cairn, step_output as output, Test};

const FLAKY: &str = r#"plan flaky "Flaky"
  allow: sh, fs.read

task build "Build" using:sh
  run: sh("echo built >> builds.txt").code

task items "Items"
  run: [1, 2, 3]

task each-one "Each" using:sh,fs.read
  needs: items
  each: outputs["items"]
  run: |
    sh(`echo ${item} >> tries.txt`);
    if item == 2 && !exists("fixed") { fail("item 2 broke") }
    item * 10

task report "Report" using:sh
  needs: build, each-one
  run: |
    sh("echo reported >> reports.txt");
    outputs["each-one"]
"#;

fn lines(test: &Test, file: &str) -> Vec<String> {
    std::fs::read_to_string(test.path().join(file))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Only the failed instance runs again; the instances and steps that
/// succeeded keep their outputs and never run twice.
#[test]
fn a_failed_run_goes_again_running_only_what_failed() {
    let test = Test::new().file("flaky.plan", FLAKY);
    let run = cairn(&test, &["run", "flaky.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    std::fs::write(test.path().join("fixed"), "").expect("fix");
    let retry = cairn(&test, &["retry"]);
    assert_eq!(retry.status, 0, "{}{}", retry.stdout, retry.stderr);
    assert!(
        retry
            .stderr
            .contains("`each-one`, `each-one[1]` run again, every other result is kept"),
        "{}",
        retry.stderr
    );
    assert_eq!(lines(&test, "builds.txt"), ["built"]);
    // Instances run side by side: their order varies, the count does not.
    let mut tries = lines(&test, "tries.txt");
    tries.sort();
    assert_eq!(tries, ["1", "2", "2", "3"]);
    assert_eq!(lines(&test, "reports.txt"), ["reported"]);
    assert_eq!(output(&test, "report"), serde_json::json!([10, 20, 30]));
    let status = cairn(&test, &["status"]);
    assert!(status.stdout.contains("each-one[0]"), "{}", status.stdout);
    // Nothing failed any more.
    let again = cairn(&test, &["retry"]);
    assert_eq!(again.status, 2, "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("succeeded; there is nothing to retry"),
        "{}",
        again.stderr
    );
}

/// `--step` runs the named step and everything after it again, whatever
/// their outcome (in a run that succeeded too), and keeps the rest; a step
/// the plan does not have is refused.
#[test]
fn retry_step_runs_it_and_what_follows_it_again() {
    let test = Test::new().file("flaky.plan", FLAKY);
    std::fs::write(test.path().join("fixed"), "").expect("fix");
    let run = cairn(&test, &["run", "flaky.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let unknown = cairn(&test, &["retry", "--step", "biuld"]);
    assert_eq!(unknown.status, 2, "{}", unknown.stderr);
    assert!(
        unknown
            .stderr
            .contains("the run's plan has no step `biuld`"),
        "{}",
        unknown.stderr
    );
    let retry = cairn(&test, &["retry", "--step", "build"]);
    assert_eq!(retry.status, 0, "{}{}", retry.stdout, retry.stderr);
    assert!(
        retry.stderr.contains("`build`, `report` run again"),
        "{}",
        retry.stderr
    );
    assert_eq!(lines(&test, "builds.txt"), ["built", "built"]);
    assert_eq!(lines(&test, "reports.txt"), ["reported", "reported"]);
    assert_eq!(lines(&test, "tries.txt").len(), 3);
    // An instance on its own: it and what follows it; its siblings stay.
    let retry = cairn(&test, &["retry", "--step", "each-one[2]"]);
    assert_eq!(retry.status, 0, "{}{}", retry.stdout, retry.stderr);
    assert_eq!(lines(&test, "tries.txt").len(), 4);
    assert_eq!(lines(&test, "tries.txt")[3], "3");
    assert_eq!(lines(&test, "reports.txt").len(), 3);
    assert_eq!(output(&test, "report"), serde_json::json!([10, 20, 30]));
}

/// A failed child run of a `plan:` step is retried with its parent: its
/// steps that succeeded are kept, and a child on its own is refused with
/// the way on.
#[test]
fn a_failed_child_run_is_retried_with_its_parent() {
    let child = r#"plan one "One"
  allow: sh, fs.read

task first "First" using:sh
  run: sh("echo first >> firsts.txt").code

task second "Second" using:fs.read
  needs: first
  run: if exists("fixed") { "ok" } else { fail("not yet") }
"#;
    let parent = "plan p \"P\"\n  allow: sh, fs.read\n\ntask one \"One\" using:sh,fs.read\n  plan: \"one.plan\"\n";
    let test = Test::new().file("one.plan", child).file("p.plan", parent);
    let run = cairn(&test, &["run", "p.plan", "--events", "-"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let child_id = crate::first_child_run(&run.stdout);
    let refused = cairn(&test, &["retry", &child_id]);
    assert_eq!(refused.status, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("retry the run it belongs to: `cairn retry "),
        "{}",
        refused.stderr
    );
    std::fs::write(test.path().join("fixed"), "").expect("fix");
    let retry = cairn(&test, &["retry"]);
    assert_eq!(retry.status, 0, "{}{}", retry.stdout, retry.stderr);
    assert_eq!(lines(&test, "firsts.txt"), ["first"]);
    assert_eq!(
        output(&test, "one"),
        serde_json::json!({ "first": 0, "second": "ok" })
    );
}

/// `cairn fork` starts a new run that keeps the recorded outcomes of the
/// steps before `--at` and runs from there, with new params if given; the
/// original run is untouched and both logs verify.
#[test]
fn a_fork_keeps_what_came_before_its_step_and_runs_from_there() {
    let plan = r#"plan calc "Calc"
  param n = 2
  allow: sh

task a "A" using:sh
  run: |
    sh("echo a >> a.txt");
    params.n

task b "B"
  needs: a
  run: outputs["a"] * params.n
"#;
    let test = Test::new().file("calc.plan", plan);
    let run = cairn(&test, &["run", "calc.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let original = crate::status_json(&test)["run"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let unknown = cairn(&test, &["fork", &original, "--at", "c"]);
    assert_eq!(unknown.status, 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("the run's plan has no step `c`"),
        "{}",
        unknown.stderr
    );
    let fork = cairn(&test, &["fork", &original, "--at", "b", "--set", "n=5"]);
    assert_eq!(fork.status, 0, "{}{}", fork.stdout, fork.stderr);
    assert!(
        fork.stderr.contains(&format!(
            "from run {original} at `b`: 1 steps keep their recorded outcome"
        )),
        "{}",
        fork.stderr
    );
    assert_eq!(lines(&test, "a.txt"), ["a"]);
    assert_eq!(output(&test, "b"), serde_json::json!(10));
    let json = crate::status_json(&test);
    assert_eq!(
        json["run"]["forked_from"]["run"],
        original.as_str(),
        "{json}"
    );
    let status = cairn(&test, &["status"]);
    assert!(
        status
            .stdout
            .contains(&format!("forked from run {original} at `b`")),
        "{}",
        status.stdout
    );
    let before = cairn(&test, &["output", &original, "b"]);
    assert_eq!(before.stdout.trim(), "4");
    let verify = cairn(&test, &["audit", "verify", "--all"]);
    assert_eq!(verify.status, 0, "{}{}", verify.stdout, verify.stderr);
}

/// What stands on a step runs again with it: the step a fallback
/// recovered (a fork at the fallback, or `--step` it), every step after a
/// retried failure (under `continue` they ran on it), and the iterations
/// after a retried one.
#[test]
fn what_stands_on_a_step_runs_again_with_it() {
    let fallback = r#"plan fb "FB"
  allow: sh

task a "A"
  run: fail("a broke")
  on failure -> rescue

task rescue "Rescue" using:sh
  run: |
    let r = sh_try("test -f ok");
    if r.code != 0 { fail("rescue failed"); }
    "rescued"

task after "After"
  needs: a
  run: `after ${outputs["a"]}`
"#;
    let test = Test::new().file("fb.plan", fallback).file("ok", "");
    assert_eq!(cairn(&test, &["run", "fb.plan"]).status, 0);
    let original = crate::status_json(&test)["run"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    std::fs::remove_file(test.path().join("ok")).expect("rm");
    let fork = cairn(&test, &["fork", &original, "--at", "rescue"]);
    assert_eq!(fork.status, 1, "{}{}", fork.stdout, fork.stderr);
    let retry = cairn(&test, &["retry", &original, "--step", "rescue"]);
    assert_eq!(retry.status, 1, "{}{}", retry.stdout, retry.stderr);
    let status = crate::status_json(&test);
    let a = status["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == "a")
        .cloned();
    assert_eq!(a.expect("a")["status"], "failed", "{status}");

    let chain = r#"plan ch "Chain"
  allow: fs.read

task flaky "Flaky" using:fs.read
  on failure: continue
  run: if exists("ok") { "good" } else { fail("not yet") }

task dep "Dep"
  needs: flaky
  run: `saw ${outputs["flaky"]}`

task last "Last"
  needs: dep
  run: fail("always")
"#;
    let test = Test::new().file("ch.plan", chain);
    assert_eq!(cairn(&test, &["run", "ch.plan"]).status, 1);
    std::fs::write(test.path().join("ok"), "").expect("fix");
    let retry = cairn(&test, &["retry"]);
    assert_eq!(retry.status, 1, "{}{}", retry.stdout, retry.stderr);
    assert_eq!(output(&test, "dep"), serde_json::json!("saw good"));

    let looped = r#"plan lp "Loop"
  allow: fs.read

task grow "Grow" using:fs.read
  repeat: max 3
  run: |
    let mark = if exists("second") { "B" } else { "A" };
    if iteration.previous == () { mark } else { iteration.previous + mark }
"#;
    let test = Test::new().file("lp.plan", looped);
    assert_eq!(cairn(&test, &["run", "lp.plan"]).status, 0);
    assert_eq!(output(&test, "grow"), serde_json::json!("AAA"));
    std::fs::write(test.path().join("second"), "").expect("mark");
    let retry = cairn(&test, &["retry", "--step", "grow#2"]);
    assert_eq!(retry.status, 0, "{}{}", retry.stdout, retry.stderr);
    assert_eq!(output(&test, "grow"), serde_json::json!("ABB"));
    crate::assert_replays_identically(&test);
}
