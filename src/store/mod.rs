//! Stage 5, store: runs, step states and a hash-chained event log in SQLite.

mod audit;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use audit::AuditError;

use crate::plan::Plan;
use crate::run::Event;

/// Errors from the run store, each saying which database and what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error (locked, corrupt, full disk, …).
    #[error("the run store `{path}`: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer cairn.
    #[error("the run store `{path}` has schema version {found}, newer than this cairn understands ({known}); upgrade cairn")]
    NewerSchema {
        /// The database file.
        path: String,
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The state directory could not be created.
    #[error("cannot create the state directory `{path}`: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No run matches.
    #[error("{0}")]
    NotFound(String),
}

/// One recorded run.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    /// The run's id.
    pub id: String,
    /// The plan's id.
    pub plan: String,
    /// The plan file as given.
    pub file: String,
    /// `running`, `succeeded`, `failed`, `paused` or `interrupted`.
    pub status: String,
    /// Why it failed or paused.
    pub message: Option<String>,
    /// Steps in the plan.
    pub steps: i64,
    /// Steps that reached an end state (succeeded, failed, skipped, …).
    pub done: i64,
    /// Start, in milliseconds since 1970.
    pub started_at: i64,
    /// End, in milliseconds since 1970, when it ended.
    pub finished_at: Option<i64>,
}

/// One step of a recorded run.
#[derive(Clone, Debug, Serialize)]
pub struct StepRow {
    /// The step's id.
    pub step: String,
    /// Its last recorded status.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// The step's output as JSON text, if it produced one.
    pub output: Option<String>,
    /// Its error, if it failed.
    pub error: Option<String>,
    /// When it started, in ms since the run started.
    pub started_ms: Option<i64>,
    /// When it ended, in ms since the run started.
    pub finished_ms: Option<i64>,
}

/// One entry of a run's event log.
#[derive(Clone, Debug, Serialize)]
pub struct EventRow {
    /// Position in the run's log, from 1.
    pub seq: i64,
    /// The event as JSON text.
    pub body: String,
    /// sha256 over the previous row's hash and this row.
    pub hash: String,
}

