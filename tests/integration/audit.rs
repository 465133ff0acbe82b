//! The audit log: what `audit verify` detects with and without a kept head,
//! `audit head`, and `resume` refusing a run whose record was edited.

use sha2::{Digest, Sha256};

use crate::{cairn, db, Test};

/// Saves an artifact, waits at a gate, then deploys to `params.target`.
const PLAN: &str = "plan p \"P\"
  param target = \"staging\"
  allow: fs.write

task build \"Build\" using:fs.write
  run: |
    artifact(\"notes\", \"built fine\");
    write_file(\"built.txt\", \"1\");
    1

gate ship \"Ship\"
  needs: build

task deploy \"Deploy\" using:fs.write
  needs: ship
  run: write_file(\"deployed.txt\", params.target)
";

/// A run paused at `ship`, approved, not yet resumed.
fn approved() -> Test {
    let test = Test::new().file("p.plan", PLAN);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 3, "{}", run.stdout);
    let approve = cairn(&test, &["approve", "ship", "--reason", "ok", "--by", "ana"]);
    assert_eq!(approve.status, 0, "{}", approve.stderr);
    test
}

/// The run finished: resumed after the approval.
fn finished() -> Test {
    let test = approved();
    let resume = cairn(&test, &["resume"]);
    assert_eq!(resume.status, 0, "{}", resume.stdout);
    test
}

fn verify(test: &Test, args: &[&str]) -> (i32, String) {
    let mut all = vec!["audit", "verify"];
    all.extend_from_slice(args);
    let run = cairn(test, &all);
    (run.status, run.stdout)
}

fn head(test: &Test) -> String {
    let run = cairn(test, &["audit", "head"]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    run.stdout.trim().to_owned()
}

/// Rewrites the run's log as `bodies`, with a valid chain and the run row's
/// head moved to match: what someone with write access to the store and
/// the (public) chain rule can do.
fn rewrite(test: &Test, bodies: &[String]) {
    let conn = db(test);
    let no: i64 = conn
        .query_row("SELECT no FROM runs", [], |r| r.get(0))
        .expect("one run");
    conn.execute("DELETE FROM events", []).expect("delete");
    let mut last = String::new();
    for (i, body) in bodies.iter().enumerate() {
        let seq = i as i64 + 1;
        let mut hasher = Sha256::new();
        hasher.update(format!("{last}\n{seq}\n{body}"));
        last = format!("{:x}", hasher.finalize());
        conn.execute(
            "INSERT INTO events (id, run_id, seq, body, hash) SELECT ?1, id, ?2, ?3, ?4 FROM runs",
            rusqlite::params![(no << 32) | seq, seq, body, last],
        )
        .expect("insert");
    }
    conn.execute(
        "UPDATE runs SET events = ?1, last_hash = ?2",
        rusqlite::params![bodies.len() as i64, last],
    )
    .expect("head");
}

fn bodies(test: &Test) -> Vec<String> {
    let conn = db(test);
    let mut stmt = conn
        .prepare("SELECT body FROM events ORDER BY id")
        .expect("select");
    let rows = stmt
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<Vec<String>, _>>()
        .expect("bodies");
    rows
}

#[test]
fn head_prints_the_last_hash_and_verify_checks_against_it() {
    let test = finished();
    let kept = head(&test);
    assert_eq!(kept.len(), 64, "{kept}");
    let json = cairn(&test, &["audit", "head", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(json["head"], kept.as_str());
    let events = json["events"].as_u64().expect("count");
    let (status, out) = verify(&test, &["--head", &kept]);
    assert_eq!(status, 0, "{out}");
    assert!(
        out.ends_with(&format!(
            "ok, {events} events, hash chain intact, ends at the kept head\n"
        )),
        "{out}"
    );
}

#[test]
fn a_head_kept_before_more_events_still_verifies() {
    let test = approved();
    let kept = head(&test);
    let before = bodies(&test).len();
    assert_eq!(cairn(&test, &["resume"]).status, 0);
    let after = bodies(&test).len();
    let (status, out) = verify(&test, &["--head", &kept]);
    assert_eq!(status, 0, "{out}");
    assert!(
        out.contains(&format!(
            "the kept head is event {before} ({} recorded since)",
            after - before
        )),
        "{out}"
    );
}

/// Without an anchor these rewrites leave a consistent chain (nothing
/// secret goes into it); with the head kept before, each is detected.
#[test]
fn rewrites_of_the_log_are_detected_against_a_kept_head() {
    type Rewrite = fn(Vec<String>) -> Vec<String>;
    let rewrites: [(&str, Rewrite); 3] = [
        ("tail removed, head fixed", |mut b| {
            // The last events before `run_finished`, which stays.
            let end = b.len() - 1;
            b.drain(end - 3..end);
            b
        }),
        ("tail rewritten consistently", |b| {
            b.into_iter()
                .map(|e| e.replace("\"staging\"", "\"production\""))
                .collect()
        }),
        ("gate events left out", |b| {
            b.into_iter().filter(|e| !e.contains("\"gate_")).collect()
        }),
    ];
    for (what, change) in rewrites {
        let test = finished();
        let kept = head(&test);
        rewrite(&test, &change(bodies(&test)));
        let (status, out) = verify(&test, &[]);
        assert_eq!(status, 0, "{what}: without an anchor it passes: {out}");
        let (status, out) = verify(&test, &["--head", &kept]);
        assert_eq!(status, 1, "{what}: {out}");
        assert!(
            out.ends_with(&format!(
                ": the kept head {kept} is not in its audit log: events were rewritten or removed since it was taken\n"
            )),
            "{what}: {out}"
        );
    }
}

/// Edits outside the events are detected without an anchor: the chain
/// records the params, the plan, the status and every artifact's hash.
#[test]
fn edits_of_what_the_log_recorded_are_detected() {
    let edits = [
        (
            "UPDATE runs SET params = '[[\"target\",\"production\"]]'",
            "event 1: the run's stored params differs from what its log recorded (edited in the store)",
        ),
        (
            "UPDATE plans SET source = replace(source, 'deployed.txt', 'pwned.txt')",
            "event 1: the run's stored plan source differs from what its log recorded (edited in the store)",
        ),
        (
            "UPDATE plans SET body = body || x'00'",
            "event 1: the run's stored checked plan differs from what its log recorded (edited in the store)",
        ),
        (
            "UPDATE runs SET status = 'failed'",
            "the run's row: its status is `failed` but its log says `succeeded` (edited in the store)",
        ),
        (
            "UPDATE blobs SET content = CAST('built badly' AS BLOB)",
            "artifact `notes` of `build`: its content does not match the hash event 4 recorded (edited)",
        ),
        (
            "DELETE FROM artifacts",
            "artifact `notes` of `build`: event 4 saved it, but its row is gone",
        ),
    ];
    for (sql, problem) in edits {
        let test = finished();
        db(&test).execute(sql, []).expect(sql);
        let (status, out) = verify(&test, &[]);
        assert_eq!(status, 1, "{sql}: {out}");
        assert!(
            out.ends_with(&format!(": the audit log was tampered with at {problem}\n")),
            "{sql}: {out}"
        );
    }
}

/// A run whose params or stored plan were edited is not resumed: the edit
/// would decide what it deploys, or run injected code.
#[test]
fn resume_refuses_a_run_whose_record_was_edited() {
    for (sql, what) in [
        (
            "UPDATE runs SET params = '[[\"target\",\"production\"]]'",
            "params differs",
        ),
        (
            "UPDATE plans SET source = replace(source, 'deployed.txt', 'pwned.txt'), format = NULL",
            "plan source differs",
        ),
    ] {
        let test = approved();
        std::fs::remove_file(test.path().join("p.plan")).expect("plan file gone");
        db(&test).execute(sql, []).expect(sql);
        let id: String = db(&test)
            .query_row("SELECT id FROM runs", [], |r| r.get(0))
            .expect("one run");
        let resume = cairn(&test, &["resume"]);
        assert_eq!(resume.status, 1, "{sql}: {}", resume.stdout);
        assert_eq!(
            resume.stderr,
            format!(
                "error: run {id} does not verify: event 1: the run's stored {what} from what its log recorded (edited in the store); it is not gone on with (`cairn audit verify {id}`)\n"
            ),
            "{sql}"
        );
        assert!(!test.path().join("deployed.txt").exists());
        assert!(!test.path().join("pwned.txt").exists());
    }
}

#[test]
fn all_checks_every_run() {
    let test = finished();
    assert_eq!(
        cairn(&test, &["run", "p.plan", "--approve", "ship"]).status,
        0
    );
    let (status, out) = verify(&test, &["--all"]);
    assert_eq!(status, 0, "{out}");
    assert!(out.ends_with("2 runs verified, all intact\n"), "{out}");
    db(&test)
        .execute("UPDATE runs SET status = 'failed' WHERE no = 1", [])
        .expect("edit");
    let (status, out) = verify(&test, &["--all"]);
    assert_eq!(status, 1, "{out}");
    assert!(out.ends_with("2 runs verified, 1 not intact\n"), "{out}");
}
