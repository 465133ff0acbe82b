//! Forking a run (`cairn fork`): a new run that keeps what a recorded run's
//! steps before a chosen one did, and runs from that step on, recorded
//! with where it came from.

use std::collections::HashSet;

use cairn_lang::plan::part_of;

use super::plans::recorded_plan;
use super::{verified, ServiceError};
use crate::{Store, StoreError};

/// Begins a fork of run `id` at step `at` with `set` overriding its params:
/// the new run holds the recorded outcomes of every step that settled and
/// is not `at` or after it, and nothing else yet. Its id.
pub fn fork(
    store: &Store,
    id: &str,
    at: &str,
    set: &[(String, String)],
) -> Result<String, ServiceError> {
    let row = store.find(Some(id))?;
    if let Some(parent) = &row.parent {
        return Err(ServiceError::Refused(format!(
            "run {} is the child run of a `plan:` step of run {parent}; fork the run it belongs to",
            row.id
        )));
    }
    verified(store, &row)?;
    let inputs = store.source(&row.id)?;
    let plan = recorded_plan(&row, &inputs.source, store.plan(&row.id)?)?;
    let Some(start) = plan.tasks.iter().position(|t| t.id == at) else {
        let hint = match part_of(at) {
            Some(task) => format!(" (fork at its task, `{task}`)"),
            None => " (`cairn status` lists them)".to_owned(),
        };
        return Err(
            StoreError::NotFound(format!("the run's plan has no step `{at}`{hint}")).into(),
        );
    };
    // The step and everything standing on it (after it, or recovered by
    // it) run again.
    let again = plan.standing_on([start]);
    let again: HashSet<&str> = again.iter().map(|&i| plan.tasks[i].id.as_str()).collect();
    let history = store.history(&row.id)?;
    let keep = |step: &str| {
        !again.contains(part_of(step).unwrap_or(step)) && history.settled(step).is_some()
    };
    let mut params = inputs.params.clone();
    for (name, value) in set {
        match params.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.clone(),
            None => params.push((name.clone(), value.clone())),
        }
    }
    cairn_engine::run::check_params(&plan, &params)?;
    let file = row.plan_file().display().to_string();
    let forked = store.begin(&plan, &file, &inputs.source, &params, inputs.seed)?;
    store.fork_events(&row.id, &forked, at, keep)?;
    Ok(forked)
}
