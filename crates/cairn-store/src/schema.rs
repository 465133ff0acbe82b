//! The store's schema and its forward migrations.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// The newest schema this build writes.
pub const VERSION: i64 = 8;

/// The first version that keeps leases (before it, a run was held by an
/// `flock` on `locks/<run>.lock`).
pub const LEASES: i64 = 5;

/// Each migration takes the database from the previous version to the next.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        plan TEXT NOT NULL,
        file TEXT NOT NULL,
        source TEXT NOT NULL,
        source_hash TEXT NOT NULL,
        params TEXT NOT NULL,
        seed INTEGER NOT NULL,
        steps INTEGER NOT NULL,
        status TEXT NOT NULL,
        message TEXT,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        events INTEGER NOT NULL,
        last_hash TEXT NOT NULL
    );
    CREATE TABLE events (
        run_id TEXT NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,
        body TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
",
    "
    -- Events clustered by (run, position): one b-tree, so a commit writes
    -- one page where a rowid table and its key index wrote two.
    CREATE TABLE events_by_run (
        run_id TEXT NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,
        body TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    INSERT INTO events_by_run SELECT run_id, seq, body, hash FROM events ORDER BY rowid;
    DROP TABLE events;
    ALTER TABLE events_by_run RENAME TO events;
    CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        content BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE artifacts (
        run_id TEXT NOT NULL REFERENCES runs(id),
        step TEXT NOT NULL,
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL REFERENCES blobs(sha256),
        bytes INTEGER NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE INDEX artifacts_by_run ON artifacts (run_id, seq);
",
    "
    -- Events keyed by one integer, the run's number << 32 | position: a
    -- run's events are one contiguous range, and the running run appends
    -- at the end of the table, where SQLite adds a page without rebalancing
    -- (a commit cost 15 us on the composite key, 8.5 us on this one).
    ALTER TABLE runs ADD COLUMN no INTEGER;
    UPDATE runs SET no = rowid;
    CREATE UNIQUE INDEX runs_by_no ON runs (no);
    CREATE TABLE events_by_key (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,
        body TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    INSERT INTO events_by_key
        SELECT (r.no << 32) | e.seq, e.run_id, e.seq, e.body, e.hash
        FROM events e JOIN runs r ON r.id = e.run_id ORDER BY r.no, e.seq;
    DROP TABLE events;
    ALTER TABLE events_by_key RENAME TO events;
",
    "
    -- Each run's plan: its source text and, so that resuming a run need not
    -- check that text again, the plan as checked, encoded (`format` names
    -- how; NULL for runs recorded before plans were kept). Out of `runs`,
    -- whose rows are read and updated as runs go: a long plan's text spans
    -- many overflow pages, and SQLite rewrites all of them when any column
    -- of the row changes, and walks them to read any column after it.
    CREATE TABLE plans (
        run_id TEXT PRIMARY KEY REFERENCES runs(id),
        source TEXT NOT NULL,
        format TEXT,
        body BLOB
    );
    INSERT INTO plans (run_id, source) SELECT id, source FROM runs;
    ALTER TABLE runs DROP COLUMN source;
",
    "
    -- Which process runs each run: its pid, when it started (clock ticks
    -- since boot, /proc/<pid>/stat field 22, so a reused pid is told apart),
    -- the boot and pid namespace it ran in, which of its claims this is, and
    -- when it was taken (ms since 1970). In the database, where no file a
    -- plan writes can reach it, instead of a lock file beside it.
    CREATE TABLE leases (
        run_id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        start_time INTEGER,
        boot_id TEXT NOT NULL,
        pid_ns TEXT NOT NULL,
        token INTEGER NOT NULL,
        taken_at INTEGER NOT NULL
    ) WITHOUT ROWID;
",
    "
    -- The working directory each run began in (absolute): the plan file and
    -- the files it imports were named relative to it, so a run resumes or
    -- replays from any directory. NULL for runs recorded before.
    ALTER TABLE runs ADD COLUMN cwd TEXT;
    -- The process group of every command running for a step, while it runs:
    -- a process killed with `kill -9` leaves its rows, and the next resume
    -- makes sure those groups are gone before the steps run again. With the
    -- boot it ran in and the leader's start time (clock ticks since boot),
    -- so a group id reused since is told apart.
    CREATE TABLE processes (
        run_id TEXT NOT NULL,
        pgid INTEGER NOT NULL,
        step TEXT NOT NULL,
        boot_id TEXT NOT NULL,
        start_time INTEGER,
        PRIMARY KEY (run_id, pgid)
    ) WITHOUT ROWID;
",
    "
    -- A child run of a `plan:` step: the run whose step began it, that
    -- step's id (a part's own, `round#2`) and attempt. NULL for the runs
    -- people start. One child per attempt: a resumed parent finds the
    -- child its attempt began and goes on with it.
    ALTER TABLE runs ADD COLUMN parent_run TEXT;
    ALTER TABLE runs ADD COLUMN parent_step TEXT;
    ALTER TABLE runs ADD COLUMN parent_attempt INTEGER;
    CREATE UNIQUE INDEX runs_by_parent ON runs (parent_run, parent_step, parent_attempt)
        WHERE parent_run IS NOT NULL;
",
    "
    -- `cairn cancel` of a run a live process holds: why, for that process
    -- to read (it looks every 250 ms) and cancel the run with.
    ALTER TABLE runs ADD COLUMN cancel TEXT;
    -- `cairn fork`: the run this one began as a copy of, and the step it
    -- ran again from.
    ALTER TABLE runs ADD COLUMN forked_from TEXT;
    ALTER TABLE runs ADD COLUMN forked_at TEXT;
",
];

/// The schema version of the database (0: a new, empty one).
pub fn version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        })
}

