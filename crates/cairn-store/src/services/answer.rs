//! Answering a waiting gate of a stopped run from outside it (`cairn
//! approve`, `cairn reject`): the answer is logged, and the next resume
//! goes on from it.

use cairn_engine::run::{Event, StepStatus};

use super::{unfinished, verified, ServiceError};
use crate::{StepState, Store};

/// An answer to a gate.
pub struct Answer<'a> {
    /// The run, or the newest unfinished one.
    pub run: Option<&'a str>,
    /// The gate's id.
    pub gate: &'a str,
    /// Approved, or rejected.
    pub approved: bool,
    /// Why.
    pub reason: &'a str,
    /// Who answers.
    pub by: String,
}

/// Logs the answer to a waiting gate; the id of the run it belongs to.
pub fn answer_gate(store: &Store, answer: Answer<'_>) -> Result<String, ServiceError> {
    let Answer {
        run,
        gate,
        approved,
        reason,
        by,
    } = answer;
    let row = unfinished(store, run)?;
    let _claim = store.claim(&row.id)?;
    verified(store, &row)?;
    let steps = store.steps(&row.id)?;
    let waiting: Vec<&str> = steps
        .iter()
        .filter(|s| s.status == StepState::At(StepStatus::Waiting))
        .map(|s| s.step.as_str())
        .collect();
    if !waiting.contains(&gate) {
        let now = if waiting.is_empty() {
            "no gate is waiting".to_owned()
        } else {
            format!(
                "waiting: {}",
                waiting
                    .iter()
                    .map(|g| format!("`{g}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(ServiceError::Refused(format!(
            "gate `{gate}` of run {} is not waiting for an answer ({now})",
            row.id
        )));
    }
    // A gate whose timeout passed is rejected by `resume`; approving it
    // late would overrule the plan.
    if approved && store.history(&row.id)?.gate_expired(gate) {
        return Err(ServiceError::Refused(format!(
            "gate `{gate}` of run {} timed out before it was answered; `cairn resume {}` rejects it",
            row.id, row.id
        )));
    }
    let (step, reason) = (gate.to_owned(), reason.to_owned());
    let event = if approved {
        Event::GateApproved {
            step,
            by,
            reason,
            at_ms: 0,
        }
    } else {
        Event::GateRejected {
            step,
            by,
            reason,
            at_ms: 0,
        }
    };
    store.append(&row.id, &event)?;
    Ok(row.id)
}
