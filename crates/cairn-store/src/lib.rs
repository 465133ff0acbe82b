//! Stage 5, store: runs, step states and a hash-chained event log in SQLite.

mod anchor;
mod audit;
mod children;
mod history;
mod lease;
mod open;
mod plans;
mod processes;
mod schema;
pub mod services;
mod states;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

pub use anchor::Verified;
pub use audit::{AuditError, Where};
pub use children::ChildRunsOf;
pub use history::{unreadable, History};
pub use open::writable;
pub use plans::Encoded;
pub use processes::{Group, RunProcesses, Stopped};
pub use states::{RunState, StepState};

use cairn_engine::failure::ErrorKind;
use cairn_engine::run::{Event, EventKind, RunStatus};
use cairn_lang::plan::Plan;

/// The names of the events that settle a step, quoted for SQL's `IN (…)`
/// (names are `[a-z_]` only).
fn settling_names() -> String {
    // (A fan-out or loop beginning is not its task's outcome.)
    let begins = [EventKind::StepFannedOut, EventKind::StepLooping];
    EventKind::ALL
        .iter()
        .filter(|kind| kind.settles() && !begins.contains(kind))
        .map(|kind| format!("'{}'", kind.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Errors from the run store, each saying which database and what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error (locked, corrupt, full disk, …).
    #[error("the run store `{path}`: {source}{}", full_hint(source))]
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
    /// The schema needs an upgrade while an older cairn runs a run in it.
    #[error("the run store `{path}` needs an upgrade, but run {run} is being run by an older cairn; let it finish (or stop it), then try again")]
    UpgradeBusy {
        /// The database file.
        path: String,
        /// The run being run.
        run: String,
    },
    /// The database is damaged in a way SQLite would not notice.
    #[error("the run store `{path}` is damaged: {problem}; move it aside to start a new one (its runs are lost)")]
    Damaged {
        /// The database file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The store needs a schema upgrade but cannot be written.
    #[error("the run store `{path}` has schema version {found} and needs an upgrade to {known}, but it is read-only; open it once where it can be written")]
    ReadOnlyUpgrade {
        /// The database file.
        path: String,
        /// The version in the file.
        found: i64,
        /// The version this build reads.
        known: i64,
    },
    /// The store cannot be written, and the command must write.
    #[error("the run store `{0}` is read-only: `cairn runs`, `status`, `log`, `replay` and `audit` read it, but running or going on with a run writes to it")]
    ReadOnly(String),
    /// An earlier commit failed, so nothing more is recorded.
    #[error("{0} (an earlier commit failed; nothing after it is recorded)")]
    Unrecorded(String),
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
    /// A command the run's previous process left running cannot be stopped
    /// (see [`Store::stop_processes`]).
    #[error("cannot stop {0}")]
    ProcessesLeft(String),
    /// Another process is running the run.
    #[error(
        "run {run} is being run by another process; wait for it to stop, or stop it (Ctrl-C) first"
    )]
    Busy {
        /// The run's id.
        run: String,
    },
}

/// What a failed write may mean, where SQLite cannot say.
fn full_hint(error: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode::{DiskFull, SystemIoFailure};
    match error.sqlite_error_code() {
        Some(DiskFull | SystemIoFailure) => {
            " (is the disk full, or a file-size limit (`ulimit -f`) reached?)"
        }
        _ => "",
    }
}

/// What a commit promises, and what it costs (`--durability`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// WAL with `synchronous=NORMAL`: a commit survives the process being
    /// killed at any moment; a power loss may lose the last commits, never
    /// the database.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is flushed to the disk before the
    /// next step starts, so it survives power loss too.
    Full,
}

/// What a run began with.
#[derive(Clone, Debug)]
pub struct RunInputs {
    /// The plan's text.
    pub source: String,
    /// `--set` params as given.
    pub params: Vec<(String, String)>,
    /// The effective seed.
    pub seed: u64,
}

/// One artifact a run saved.
#[derive(Clone, Debug, Serialize)]
pub struct ArtifactRow {
    /// The step that saved it.
    pub step: String,
    /// Its name.
    pub name: String,
    /// sha256 of the content.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: i64,
    /// The position of the `artifact` event that saved it.
    #[serde(skip)]
    pub seq: i64,
}

/// A new run's id: seven characters of Crockford's base32 (digits and
/// lowercase letters without `i`, `l`, `o`, `u`), drawn at random, so ids of
/// runs begun close together differ from their first character and a short
/// prefix names one. (Ids of runs recorded by earlier builds stay as they were.)
fn run_id(now_ms: i64, draw: u32) -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    // `RandomState` is seeded from the system's randomness, per process.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_i64(now_ms);
    hasher.write_u32(std::process::id());
    hasher.write_u32(draw);
    let mut bits = hasher.finish();
    (0..7)
        .map(|_| {
            let c = ALPHABET[(bits & 31) as usize] as char;
            bits >>= 5;
            c
        })
        .collect()
}

/// Where step `id` (the `i`-th recorded) sorts: a task where it was first
/// recorded, its instances and iterations right after it, in their order.
fn part_key(
    id: &str,
    i: usize,
    position: &std::collections::HashMap<&str, usize>,
) -> (usize, usize) {
    let part = cairn_lang::plan::parse_part(id);
    match part.and_then(|(task, n)| Some((*position.get(task)?, n))) {
        Some((task, n)) => (task, n + 1),
        None => (i, 0),
    }
}

/// Which runs [`Store::runs_where`] lists.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only runs of the plan with this id.
    pub plan: Option<String>,
    /// Only runs in this state (`interrupted` includes runs whose process died).
    pub status: Option<RunState>,
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
    /// The working directory the run began in, absolute (`None` for runs
    /// recorded before it was kept): `file` and the plan's imports were
    /// named relative to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// For the child run of a `plan:` step, the run it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Running, or how it stopped.
    pub status: RunState,
    /// Why it failed or paused.
    pub message: Option<String>,
    /// Steps in the plan.
    pub steps: i64,
    /// Steps that reached an end state (succeeded, failed, skipped, …), if
    /// counted (see [`Store::find`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<i64>,
    /// Events of the run that could not be read (not JSON SQLite reads),
    /// if any were found while counting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<i64>,
    /// Start, in milliseconds since 1970.
    pub started_at: i64,
    /// End, in milliseconds since 1970, when it ended.
    pub finished_at: Option<i64>,
}

impl RunRow {
    /// `path` (the plan file, or a file it imports, as recorded) as seen
    /// from the directory the run began in, so it names the same file from
    /// any working directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        match &self.cwd {
            // From where it began, the path as given says the same.
            Some(cwd) if std::env::current_dir().is_ok_and(|now| now == Path::new(cwd)) => {
                PathBuf::from(path)
            }
            Some(cwd) => Path::new(cwd).join(path),
            None => PathBuf::from(path),
        }
    }

    /// The plan file, from any working directory (see [`RunRow::resolve`]).
    pub fn plan_file(&self) -> PathBuf {
        self.resolve(&self.file)
    }
}