/// Refuses a version no cairn writes: below 0, or 0 (a new database)
/// with cairn's tables in it (the version was reset).
pub fn known(found: i64, path: &Path) -> Result<(), StoreError> {
    let damaged = |problem: String| StoreError::Damaged {
        path: path.display().to_string(),
        problem,
    };
    if found < 0 {
        return Err(damaged(format!(
            "its schema version is {found}, which no cairn writes"
        )));
    }
    Ok(())
}

/// Whether a database of version 0 already holds cairn's tables.
fn has_tables(conn: &Connection) -> bool {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'runs'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .is_ok_and(|n| n > 0)
}

/// Brings the database to [`VERSION`], refusing one from a newer cairn.
///
/// Safe with other processes opening the same store at once (several
/// `cairn run` on a new state directory): the version is read again and
/// every migration applied inside one `BEGIN IMMEDIATE` transaction, so one
/// process migrates and the others, waiting on the write lock, find the
/// schema current.
pub fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let newer = |found| StoreError::NewerSchema {
        path: path.display().to_string(),
        found,
        known: VERSION,
    };
    // Current already (every open but the first): no write lock taken.
    match version(conn, path)? {
        VERSION => return Ok(()),
        found if found > VERSION => return Err(newer(found)),
        _ => {}
    }
    conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
    let result = (|| {
        let found = version(conn, path)?;
        if found > VERSION {
            return Err(newer(found));
        }
        known(found, path)?;
        if found == 0 && has_tables(conn) {
            return Err(StoreError::Damaged {
                path: path.display().to_string(),
                problem:
                    "its schema version is 0 but it holds cairn's tables (the version was reset)"
                        .to_owned(),
            });
        }
        for migration in MIGRATIONS.iter().skip(found as usize) {
            conn.execute_batch(migration).map_err(err)?;
        }
        conn.pragma_update(None, "user_version", VERSION)
            .map_err(err)?;
        conn.execute_batch("COMMIT").map_err(err)
    })();
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

#[cfg(test)]
mod tests {
    use rusqlite::{params, Connection};

    use super::MIGRATIONS;
    use crate::{audit, Durability, Store};

    /// `state.db` in `dir`, as cairn's schema 2 wrote it.
    fn version_2_store(dir: &std::path::Path) -> Connection {
        let conn = Connection::open(dir.join("state.db")).expect("open");
        for migration in &MIGRATIONS[..2] {
            conn.execute_batch(migration).expect("migrate to 2");
        }
        conn.pragma_update(None, "user_version", 2)
            .expect("version");
        conn
    }

    /// What a cairn of schema 4 or before held while it ran `run`: an
    /// `flock` on `locks/<run>.lock`.
    fn older_cairns_lock(dir: &std::path::Path, run: &str) -> std::fs::File {
        std::fs::create_dir_all(dir.join("locks")).expect("lock dir");
        let file = std::fs::File::create(dir.join(format!("locks/{run}.lock"))).expect("lock file");
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor the test owns.
        let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        assert!(taken, "the lock is free");
        file
    }

    #[test]
    fn every_version_has_its_migration() {
        assert_eq!(MIGRATIONS.len() as i64, super::VERSION);
    }

