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

/// `--status` and `--plan` filter the listing; a run whose process died
/// shows `interrupted`, not `running`.
#[test]
fn runs_filter_by_status_and_plan_and_tell_a_dead_run_from_a_running_one() {
    let test = recorded().file("q.plan", "plan q \"Q\"\n  allow: sh\n\ntask wait \"Wait\" using:sh\n  run: sh(\"touch started; sleep 30\")\n");
    let listed = |args: &[&str]| -> Vec<String> {
        let run = cairn(&test, &[&["runs"][..], args].concat());
        assert_eq!(run.status, 0, "{}", run.stderr);
        run.stdout
            .lines()
            .skip(1)
            .map(|l| {
                l.split_whitespace()
                    .take(3)
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    };
    let mut child = crate::durable::spawn(&test, &["run", "q.plan"]);
    crate::durable::wait_for(|| test.path().join("started").exists());
    assert_eq!(listed(&[]), ["q running", "p paused"]);
    assert_eq!(listed(&["--status", "running"]), ["q running"]);
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert_eq!(listed(&["--status", "running"]), Vec::<String>::new());
    assert_eq!(listed(&["--status", "interrupted"]), ["q interrupted"]);
    assert_eq!(listed(&["--status", "paused"]), ["p paused"]);
    assert_eq!(listed(&["--plan", "p"]), ["p paused"]);
    assert_eq!(
        listed(&["--plan", "q", "--status", "paused"]),
        Vec::<String>::new()
    );
    let json = cairn(&test, &["runs", "--json", "--status", "interrupted"]);
    let row: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("json");
    assert_eq!(row["status"], "interrupted");
    assert!(
        row["message"]
            .as_str()
            .is_some_and(|m| m.contains("its process ended")),
        "{row}"
    );
}

#[test]
fn runs_status_and_log_read_what_run_recorded() {
    let test = recorded();
    let runs = cairn(&test, &["runs"]);
    assert_eq!(runs.status, 0, "{}", runs.stderr);
    let header: Vec<&str> = runs
        .stdout
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["run", "plan", "status", "done", "started", "took", "file"]
    );
    let line = runs.stdout.lines().nth(1).expect("one run");
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cells[1..4], ["p", "paused", "2/3"]);
    assert!(cells[4].ends_with('s') && cells[5] == "ago", "{line}");
    assert_eq!(cells.last(), Some(&"p.plan"));
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
    assert_eq!(json["steps"][0]["output"], 1);
    let log = cairn(&test, &["log", "--json"]);
    let events: Vec<serde_json::Value> = log
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    // The store records what the run runs before the run starts.
    assert_eq!(events[0]["event"], "run_inputs");
    assert_eq!(events[0]["file"], "p.plan");
    assert_eq!(events[1]["event"], "run_started");
    assert_eq!(events.last().expect("events")["event"], "run_finished");
    let id = cells[0];
    let by_prefix = cairn(&test, &["status", &id[..4]]);
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
        "error: the run store `.cairn/state.db` has schema version 99, newer than this cairn understands (8); upgrade cairn\n"
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

/// Eight `cairn run` at once on a new state directory: each creates and
/// migrates the schema or finds it made, and every run is recorded.
#[test]
fn runs_started_at_once_on_a_new_store_all_succeed() {
    let exe = assert_cmd::cargo::cargo_bin("cairn");
    for round in 0..3 {
        let test = Test::new().file("p.plan", "plan p \"P\"\n\ntask a \"A\"\n  run: 1\n");
        let children: Vec<std::process::Child> = (0..8)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args(["run", "p.plan"])
                    .current_dir(test.path())
                    .env("NO_COLOR", "1")
                    .env_remove("RUST_LOG")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("cairn starts")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("cairn ends");
            assert!(
                out.status.success(),
                "round {round}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let runs = cairn(&test, &["runs", "--json"]);
        assert_eq!(runs.stdout.lines().count(), 8, "{}", runs.stdout);
    }
}

/// Adds an event to the newest run's log directly (as a bug, a disk or an
/// older cairn might have left it), at the end of its chain.
fn add_event(test: &Test, body: &str) -> i64 {
    let conn = db(test);
    let (run, no, seq): (String, i64, i64) = conn
        .query_row(
            "SELECT r.id, r.no, (SELECT count(*) FROM events e WHERE e.run_id = r.id)
             FROM runs r ORDER BY r.started_at DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("a run");
    conn.execute(
        "INSERT INTO events (id, run_id, seq, body, hash) VALUES (?1, ?2, ?3, ?4, '')",
        rusqlite::params![(no << 32) | (seq + 1), run, seq + 1, body],
    )
    .expect("insert");
    seq + 1
}

/// A row that is not JSON: `runs`, `status` and `log` still answer, and say
/// which row they could not read.
#[test]
fn a_malformed_event_row_is_reported_not_fatal() {
    let test = recorded();
    let seq = add_event(&test, "{not json");
    let runs = cairn(&test, &["runs"]);
    assert_eq!(runs.status, 0, "{}", runs.stderr);
    assert!(
        runs.stdout.contains("1 event cannot be read"),
        "{}",
        runs.stdout
    );
    let status = cairn(&test, &["status"]);
    assert_eq!(status.status, 0, "{}", status.stderr);
    assert!(
        status
            .stdout
            .contains(&format!("event {seq} cannot be read")),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("build  succeeded"),
        "{}",
        status.stdout
    );
    let log = cairn(&test, &["log"]);
    assert_eq!(log.status, 0, "{}", log.stderr);
    assert!(
        log.stdout.contains(&format!("event {seq} cannot be read")),
        "{}",
        log.stdout
    );
}

/// Outputs recorded too deep to read back (as cairn recorded them before it
/// refused them): 200 levels (past serde_json's 128) and 1,100 (past
/// SQLite's 1,000). The step shows as succeeded with its output unreadable,
/// not as running, and `runs` still lists every run.
#[test]
fn outputs_recorded_too_deep_are_reported_not_fatal() {
    for depth in [200, 1100] {
        let test = Test::new().file("p.plan", "plan p \"P\"\n\ntask a \"A\"\n  run: 1\n");
        let run = cairn(&test, &["run", "p.plan"]);
        assert_eq!(run.status, 0, "{}", run.stdout);
        let output = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        add_event(&test, r#"{"event":"step_started","step":"deep","at_ms":1}"#);
        let seq = add_event(
            &test,
            &format!(
                r#"{{"event":"step_succeeded","step":"deep","attempts":1,"output":{output},"at_ms":2}}"#
            ),
        );
        let runs = cairn(&test, &["runs"]);
        assert_eq!(runs.status, 0, "{depth}: {}", runs.stderr);
        let status = crate::status_step(&test, "deep");
        assert_eq!(status["status"], "succeeded", "{depth}: {status}");
        let unreadable = status["unreadable"].as_str().unwrap_or_default();
        assert!(
            unreadable.starts_with(&format!("unreadable output (event {seq}: ")),
            "{depth}: {status}"
        );
        let text = cairn(&test, &["status"]);
        assert!(text.stdout.contains("unreadable output"), "{}", text.stdout);
        let log = cairn(&test, &["log"]);
        assert_eq!(log.status, 0, "{}", log.stderr);
    }
}

/// Without `--state-dir`, the store is the nearest `.cairn/` from the
/// current directory up, as git finds `.git`; a subdirectory's commands see
/// the runs recorded above it, and a named directory is used as named.
#[test]
fn the_store_is_found_from_a_subdirectory() {
    let test = Test::new().file("p.plan", "plan p \"P\"\n\ntask a \"A\"\n  run: 1\n");
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let deeper = test.path().join("src/deeper");
    std::fs::create_dir_all(&deeper).expect("subdirectory");
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let status = crate::run_in(&deeper, &args(&["status"]));
    assert_eq!(status.status, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("of `p` (p.plan): succeeded"),
        "{}",
        status.stdout
    );
    let output = crate::run_in(&deeper, &args(&["output", "a"]));
    assert_eq!(output.stdout.trim(), "1");
    // Named, it is used as named: here there is none.
    let named = crate::run_in(&deeper, &args(&["runs", "--state-dir", ".cairn"]));
    assert_ne!(named.status, 0);
    assert!(
        named.stderr.contains("no runs recorded"),
        "{}",
        named.stderr
    );
    assert!(
        !deeper.join(".cairn").exists(),
        "a read-only command created a store"
    );
}
