//! `cairn runs delete` and `cairn runs prune`: whole runs go, with their
//! child runs and the blobs only they used; what can go on, or is running,
//! stays.

use crate::durable::{spawn, wait_for};
use crate::{cairn, Test};

fn count(test: &Test, table: &str) -> i64 {
    rusqlite::Connection::open(test.path().join(".cairn/state.db"))
        .expect("db")
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

/// A deleted run takes its child runs, log, plan, artifacts and the blobs
/// nothing else holds; the other runs still verify.
#[test]
fn a_deleted_run_goes_whole_with_its_children() {
    let child =
        "plan c \"C\"\n\ntask art \"Art\"\n  run: artifact(\"note\", \"only in the child\")\n";
    let parent = "plan p \"P\"\n\ntask one \"One\"\n  plan: \"c.plan\"\n";
    let kept = "plan k \"K\"\n\ntask a \"A\"\n  run: artifact(\"kept\", \"stays\")\n";
    let test = Test::new()
        .file("c.plan", child)
        .file("p.plan", parent)
        .file("k.plan", kept);
    assert_eq!(cairn(&test, &["run", "k.plan"]).status, 0);
    let run = cairn(&test, &["run", "p.plan", "--events", "-"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let child_id = crate::first_child_run(&run.stdout);
    let newest = crate::status_json(&test)["run"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(count(&test, "blobs"), 2);
    let refused = cairn(&test, &["runs", "delete", &child_id]);
    assert_eq!(refused.status, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("it is deleted with the run it belongs to"),
        "{}",
        refused.stderr
    );
    let delete = cairn(&test, &["runs", "delete", &newest]);
    assert_eq!(delete.status, 0, "{}", delete.stderr);
    assert_eq!(
        delete.stdout,
        format!("deleted run {newest} and its child run\n")
    );
    assert_eq!(count(&test, "runs"), 1);
    assert_eq!(
        count(&test, "blobs"),
        1,
        "the child's artifact went with it"
    );
    let gone = cairn(&test, &["status", &child_id]);
    assert_ne!(gone.status, 0);
    let verify = cairn(&test, &["audit", "verify", "--all"]);
    assert_eq!(verify.status, 0, "{}{}", verify.stdout, verify.stderr);
}

/// `audit verify --all` checks child runs too; a file a run created (no
/// contents before it) does not keep unused blobs alive; an age too large
/// to subtract prunes nothing.
#[test]
fn every_run_is_verified_and_blobs_go_when_unused() {
    let child = "plan c \"C\"\n\ntask art \"Art\"\n  run: artifact(\"note\", \"child note\")\n";
    let parent = "plan p \"P\"\n\ntask one \"One\"\n  plan: \"c.plan\"\n";
    let writer = "plan w \"W\"\n  allow: fs.write\n\ntask w \"W\" using:fs.write\n  run: write_file(\"new.txt\", \"x\")\n";
    let test = Test::new()
        .file("c.plan", child)
        .file("p.plan", parent)
        .file("w.plan", writer);
    assert_eq!(cairn(&test, &["run", "w.plan"]).status, 0);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 0);
    let verify = cairn(&test, &["audit", "verify", "--all", "--json"]);
    assert_eq!(verify.stdout.lines().count(), 3, "{}", verify.stdout);
    let huge = cairn(
        &test,
        &["runs", "prune", "--older-than", "9223372036854775808ms"],
    );
    assert_eq!(huge.stdout, "no run to prune\n", "{}", huge.stderr);
    let newest = crate::status_json(&test)["run"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(count(&test, "blobs"), 1);
    assert_eq!(cairn(&test, &["runs", "delete", &newest]).status, 0);
    assert_eq!(
        count(&test, "blobs"),
        0,
        "the artifact's blob went with its run"
    );
}

/// Prune deletes ended runs only, keeping the newest `--keep`; a paused
/// run, which can go on, stays, and so does a run being run.
#[test]
fn prune_keeps_what_can_go_on_and_what_runs() {
    let done = "plan d \"D\"\n\ntask a \"A\"\n  run: 1\n";
    let paused = "plan g \"G\"\n\ngate ok \"OK?\"\n";
    let slow = "plan s \"S\"\n  allow: sh\n\ntask w \"W\" using:sh\n  run: sh(\"touch started && sleep 3\").code\n";
    let test = Test::new()
        .file("d.plan", done)
        .file("g.plan", paused)
        .file("s.plan", slow);
    for _ in 0..3 {
        assert_eq!(cairn(&test, &["run", "d.plan"]).status, 0);
    }
    assert_eq!(cairn(&test, &["run", "g.plan"]).status, 3);
    let needs = cairn(&test, &["runs", "prune"]);
    assert_eq!(needs.status, 2, "{}", needs.stderr);
    let prune = cairn(&test, &["runs", "prune", "--keep", "1"]);
    assert_eq!(prune.status, 0, "{}", prune.stderr);
    assert!(
        prune.stdout.starts_with("deleted 2 runs: "),
        "{}",
        prune.stdout
    );
    assert_eq!(count(&test, "runs"), 2);
    let young = cairn(&test, &["runs", "prune", "--older-than", "30d"]);
    assert_eq!(young.stdout, "no run to prune\n");
    // A run a live process holds is not deleted.
    let mut running = spawn(&test, &["run", "s.plan"]);
    wait_for(|| test.path().join("started").exists());
    let list = cairn(&test, &["runs", "--json"]);
    let id = serde_json::from_str::<serde_json::Value>(list.stdout.lines().next().expect("a run"))
        .expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let busy = cairn(&test, &["runs", "delete", &id]);
    assert_eq!(busy.status, 2, "{}", busy.stderr);
    assert!(
        busy.stderr.contains("is being run by a live process"),
        "{}",
        busy.stderr
    );
    running.wait().expect("run ends");
    let pruned = cairn(&test, &["runs", "prune", "--older-than", "0d"]);
    assert_eq!(pruned.status, 0, "{}", pruned.stderr);
    assert_eq!(count(&test, "runs"), 1, "only the paused run is left");
}
