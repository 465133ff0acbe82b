//! `each:`: a task run once per element of a list, as `task[i]`, with the
//! array of their outputs downstream.

use crate::durable::{spawn, wait_for};
use crate::{
    assert_replays_identically, cairn, status_ids, status_step, step_output as output, Test,
};

/// The events of the newest run, as `--events -` wrote them.
fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

const CONVERT: &str = r#"plan convert "Convert files"
  allow: sh, fs.read

task files "List the inputs" using:fs.read
  run: list_dir("data")

task convert "Convert one file" using:sh
  needs: files
  each: outputs["files"]
  max_parallel: 2
  input:
    name: item.to_upper()
  run: |
    let out = sh(["echo", input.name, `${index}`]).stdout;
    out.trim();
    out
  expect: result.len() > 0

task report "Summarise"
  needs: convert
  run: outputs["convert"]
"#;

/// One instance per element, each with `item` and `index`, ids `task[i]`
/// in events and `status`; downstream reads the outputs in element order.
#[test]
fn each_runs_an_instance_per_element_and_fans_in_in_order() {
    let test = Test::new()
        .file("p.plan", CONVERT)
        .file("data/a.txt", "")
        .file("data/b.txt", "")
        .file("data/c.txt", "");
    let run = cairn(&test, &["run", "p.plan", "--events", "-"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let expected = serde_json::json!(["A.TXT 0", "B.TXT 1", "C.TXT 2"]);
    assert_eq!(output(&test, "report"), expected);
    assert_eq!(output(&test, "convert"), expected);
    assert_eq!(output(&test, "convert[1]"), serde_json::json!("B.TXT 1"));
    let events = events(&run.stdout);
    // The run's start names the run.
    let id = crate::status_json(&test)["run"]["id"].clone();
    assert_eq!(events[0]["event"], "run_started");
    assert_eq!(events[0]["run"], id);
    let fanned = events
        .iter()
        .find(|e| e["event"] == "step_fanned_out")
        .expect("a fan-out event");
    assert_eq!(
        fanned["items"],
        serde_json::json!(["a.txt", "b.txt", "c.txt"])
    );
    // `max_parallel: 2` on the task: never three instances at once.
    let mut running = 0;
    for event in &events {
        let step = event["step"].as_str().unwrap_or_default();
        if !step.starts_with("convert[") {
            continue;
        }
        match event["event"].as_str() {
            Some("step_started") => running += 1,
            Some("step_succeeded" | "step_failed") => running -= 1,
            _ => {}
        }
        assert!(running <= 2, "more than 2 instances ran at once");
    }
    assert_eq!(
        status_ids(&test),
        [
            "files",
            "convert",
            "convert[0]",
            "convert[1]",
            "convert[2]",
            "report"
        ]
    );
    // A replay makes the same instances, with the same outcomes, and the
    // record verifies.
    let replay = cairn(&test, &["replay"]);
    assert!(
        replay.stdout.contains("replayed 6 steps"),
        "{}",
        replay.stdout
    );
    assert_replays_identically(&test);
}

/// An empty list: no instance, and the task succeeds with `[]`; a literal
/// list, `range` and `matrix` give static fan-outs.
#[test]
fn empty_literal_range_and_matrix_lists() {
    let plan = r#"plan p "P"

task none "None"
  each: []
  run: fail("never")

task squares "Squares"
  each: range(1, 4)
  run: item * item

task jobs "Jobs"
  each: matrix(#{ os: ["linux", "mac"], rust: ["stable", "beta"] })
  run: `${item.os}-${item.rust}`
"#;
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(output(&test, "none"), serde_json::json!([]));
    assert_eq!(output(&test, "squares"), serde_json::json!([1, 4, 9]));
    assert_eq!(
        output(&test, "jobs"),
        serde_json::json!(["linux-stable", "linux-beta", "mac-stable", "mac-beta"])
    );
    let dry = cairn(&test, &["run", "p.plan", "--dry-run"]);
    assert!(
        dry.stdout.contains("3 instances (`each: range(1, 4)`)"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("0 instances (`each: []`)"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("one instance per element of `matrix("),
        "{}",
        dry.stdout
    );
}

/// Under `on failure: continue` a failed instance leaves `()` in its slot
/// and the others go on; under `stop` the first instance failing for good
/// fails the task, and a fallback takes over from the task.
#[test]
fn a_failed_instance_follows_the_task_s_failure_policy() {
    let plan = r#"plan p "P"
  on failure: continue

task each "Each"
  each: [1, 2, 3]
  run: if item == 2 { fail("two") } else { item }

task after "After"
  needs: each
  run: outputs["each"]
"#;
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["run", "p.plan"]);
    // (`continue` records failures and does not fail the run.)
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(output(&test, "after"), serde_json::json!([1, null, 3]));
    assert_eq!(status_step(&test, "each[1]")["status"], "failed");
    assert_eq!(
        status_step(&test, "each")["error"],
        "1 of its 3 instances failed"
    );

    // `stop` (the default): the task fails at its first failed instance,
    // and the instances not started yet never start.
    let stopping = plan.replace("  on failure: continue\n", "").replace(
        "  each: [1, 2, 3]\n",
        "  each: [1, 2, 3, 4]\n  max_parallel: 1\n",
    );
    let test = Test::new().file("p.plan", stopping);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("run failed: `each` failed: `each[1]` failed: two"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("start     each[2]"), "{}", run.stdout);

    let routed = plan.replace("  on failure: continue\n", "").replace(
        "  run: if item == 2",
        "  on failure -> rescue\n  run: if item == 2",
    ) + "\ntask rescue \"Rescue\"\n  run: failure.error\n";
    let test = Test::new().file("p.plan", routed);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(status_step(&test, "each")["status"], "recovered");
    assert_eq!(
        output(&test, "rescue"),
        serde_json::json!("`each[1]` failed: two")
    );
}

/// An `each:` that does not give an array fails its task, saying what it gave.
#[test]
fn each_of_something_not_a_list_fails_the_task() {
    let plan = "plan p \"P\"\n\ntask t \"T\"\n  each: \"abc\"\n  run: item\n";
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 1);
    assert_eq!(
        status_step(&test, "t")["error"],
        "each: `\"abc\"` is a string, not an array"
    );
}

/// Killed while instances run, a resumed run keeps the instances that
/// finished and runs only those that had not.
#[test]
fn a_resumed_fan_out_runs_only_the_instances_that_had_not_finished() {
    let plan = r#"plan p "P"
  allow: sh
  max_parallel: 2

task convert "Convert" using:sh
  each: range(0, 6)
  run: sh(`echo ${item} >> started.txt; if [ ${item} -ge 2 ] && [ -e slow ]; then sleep 30; fi; echo ${item} >> ended.txt`).code

task report "Report"
  needs: convert
  run: outputs["convert"].len()
"#;
    let test = Test::new().file("p.plan", plan).file("slow", "");
    let mut child = spawn(&test, &["run", "p.plan"]);
    let started = test.path().join("started.txt");
    let lines = |path: &std::path::Path| {
        let mut lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    wait_for(|| lines(&started).len() == 4);
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert_eq!(lines(&test.path().join("ended.txt")), ["0", "1"]);
    std::fs::remove_file(test.path().join("slow")).expect("quick now");
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 0, "{}{}", resumed.stdout, resumed.stderr);
    // 0 and 1 finished before the kill: they never started again.
    assert_eq!(lines(&started), ["0", "1", "2", "2", "3", "3", "4", "5"]);
    assert_eq!(output(&test, "report"), serde_json::json!(6));
}
