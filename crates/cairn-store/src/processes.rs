//! The process groups of running commands: one row in `processes` per
//! command while it runs, so that what a killed cairn left running can be
//! stopped before its steps run again.
//!
//! Each command runs under a supervisor that leads its own process group
//! (`script::shell`): the row names that group, the step, the boot it ran
//! in and the leader's start time (clock ticks since boot, `/proc/<pid>/stat`
//! field 22), as a lease names its holder (`lease`). The row is committed
//! once the command has run for a moment (`script::shell`'s `RECORD_AFTER`:
//! most commands end sooner and cost no commit), and deleted when it has
//! ended.
//!
//! A cairn that is killed leaves its rows. Its commands normally die with
//! it (their supervisors get `SIGTERM` when cairn dies, and kill everything
//! below them), but not always: a supervisor killed with cairn (a
//! `kill -9` of the whole group, the OOM killer) leaves the command's other
//! processes running. [`Store::stop_processes`] makes sure that each
//! recorded group that still runs is killed and gone before a resume runs
//! any step.
//!
//! Which group is the run's: one recorded on another boot is gone (no
//! process outlives a reboot). A group id is a pid, which the kernel does not
//! give to another process while any process of the group is left. So on
//! this boot, if a process with that pid exists it is the group's leader:
//! ours if it started when recorded, and otherwise the id was reused (our
//! group is long gone) and nothing is killed. If no such process exists but
//! the group does, the leader died and its group is left: it is killed. The
//! one case this cannot tell apart: the group ended, its id was reused by
//! another process that led a group of its own, and that leader died too,
//! leaving its group. Nor can it tell pid namespaces apart: the processes
//! sharing a store must share one (see `lease`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use super::{lease, Store, StoreError};

/// How long [`Store::stop_processes`] waits for a killed group to be gone.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// One recorded group of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The process group's id: the pid of its leader, the command's
    /// supervisor.
    pub pgid: i64,
    /// The step whose command it was.
    pub step: String,
    /// The kernel's boot id when it started.
    boot: String,
    /// When its leader started, in clock ticks since boot, if known.
    start: Option<i64>,
}

/// What [`Store::stop_processes`] found.
#[derive(Debug, Default)]
pub struct Stopped {
    /// Groups that were still running, and now are not.
    pub killed: Vec<Group>,
    /// Groups still running that could not be stopped, and why; their rows
    /// stay.
    pub left: Vec<(Group, String)>,
}

