//! Deleting recorded runs (`cairn runs delete`, `cairn runs prune`): whole
//! runs with their child runs, never one a process is running.

use super::{stop_left_running, ServiceError};
use crate::{Store, StoreError};

/// Deletes run `id` and its child runs; the ids deleted. A running run is
/// refused (its process holds it); what a crashed one left running is
/// stopped first, as `resume` would.
pub fn delete_run(store: &Store, id: &str) -> Result<Vec<String>, ServiceError> {
    delete_where(store, id, false)
}

/// Deletes run `id` (with `ended`: only if, once held, it has ended).
fn delete_where(store: &Store, id: &str, ended: bool) -> Result<Vec<String>, ServiceError> {
    let row = store.find(Some(id))?;
    if let Some(parent) = &row.parent {
        return Err(ServiceError::Refused(format!(
            "run {} is the child run of a `plan:` step of run {parent}; it is deleted with the run it belongs to",
            row.id
        )));
    }
    let _claim = store.claim(&row.id).map_err(|e| match e {
        StoreError::Busy { run } => ServiceError::Refused(format!(
            "run {run} is being run by a live process; `cairn cancel {run}` stops it first"
        )),
        other => other.into(),
    })?;
    if ended && !store.find(Some(&row.id))?.status.is_over() {
        return Err(ServiceError::Refused(format!(
            "run {} goes on again",
            row.id
        )));
    }
    for child in
        std::iter::once(row.id.clone()).chain(store.children(&row.id)?.into_iter().map(|(_, c)| c))
    {
        stop_left_running(store, &child)?;
    }
    Ok(store.delete(&row.id)?)
}

/// Deletes the runs that have ended (succeeded, failed, cancelled) and
/// began more than `older_than_ms` ago, keeping the newest `keep` of them
/// whatever their age; paused and interrupted runs, which can go on, are
/// never pruned. The ids of the runs deleted (not their children), newest
/// first.
pub fn prune(
    store: &Store,
    older_than_ms: Option<u64>,
    keep: usize,
) -> Result<Vec<String>, ServiceError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let cutoff = older_than_ms.map_or(i64::MAX, |ms| {
        now.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))
    });
    let ended: Vec<_> = store
        .runs(usize::MAX, 0)?
        .into_iter()
        .filter(|r| r.status.is_over())
        .collect();
    let mut deleted = Vec::new();
    for run in ended
        .into_iter()
        .skip(keep)
        .filter(|r| r.started_at < cutoff)
    {
        // A run another process holds (a resume just began), or one that
        // went on since the listing (a retry), is left be.
        match delete_where(store, &run.id, true) {
            Ok(_) => deleted.push(run.id),
            Err(ServiceError::Refused(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}
