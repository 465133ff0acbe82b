//! Who is running a run: one row per run in `leases`, naming the process that
//! holds it.
//!
//! A claim is taken in one `BEGIN IMMEDIATE` transaction: a row whose holder
//! still runs refuses it, any other row is replaced. The row lives in the
//! database, not beside it, so no file a plan writes (or deletes) can break a
//! claim. A holder that dies leaves its row behind; the next claim sees that
//! the process is gone and takes the run over.
//!
//! A holder is alive when it runs on this boot of this machine (the kernel's
//! boot id), its pid exists, is not a zombie, and started at the recorded
//! time (`/proc/<pid>/stat` field 22, clock ticks since boot), so a pid that
//! was reused by another process does not keep a dead holder's claim.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;

use rusqlite::{params, Connection, OptionalExtension};

/// A process as a lease names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Holder {
    /// Its process id.
    pub pid: i64,
    /// When it started, in clock ticks since boot; `None` where `/proc`
    /// cannot tell.
    pub start: Option<i64>,
    /// The kernel's boot id when it took the lease.
    pub boot: String,
    /// Its pid namespace (`pid:[…]`): a pid means something only inside it.
    pub pid_ns: String,
}

/// This process.
pub(super) fn me() -> &'static Holder {
    static ME: OnceLock<Holder> = OnceLock::new();
    ME.get_or_init(|| {
        let pid = i64::from(std::process::id());
        Holder {
            pid,
            start: match stat(pid) {
                Ok(Some(stat)) => Some(stat.start),
                _ => None,
            },
            boot: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|id| id.trim().to_owned())
                .unwrap_or_default(),
            pid_ns: std::fs::read_link("/proc/self/ns/pid")
                .map(|ns| ns.display().to_string())
                .unwrap_or_default(),
        }
    })
}

/// What `/proc/<pid>/stat` says of a process.
pub(super) struct Stat {
    /// Field 3: `Z` (zombie) and `X` (dead) have exited.
    pub state: char,
    /// Field 5: its process group.
    pub group: i64,
    /// Field 22: when it started, in clock ticks since boot.
    pub start: i64,
}

/// `/proc/<pid>/stat`, or `None` if there is no such process.
pub(super) fn stat(pid: i64) -> std::io::Result<Option<Stat>> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => text,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ESRCH) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    // The command name (field 2) is in parentheses and may hold spaces and
    // parentheses itself: the fields after it start past the last `)`.
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "unreadable stat");
    let (_, rest) = text.rsplit_once(')').ok_or_else(bad)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(bad)?;
    let number = |field: usize| -> std::io::Result<i64> {
        fields
            .get(field - 3)
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    };
    Ok(Some(Stat {
        state,
        group: number(5)?,
        start: number(22)?,
    }))
}