impl Store {
    /// Records that a command of `step` in `run` leads the process group
    /// `pgid`, committed at once, with the rows of the groups in `ended`
    /// (commands that ended) deleted first, in the same commit.
    ///
    /// The row only matters while this boot lasts (a reboot ends every
    /// process), so with `--durability full` it is committed without an
    /// `fsync`, like a commit at `normal`.
    pub fn process_started(
        &self,
        run: &str,
        step: &str,
        pgid: i32,
        ended: &[i32],
    ) -> Result<(), StoreError> {
        let start = match lease::stat(i64::from(pgid)) {
            Ok(Some(stat)) => Some(stat.start),
            _ => None,
        };
        let conn = self.lock();
        self.unsynced(&conn, |conn| {
            super::transaction(conn, |tx| {
                for &gone in ended {
                    forget(tx, run, i64::from(gone))?;
                }
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO processes (run_id, pgid, step, boot_id, start_time)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![run, pgid, step, lease::me().boot, start])
                .map(drop)
            })
        })
        .map_err(self.err())
    }

    /// Deletes the rows of commands that ended (their groups are gone).
    pub fn processes_ended(&self, run: &str, ended: &[i32]) -> Result<(), StoreError> {
        if ended.is_empty() {
            return Ok(());
        }
        let conn = self.lock();
        self.unsynced(&conn, |conn| {
            super::transaction(conn, |tx| {
                ended
                    .iter()
                    .try_for_each(|&gone| forget(tx, run, i64::from(gone)))
            })
        })
        .map_err(self.err())
    }

    /// The process groups recorded for `run`: those of commands running
    /// now, or left by a process that stopped without ending them.
    pub fn processes(&self, run: &str) -> Result<Vec<Group>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT pgid, step, boot_id, start_time FROM processes WHERE run_id = ?1 ORDER BY pgid",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([run], |r| {
                Ok(Group {
                    pgid: r.get(0)?,
                    step: r.get(1)?,
                    boot: r.get(2)?,
                    start: r.get(3)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Makes sure no process group recorded for `run` still runs: each one
    /// that is the run's and still exists is killed (`SIGKILL` to the group)
    /// and waited for until none of its processes is left (at most 5 s). The
    /// rows of groups that are gone are deleted; a group that could not be
    /// stopped keeps its row and is listed in [`Stopped::left`].
    ///
    /// Only for a run this process holds (after [`Store::claim`]): its
    /// commands are the only ones that can be running.
    pub fn stop_processes(&self, run: &str) -> Result<Stopped, StoreError> {
        let mut stopped = Stopped::default();
        for group in self.processes(run)? {
            match stop(&group) {
                Ok(killed) => {
                    let conn = self.lock();
                    forget(&conn, run, group.pgid).map_err(self.err())?;
                    if killed {
                        stopped.killed.push(group);
                    }
                }
                Err(why) => stopped.left.push((group, why)),
            }
        }
        Ok(stopped)
    }

    /// Runs `f` in its own commit, without the `fsync` of `--durability
    /// full`.
    fn unsynced(
        &self,
        conn: &Connection,
        f: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        // Background checkpoints are the mark of `--durability normal`
        // (`Store::open`), which has no `fsync` per commit to leave out.
        if self.background_checkpoints {
            return f(conn);
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let result = f(conn);
        let restored = conn.pragma_update(None, "synchronous", "FULL");
        result.and(restored)
    }
}

fn forget(conn: &Connection, run: &str, pgid: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM processes WHERE run_id = ?1 AND pgid = ?2")?
        .execute(params![run, pgid])
        .map(drop)
}

/// Kills `group` if it is the run's and still runs, and waits until it is
/// gone: `Ok(true)` if it was killed, `Ok(false)` if it was gone already (or
/// the id is someone else's now), `Err` if it is still there.
fn stop(group: &Group) -> Result<bool, String> {
    let Some(pgid) = ours(group) else {
        return Ok(false);
    };
    let mut killed = false;
    let until = Instant::now() + STOP_WAIT;
    while runs(pgid) {
        if killed && Instant::now() >= until {
            return Err(format!(
                "it still runs {} s after it was killed",
                STOP_WAIT.as_secs()
            ));
        }
        // Again on every round: a process forked while the first signal was
        // on its way is in the group too.
        // SAFETY: killpg only sends a signal; `ours` never returns a group
        // id below 2 or this process's own group.
        if unsafe { libc::killpg(pgid, libc::SIGKILL) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::ESRCH) {
                break;
            }
            return Err(format!("cannot kill it: {error}"));
        }
        killed = true;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(killed)
}

/// The group's id, if `group` may be the run's (see the module's comment).
fn ours(group: &Group) -> Option<libc::pid_t> {
    if group.boot != lease::me().boot {
        return None;
    }
    let pgid = libc::pid_t::try_from(group.pgid).ok()?;
    // SAFETY: getpgrp only reads this process's group.
    if pgid < 2 || pgid == unsafe { libc::getpgrp() } {
        return None;
    }
    match lease::stat(group.pgid) {
        // The leader: ours if it started when recorded.
        Ok(Some(stat)) => (group.start == Some(stat.start)).then_some(pgid),
        // No leader: the group, if it exists, is the one it left.
        Ok(None) => Some(pgid),
        // No `/proc` to tell: taken to be ours, as a lease's holder is.
        Err(_) => Some(pgid),
    }
}

/// Whether any process of group `pgid` has not exited (zombies, which
/// nobody may reap where init does not, count as gone).
fn runs(pgid: libc::pid_t) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // No `/proc`: the group runs until `killpg` finds none of it.
        return true;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i64>().ok())
        .any(|pid| {
            matches!(lease::stat(pid), Ok(Some(stat))
                if stat.group == i64::from(pgid) && !matches!(stat.state, 'Z' | 'X'))
        })
}