/// The run store: `state.db` in the state directory.
pub struct Store {
    conn: Mutex<Connection>,
    /// Events waiting for the next commit: (run, event, its JSON).
    pending: Mutex<Vec<(String, Event, String)>>,
    /// Each run's event count and last hash, for the chain.
    heads: Mutex<std::collections::HashMap<String, (i64, String)>>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) `state.db` in `dir`, in WAL mode with a
    /// busy timeout, migrating an older schema forward.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join("state.db");
        let err = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        schema::migrate(&conn, &path)?;
        Ok(Self {
            conn: Mutex::new(conn),
            pending: Mutex::new(Vec::new()),
            heads: Mutex::new(std::collections::HashMap::new()),
            path,
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the start of a run and returns its id.
    pub fn begin(
        &self,
        plan: &Plan,
        file: &str,
        source: &str,
        params: &[(String, String)],
        seed: u64,
    ) -> Result<String, StoreError> {
        let now = now_ms();
        let id = format!("{now:x}{:04x}", std::process::id() & 0xffff);
        let hash = hex(&Sha256::digest(source.as_bytes()));
        let params = serde_json::to_string(params).expect("params serialize");
        let conn = self.lock();
        conn.execute(
            "INSERT INTO runs (id, plan, file, source, source_hash, params, seed, steps, status, started_at, events, last_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'running', ?9, 0, '')",
            params![id, plan.id, file, source, hash, params, seed as i64, plan.tasks.len() as i64, now],
        )
        .map_err(self.err())?;
        Ok(id)
    }

    /// Appends an event to the run's hash-chained log and updates the step
    /// and run it concerns. Events that settle something (a step's end, a
    /// decision, a gate, the run's end) commit at once, with any events
    /// buffered before them: once `record` returns for one, it and
    /// everything before it survive a crash. Starts, log lines and retries
    /// wait for the next commit, which halves the commits per step.
    pub fn record(&self, run: &str, event: &Event) -> Result<(), StoreError> {
        let body = serde_json::to_string(event).expect("events serialize");
        let mut conn = self.lock();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.push((run.to_owned(), event.clone(), body));
        let settles = !matches!(
            event,
            Event::StepStarted { .. }
                | Event::Log { .. }
                | Event::AttemptFailed { .. }
                | Event::Retrying { .. }
                | Event::Compensating { .. }
                | Event::RunStarted { .. }
        );
        if !settles && pending.len() < 256 {
            return Ok(());
        }
        let tx = conn.transaction().map_err(self.err())?;
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        for (run, event, body) in pending.drain(..) {
            let (count, last) = heads
                .entry(run.clone())
                .or_insert_with(|| (0, String::new()));
            *count += 1;
            *last = audit::chain(last, *count, &body);
            tx.prepare_cached(
                "INSERT INTO events (run_id, seq, body, hash) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![run, *count, body, *last]))
            .map_err(self.err())?;
            if let Event::RunFinished {
                status, message, ..
            } = &event
            {
                // The run row keeps the chain's head, so a removed last
                // event is found; it is written when the run ends.
                let status = serde_json::to_value(status).expect("status serializes");
                tx.prepare_cached("UPDATE runs SET status = ?2, message = ?3, finished_at = ?4, events = ?5, last_hash = ?6 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![run, status.as_str().unwrap_or("failed"), message, now_ms(), *count, *last]))
                    .map_err(self.err())?;
            }
        }
        tx.commit().map_err(self.err())
    }

    /// Runs, newest first.
    pub fn runs(&self, limit: usize, offset: usize) -> Result<Vec<RunRow>, StoreError> {
        let mut rows = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare(
                    "SELECT id, plan, file, status, message, steps, started_at, finished_at
                     FROM runs ORDER BY started_at DESC, id DESC LIMIT ?1 OFFSET ?2",
                )
                .map_err(self.err())?;
            let rows = stmt
                .query_map(params![limit as i64, offset as i64], |r| {
                    Ok(RunRow {
                        id: r.get(0)?,
                        plan: r.get(1)?,
                        file: r.get(2)?,
                        status: r.get(3)?,
                        message: r.get(4)?,
                        steps: r.get(5)?,
                        started_at: r.get(6)?,
                        finished_at: r.get(7)?,
                        done: 0,
                    })
                })
                .map_err(self.err())?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.err())?;
            rows
        };
        for row in &mut rows {
            row.done = self
                .steps(&row.id)?
                .iter()
                .filter(|s| !matches!(s.status.as_str(), "running" | "waiting"))
                .count() as i64;
        }
        Ok(rows)
    }

    /// The run with this id (a unique prefix is enough), or the newest.
    pub fn run(&self, id: Option<&str>) -> Result<RunRow, StoreError> {
        let all = self.runs(usize::MAX >> 1, 0)?;
        match id {
            None => all
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::NotFound("no runs recorded yet".into())),
            Some(id) => {
                let mut matching: Vec<RunRow> =
                    all.into_iter().filter(|r| r.id.starts_with(id)).collect();
                match matching.len() {
                    1 => Ok(matching.remove(0)),
                    0 => Err(StoreError::NotFound(format!(
                        "no run `{id}`; `cairn runs` lists them"
                    ))),
                    n => Err(StoreError::NotFound(format!(
                        "`{id}` matches {n} runs; give more of the id"
                    ))),
                }
            }
        }
    }

    /// The steps of a run, in the order they were first recorded, folded
    /// from its events.
    pub fn steps(&self, run: &str) -> Result<Vec<StepRow>, StoreError> {
        let mut steps: Vec<StepRow> = Vec::new();
        for row in self.events(run)? {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&row.body) else {
                continue;
            };
            let Some(id) = event["step"].as_str() else {
                continue;
            };
            let at = event["at_ms"].as_i64();
            let index = match steps.iter().position(|s| s.step == id) {
                Some(i) => i,
                None => {
                    steps.push(StepRow {
                        step: id.to_owned(),
                        status: String::new(),
                        attempts: 0,
                        output: None,
                        error: None,
                        started_ms: None,
                        finished_ms: None,
                    });
                    steps.len() - 1
                }
            };
            let step = &mut steps[index];
            let attempts = event["attempts"].as_i64();
            let (status, output, error) = match event["event"].as_str().unwrap_or_default() {
                "step_started" => {
                    step.started_ms = at;
                    ("running", None, None)
                }
                "step_succeeded" => ("succeeded", Some(event["output"].to_string()), None),
                "step_failed" => ("failed", None, event["error"].as_str().map(str::to_owned)),
                "step_recovered" => ("recovered", None, None),
                "step_skipped" => ("skipped", None, None),
                "decision_made" => ("succeeded", Some(event["target"].to_string()), None),
                "gate_waiting" => ("waiting", None, None),
                "gate_approved" => ("succeeded", None, None),
                "gate_rejected" => (
                    "failed",
                    None,
                    Some(format!(
                        "rejected by {}: {}",
                        event["by"].as_str().unwrap_or("?"),
                        event["reason"].as_str().unwrap_or("")
                    )),
                ),
                "compensated" => ("compensated", None, None),
                _ => continue,
            };
            step.status = status.to_owned();
            if status != "running" {
                step.finished_ms = at;
            }
            if let Some(n) = attempts {
                step.attempts = n;
            } else if matches!(status, "waiting" | "succeeded" | "failed") && step.attempts == 0 {
                step.attempts = 1;
            }
            step.output = output.or(step.output.take());
            step.error = error.or(step.error.take());
        }
        Ok(steps)
    }

    /// A run's events in order.
    pub fn events(&self, run: &str) -> Result<Vec<EventRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT seq, body, hash FROM events WHERE run_id = ?1 ORDER BY rowid")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([run], |r| {
                Ok(EventRow {
                    seq: r.get(0)?,
                    body: r.get(1)?,
                    hash: r.get(2)?,
                })
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        Ok(rows)
    }

    /// Checks a run's hash chain: the number of events, or the first row
    /// that was edited, removed or moved.
    pub fn verify(&self, run: &str) -> Result<Result<usize, AuditError>, StoreError> {
        let events = self.events(run)?;
        let (status, count, last): (String, i64, String) = self
            .lock()
            .query_row(
                "SELECT status, events, last_hash FROM runs WHERE id = ?1",
                [run],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(self.err())?;
        // The run row learns the chain's head when the run ends; until then
        // (a run going on, or one that crashed) only the chain is checked.
        if status == "running" {
            let last = events.last().map(|e| e.hash.clone()).unwrap_or_default();
            return Ok(audit::verify(&events, events.len() as i64, &last));
        }
        Ok(audit::verify(&events, count, &last))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
