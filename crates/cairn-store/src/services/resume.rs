//! Resuming a run: everything up to running it. The run is claimed, what
//! its last process left running is stopped, its record is verified, and
//! the plan and what each step settled are read back.

use std::sync::Arc;

use cairn_engine::run::{Changes, Event, Resume};
use cairn_lang::plan::Plan;

use super::plans::{plans, Edited};
use super::{unfinished, verified, ServiceError};
use crate::{Group, RunClaim, RunInputs, RunRow, Store, StoreError};

/// A run ready to go on: run `plan` with `resume` (and the recorded
/// `inputs`) while holding `claim`.
pub struct Prepared {
    /// The run.
    pub row: RunRow,
    /// Held until the run stops: no other process runs it meanwhile.
    pub claim: RunClaim,
    /// What it runs: as recorded, or the edited plan (`allow_changed`).
    pub plan: Plan,
    /// What it keeps from before.
    pub resume: Arc<Resume>,
    /// Its params and seed as recorded.
    pub inputs: RunInputs,
    /// Commands its previous process left running, stopped now.
    pub stopped: Vec<Group>,
}

/// Makes sure no command the run's previous process started still runs
/// (its process group is recorded while it runs): each one still running is
/// killed and waited for, and returned. One that cannot be stopped refuses,
/// its row kept for the next try.
pub fn stop_left_running(store: &Store, run: &str) -> Result<Vec<Group>, ServiceError> {
    let stopped = store.stop_processes(run)?;
    match stopped.left.as_slice() {
        [] => Ok(stopped.killed),
        left => Err(StoreError::ProcessesLeft(
            left.iter()
                .map(|(group, why)| {
                    format!(
                        "step `{}`'s command (process group {}), left running when run {run} was stopped: {why}; stop it (`kill -KILL -- -{}`), then resume again",
                        group.step, group.pgid, group.pgid
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .into()),
    }
}

/// Prepares run `id` (or the newest unfinished one) to go on. A plan file
/// edited since the run began is refused, saying what changed, unless
/// `allow_changed`: then results the edits invalidate are reset in the log.
pub fn prepare_resume(
    store: &Store,
    id: Option<&str>,
    allow_changed: bool,
) -> Result<Prepared, ServiceError> {
    let row = unfinished(store, id)?;
    // Refuse while another process still runs it, and hold the run from
    // reading its log until it stops.
    let claim = store.claim(&row.id)?;
    // Whatever the run's previous process left running goes first.
    let stopped = stop_left_running(store, &row.id)?;
    let mut inputs = store.source(&row.id)?;
    let stored = store.plan(&row.id)?;
    // Verifying the record, decoding the plan and folding the log are
    // independent, and on a long run each takes a while: the first two run
    // on threads of their own. Nothing is used before the record verifies.
    let (verdict, plans, history) = std::thread::scope(|scope| {
        let verdict = scope.spawn(|| verified(store, &row));
        let history = scope.spawn(|| store.history(&row.id));
        let plans = plans(&row, &inputs.source, stored);
        (
            verdict.join().expect("verifying does not panic"),
            plans,
            history.join().expect("folding the log does not panic"),
        )
    });
    verdict?;
    let (recorded, current) = plans?;
    let mut history = history?;
    let (plan, invalidated) = match current {
        None => (recorded, Vec::new()),
        Some(Edited {
            files,
            source,
            plan,
        }) => {
            let changes = Changes::between(&recorded, &plan);
            let invalidated = changes.invalidated(&plan, |id| history.settled(id).is_some());
            if !changes.is_empty() && !allow_changed {
                return Err(ServiceError::Refused(describe_changes(
                    &row,
                    &files,
                    &changes,
                    &invalidated,
                )));
            }
            // An edited gate that is still waiting waits afresh, with its
            // new `timeout:` counted from now.
            let regated: Vec<String> = changes
                .edited
                .iter()
                .filter(|s| history.forget_gate_expiry(s))
                .cloned()
                .collect();
            // The dropped results are reset in the log itself, so a later
            // resume (after a crash, say) does not bring them back.
            for step in invalidated.iter().chain(&regated) {
                store.append(
                    &row.id,
                    &Event::StepReset {
                        step: step.clone(),
                        reason: "the plan changed (`--allow-changed`)".to_owned(),
                        keep_parts: false,
                    },
                )?;
            }
            store.replace_source(&row.id, source.text(), &plan)?;
            inputs.source = source.text().to_owned();
            (plan, invalidated)
        }
    };
    let originals = store.originals(&history.originals)?;
    let mut resume = history.resume(&invalidated);
    resume.originals = originals;
    Ok(Prepared {
        row,
        claim,
        plan,
        resume: Arc::new(resume),
        inputs,
        stopped,
    })
}

fn describe_changes(
    run: &RunRow,
    files: &str,
    changes: &Changes,
    invalidated: &[String],
) -> String {
    let list = |ids: &[String]| {
        ids.iter()
            .map(|id| format!("`{id}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!("{files} changed since run {} began:", run.id);
    for (what, ids) in [
        ("added", &changes.added),
        ("removed", &changes.removed),
        ("edited", &changes.edited),
    ] {
        if !ids.is_empty() {
            text.push_str(&format!("\n  {what}: {}", list(ids)));
        }
    }
    if invalidated.is_empty() {
        text.push_str("\nno completed result depends on the changes");
    } else {
        text.push_str(&format!(
            "\nthis invalidates the recorded results of {}",
            list(invalidated)
        ));
    }
    text.push_str(&format!(
        "\nto run those again with the edited plan: cairn resume {} --allow-changed",
        run.id
    ));
    text
}
