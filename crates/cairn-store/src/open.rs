//! Opening the store: created whole or not at all, a damaged one refused,
//! and a read-only one (archived, mounted read-only) still read.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use super::{refuse_upgrade_under_running, schema, Durability, Store, StoreError};

impl Store {
    /// Opens (creating if needed) `state.db` in `dir`, in WAL mode with a
    /// busy timeout, migrating an older schema forward.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join("state.db");
        let err = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        if path.exists() && !writable(dir) {
            return Err(StoreError::ReadOnly(path.display().to_string()));
        }
        create(&path)?;
        refuse_empty(&path)?;
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        let synchronous = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(err)?;
        // At the default durability, checkpoints happen on the checkpointer's
        // thread instead; with `full`, every commit syncs anyway, and
        // checkpointing beside it only adds contention for the disk.
        if durability == Durability::Normal {
            conn.pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(err)?;
        }
        let found = schema::version(&conn, &path)?;
        if (1..schema::VERSION).contains(&found) {
            refuse_upgrade_under_running(&conn, &path, found)?;
        }
        schema::migrate(&conn, &path)?;
        Ok(Self::from_connection(
            conn,
            path,
            durability == Durability::Normal,
        ))
    }

    /// Opens an existing `state.db` in `dir` for reading only: nothing is
    /// written, not even the WAL's index. For a store that cannot be
    /// written (a read-only mount, an archive, another user's files); a
    /// store left without its WAL files is read as it is on disk.
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("state.db");
        let err = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        refuse_empty(&path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let probe = |conn: Connection| -> rusqlite::Result<Connection> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))?;
            Ok(conn)
        };
        // A WAL database needs its `-shm` index, which cannot be made where
        // nothing can be written: without one, the file is read as it is
        // (`immutable`), which is what a cleanly closed store holds whole.
        let conn = Connection::open_with_flags(&path, flags)
            .and_then(probe)
            .or_else(|_| {
                let uri = format!("file:{}?immutable=1", uri_path(&path));
                Connection::open_with_flags(uri, flags).and_then(probe)
            })
            .map_err(err)?;
        match schema::version(&conn, &path)? {
            found if found == schema::VERSION => {}
            found if found > schema::VERSION => {
                return Err(StoreError::NewerSchema {
                    path: path.display().to_string(),
                    found,
                    known: schema::VERSION,
                })
            }
            found => {
                schema::known(found, &path)?;
                return Err(StoreError::ReadOnlyUpgrade {
                    path: path.display().to_string(),
                    found,
                    known: schema::VERSION,
                });
            }
        }
        Ok(Self::from_connection(conn, path, false))
    }

    fn from_connection(conn: Connection, path: std::path::PathBuf, checkpoints: bool) -> Self {
        Self {
            conn: Arc::new(Mutex::new(conn)),
            pending: Mutex::new(Vec::new()),
            path,
            checkpointer: std::sync::OnceLock::new(),
            background_checkpoints: checkpoints,
            broken: std::sync::OnceLock::new(),
        }
    }
}

/// Whether the store in `dir` can be written: false on a read-only mount or
/// where this user may not write (root included, on a read-only mount).
pub fn writable(dir: &Path) -> bool {
    use rustix::fs::{access, Access};
    let db = dir.join("state.db");
    access(dir, Access::WRITE_OK).is_ok() && access(&db, Access::WRITE_OK).is_ok()
}

/// A new store is built under a temporary name and linked into place
/// whole, so `state.db` never exists empty or half made, and an empty one
/// is always damage. Two processes creating it at once both use the one
/// linked first.
fn create(path: &Path) -> Result<(), StoreError> {
    if path.exists() {
        return Ok(());
    }
    let temp = path.with_file_name(format!(".state.db.new-{}", std::process::id()));
    let built = (|| {
        let conn = Connection::open(&temp)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Ok(conn)
    })()
    .map_err(|source| StoreError::Sqlite {
        path: temp.display().to_string(),
        source,
    })
    .and_then(|conn| {
        schema::migrate(&conn, &temp)?;
        // Closing checkpoints the WAL into the file and removes it.
        conn.close().map_err(|(_, source)| StoreError::Sqlite {
            path: temp.display().to_string(),
            source,
        })
    });
    // Linked unless one is there already (another process won the race),
    // or the file system has no hard links: then the first open creates
    // it in place, as SQLite does.
    let linked = built.map(|()| {
        let _ = std::fs::hard_link(&temp, path);
    });
    for leftover in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{leftover}", temp.display()));
    }
    linked
}

/// A database file of 0 bytes is not a store: it was truncated (SQLite
/// would take it for a new, empty one, and the runs would be gone unseen).
fn refuse_empty(path: &Path) -> Result<(), StoreError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() == 0 => Err(StoreError::Damaged {
            path: path.display().to_string(),
            problem: "it is empty (0 bytes)".to_owned(),
        }),
        _ => Ok(()),
    }
}

/// `path` for a `file:` URI: `%`, `?` and `#` escaped.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.display().to_string().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}
