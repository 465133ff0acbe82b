//! The store's schema and its forward migrations.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// The newest schema this build writes.
pub const VERSION: i64 = 2;

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
];

/// Brings the database to [`VERSION`], refusing one from a newer cairn.
pub fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    if found > VERSION {
        return Err(StoreError::NewerSchema {
            path: path.display().to_string(),
            found,
            known: VERSION,
        });
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {migration} PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .map_err(err)?;
    }
    Ok(())
}
