//! Answering a waiting gate of a stopped run from outside it (`cairn
//! approve`, `cairn reject`): the answer is logged, and the next resume
//! goes on from it.

use cairn_engine::run::{Event, StepStatus};

use super::{recorded_plan, unfinished, verified, ServiceError};
use crate::{StepState, Store};
use cairn_lang::plan::{complete, Step};

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
    /// `--input name=value`: the gate's `input:` fields, as typed.
    pub input: &'a [(String, String)],
}

/// Logs the answer to a waiting gate; the id of the run it belongs to.
pub fn answer_gate(store: &Store, answer: Answer<'_>) -> Result<String, ServiceError> {
    let Answer {
        run,
        gate,
        approved,
        reason,
        by,
        input,
    } = answer;
    let row = unfinished(store, run)?;
    let _claim = store.claim(&row.id)?;
    verified(store, &row)?;
    let waiting = waiting_gates(store, &row.id, "")?;
    let Some(found) = waiting.iter().find(|w| w.name == gate) else {
        let now = if waiting.is_empty() {
            "no gate is waiting".to_owned()
        } else {
            format!(
                "waiting: {}",
                waiting
                    .iter()
                    .map(|g| format!("`{}`", g.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(ServiceError::Refused(format!(
            "gate `{gate}` of run {} is not waiting for an answer ({now})",
            row.id
        )));
    };
    answer_waiting(store, &row.id, found, approved, reason, by, input)?;
    Ok(row.id)
}

/// Logs the answer to `found`, a gate waiting in run `top` or in a child
/// run below it, whose claim the caller holds.
pub fn answer_waiting(
    store: &Store,
    top: &str,
    found: &Waiting,
    approved: bool,
    reason: &str,
    by: String,
    input: &[(String, String)],
) -> Result<(), ServiceError> {
    // A gate of a child run is answered in the child's own log (held too).
    let _child_claim = match found.run != top {
        true => {
            let child = store.find(Some(&found.run))?;
            verified(store, &child)?;
            Some(store.claim(&found.run)?)
        }
        false => None,
    };
    // A gate whose timeout passed is rejected by `resume`; approving it
    // late would overrule the plan.
    if approved && store.history(&found.run)?.gate_expired(&found.gate) {
        return Err(ServiceError::Refused(format!(
            "gate `{}` of run {top} timed out before it was answered; `cairn resume {top}` rejects it",
            found.name
        )));
    }
    let input = gate_input(store, found, approved, input)?;
    let (step, reason) = (found.gate.clone(), reason.to_owned());
    let event = if approved {
        Event::GateApproved {
            step,
            by,
            reason,
            input,
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
    store.append(&found.run, &event)?;
    Ok(())
}

/// The input of an approval of `found`: the values given, read against
/// the gate's `input:` fields, with the defaults of the others; refused
/// with every problem, or for a rejection that gives input.
fn gate_input(
    store: &Store,
    found: &Waiting,
    approved: bool,
    given: &[(String, String)],
) -> Result<serde_json::Map<String, serde_json::Value>, ServiceError> {
    if !approved {
        return match given.first() {
            Some((name, _)) => Err(ServiceError::Refused(format!(
                "`--input {name}=…` answers an approval; a rejection takes only a reason"
            ))),
            None => Ok(serde_json::Map::new()),
        };
    }
    let row = store.find(Some(&found.run))?;
    let inputs = store.source(&row.id)?;
    let plan = recorded_plan(&row, &inputs.source, store.plan(&row.id)?)?;
    let fields = plan
        .tasks
        .iter()
        .find(|t| t.id == found.gate)
        .and_then(|t| match &t.step {
            Step::Gate(gate) => Some(gate.input.as_slice()),
            _ => None,
        })
        .unwrap_or_default();
    complete(fields, given).map_err(|problems| {
        ServiceError::Refused(format!(
            "gate `{}` cannot be approved with this input:\n  {}",
            found.name,
            problems.join("\n  ")
        ))
    })
}

/// A gate waiting for an answer, in a run or in a child run below it.
pub struct Waiting {
    /// Its name as `cairn approve` takes it (`ship`, `round#2.ship`).
    pub name: String,
    /// The run it is a gate of.
    pub run: String,
    /// Its id in that run.
    pub gate: String,
}

/// Every gate waiting in run `run`, with the waiting gates of the child
/// runs of its waiting `plan:` steps named under their steps.
pub fn waiting_gates(store: &Store, run: &str, prefix: &str) -> Result<Vec<Waiting>, ServiceError> {
    let children = store.children(run)?;
    let mut waiting = Vec::new();
    for step in store.steps(run)? {
        if step.status != StepState::At(StepStatus::Waiting) {
            continue;
        }
        match children.iter().find(|(s, _)| *s == step.step) {
            // (A plan that calls itself nests at most `MAX_DEPTH` deep.)
            Some((_, child)) if prefix.matches('.').count() < cairn_engine::run::MAX_DEPTH => {
                let below = format!("{prefix}{}.", step.step);
                waiting.extend(waiting_gates(store, child, &below)?);
            }
            _ => waiting.push(Waiting {
                name: format!("{prefix}{}", step.step),
                run: run.to_owned(),
                gate: step.step,
            }),
        }
    }
    Ok(waiting)
}
