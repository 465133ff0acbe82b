//! Cancelling a run for good (`cairn cancel`): a stopped one is marked
//! `cancelled` at once; a live one is asked, through the store, and its
//! process cancels it.

use cairn_engine::run::{Event, RunStatus, MAX_DEPTH};

use super::{stop_left_running, ServiceError};
use crate::{Store, StoreError};

/// What `cancel` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// The run was stopped (paused, interrupted, crashed): it is marked
    /// `cancelled`, with its unfinished child runs.
    Marked(String),
    /// A live process runs it: it was asked to cancel the run, and notices
    /// within a second.
    Asked(String),
}

/// Cancels run `id`, or the newest unfinished one, for `reason`.
pub fn cancel(store: &Store, id: Option<&str>, reason: &str) -> Result<Cancelled, ServiceError> {
    let row = match id {
        Some(id) => store.find(Some(id))?,
        None => store.newest_unfinished()?.ok_or_else(|| {
            StoreError::NotFound("no unfinished run to cancel (`cairn runs` lists them)".to_owned())
        })?,
    };
    if let Some(parent) = &row.parent {
        return Err(ServiceError::Refused(format!(
            "run {} is the child run of a `plan:` step of run {parent}; cancel the run it belongs to: `cairn cancel {parent}`",
            row.id
        )));
    }
    if row.status.is_over() {
        return Err(ServiceError::Refused(format!(
            "run {} has ended ({}); there is nothing to cancel",
            row.id, row.status
        )));
    }
    match store.claim(&row.id) {
        Ok(_claim) => {
            mark(store, &row.id, reason, 0)?;
            Ok(Cancelled::Marked(row.id))
        }
        Err(StoreError::Busy { .. }) => {
            store.request_cancel(&row.id, reason)?;
            Ok(Cancelled::Asked(row.id))
        }
        Err(e) => Err(e.into()),
    }
}

/// Marks the unfinished child runs of `run` (which its process just ended
/// `cancelled`) cancelled too.
pub fn cancel_children(store: &Store, run: &str, reason: &str) -> Result<(), ServiceError> {
    children(store, run, reason, 0)
}

/// Marks stopped run `run`, whose claim the caller holds, `cancelled`, and
/// its unfinished children; first stops what its last process left running.
fn mark(store: &Store, run: &str, reason: &str, depth: usize) -> Result<(), ServiceError> {
    stop_left_running(store, run)?;
    store.append(
        run,
        &Event::RunFinished {
            status: RunStatus::Cancelled,
            message: Some(reason.to_owned()),
            at_ms: 0,
        },
    )?;
    children(store, run, reason, depth)
}

fn children(store: &Store, run: &str, reason: &str, depth: usize) -> Result<(), ServiceError> {
    // (A plan that runs itself nests at most `MAX_DEPTH` deep.)
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    for (_, child) in store.children(run)? {
        let row = store.find(Some(&child))?;
        if row.status.is_over() {
            continue;
        }
        let _claim = store.claim(&child)?;
        mark(store, &child, reason, depth + 1)?;
    }
    Ok(())
}