/// Whether `holder` still runs.
pub(super) fn alive(holder: &Holder) -> bool {
    let me = me();
    if holder.boot != me.boot {
        // Taken before a reboot (or on another machine): gone.
        return false;
    }
    if holder.pid_ns != me.pid_ns {
        // A process in another pid namespace (another container): its pid
        // cannot be looked up here, so it is taken to run.
        return true;
    }
    let Ok(pid) = libc::pid_t::try_from(holder.pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    match stat(holder.pid) {
        Ok(Some(stat)) => !matches!(stat.state, 'Z' | 'X') && Some(stat.start) == holder.start,
        Ok(None) => false,
        // No `/proc` to read (or not allowed to): whether the pid exists.
        Err(_) => {
            // SAFETY: signal 0 only checks that the process exists.
            let exists = unsafe { libc::kill(pid, 0) } == 0;
            exists || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
    }
}

/// A lease this process holds: its run and which of this process's claims.
#[derive(Debug)]
pub(super) struct Lease {
    pub run: String,
    token: i64,
}

/// Takes `run`'s lease for this process, in one write transaction: `None`
/// if a live process (this one included) holds it.
pub(super) fn take(conn: &Connection, run: &str, now_ms: i64) -> rusqlite::Result<Option<Lease>> {
    static TOKENS: AtomicI64 = AtomicI64::new(1);
    // A live holder refuses without a write lock, which the holder's own
    // commits would wait for (`cairn log --follow` asks every 200 ms).
    if holder(conn, run)?.is_some_and(|holder| alive(&holder)) {
        return Ok(None);
    }
    let me = me();
    let mut lease = None;
    super::transaction(conn, |tx| {
        // Read again under the write lock: this decides.
        if holder(tx, run)?.is_some_and(|holder| alive(&holder)) {
            return Ok(());
        }
        let token = TOKENS.fetch_add(1, Ordering::Relaxed);
        tx.prepare_cached(
            "INSERT OR REPLACE INTO leases (run_id, pid, start_time, boot_id, pid_ns, token, taken_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![run, me.pid, me.start, me.boot, me.pid_ns, token, now_ms])?;
        lease = Some(Lease {
            run: run.to_owned(),
            token,
        });
        Ok(())
    })?;
    Ok(lease)
}

/// Gives a lease back: its row goes, unless another process took it over.
pub(super) fn release(conn: &Connection, lease: &Lease) -> rusqlite::Result<()> {
    let me = me();
    conn.prepare_cached(
        "DELETE FROM leases WHERE run_id = ?1 AND pid = ?2 AND start_time IS ?3
         AND boot_id = ?4 AND pid_ns = ?5 AND token = ?6",
    )?
    .execute(params![
        lease.run,
        me.pid,
        me.start,
        me.boot,
        me.pid_ns,
        lease.token
    ])
    .map(drop)
}

/// The process named by `run`'s lease row, if it has one.
pub(super) fn holder(conn: &Connection, run: &str) -> rusqlite::Result<Option<Holder>> {
    conn.prepare_cached("SELECT pid, start_time, boot_id, pid_ns FROM leases WHERE run_id = ?1")?
        .query_row([run], |r| {
            Ok(Holder {
                pid: r.get(0)?,
                start: r.get(1)?,
                boot: r.get(2)?,
                pid_ns: r.get(3)?,
            })
        })
        .optional()
}

/// Whether an older cairn (schema 4 and before: an `flock` on
/// `locks/<run>.lock` beside the database) runs `run`. Only for refusing an
/// upgrade under it: such a cairn takes no lease.
pub(super) fn held_by_older_cairn(locks: &std::path::Path, run: &str) -> bool {
    let Ok(file) = std::fs::File::open(locks.join(format!("{run}.lock"))) else {
        return false;
    };
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function owns; closing it releases
    // the lock if it was taken.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

#[cfg(test)]
mod tests {
    use super::{alive, me, Holder};

    #[test]
    fn this_process_is_alive_and_reads_its_start_time() {
        let me = me().clone();
        assert!(me.start.is_some(), "no start time in /proc/self/stat");
        assert!(!me.boot.is_empty(), "no boot id");
        assert!(alive(&me));
    }

    /// A reused pid (another start time), another boot or a pid that no
    /// process has are not the holder.
    #[test]
    fn a_reused_pid_another_boot_or_an_exited_process_is_not_alive() {
        let me = me().clone();
        let reused = Holder {
            start: me.start.map(|s| s + 1),
            ..me.clone()
        };
        assert!(!alive(&reused));
        let rebooted = Holder {
            boot: "00000000-0000-0000-0000-000000000000".to_owned(),
            ..me.clone()
        };
        assert!(!alive(&rebooted));
        let mut child = std::process::Command::new("true").spawn().expect("spawns");
        let pid = i64::from(child.id());
        child.wait().expect("exits");
        let exited = Holder { pid, ..me.clone() };
        assert!(!alive(&exited));
        for pid in [0, -1, i64::MAX] {
            assert!(!alive(&Holder { pid, ..me.clone() }), "pid {pid}");
        }
    }

    /// A child that exited but was not reaped yet holds nothing.
    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().expect("spawns");
        let pid = i64::from(child.id());
        let start = loop {
            let stat = super::stat(pid).expect("reads").expect("not reaped");
            if stat.state == 'Z' {
                break stat.start;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let zombie = Holder {
            pid,
            start: Some(start),
            ..me().clone()
        };
        assert!(!alive(&zombie));
        child.wait().expect("reaped");
    }
}