    /// A store of schema 4 (runs held by lock files) is not upgraded while an
    /// older cairn runs a run in it, and once it stops, it upgrades to leases:
    /// the run is claimed by a row, and a claim that dropped gives it back.
    #[test]
    fn a_version_4_store_upgrades_to_leases_once_its_run_stops() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let conn = Connection::open(dir.path().join("state.db")).expect("open");
            for migration in &MIGRATIONS[..4] {
                conn.execute_batch(migration).expect("migrate to 4");
            }
            conn.pragma_update(None, "user_version", 4)
                .expect("version");
            conn.execute(
                "INSERT INTO runs (id, plan, file, source_hash, params, seed, steps, status, started_at, events, last_hash, no)
                 VALUES ('old', 'p', 'p.plan', '', '[]', 0, 1, 'running', 1, 0, '', 1)",
                [],
            )
            .expect("run");
        }
        let held = older_cairns_lock(dir.path(), "old");
        let Err(crate::StoreError::UpgradeBusy { run, .. }) =
            Store::open(dir.path(), Durability::Normal)
        else {
            panic!("upgraded under a running run");
        };
        assert_eq!(run, "old");
        drop(held);
        let store = Store::open(dir.path(), Durability::Normal).expect("upgrades");
        let conn = Connection::open(dir.path().join("state.db")).expect("open");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, super::VERSION);
        let leases = || -> i64 {
            conn.query_row(
                "SELECT count(*) FROM leases WHERE run_id = 'old'",
                [],
                |r| r.get(0),
            )
            .expect("a leases table")
        };
        assert_eq!(leases(), 0);
        let claim = store.claim("old").expect("claims");
        assert_eq!(leases(), 1);
        drop(claim);
        assert_eq!(leases(), 0);
    }

    /// An older cairn still running a run keeps its statements: the store
    /// is not upgraded under it, and is once it stops.
    #[test]
    fn a_store_is_not_upgraded_under_a_running_run() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let conn = version_2_store(dir.path());
            conn.execute(
                "INSERT INTO runs (id, plan, file, source, source_hash, params, seed, steps, status, started_at, events, last_hash)
                 VALUES ('old', 'p', 'p.plan', '', '', '[]', 0, 1, 'running', 1, 0, '')",
                [],
            )
            .expect("run");
        }
        let held = older_cairns_lock(dir.path(), "old");
        let Err(err) = Store::open(dir.path(), Durability::Normal) else {
            panic!("upgraded under a running run");
        };
        assert_eq!(
            err.to_string(),
            format!(
                "the run store `{}` needs an upgrade, but run old is being run by an older cairn; \
                 let it finish (or stop it), then try again",
                dir.path().join("state.db").display()
            )
        );
        drop(held);
        Store::open(dir.path(), Durability::Normal).expect("upgrades once it stopped");
    }

    /// A store written by schema 2 (events keyed by run and position,
    /// sources in the run rows) opens as the newest schema with every run's
    /// log, chain and source intact.
    #[test]
    fn a_version_2_store_migrates_with_its_chains_intact() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let conn = version_2_store(dir.path());
            // Two runs, their events interleaved in time.
            for (run, started) in [("b", 2), ("a", 1)] {
                conn.execute(
                    "INSERT INTO runs (id, plan, file, source, source_hash, params, seed, steps, status, started_at, events, last_hash)
                     VALUES (?1, 'p', 'p.plan', ?3, '', '[]', 0, 1, 'running', ?2, 0, '')",
                    params![run, started, format!("plan {run} \"P\"\n")],
                )
                .expect("run");
            }
            let mut last = std::collections::HashMap::<&str, String>::new();
            for seq in 1..=3i64 {
                for run in ["a", "b"] {
                    let body =
                        format!(r#"{{"event":"log","step":"s","line":"{run}{seq}","at_ms":0}}"#);
                    let hash = audit::chain(last.get(run).map_or("", String::as_str), seq, &body);
                    conn.execute(
                        "INSERT INTO events (run_id, seq, body, hash) VALUES (?1, ?2, ?3, ?4)",
                        params![run, seq, body, hash],
                    )
                    .expect("event");
                    last.insert(run, hash);
                }
            }
        }
        let store = Store::open(dir.path(), Durability::Normal).expect("migrates");
        for run in ["a", "b"] {
            let events = store.events(run).expect("events");
            let lines: Vec<i64> = events.iter().map(|e| e.seq).collect();
            assert_eq!(lines, [1, 2, 3]);
            assert!(events[2].body.contains(&format!("{run}3")));
            assert_eq!(store.verify(run).expect("reads").map(|v| v.events), Ok(3));
            let source = store.source(run).expect("source").source;
            assert_eq!(source, format!("plan {run} \"P\"\n"));
            // Checked again on resume: no plan was kept with it.
            assert!(store.plan(run).expect("reads").is_none());
        }
        // New events go on from the migrated head.
        store
            .append(
                "a",
                &cairn_engine::run::Event::StepReset {
                    step: "s".into(),
                    reason: "test".into(),
                    keep_parts: false,
                },
            )
            .expect("appends");
        assert_eq!(store.verify("a").expect("reads").map(|v| v.events), Ok(4));
        assert_eq!(store.events("b").expect("events").len(), 3);
    }
}
