//! The run store: every run recorded, `runs` / `status` / `log`, and the
//! hash-chained audit log catching edits, removals and reorderings.

use crate::{cairn, db, run_in, Test};

const PLAN: &str = "plan p \"P\"\n\ntask build \"Build\"\n  run: 1\n\ntask test \"Test\"\n  needs: build\n  run: fail(\"red\")\n  on failure: continue\n\ngate ship \"Ship\"\n  needs: build\n";

fn recorded() -> Test {
    let test = Test::new().file("p.plan", PLAN);
    let run = run_in(test.path(), &["run".into(), "p.plan".into()]);
    assert_eq!(run.status, 3, "{}", run.stdout);
    assert!(
        run.stdout.contains("is recorded in .cairn/state.db"),
        "{}",
        run.stdout
    );
    test
}

#[test]
fn runs_status_and_log_read_what_run_recorded() {
    let test = recorded();
    let runs = cairn(&test, &["runs"]);
    assert_eq!(runs.status, 0, "{}", runs.stderr);
    let line = runs.stdout.lines().nth(1).expect("one run");
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cells[1..], ["p", "paused", "2/3", "p.plan"]);
    let status = cairn(&test, &["status"]);
    assert!(
        status.stdout.contains("test   failed     1"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("waiting for approval: ship"),
        "{}",
        status.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&cairn(&test, &["status", "--json"]).stdout).expect("json");
    assert_eq!(json["run"]["status"], "paused");
    assert_eq!(json["steps"][0]["output"], "1");
    let log = cairn(&test, &["log", "--json"]);
    let events: Vec<serde_json::Value> = log
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(events.first().expect("events")["event"], "run_started");
    assert_eq!(events.last().expect("events")["event"], "run_finished");
    let id = cells[0];
    let by_prefix = cairn(&test, &["status", &id[..8]]);
    assert_eq!(by_prefix.status, 0, "{}", by_prefix.stderr);
}

#[test]
fn an_intact_log_verifies() {
    let test = recorded();
    let verify = cairn(&test, &["audit", "verify"]);
    assert_eq!(verify.status, 0, "{}", verify.stdout);
    assert!(
        verify.stdout.contains("hash chain intact"),
        "{}",
        verify.stdout
    );
}

#[test]
fn an_edited_field_is_detected() {
    let test = recorded();
    db(&test)
        .execute(
            "UPDATE events SET body = replace(body, 'red', 'green') WHERE body LIKE '%red%'",
            [],
        )
        .expect("edit");
    let verify = cairn(&test, &["audit", "verify"]);
    assert_eq!(verify.status, 1);
    assert!(
        verify
            .stdout
            .contains("do not match its hash (edited or moved)"),
        "{}",
        verify.stdout
    );
}

#[test]
fn a_removed_row_is_detected() {
    for which in ["seq = 3", "seq = (SELECT MAX(seq) FROM events)"] {
        let test = recorded();
        db(&test)
            .execute(&format!("DELETE FROM events WHERE {which}"), [])
            .expect("delete");
        let verify = cairn(&test, &["audit", "verify"]);
        assert_eq!(verify.status, 1, "{which}: {}", verify.stdout);
        assert!(
            verify.stdout.contains("removed"),
            "{which}: {}",
            verify.stdout
        );
    }
}

#[test]
fn swapped_rows_are_detected() {
    let test = recorded();
    let conn = db(&test);
    conn.execute_batch(
        "UPDATE events SET seq = -1 WHERE seq = 2;
         UPDATE events SET seq = 2 WHERE seq = 3;
         UPDATE events SET seq = 3 WHERE seq = -1;",
    )
    .expect("swap");
    let verify = cairn(&test, &["audit", "verify"]);
    assert_eq!(verify.status, 1);
    assert!(verify.stdout.contains("event 2"), "{}", verify.stdout);
}

#[test]
fn a_newer_or_corrupt_database_is_a_clear_error() {
    let test = recorded();
    db(&test)
        .pragma_update(None, "user_version", 99)
        .expect("bump");
    let newer = cairn(&test, &["runs"]);
    assert_eq!(newer.status, 1);
    assert_eq!(
        newer.stderr,
        "error: the run store `.cairn/state.db` has schema version 99, newer than this cairn understands (5); upgrade cairn\n"
    );
    let test = Test::new().file(".cairn/state.db", "this is not a database, just text");
    let corrupt = cairn(&test, &["runs"]);
    assert_eq!(corrupt.status, 1);
    assert!(
        corrupt
            .stderr
            .starts_with("error: the run store `.cairn/state.db`:"),
        "{}",
        corrupt.stderr
    );
}

#[test]
fn the_state_directory_can_move() {
    let test = Test::new().file("p.plan", "plan p \"P\"\n\ntask a \"A\"\n  run: 1\n");
    let run = cairn(&test, &["run", "p.plan", "--state-dir", "elsewhere"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(test.path().join("elsewhere/state.db").exists());
    assert!(!test.path().join(".cairn").exists());
    let none = cairn(&test, &["runs"]);
    assert_eq!(none.status, 2);
    assert!(
        none.stderr.contains("no runs recorded in `.cairn` yet"),
        "{}",
        none.stderr
    );
}
