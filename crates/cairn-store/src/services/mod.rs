//! The application services: going on with recorded runs (resume, answer a
//! gate, replay, cancel, retry, fork), as the CLI, the REPL and an HTTP server all need them. They
//! print nothing: what they found comes back typed, for the caller to show.

mod answer;
mod cancel;
mod delete;
mod fork;
mod plans;
mod replay;
mod resume;
mod retry;

pub use answer::{answer_gate, answer_waiting, waiting_gates, Answer, Waiting};
pub use cancel::{cancel, cancel_children, Cancelled};
pub use delete::{delete_run, prune};
pub use fork::fork;
pub use plans::{recorded_plan, Edited};
pub use replay::{replay, Replayed};
pub use resume::{prepare_resume, stop_left_running, Prepared};
pub use retry::{prepare_retry, retry_child};

use cairn_lang::diagnostic::Diagnostic;

use crate::{AuditError, RunRow, Store, StoreError};

/// Why a service would not go on.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The run store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or checking the plan failed.
    #[error(transparent)]
    Engine(#[from] cairn_engine::Error),
    /// The plan, as the run recorded it or as it is now, has errors.
    #[error("the plan is invalid")]
    Invalid(Vec<Diagnostic>),
    /// A run's record does not verify: it is not gone on with, since what
    /// it would run or report may have been edited.
    #[error(
        "run {run} does not verify: {problem}; it is not gone on with (`cairn audit verify {run}`)"
    )]
    Tampered {
        /// The run's id.
        run: String,
        /// The first thing that does not check out.
        problem: AuditError,
    },
    /// What was asked cannot be done to this run (it has ended, the gate is
    /// not waiting, the plan changed): the message says why and what to do.
    #[error("{0}")]
    Refused(String),
}

/// The run with this id, or the newest one that has not ended.
pub fn unfinished(store: &Store, id: Option<&str>) -> Result<RunRow, ServiceError> {
    let run = match id {
        Some(id) => store.find(Some(id))?,
        None => store.newest_unfinished()?.ok_or_else(|| {
            StoreError::NotFound("no unfinished run to resume (`cairn runs` lists them)".to_owned())
        })?,
    };
    if let Some(parent) = &run.parent {
        return Err(ServiceError::Refused(format!(
            "run {} is the child run of a `plan:` step of run {parent}; it goes on with its parent: `cairn resume {parent}` (and `cairn approve {parent} <step>.<gate>` answers its gates)",
            run.id
        )));
    }
    if run.status.is_over() {
        return Err(ServiceError::Refused(format!(
            "run {} has ended ({}); only paused, interrupted or crashed runs go on (start a new one with `cairn run {}`)",
            run.id, run.status, run.file
        )));
    }
    Ok(run)
}

/// Refuses a run whose record does not verify: its params, plan or log
/// may have been edited to change what runs.
pub fn verified(store: &Store, run: &RunRow) -> Result<(), ServiceError> {
    match store.verify(&run.id)? {
        Ok(_) => Ok(()),
        Err(problem) => Err(ServiceError::Tampered {
            run: run.id.clone(),
            problem,
        }),
    }
}