/// The run store's [`ProcessLog`](cairn_engine::script::context::ProcessLog) for
/// one run: a row for each command while it runs.
///
/// A row is committed as the command starts. The rows of commands that
/// ended are deleted in the next commit of this log (a command's start) or
/// by [`RunProcesses::flush`] when the run stops, so a command costs one
/// commit: a row left behind by a crash names a group that is gone, and a
/// resume finds it gone.
pub struct RunProcesses {
    store: Arc<Store>,
    run: String,
    ended: Mutex<Vec<i32>>,
}

impl RunProcesses {
    /// The log of `run` in `store`.
    pub fn new(store: Arc<Store>, run: String) -> Self {
        Self {
            store,
            run,
            ended: Mutex::new(Vec::new()),
        }
    }

    fn take_ended(&self) -> Vec<i32> {
        std::mem::take(&mut *self.ended.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Deletes the rows of the commands that ended so far.
    pub fn flush(&self) {
        let ended = self.take_ended();
        if let Err(error) = self.store.processes_ended(&self.run, &ended) {
            // The rows stay; a resume finds their groups gone.
            tracing::warn!(%error, "cannot delete the rows of ended commands");
        }
    }
}

impl cairn_engine::script::context::ProcessLog for RunProcesses {
    fn started(&self, step: &str, pgid: i32) -> Result<(), String> {
        let ended = self.take_ended();
        let result = self.store.process_started(&self.run, step, pgid, &ended);
        if result.is_err() {
            self.ended
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(ended);
        }
        result.map_err(|e| e.to_string())
    }

    fn ended(&self, pgid: i32) {
        self.ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pgid);
    }
}

impl Drop for RunProcesses {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::{Group, Store};
    use crate::{lease, Durability};

    fn group(pgid: i64, start: Option<i64>) -> Group {
        Group {
            pgid,
            step: "s".to_owned(),
            boot: lease::me().boot.clone(),
            start,
        }
    }

    /// A row is there while the command runs, and gone after.
    #[test]
    fn rows_come_and_go_with_their_commands() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), Durability::Full).expect("opens");
        let me = std::process::id() as i32;
        store
            .process_started("r", "build", me, &[])
            .expect("records");
        let rows = store.processes("r").expect("reads");
        assert_eq!(
            rows,
            [Group {
                step: "build".to_owned(),
                ..group(i64::from(me), lease::me().start)
            }]
        );
        assert!(store.processes("other").expect("reads").is_empty());
        store.processes_ended("r", &[me]).expect("deletes");
        assert!(store.processes("r").expect("reads").is_empty());
    }

    /// Never this process's own group, a group id below 2, another boot's
    /// group, or a leader that started at another time (a reused id).
    #[test]
    fn only_the_runs_own_groups_are_killed() {
        // SAFETY: reads this process's group.
        let own = i64::from(unsafe { libc::getpgrp() });
        assert_eq!(super::ours(&group(own, None)), None);
        for pgid in [0, 1, -1, i64::MAX] {
            assert_eq!(super::ours(&group(pgid, None)), None, "{pgid}");
        }
        let mut leader = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep");
        let pgid = i64::from(leader.id());
        let start = lease::stat(pgid).expect("reads").expect("runs").start;
        let rebooted = Group {
            boot: "00000000-0000-0000-0000-000000000000".to_owned(),
            ..group(pgid, Some(start))
        };
        assert_eq!(super::ours(&rebooted), None);
        assert_eq!(super::ours(&group(pgid, Some(start + 1))), None);
        assert_eq!(super::stop(&group(pgid, Some(start + 1))), Ok(false));
        assert!(
            leader.try_wait().expect("waits").is_none(),
            "a reused id was killed"
        );
        assert_eq!(super::stop(&group(pgid, Some(start))), Ok(true));
        let status = leader.wait().expect("reaped");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // Gone: nothing to kill.
        assert_eq!(super::stop(&group(pgid, Some(start))), Ok(false));
    }

    use std::os::unix::process::CommandExt;
}
