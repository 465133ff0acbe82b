//! Integration tests: every test drives the real `cairn` binary through [`Test`].

mod architecture;
mod audit;
mod cancel;
mod check;
mod conventions;
mod damage;
mod diagnostics;
mod docs;
mod durable;
mod each;
mod embed;
mod failures;
mod finally;
mod functions;
mod gates;
mod graph;
mod needs;
mod outputs;
mod policies;
mod processes;
mod properties;
mod prune;
mod repeat;
mod repl;
mod retry;
mod run;
mod sandbox;
mod scheduling;
mod stdlib;
mod store;
mod subplan;

use std::path::{Path, PathBuf};
use std::process::Output;

/// A small builder: files in a fresh directory, arguments, and what to expect.
pub struct Test {
    dir: tempfile::TempDir,
    args: Vec<String>,
}

/// What one run of the binary produced.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The summary row of `step`, its spaces squeezed and its time column
    /// (which varies from run to run) shown as `<t>`. Steps that never ran
    /// have no time column.
    pub fn row(&self, step: &str) -> String {
        let line = self
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(step))
            .unwrap_or_else(|| panic!("no row for {step}:\n{}", self.stdout));
        let is_time = |w: &str| {
            w.strip_suffix('s')
                .is_some_and(|n| n.contains('.') && n.parse::<f64>().is_ok())
        };
        line.split_whitespace()
            .enumerate()
            .map(|(i, w)| if i == 3 && is_time(w) { "<t>" } else { w })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            args: Vec::new(),
        }
    }

    /// Writes a file (creating parent directories) in the test's directory.
    pub fn file(self, name: &str, contents: impl AsRef<[u8]>) -> Self {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(path, contents).expect("write file");
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `cairn` with the arguments, in the test's directory, without colour.
    pub fn run(&self) -> Run {
        run_in(self.dir.path(), &self.args)
    }
}

/// Runs the binary in `dir`.
pub fn run_in(dir: &Path, args: &[String]) -> Run {
    let output: Output = assert_cmd::Command::cargo_bin("cairn")
        .expect("the cairn binary is built")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("cairn runs");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `cairn <args>` in the test's directory.
pub fn cairn(test: &Test, args: &[&str]) -> Run {
    run_in(
        test.path(),
        &args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(),
    )
}

/// The id of the first child run that `--events -` output (a run's stdout)
/// says a `plan:` step started.
pub fn first_child_run(events: &str) -> String {
    events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "sub_plan_started")
        .and_then(|e| e["run"].as_str().map(str::to_owned))
        .expect("a child run")
}

/// `cairn status --json` of the newest run.
pub fn status_json(test: &Test) -> serde_json::Value {
    let status = cairn(test, &["status", "--json"]);
    assert_eq!(status.status, 0, "{}", status.stderr);
    serde_json::from_str(&status.stdout).expect("status is JSON")
}

/// The newest run's step ids, in the order `cairn status --json` lists them.
pub fn status_ids(test: &Test) -> Vec<String> {
    status_json(test)["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"].as_str().expect("id").to_owned())
        .collect()
}

/// A replay of the newest run reproduces it, and its record verifies.
pub fn assert_replays_identically(test: &Test) {
    let replay = cairn(test, &["replay"]);
    assert_eq!(replay.status, 0, "{}{}", replay.stdout, replay.stderr);
    assert!(replay.stdout.contains("identical"), "{}", replay.stdout);
    assert_eq!(cairn(test, &["audit", "verify"]).status, 0);
}

/// The newest run's step `id`, as `cairn status --json` shows it.
pub fn status_step(test: &Test, id: &str) -> serde_json::Value {
    let status = status_json(test);
    let steps = status["steps"].as_array().expect("steps");
    let step = steps.iter().find(|s| s["step"] == id);
    step.unwrap_or_else(|| panic!("no step `{id}` in {status}"))
        .clone()
}

/// The newest run's step `id`'s output (`null` for none), as `cairn status
/// --json` shows it.
pub fn step_output(test: &Test, id: &str) -> serde_json::Value {
    status_step(test, id)["output"].clone()
}

/// The test's run store, opened directly (to look at or tamper with).
pub fn db(test: &Test) -> rusqlite::Connection {
    rusqlite::Connection::open(test.path().join(".cairn/state.db")).expect("open")
}

/// The rows of a two-column query on the test's run store.
pub fn pairs<A: rusqlite::types::FromSql, B: rusqlite::types::FromSql>(
    test: &Test,
    sql: &str,
) -> Vec<(A, B)> {
    let conn = db(test);
    let mut stmt = conn.prepare(sql).expect("query");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// The repository root, for examples and docs.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
