//! Retrying a failed or cancelled run (`cairn retry`): the steps that did
//! not succeed are reset in its log, every success is kept, and the run
//! goes on like a resumed one, with the plan it began with.

use std::collections::BTreeSet;
use std::sync::Arc;

use cairn_engine::run::{Event, RunStatus, StepStatus};
use cairn_lang::plan::{part_of, Plan};

use super::plans::recorded_plan;
use super::resume::Prepared;
use super::{stop_left_running, verified, ServiceError};
use crate::{RunRow, RunState, StepState, Store, StoreError};

/// Claims run `id` (or the newest run) and resets what `cairn retry` runs
/// again: every step that failed, was skipped or was compensated, or, with
/// `steps`, those steps and every step after them (a succeeded run too). Its parts (instances of
/// `each:`, iterations of `repeat:`) that succeeded are kept unless their
/// task is named. Returns the run, ready to go on, and the steps reset.
pub fn prepare_retry(
    store: &Store,
    id: Option<&str>,
    steps: &[String],
) -> Result<(Prepared, Vec<String>), ServiceError> {
    let row = retryable(store, id, !steps.is_empty())?;
    let claim = store.claim(&row.id)?;
    // A cancel request its last process carried out (or that came as it
    // ended) is not for the run going again.
    store.clear_cancel(&row.id)?;
    let stopped = stop_left_running(store, &row.id)?;
    verified(store, &row)?;
    let inputs = store.source(&row.id)?;
    let plan = recorded_plan(&row, &inputs.source, store.plan(&row.id)?)?;
    let reset = reset(store, &row.id, &plan, steps)?;
    let history = store.history(&row.id)?;
    let originals = store.originals(&history.originals)?;
    let mut resume = history.resume(&[]);
    resume.originals = originals;
    Ok((
        Prepared {
            row,
            claim,
            plan,
            resume: Arc::new(resume),
            inputs,
            stopped,
        },
        reset,
    ))
}

/// Resets, in child run `run` being gone on with by a retried parent, the
/// steps that did not succeed, if the child failed or was cancelled.
pub fn retry_child(store: &Store, run: &str, plan: &Plan) -> Result<(), ServiceError> {
    let row = store.find(Some(run))?;
    if matches!(
        row.status,
        RunState::Stopped(RunStatus::Failed | RunStatus::Cancelled)
    ) {
        reset(store, run, plan, &[])?;
    }
    Ok(())
}

/// The run `cairn retry` takes: failed or cancelled (or, with steps named,
/// succeeded), and not a child.
fn retryable(store: &Store, id: Option<&str>, named: bool) -> Result<RunRow, ServiceError> {
    let row = store.find(id)?;
    if let Some(parent) = &row.parent {
        return Err(ServiceError::Refused(format!(
            "run {} is the child run of a `plan:` step of run {parent}; retry the run it belongs to: `cairn retry {parent}`",
            row.id
        )));
    }
    match row.status {
        RunState::Stopped(RunStatus::Failed | RunStatus::Cancelled) => Ok(row),
        RunState::Stopped(RunStatus::Succeeded) if named => Ok(row),
        RunState::Stopped(RunStatus::Succeeded) => Err(ServiceError::Refused(format!(
            "run {} succeeded; there is nothing to retry (`cairn retry {} --step <step>` runs a step and what follows it again)",
            row.id, row.id
        ))),
        _ => Err(ServiceError::Refused(format!(
            "run {} is {}; it has not ended, so `cairn resume {}` goes on with it",
            row.id, row.status, row.id
        ))),
    }
}

/// Resets the steps of `run` a retry runs again (see [`prepare_retry`]),
/// in the log; which, in the order the log has them.
fn reset(
    store: &Store,
    run: &str,
    plan: &Plan,
    named: &[String],
) -> Result<Vec<String>, ServiceError> {
    let rows = store.steps(run)?;
    let again = if named.is_empty() {
        // What did not succeed: a part by itself (its task keeps its other
        // parts), a task whole when none of its parts is among them.
        let unsuccessful: Vec<&str> = rows
            .iter()
            .filter(|r| {
                matches!(
                    r.status,
                    StepState::At(
                        StepStatus::Failed | StepStatus::Skipped | StepStatus::Compensated
                    )
                )
            })
            .map(|r| r.step.as_str())
            .collect();
        let names: Vec<String> = unsuccessful
            .iter()
            .filter(|id| {
                part_of(id).is_some() || !unsuccessful.iter().any(|p| part_of(p) == Some(**id))
            })
            .map(|id| (*id).to_owned())
            .collect();
        named_and_after(plan, &names, &rows)?
    } else {
        named_and_after(plan, named, &rows)?
    };
    for (step, keep_parts) in &again {
        store.append(
            run,
            &Event::StepReset {
                step: step.clone(),
                reason: "retried (`cairn retry`)".to_owned(),
                keep_parts: *keep_parts,
            },
        )?;
    }
    Ok(again.into_iter().map(|(s, _)| s).collect())
}

/// The steps named and every recorded step after them in the graph: a
/// named task, and each step after a named step, runs whole again (its
/// parts go); a named part runs again with its task, which keeps its
/// other parts.
fn named_and_after(
    plan: &Plan,
    named: &[String],
    rows: &[crate::StepRow],
) -> Result<Vec<(String, bool)>, ServiceError> {
    let index = |task: &str| plan.tasks.iter().position(|t| t.id == task);
    let recorded = |id: &str| rows.iter().any(|r| r.step == id);
    let (mut whole, mut parts) = (BTreeSet::new(), Vec::<(String, usize)>::new());
    for id in named {
        match (index(id), part_of(id).and_then(index)) {
            (Some(i), _) => {
                whole.insert(i);
            }
            (None, Some(task)) if recorded(id) => parts.push((id.clone(), task)),
            _ => {
                return Err(StoreError::NotFound(format!(
                    "the run's plan has no step `{id}` (`cairn status` lists them)"
                ))
                .into())
            }
        }
    }
    // A later iteration of a loop read the one before it: it goes again.
    let later: Vec<(String, usize)> = parts
        .iter()
        .filter_map(|(part, task)| {
            let (name, number) = cairn_lang::plan::Repeat::parse_iteration_id(part)?;
            Some(rows.iter().filter_map(move |r| {
                let (of, n) = cairn_lang::plan::Repeat::parse_iteration_id(&r.step)?;
                (of == name && n > number).then(|| (r.step.clone(), *task))
            }))
        })
        .flatten()
        .collect();
    parts.extend(later);
    // Everything standing on a named step (after it, or recovered by it)
    // saw its result: it goes again too, whole.
    let seeds: Vec<usize> = whole
        .iter()
        .copied()
        .chain(parts.iter().flat_map(|&(_, task)| plan.dependents(task)))
        .collect();
    let whole = plan.standing_on(seeds);
    let mut again: Vec<(String, bool)> = Vec::new();
    for (part, task) in parts {
        if !whole.contains(&task) {
            again.push((plan.tasks[task].id.clone(), true));
        }
        again.push((part, true));
    }
    again.extend(
        whole
            .into_iter()
            .map(|i| &plan.tasks[i].id)
            .filter(|id| recorded(id))
            .map(|id| (id.clone(), false)),
    );
    let mut seen = std::collections::HashSet::new();
    again.retain(|(step, _)| seen.insert(step.clone()));
    Ok(again)
}