/// Whether a run lookup counts the run's settled steps (reading its log).
#[derive(Clone, Copy)]
enum Progress {
    Count,
    Skip,
}

/// One step of a recorded run.
#[derive(Clone, Debug, Serialize)]
pub struct StepRow {
    /// The step's id.
    pub step: String,
    /// Its last recorded state.
    pub status: StepState,
    /// Attempts made.
    pub attempts: i64,
    /// The step's output, if it produced one (`null` for `()`).
    pub output: Option<serde_json::Value>,
    /// Its error, if it failed.
    pub error: Option<String>,
    /// What sort of failure that was (`exit`, `timeout`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    /// Why it was skipped, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What of its log could not be read (`unreadable output (event 3: …)`):
    /// an event of it nested too deep to read whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
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
    /// Shared with the [`RunClaim`]s it gave out, which give their lease
    /// back through it.
    conn: Arc<Mutex<Connection>>,
    /// Events waiting for the next commit: (run, event).
    pending: Mutex<Vec<(String, Event)>>,
    path: PathBuf,
    /// Started by the first commit: moves the WAL into the database file
    /// off the commit path.
    checkpointer: std::sync::OnceLock<Checkpointer>,
    background_checkpoints: bool,
    /// The first commit that failed: nothing is committed after it, so the
    /// record ends at the last good commit (a run left `running`, which a
    /// resume goes on with) and never skips over lost events.
    broken: std::sync::OnceLock<String>,
}

