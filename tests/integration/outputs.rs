//! `cairn output` and `cairn artifact`: a run's step outputs and artifacts,
//! read back without sqlite3.

use crate::{cairn, status_step, Test};

const PLAN: &str = r#"plan p "P"
  on failure: continue

task write "Write"
  run: |
    artifact("notes", "line one\nline two\n");
    artifact("data", #{ n: 1 });
    "done\n"

task count "Count"
  run: #{ n: 3, list: [1, 2] }

task parts "Parts"
  each: [1, 2]
  run: item * 10

task bad "Bad"
  run: fail("nope")
"#;

/// A step's output as JSON (pretty), a string as its text with `--raw`,
/// the parts of a task by their ids, and clear errors for a step that
/// failed or does not exist; `status --json` holds outputs as JSON values.
#[test]
fn output_prints_a_step_s_output() {
    let test = Test::new().file("p.plan", PLAN);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 0);
    let run = cairn(&test, &["output", "count"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "{\n  \"list\": [\n    1,\n    2\n  ],\n  \"n\": 3\n}\n"
    );
    assert_eq!(cairn(&test, &["output", "write"]).stdout, "\"done\\n\"\n");
    assert_eq!(cairn(&test, &["output", "write", "--raw"]).stdout, "done\n");
    assert_eq!(cairn(&test, &["output", "parts[1]"]).stdout, "20\n");
    assert_eq!(status_step(&test, "count")["output"]["n"], 3);

    let failed = cairn(&test, &["output", "bad"]);
    assert_eq!(failed.status, 2);
    assert!(
        failed.stderr.contains("step `bad` of run")
            && failed.stderr.contains("has no output: it failed: nope"),
        "{}",
        failed.stderr
    );
    let typo = cairn(&test, &["output", "cuont"]);
    assert_eq!(typo.status, 2);
    assert!(
        typo.stderr.contains("(did you mean `count`?)"),
        "{}",
        typo.stderr
    );

    // With the run named (by a prefix of its id).
    let id = crate::status_json(&test)["run"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let named = cairn(&test, &["output", &id[..4], "parts"]);
    assert_eq!(named.stdout, "[\n  10,\n  20\n]\n");
}

/// `cairn artifact` lists a run's artifacts and writes one's content to
/// stdout or, whole, to a file.
#[test]
fn artifact_lists_and_writes_artifacts() {
    let test = Test::new().file("p.plan", PLAN);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 0);
    let list = cairn(&test, &["artifact"]);
    assert_eq!(list.status, 0, "{}", list.stderr);
    assert!(
        list.stdout.starts_with("artifact  step   size"),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout.contains("notes     write  18 bytes"),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("data      write"), "{}", list.stdout);
    assert_eq!(
        cairn(&test, &["artifact", "notes"]).stdout,
        "line one\nline two\n"
    );
    assert_eq!(
        cairn(&test, &["artifact", "data"]).stdout,
        "{\n  \"n\": 1\n}"
    );
    let written = cairn(&test, &["artifact", "notes", "-o", "notes.txt"]);
    assert_eq!(written.status, 0, "{}", written.stderr);
    assert_eq!(
        std::fs::read_to_string(test.path().join("notes.txt")).expect("written"),
        "line one\nline two\n"
    );
    // A directory that does not exist: an error, and nothing half-written.
    let nowhere = cairn(&test, &["artifact", "notes", "-o", "no/such/dir/x"]);
    assert_eq!(nowhere.status, 2);
    assert!(
        nowhere.stderr.contains("cannot create `no/such/dir/x`"),
        "{}",
        nowhere.stderr
    );
    assert!(!test.path().join("no").exists());

    let missing = cairn(&test, &["artifact", "nots"]);
    assert_eq!(missing.status, 2);
    assert!(
        missing
            .stderr
            .contains("has no artifact `nots`, and `nots` is not one run's id"),
        "{}",
        missing.stderr
    );
    let id = crate::status_json(&test)["run"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let typo = cairn(&test, &["artifact", &id, "nots"]);
    assert!(
        typo.stderr.contains("(did you mean `notes`?)"),
        "{}",
        typo.stderr
    );
    let by_run = cairn(&test, &["artifact", &id]);
    assert!(
        by_run.stdout.contains("notes     write"),
        "{}",
        by_run.stdout
    );
}