/// A thread that checkpoints the WAL every so often on its own connection.
/// Commits never wait for a checkpoint (and its `fsync`): `wal_autocheckpoint`
/// is off on the writing connection, and a passive checkpoint never blocks it.
struct Checkpointer {
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: PathBuf) -> Self {
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let Ok(conn) = Connection::open(&path) else {
                return;
            };
            let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
            let (lock, wake) = &*signal;
            let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                stopped = wake
                    .wait_timeout(stopped, std::time::Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                if *stopped {
                    return;
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Store {
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
        self.begin_under(plan, file, source, params, seed, None)
    }

    /// Records the start of the child run of attempt `attempt` of `plan:`
    /// step `step` of run `parent`, and returns its id. `file` is the
    /// reference as `plan:` wrote it; the child's plan is the parent's
    /// library entry, so no source of its own is kept.
    pub fn begin_child(
        &self,
        plan: &Plan,
        file: &str,
        params: &[(String, String)],
        seed: u64,
        parent: (&str, &str, u32),
    ) -> Result<String, StoreError> {
        self.begin_under(plan, file, "", params, seed, Some(parent))
    }

    fn begin_under(
        &self,
        plan: &Plan,
        file: &str,
        source: &str,
        params: &[(String, String)],
        seed: u64,
        parent: Option<(&str, &str, u32)>,
    ) -> Result<String, StoreError> {
        let now = now_ms();
        let hash = cairn_lang::source::sha256(source);
        let params = serde_json::to_string(params).expect("params serialize");
        let encoded = plans::encode(plan);
        // Where `file` (and the plan's imports) are named from.
        let cwd = std::env::current_dir()
            .ok()
            .and_then(|d| d.to_str().map(str::to_owned));
        let conn = self.lock();
        let mut begun = None;
        transaction(&conn, |tx| {
            // A short random id a person can type; one already taken (or
            // an unlucky run of them) draws again.
            for bump in 0..=0xffff_u32 {
                let id = run_id(now, bump);
                let inserted = tx.execute(
                    "INSERT INTO runs (id, plan, file, source_hash, params, seed, steps, status, started_at, events, last_hash, no, cwd,
                                       parent_run, parent_step, parent_attempt)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?10, ?8, 0, '',
                             (SELECT coalesce(max(no), 0) + 1 FROM runs), ?9, ?11, ?12, ?13)",
                    params![id, plan.id, file, hash, params, seed as i64, plan.tasks.len() as i64, now, cwd, RunState::Running,
                            parent.map(|p| p.0), parent.map(|p| p.1), parent.map(|p| p.2)],
                );
                match inserted {
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                    Ok(_) => {
                        store_plan(tx, &id, source, &encoded)?;
                        let inputs = anchor::inputs(file, source, Some(&encoded), &params, seed);
                        write_batch(tx, vec![(id.clone(), inputs)])?;
                        begun = Some(id);
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
        .map_err(self.err())?;
        begun.ok_or_else(|| {
            StoreError::NotFound(format!(
                "no free run id for {now:x}: 65,536 runs began in that millisecond"
            ))
        })
    }

    /// Takes the next event of a run. It is committed by the next
    /// [`Store::sync`] (the scheduler calls it before any step with code
    /// starts), at once if it ends the run, or when many wait.
    pub fn record(&self, run: &str, event: &Event) -> Result<(), StoreError> {
        let waiting = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.push((run.to_owned(), event.clone()));
            pending.len()
        };
        if waiting >= 1024 || matches!(event, Event::RunFinished { .. }) {
            self.sync()?;
        }
        Ok(())
    }

    /// Commits every event taken so far, in one transaction, extending each
    /// run's hash chain. Once it returns, they survive a crash.
    pub fn sync(&self) -> Result<(), StoreError> {
        if self.background_checkpoints {
            self.checkpointer
                .get_or_init(|| Checkpointer::start(self.path.clone()));
        }
        let conn = self.lock();
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(first) = self.broken.get() {
            return Err(StoreError::Unrecorded(first.clone()));
        }
        if batch.is_empty() {
            return Ok(());
        }
        transaction(&conn, |tx| write_batch(tx, batch)).map_err(|source| {
            let error = self.err()(source);
            let _ = self.broken.set(error.to_string());
            error
        })
    }

    /// Appends an event to a run that is not running (an approval, a
    /// rejection) and moves the run row's chain head with it.
    pub fn append(&self, run: &str, event: &Event) -> Result<(), StoreError> {
        self.record(run, event)?;
        self.sync()?;
        let conn = self.lock();
        let (_, count, last) = head(&conn, run).map_err(self.err())?;
        conn.execute(
            "UPDATE runs SET events = ?2, last_hash = ?3 WHERE id = ?1",
            params![run, count, last],
        )
        .map_err(self.err())?;
        Ok(())
    }

    /// Marks the run as being run by this process until the returned guard
    /// drops (or the process dies: the next claim finds its holder gone).
    ///
    /// The mark is a row in `leases` naming this process; a live holder's
    /// row (this process's own included: one claim per run at a time)
    /// refuses the claim with [`StoreError::Busy`].
    pub fn claim(&self, run: &str) -> Result<RunClaim, StoreError> {
        match lease::take(&self.lock(), run, now_ms()).map_err(self.err())? {
            Some(lease) => Ok(RunClaim {
                conn: Arc::clone(&self.conn),
                lease,
            }),
            None => Err(StoreError::Busy {
                run: run.to_owned(),
            }),
        }
    }

    /// Begins run `to` as a fork of run `from` at step `at`: every event of
    /// the steps `keep` says (their starts, calls, logs, artifacts and
    /// outcomes) is copied from `from`'s log into `to`'s, in order, on
    /// `to`'s own hash chain, and `to` records where it came from. How
    /// many events were copied.
    pub fn fork_events(
        &self,
        from: &str,
        to: &str,
        at: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<usize, StoreError> {
        let events = self.events(from)?;
        self.sync()?;
        let mut copied = 0;
        transaction(&self.lock(), |tx| {
            let (no, mut count, mut last) = head(tx, to)?;
            for event in &events {
                let Ok(head) = serde_json::from_str::<history::Head>(&event.body) else {
                    continue;
                };
                let Some(step) = head.step.as_deref() else {
                    continue;
                };
                if !keep(step) {
                    continue;
                }
                count += 1;
                last = audit::chain(&last, count, &event.body);
                tx.prepare_cached(
                    "INSERT INTO events (id, run_id, seq, body, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    (no << 32) | count,
                    to,
                    count,
                    event.body,
                    last
                ])?;
                if head.event == EventKind::Artifact.name() {
                    tx.execute(
                        "INSERT INTO artifacts (run_id, step, name, sha256, bytes, seq) \
                         SELECT ?2, step, name, sha256, bytes, ?4 FROM artifacts \
                         WHERE run_id = ?1 AND seq = ?3",
                        params![from, to, event.seq, count],
                    )?;
                }
                copied += 1;
            }
            tx.execute(
                "UPDATE runs SET events = ?2, last_hash = ?3, forked_from = ?4, forked_at = ?5 \
                 WHERE id = ?1",
                params![to, count, last, from, at],
            )?;
            Ok(())
        })
        .map_err(self.err())?;
        Ok(copied)
    }

    /// Deletes run `run` with its child runs, whole or not at all: their
    /// events, plans, artifacts and rows, and then every blob nothing left
    /// refers to. The ids deleted (the run first). The caller holds the
    /// run's claim: no process is running it.
    pub fn delete(&self, run: &str) -> Result<Vec<String>, StoreError> {
        self.sync()?;
        let conn = self.lock();
        let tree: Vec<String> = conn
            .prepare(
                "WITH RECURSIVE tree(id) AS (SELECT ?1 UNION SELECT r.id FROM runs r \
                 JOIN tree t ON r.parent_run = t.id) SELECT id FROM tree",
            )
            .and_then(|mut stmt| {
                stmt.query_map([run], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()
            })
            .map_err(self.err())?;
        transaction(&conn, |tx| {
            for id in &tree {
                for table in ["events", "plans", "artifacts", "processes", "leases"] {
                    tx.execute(&format!("DELETE FROM {table} WHERE run_id = ?1"), [id])?;
                }
                tx.execute("DELETE FROM runs WHERE id = ?1", [id])?;
            }
            // Blobs are shared by content: only those no artifact and no
            // kept original refers to any more go.
            tx.execute(
                "DELETE FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM artifacts) \
                 AND sha256 NOT IN (SELECT json_extract(body, '$.sha256') FROM events \
                 WHERE body LIKE '{\"event\":\"file_original\"%' \
                 AND json_extract(body, '$.sha256') IS NOT NULL)",
                [],
            )?;
            Ok(())
        })
        .map_err(self.err())?;
        // Kept command outputs too large to hold live beside the database.
        let beside = self.path.with_file_name("blobs");
        if let Ok(entries) = std::fs::read_dir(&beside) {
            let mut referenced = conn
                .prepare("SELECT 1 FROM blobs WHERE sha256 = ?1")
                .map_err(self.err())?;
            // Only blobs by their hash, and not recent ones: a live run
            // streams into spool files and renames one before its row is
            // committed (a later prune takes what is left).
            let settled = |entry: &std::fs::DirEntry| {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|at| at.elapsed().ok())
                    .is_some_and(|age| age >= std::time::Duration::from_secs(3600))
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let hashed = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
                if hashed && settled(&entry) && !referenced.exists([&name]).map_err(self.err())? {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(tree)
    }

    /// The run `run` was forked from, and the step it ran again from.
    pub fn forked_from(&self, run: &str) -> Result<Option<(String, String)>, StoreError> {
        self.lock()
            .query_row(
                "SELECT forked_from, forked_at FROM runs WHERE id = ?1 AND forked_from IS NOT NULL",
                [run],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.err())
    }

    /// Asks the process that runs `run` to cancel it, for `reason`
    /// (`cairn cancel` of a live run): it reads [`Store::cancel_requested`].
    pub fn request_cancel(&self, run: &str, reason: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE runs SET cancel = ?2 WHERE id = ?1",
                params![run, reason],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Forgets a cancel request: the run goes on again (`cairn retry`), or
    /// it ended before its process saw the request.
    pub fn clear_cancel(&self, run: &str) -> Result<(), StoreError> {
        self.lock()
            .execute("UPDATE runs SET cancel = NULL WHERE id = ?1", [run])
            .map_err(self.err())?;
        Ok(())
    }

    /// Every run's id, child runs too, in the order they were recorded.
    pub fn all_run_ids(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT id FROM runs ORDER BY no")
            .map_err(self.err())?;
        let ids = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
            .map_err(self.err())?;
        Ok(ids)
    }

    /// Why the run was asked to be cancelled, if it was.
    pub fn cancel_requested(&self, run: &str) -> Result<Option<String>, StoreError> {
        self.lock()
            .query_row("SELECT cancel FROM runs WHERE id = ?1", [run], |r| r.get(0))
            .optional()
            .map(Option::flatten)
            .map_err(self.err())
    }

    /// Replaces a run's params (the REPL's `:set`), and records the
    /// change in its log.
    pub fn replace_params(&self, run: &str, params: &[(String, String)]) -> Result<(), StoreError> {
        let params = serde_json::to_string(params).expect("params serialize");
        self.sync()?;
        transaction(&self.lock(), |tx| {
            tx.execute(
                "UPDATE runs SET params = ?2 WHERE id = ?1",
                params![run, params],
            )?;
            record_inputs(tx, run)
        })
        .map_err(self.err())
    }

    /// Replaces a run's plan source (a resume with `--allow-changed`), and
    /// records the change in its log.
    pub fn replace_source(&self, run: &str, source: &str, plan: &Plan) -> Result<(), StoreError> {
        let hash = cairn_lang::source::sha256(source);
        let encoded = plans::encode(plan);
        self.sync()?;
        transaction(&self.lock(), |tx| {
            tx.execute(
                "UPDATE runs SET source_hash = ?2 WHERE id = ?1",
                params![run, hash],
            )?;
            store_plan(tx, run, source, &encoded)?;
            record_inputs(tx, run)
        })
        .map_err(self.err())
    }

    /// The checked plan the run was begun (or last resumed) with, encoded;
    /// `None` for runs recorded before plans were kept.
    pub fn plan(&self, run: &str) -> Result<Option<Encoded>, StoreError> {
        self.lock()
            .query_row(
                "SELECT format, body FROM plans WHERE run_id = ?1 AND format IS NOT NULL",
                [run],
                |r| {
                    Ok(Encoded {
                        format: r.get(0)?,
                        body: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }

    /// A run's plan source, params (as given to `--set`) and seed.
    pub fn source(&self, run: &str) -> Result<RunInputs, StoreError> {
        let (source, params, seed): (String, String, i64) = self
            .lock()
            .query_row(
                "SELECT p.source, r.params, r.seed FROM runs r JOIN plans p ON p.run_id = r.id
                 WHERE r.id = ?1",
                [run],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(self.err())?;
        let params = serde_json::from_str(&params).unwrap_or_default();
        Ok(RunInputs {
            source,
            params,
            seed: seed as u64,
        })
    }

    /// The artifacts a run saved, in order.
    pub fn artifacts(&self, run: &str) -> Result<Vec<ArtifactRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT step, name, sha256, bytes, seq FROM artifacts WHERE run_id = ?1 ORDER BY seq",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([run], |r| {
                Ok(ArtifactRow {
                    step: r.get(0)?,
                    name: r.get(1)?,
                    sha256: r.get(2)?,
                    bytes: r.get(3)?,
                    seq: r.get(4)?,
                })
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        Ok(rows)
    }

    /// The content of an artifact, by its hash: in the database, or (a
    /// kept command output, whose row is empty though its hash is not the
    /// empty content's) in the `blobs/` directory beside it.
    pub fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(match self.stored(sha256)? {
            Some(Stored::Row(bytes)) => Some(bytes),
            Some(Stored::Beside(file)) => std::fs::read(file).ok(),
            None => None,
        })
    }

    /// Where a blob's content is: its row, or (a kept command output, too
    /// large to hold) the file `blobs/<sha256>` its empty row stands for.
    fn stored(&self, sha256: &str) -> Result<Option<Stored>, StoreError> {
        let row: Option<Vec<u8>> = self
            .lock()
            .query_row(
                "SELECT content FROM blobs WHERE sha256 = ?1",
                [sha256],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        Ok(row.map(|bytes| {
            if bytes.is_empty() && sha256 != cairn_lang::source::sha256(b"") {
                Stored::Beside(self.path.with_file_name("blobs").join(sha256))
            } else {
                Stored::Row(bytes)
            }
        }))
    }

    /// The contents files had before a run first changed them, from the
    /// `file_original` events [`History::originals`] lists: what a resumed
    /// run's compensation puts back.
    #[allow(clippy::type_complexity)]
    pub fn originals(
        &self,
        logged: &[(String, String, Option<String>)],
    ) -> Result<Vec<(String, PathBuf, Option<Vec<u8>>)>, StoreError> {
        logged
            .iter()
            .map(|(step, path, sha256)| {
                let content = match sha256 {
                    None => None,
                    Some(sha256) => Some(self.blob(sha256)?.ok_or_else(|| {
                        StoreError::NotFound(format!(
                            "the contents `{path}` had before step `{step}` changed it (sha256 {sha256}) are not in the store"
                        ))
                    })?),
                };
                Ok((step.clone(), PathBuf::from(path), content))
            })
            .collect()
    }

    /// What a run's log says each step did, for resume and replay.
    pub fn history(&self, run: &str) -> Result<History, StoreError> {
        let mut history = History::default();
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT e.body, e.seq {EVENTS_OF_RUN} ORDER BY e.id"
            ))
            .map_err(self.err())?;
        // Each body is folded where SQLite holds it, without a copy.
        let mut rows = stmt.query(params![run, 0]).map_err(self.err())?;
        while let Some(row) = rows.next().map_err(self.err())? {
            let seq: i64 = row.get(1).unwrap_or_default();
            match row.get_ref(0).and_then(|v| Ok(v.as_str()?)) {
                Ok(body) => history.fold_row(seq, body),
                Err(_) => history.fold_row(seq, ""),
            }
        }
        // Said once per read, where whoever reads it (resume, replay) sees
        // it: a step whose settling event is lost runs again.
        for problem in history.unreadable() {
            tracing::warn!("run {run}: {problem}; it is skipped");
        }
        Ok(history)
    }

    /// Runs, newest first.
    pub fn runs(&self, limit: usize, offset: usize) -> Result<Vec<RunRow>, StoreError> {
        self.runs_where(&RunFilter::default(), limit, offset)
    }

    /// The runs `filter` lets through, newest first.
    pub fn runs_where(
        &self,
        filter: &RunFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<RunRow>, StoreError> {
        use cairn_engine::run::RunStatus::Interrupted;
        let plan = filter.plan.as_deref().unwrap_or_default();
        let by_plan = if filter.plan.is_some() {
            "plan = ?1"
        } else {
            "?1 = ?1"
        };
        // A run recorded as running whose process died is interrupted: those
        // two are told apart after reading, so they are paged here.
        let (by_status, after) = match filter.status {
            None => ("1".to_owned(), false),
            Some(RunState::Running) => ("status = 'running'".to_owned(), true),
            Some(RunState::Stopped(Interrupted)) => {
                ("status IN ('running', 'interrupted')".to_owned(), true)
            }
            // (A state's word is one of this build's own: no quoting needed.)
            Some(state) => (format!("status = '{}'", state.word()), false),
        };
        // Child runs of `plan:` steps are shown under their parents.
        let sql = format!("parent_run IS NULL AND {by_plan} AND {by_status}");
        if !after {
            return self.select_runs(&sql, &[&plan], limit, offset, Progress::Count);
        }
        let rows = self.select_runs(&sql, &[&plan], usize::MAX, 0, Progress::Count)?;
        Ok(rows
            .into_iter()
            .filter(|r| Some(r.status) == filter.status)
            .skip(offset)
            .take(limit)
            .collect())
    }

    /// Runs matching `filter` (SQL over `runs`, with `args`), newest first,
    /// each with how many of its steps have settled if `progress` says so.
    fn select_runs(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
        limit: usize,
        offset: usize,
        progress: Progress,
    ) -> Result<Vec<RunRow>, StoreError> {
        let conn = self.lock();
        // A step is done once an event settled it (steps run again after a
        // crash count once). This reads every event of the run.
        let done = match progress {
            // In one pass, with the events that are not JSON SQLite reads
            // (malformed, or nested past its 1,000 levels) counted in the
            // high bits instead of failing the whole listing.
            Progress::Count => format!(
                "(SELECT count(DISTINCT CASE WHEN json_valid(body)
                     AND json_extract(body, '$.event') IN ({})
                     -- (not the instances and iterations of a task: `t[0]`, `t#1`)
                     AND instr(json_extract(body, '$.step'), '[') = 0
                     AND instr(json_extract(body, '$.step'), '#') = 0
                     THEN json_extract(body, '$.step') END)
                   + (coalesce(sum(NOT json_valid(body)), 0) << 32)
                 FROM events
                 WHERE events.id BETWEEN runs.no << 32 AND (runs.no << 32) | 4294967295)",
                settling_names()
            ),
            Progress::Skip => "NULL".to_owned(),
        };
        let sql = format!(
            "SELECT id, plan, file, status, message, steps, started_at, finished_at, {done}, cwd, parent_run
             FROM runs WHERE {filter} ORDER BY started_at DESC, no DESC LIMIT {} OFFSET {}",
            limit.min(i64::MAX as usize),
            offset.min(i64::MAX as usize)
        );
        let mut stmt = conn.prepare(&sql).map_err(self.err())?;
        let rows = stmt
            .query_map(args, |r| {
                Ok(RunRow {
                    id: r.get(0)?,
                    plan: r.get(1)?,
                    file: r.get(2)?,
                    cwd: r.get(9)?,
                    parent: r.get(10)?,
                    status: r.get(3)?,
                    message: r.get(4)?,
                    steps: r.get(5)?,
                    started_at: r.get(6)?,
                    finished_at: r.get(7)?,
                    done: r.get::<_, Option<i64>>(8)?.map(|n| n & 0xffff_ffff),
                    unreadable: r
                        .get::<_, Option<i64>>(8)?
                        .map(|n| n >> 32)
                        .filter(|&n| n > 0),
                })
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        let mut rows = rows;
        for row in rows.iter_mut().filter(|r| r.status == RunState::Running) {
            // A lease whose holder is gone: the process died mid-run.
            let holder = lease::holder(&conn, &row.id).map_err(self.err())?;
            if holder.is_some_and(|h| !lease::alive(&h)) {
                row.status = RunState::Stopped(cairn_engine::run::RunStatus::Interrupted);
                row.message.get_or_insert_with(|| {
                    "its process ended before the run did (killed or crashed); `cairn resume` goes on"
                        .to_owned()
                });
            }
        }
        Ok(rows)
    }

    /// The run with this id (a unique prefix is enough), or the newest,
    /// with its progress.
    pub fn run(&self, id: Option<&str>) -> Result<RunRow, StoreError> {
        self.matching(id, Progress::Count)
    }

    /// Like [`Store::run`], without counting the run's progress: what
    /// `resume`, `approve` and `replay` need, at no cost per event.
    pub fn find(&self, id: Option<&str>) -> Result<RunRow, StoreError> {
        self.matching(id, Progress::Skip)
    }

    fn matching(&self, id: Option<&str>, progress: Progress) -> Result<RunRow, StoreError> {
        let pattern = id.map(|id| format!("{}%", id.replace(['%', '_'], "")));
        let mut matching = match &pattern {
            Some(pattern) => self.select_runs("id LIKE ?1", &[pattern], 2, 0, progress)?,
            None => self.select_runs("parent_run IS NULL", &[], 1, 0, progress)?,
        };
        match (matching.len(), id) {
            (0, None) => Err(StoreError::NotFound("no runs recorded yet".into())),
            (_, None) | (1, Some(_)) => Ok(matching.remove(0)),
            (0, Some(id)) => Err(StoreError::NotFound(format!(
                "no run `{id}`; `cairn runs` lists them"
            ))),
            (_, Some(id)) => Err(StoreError::NotFound(format!(
                "`{id}` matches more than one run; give more of the id"
            ))),
        }
    }

    /// The child runs of run `parent`'s `plan:` steps: each step's newest
    /// attempt's (step id, child run id), in the order they began.
    pub fn children(&self, parent: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT parent_step, id FROM runs r WHERE parent_run = ?1
                   AND parent_attempt = (SELECT max(parent_attempt) FROM runs
                                         WHERE parent_run = ?1 AND parent_step = r.parent_step)
                 ORDER BY no",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([parent], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        Ok(rows)
    }

    /// The child run attempt `attempt` of step `step` of run `parent` began, if any.
    pub fn child(
        &self,
        parent: &str,
        step: &str,
        attempt: u32,
    ) -> Result<Option<String>, StoreError> {
        self.lock()
            .query_row(
                "SELECT id FROM runs WHERE parent_run = ?1 AND parent_step = ?2 AND parent_attempt = ?3",
                params![parent, step, attempt],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    /// The newest run that has not ended (running, paused or interrupted).
    pub fn newest_unfinished(&self) -> Result<Option<RunRow>, StoreError> {
        Ok(self
            .select_runs(
                "parent_run IS NULL AND status NOT IN (?1, ?2, ?3)",
                &[
                    &RunState::Stopped(RunStatus::Succeeded),
                    &RunState::Stopped(RunStatus::Failed),
                    &RunState::Stopped(RunStatus::Cancelled),
                ],
                1,
                0,
                Progress::Skip,
            )?
            .into_iter()
            .next())
    }

    /// The steps of a run, in the order they were first recorded, folded
    /// from its events.
    pub fn steps(&self, run: &str) -> Result<Vec<StepRow>, StoreError> {
        Ok(self.steps_and_unreadable(run)?.0)
    }

    /// [`Store::steps`], and the events that could not be read at all, in
    /// words. An event that reads in part (a value in it nested too deep)
    /// still moves its step, which says what was lost in `unreadable`.
    pub fn steps_and_unreadable(
        &self,
        run: &str,
    ) -> Result<(Vec<StepRow>, Vec<String>), StoreError> {
        let mut steps: Vec<StepRow> = Vec::new();
        let mut lost = Vec::new();
        let mut slots: std::collections::HashMap<String, usize> = Default::default();
        use cairn_engine::run::StepStatus::*;
        use StepState::At;
        for row in self.events(run)? {
            let (mut event, partly) = match serde_json::from_str::<serde_json::Value>(&row.body) {
                Ok(event) => (event, None),
                Err(error) => match serde_json::from_str::<history::Head>(&row.body) {
                    Ok(head) if head.step.is_some() => {
                        let event = serde_json::json!({
                            "event": head.event,
                            "step": head.step,
                            "at_ms": head.at_ms,
                            "attempts": head.attempts,
                        });
                        let what = if head.event == EventKind::StepSucceeded.name() {
                            "output"
                        } else {
                            "event"
                        };
                        (
                            event,
                            Some(format!("unreadable {what} (event {}: {error})", row.seq)),
                        )
                    }
                    _ => {
                        lost.push(history::unreadable(row.seq, &row.body, &error));
                        continue;
                    }
                },
            };
            let Some(id) = event["step"].as_str() else {
                continue;
            };
            let at = event["at_ms"].as_i64();
            let index = match slots.get(id) {
                Some(&i) => i,
                None => {
                    slots.insert(id.to_owned(), steps.len());
                    steps.push(StepRow {
                        step: id.to_owned(),
                        status: At(NotRun),
                        attempts: 0,
                        output: None,
                        error: None,
                        error_kind: None,
                        reason: None,
                        unreadable: None,
                        started_ms: None,
                        finished_ms: None,
                    });
                    steps.len() - 1
                }
            };
            let step = &mut steps[index];
            let attempts = event["attempts"].as_i64();
            let Some(kind) = event["event"].as_str().and_then(EventKind::from_name) else {
                continue;
            };
            let (status, output, error) = match kind {
                EventKind::StepStarted => {
                    step.started_ms = at;
                    step.error = None;
                    step.error_kind = None;
                    step.reason = None;
                    step.output = None;
                    step.unreadable = None;
                    (StepState::Running, None, None)
                }
                EventKind::StepSucceeded if partly.is_some() => (At(Succeeded), None, None),
                EventKind::StepSucceeded => (At(Succeeded), Some(event["output"].take()), None),
                EventKind::StepFailed => {
                    (At(Failed), None, event["error"].as_str().map(str::to_owned))
                }
                EventKind::StepRecovered => (At(Recovered), None, None),
                EventKind::StepCancelled => {
                    (StepState::Cancelled, None, Some("cancelled".to_owned()))
                }
                EventKind::StepReset => {
                    step.output = None;
                    step.error = None;
                    step.error_kind = None;
                    step.reason = None;
                    step.attempts = 0;
                    let id = step.step.clone();
                    // A reset task's instances and iterations go with it,
                    // unless it keeps them (`cairn retry`).
                    let before = steps.len();
                    if event["keep_parts"] != serde_json::Value::Bool(true) {
                        steps.retain(|s| cairn_lang::plan::part_of(&s.step) != Some(id.as_str()));
                    }
                    if steps.len() != before {
                        slots = steps
                            .iter()
                            .enumerate()
                            .map(|(i, s)| (s.step.clone(), i))
                            .collect();
                    }
                    let step = &mut steps[slots[&id]];
                    step.status = At(NotRun);
                    step.finished_ms = at;
                    continue;
                }
                EventKind::StepSkipped => {
                    step.reason = event["reason"].as_str().map(str::to_owned);
                    (At(Skipped), None, None)
                }
                EventKind::DecisionMade => (At(Succeeded), Some(event["target"].take()), None),
                EventKind::GateWaiting | EventKind::StepWaiting => (At(Waiting), None, None),
                // What the gate's dependents read as its output.
                EventKind::GateApproved => {
                    let output = cairn_engine::run::gate_output(
                        event["by"].as_str().unwrap_or_default(),
                        event["reason"].as_str().unwrap_or_default(),
                        event["input"]
                            .as_object()
                            .unwrap_or(&serde_json::Map::new()),
                    );
                    (At(Succeeded), Some(output), None)
                }
                EventKind::GateRejected => (
                    At(Failed),
                    None,
                    Some(format!(
                        "rejected by {}: {}",
                        event["by"].as_str().unwrap_or("?"),
                        event["reason"].as_str().unwrap_or("")
                    )),
                ),
                EventKind::Compensated => (At(Compensated), None, None),
                _ => continue,
            };
            step.status = status;
            if status != StepState::Running {
                step.finished_ms = at;
            }
            if let Some(n) = attempts {
                step.attempts = n;
            } else if matches!(status, At(Waiting | Succeeded | Failed)) && step.attempts == 0 {
                step.attempts = 1;
            }
            step.output = output.or(step.output.take());
            // A success after a cancel (the loop or fan-out a resume went on
            // with) leaves no error behind; a recovery keeps its failure's.
            if kind == EventKind::StepSucceeded {
                step.error = None;
                step.error_kind = None;
            }
            if error.is_some() {
                step.error_kind = Some(match kind {
                    EventKind::StepCancelled => ErrorKind::Cancelled,
                    EventKind::GateRejected => ErrorKind::Rejected,
                    _ => event["kind"]
                        .as_str()
                        .and_then(ErrorKind::from_word)
                        .unwrap_or_default(),
                });
            }
            step.error = error.or(step.error.take());
            if partly.is_some() {
                step.unreadable = partly;
            }
            // A task whose instance or iteration waits (at a gate of its
            // child run) waits too.
            if kind == EventKind::StepWaiting {
                let task = cairn_lang::plan::part_of(&step.step).and_then(|t| slots.get(t));
                if let Some(&task) = task {
                    if steps[task].status == StepState::Running {
                        steps[task].status = At(Waiting);
                    }
                }
            }
        }
        // Each task's instances and iterations follow it, in order.
        let position: std::collections::HashMap<&str, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.step.as_str(), i))
            .collect();
        let keys: Vec<(usize, usize)> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| part_key(&s.step, i, &position))
            .collect();
        let mut order: Vec<usize> = (0..steps.len()).collect();
        order.sort_by_key(|&i| keys[i]);
        let mut slots: Vec<Option<StepRow>> = steps.into_iter().map(Some).collect();
        let steps = order.into_iter().filter_map(|i| slots[i].take()).collect();
        Ok((steps, lost))
    }

    /// A run's events in order.
    pub fn events(&self, run: &str) -> Result<Vec<EventRow>, StoreError> {
        self.events_after(run, 0)
    }

    /// A run's events after position `seq`, in order (`0`: all of them).
    pub fn events_after(&self, run: &str, seq: i64) -> Result<Vec<EventRow>, StoreError> {
        let conn = self.lock();
        // In key order, which is the order they were appended in: a row
        // whose `seq` was edited shows up where it was, out of place.
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT e.seq, e.body, e.hash {EVENTS_OF_RUN} ORDER BY e.id"
            ))
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![run, seq.max(0)], |r| {
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

    /// Checks a run's record: its hash chain (the first row that was
    /// edited, removed or moved), and that its row, stored plan, params and
    /// artifacts are what the chain recorded.
    pub fn verify(&self, run: &str) -> Result<Result<Verified, AuditError>, StoreError> {
        type Row = (
            String,
            Option<String>,
            i64,
            String,
            String,
            String,
            i64,
            String,
            Option<Vec<u8>>,
        );
        let row: Row = self
            .lock()
            .query_row(
                "SELECT r.status, r.message, r.events, r.last_hash, r.file, r.params, r.seed,
                        p.source, CAST(p.body AS BLOB)
                 FROM runs r JOIN plans p ON p.run_id = r.id WHERE r.id = ?1",
                [run],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                },
            )
            .map_err(self.err())?;
        let (status, message, count, last, file, params, seed, source, plan) = row;
        // One pass over the rows as SQLite reads them: each is hashed where
        // it lies, and only the few the rest of the check reads are kept.
        let mut chain = audit::Chain::default();
        let mut logged = Vec::new();
        {
            // A connection of its own where it can have one: a resume folds
            // the log on another thread meanwhile, through the shared one.
            let own = Connection::open_with_flags(
                &self.path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .ok()
            // One that opens but cannot read (no WAL index where nothing can
            // be written) is not used.
            .filter(|c| {
                c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
                    .is_ok()
            });
            let shared;
            let conn: &Connection = match &own {
                Some(own) => own,
                None => {
                    shared = self.lock();
                    &shared
                }
            };
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT e.seq, e.body, e.hash {EVENTS_OF_RUN} ORDER BY e.id"
                ))
                .map_err(self.err())?;
            let mut rows = stmt.query(params![run, 0]).map_err(self.err())?;
            while let Some(r) = rows.next().map_err(self.err())? {
                let seq: i64 = r.get(0).map_err(self.err())?;
                // Text as SQLite holds it; a row edited to another type has
                // none, and fails its hash.
                let text = |i| match r.get_ref(i) {
                    Ok(rusqlite::types::ValueRef::Text(t)) => std::str::from_utf8(t).unwrap_or(""),
                    _ => "",
                };
                let (body, hash) = (text(1), text(2));
                if let Err(problem) = chain.push(seq, body, hash) {
                    return Ok(Err(problem));
                }
                if anchor::wanted(body) {
                    logged.push(EventRow {
                        seq,
                        body: body.to_owned(),
                        hash: hash.to_owned(),
                    });
                }
            }
        }
        // The run row learns the chain's head when the run stops; while it
        // runs (or after it crashed) only the chain is checked. The row's
        // status is read as written: an edited one is a finding, not an error.
        let (count, last) = if status == RunState::Running.word() {
            let (walked, head) = chain.so_far();
            (walked, head.to_owned())
        } else {
            (count, last)
        };
        let (events, head) = match chain.finish(count, &last) {
            Ok(end) => end,
            Err(problem) => return Ok(Err(problem)),
        };
        let artifacts = self.artifacts(run)?;
        let recorded = anchor::Recorded {
            status: &status,
            message: message.as_deref(),
            file: &file,
            params: &params,
            seed: seed as u64,
            source: &source,
            plan: plan.as_deref(),
            artifacts: &artifacts,
        };
        Ok(anchor::check(&logged, events, head, &recorded, |sha| {
            self.digest(sha)
        }))
    }

    /// sha256 of a blob's content as stored now (`None`: it is gone),
    /// streamed for the large ones kept beside the database.
    fn digest(&self, sha256: &str) -> Option<String> {
        use sha2::{Digest, Sha256};
        match self.stored(sha256).ok()?? {
            Stored::Row(bytes) => Some(cairn_lang::source::sha256(bytes)),
            Stored::Beside(file) => {
                let mut file = std::fs::File::open(file).ok()?;
                let mut hasher = Sha256::new();
                std::io::copy(&mut file, &mut hasher).ok()?;
                Some(format!("{:x}", hasher.finalize()))
            }
        }
    }
}

/// Where a blob's content is kept.
enum Stored {
    Row(Vec<u8>),
    Beside(PathBuf),
}

/// Records a run's inputs as they are stored now (`run_inputs`) in its log.
fn record_inputs(tx: &Connection, run: &str) -> rusqlite::Result<()> {
    let (file, params, seed, source, plan): (String, String, i64, String, Option<Vec<u8>>) = tx
        .query_row(
            "SELECT r.file, r.params, r.seed, p.source, CAST(p.body AS BLOB)
             FROM runs r JOIN plans p ON p.run_id = r.id WHERE r.id = ?1",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
    let inputs = anchor::inputs(&file, &source, plan.as_deref(), &params, seed as u64);
    write_batch(tx, vec![(run.to_owned(), inputs)])
}

/// Refuses to upgrade the schema under a run an older cairn is running: it
/// would go on writing with the old schema's statements.
fn refuse_upgrade_under_running(
    conn: &Connection,
    path: &Path,
    found: i64,
) -> Result<(), StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let running: Vec<String> = conn
        .prepare("SELECT id FROM runs WHERE status = ?1")
        .and_then(|mut s| s.query_map([RunState::Running], |r| r.get(0))?.collect())
        .map_err(err)?;
    let locks = path.with_file_name("locks");
    for run in running {
        let held = if found >= schema::LEASES {
            lease::holder(conn, &run)
                .map_err(err)?
                .is_some_and(|holder| lease::alive(&holder))
        } else {
            lease::held_by_older_cairn(&locks, &run)
        };
        if held {
            return Err(StoreError::UpgradeBusy {
                path: path.display().to_string(),
                run,
            });
        }
    }
    Ok(())
}

/// Held while a process runs a run; see [`Store::claim`]. Dropping it gives
/// the run back.
pub struct RunClaim {
    conn: Arc<Mutex<Connection>>,
    lease: lease::Lease,
}

impl Drop for RunClaim {
    fn drop(&mut self) {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        // If this fails, the row stays until this process exits, and is
        // stale from then on.
        let _ = lease::release(&conn, &self.lease);
    }
}

impl std::fmt::Debug for RunClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunClaim")
            .field("run", &self.lease.run)
            .finish_non_exhaustive()
    }
}

/// The count and last hash of a run's log, as committed.
/// Appends a batch of events to their runs' chains (inside a transaction).
fn write_batch(tx: &Connection, batch: Vec<(String, Event)>) -> rusqlite::Result<()> {
    // Each run's head is read inside the transaction, not cached: another
    // process may have appended (an approval) since, and a commit that
    // fails must leave nothing behind.
    let mut heads: std::collections::HashMap<String, (i64, i64, String)> = Default::default();
    for (run, event) in batch {
        let body = serde_json::to_string(&event).expect("events serialize");
        if !heads.contains_key(&run) {
            let head = head(tx, &run)?;
            heads.insert(run.clone(), head);
        }
        let (no, count, last) = heads.get_mut(&run).expect("just inserted");
        *count += 1;
        if *count > i64::from(u32::MAX) {
            // The position is the key's low 32 bits; one more would land in
            // the next run's range.
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some(format!(
                    "run {run} has {} events, the most one run can log",
                    u32::MAX
                )),
            ));
        }
        *last = audit::chain(last, *count, &body);
        tx.prepare_cached(
            "INSERT INTO events (id, run_id, seq, body, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![(*no << 32) | *count, run, *count, body, *last])?;
        match &event {
            Event::RunFinished {
                status, message, ..
            } => {
                // The run row keeps the chain's head, so a removed last
                // event is found; it is written when the run stops.
                let status = RunState::Stopped(*status);
                tx.prepare_cached(
                    "UPDATE runs SET status = ?2, message = ?3, finished_at = ?4, \
                     events = ?5, last_hash = ?6 WHERE id = ?1",
                )?
                .execute(params![
                    run,
                    status,
                    message,
                    now_ms(),
                    *count,
                    *last
                ])?;
            }
            Event::RunResumed { .. } => {
                tx.prepare_cached(
                    "UPDATE runs SET status = ?2, message = NULL, finished_at = NULL \
                     WHERE id = ?1",
                )?
                .execute(params![run, RunState::Running])?;
            }
            Event::FileOriginal {
                sha256: Some(sha256),
                content: Some(content),
                ..
            } => {
                tx.prepare_cached("INSERT OR IGNORE INTO blobs (sha256, content) VALUES (?1, ?2)")?
                    .execute(params![sha256, content.as_slice()])?;
            }
            Event::Artifact {
                step,
                name,
                sha256,
                content,
                ..
            } => {
                // A kept command output is too large to hold: it stays in
                // `blobs/<sha256>` beside the database, where it was streamed,
                // and its row here is empty (see `Store::blob`).
                let bytes: &[u8] = match content {
                    cairn_engine::script::context::ArtifactBody::Bytes(bytes) => bytes,
                    cairn_engine::script::context::ArtifactBody::File { .. } => &[],
                };
                tx.prepare_cached("INSERT OR IGNORE INTO blobs (sha256, content) VALUES (?1, ?2)")?
                    .execute(params![sha256, bytes])?;
                tx.prepare_cached(
                    "INSERT INTO artifacts (run_id, step, name, sha256, bytes, seq) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    run,
                    step,
                    name,
                    sha256,
                    content.len() as i64,
                    *count
                ])?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Keeps a run's plan, its source and its checked form, replacing the one
/// it had.
fn store_plan(tx: &Connection, run: &str, source: &str, encoded: &[u8]) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO plans (run_id, source, format, body) VALUES (?1, ?2, ?3, ?4)",
        params![run, source, plans::FORMAT, encoded],
    )
    .map(drop)
}

/// Runs `f` in a write transaction, committed if it succeeds and rolled
/// back if anything fails. `BEGIN IMMEDIATE` takes the write lock up front
/// (no upgrade from a read lock that could fail half-way), and both
/// statements are cached: a commit per step parses nothing.
fn transaction(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let result = f(conn).and_then(|()| conn.prepare_cached("COMMIT")?.execute([]).map(drop));
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// The events of run `?1` after position `?2`, as `e`, for a SELECT.
const EVENTS_OF_RUN: &str = "FROM runs r JOIN events e
    ON e.id > (r.no << 32) | ?2 AND e.id <= (r.no << 32) | 4294967295
    WHERE r.id = ?1";

/// A run's number and the position and hash of its last event.
fn head(conn: &Connection, run: &str) -> rusqlite::Result<(i64, i64, String)> {
    // Cached: it runs once per run in every commit.
    conn.prepare_cached(
        "SELECT r.no, coalesce(e.id & 4294967295, 0), coalesce(e.hash, '') FROM runs r
         LEFT JOIN events e ON e.id = (SELECT id FROM events
             WHERE id BETWEEN r.no << 32 AND (r.no << 32) | 4294967295
             ORDER BY id DESC LIMIT 1)
         WHERE r.id = ?1",
    )?
    .query_row([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
}

/// Records one run into the store: the scheduler's [`cairn_engine::run::Recorder`].
pub struct RunRecorder {
    /// The store.
    pub store: std::sync::Arc<Store>,
    /// The run's id.
    pub run: String,
}

impl cairn_engine::run::Recorder for RunRecorder {
    fn record(&self, event: &Event) -> Result<(), String> {
        self.store
            .record(&self.run, event)
            .map_err(|e| e.to_string())
    }

    fn sync(&self) -> Result<(), String> {
        self.store.sync().map_err(|e| e.to_string())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::{Durability, Store, StoreError};

    fn leases(dir: &std::path::Path) -> Vec<(String, i64, Option<i64>)> {
        let conn = rusqlite::Connection::open(dir.join("state.db")).expect("open");
        let mut stmt = conn
            .prepare("SELECT run_id, pid, start_time FROM leases ORDER BY run_id")
            .expect("query");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// One claim per run at a time, in this process too (through this store
    /// or another one on the same directory), as an `flock` per open file
    /// gave; the lease row names this process and goes when the claim drops.
    /// Run ids are short, typable and drawn afresh: two runs begun in the
    /// same millisecond by one process differ.
    #[test]
    fn run_ids_are_seven_characters_a_person_can_type() {
        let ids: std::collections::HashSet<String> = (0..64)
            .map(|draw| super::run_id(1_796_240_000_000, draw))
            .collect();
        assert_eq!(ids.len(), 64);
        for id in &ids {
            assert_eq!(id.len(), 7, "{id}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_digit() || (c.is_ascii_lowercase() && !"ilou".contains(c))),
                "{id}"
            );
        }
    }

    #[test]
    fn a_run_is_claimed_once_at_a_time_and_given_back_on_drop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), Durability::Normal).expect("opens");
        let other = Store::open(dir.path(), Durability::Normal).expect("opens");
        let claim = store.claim("r1").expect("claims");
        let me = super::lease::me();
        assert_eq!(leases(dir.path()), [("r1".to_owned(), me.pid, me.start)]);
        for store in [&store, &other] {
            let Err(StoreError::Busy { run }) = store.claim("r1") else {
                panic!("claimed twice");
            };
            assert_eq!(run, "r1");
        }
        let second = other.claim("r2").expect("another run is free");
        drop(claim);
        assert_eq!(leases(dir.path()).len(), 1);
        let again = other.claim("r1").expect("free once dropped");
        drop((again, second));
        assert!(leases(dir.path()).is_empty());
    }

    /// A row whose holder is gone (exited, or a reused pid) is taken over;
    /// and a claim that was taken over does not remove its successor's row
    /// when it drops.
    #[test]
    fn a_dead_holders_lease_is_taken_over_and_kept_by_its_new_holder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), Durability::Normal).expect("opens");
        let claim = store.claim("r").expect("claims");
        let me = super::lease::me();
        let mut child = std::process::Command::new("true").spawn().expect("spawns");
        let exited = i64::from(child.id());
        child.wait().expect("exits");
        let conn = rusqlite::Connection::open(dir.path().join("state.db")).expect("open");
        for (pid, start) in [(exited, me.start), (me.pid, me.start.map(|s| s + 1))] {
            conn.execute(
                "UPDATE leases SET pid = ?1, start_time = ?2, token = 0",
                rusqlite::params![pid, start],
            )
            .expect("a dead holder");
            let taken = store.claim("r").expect("taken over");
            assert_eq!(leases(dir.path()), [("r".to_owned(), me.pid, me.start)]);
            drop(taken);
            assert!(leases(dir.path()).is_empty());
            conn.execute(
                "INSERT INTO leases (run_id, pid, start_time, boot_id, pid_ns, token, taken_at)
                 VALUES ('r', ?1, ?2, ?3, ?4, 0, 0)",
                rusqlite::params![me.pid, me.start, me.boot, me.pid_ns],
            )
            .expect("a live holder again");
        }
        // `claim` was taken over by the rows above; dropping it leaves the
        // current holder's row.
        drop(claim);
        assert_eq!(leases(dir.path()).len(), 1);
    }

    /// Runs begun in the same millisecond by one process get distinct ids.
    #[test]
    fn runs_begun_together_get_distinct_ids() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), Durability::Normal).expect("opens");
        let source =
            cairn_lang::source::Source::new("p.plan", "plan p \"P\"\n\ntask a \"A\"\n".to_owned());
        let plan = cairn_engine::check(&source).plan.expect("checks");
        let ids: std::collections::HashSet<String> = (0..50)
            .map(|_| store.begin(&plan, "p.plan", "", &[], 0).expect("begins"))
            .collect();
        assert_eq!(ids.len(), 50);
    }
}

/// `docs/embedding.md`, compiled and run as a doctest so its program stays
/// true (here, in the crate that depends on every other library crate).
#[doc = include_str!("../../../docs/embedding.md")]
#[cfg(doctest)]
pub struct EmbeddingGuide;
