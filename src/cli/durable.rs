//! `cairn resume`, `approve`, `reject` and `replay`: going on with recorded runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::report;
use super::run::{plan_dir, Session};
use crate::error::Error;
use cairn_engine::run::StepStatus;
use cairn_engine::run::{self, Changes, Event, Options, Replay, Resume, Settled};
use cairn_lang::plan::Plan;
use cairn_lang::source::Source;
use cairn_store::{Durability, Encoded, RunRow, StepState, Store, StoreError};

fn open(dir: &Path, durability: Durability) -> Result<Arc<Store>, Error> {
    Ok(Arc::new(super::runs::existing(dir, durability)?))
}

/// The run with this id, or the newest one that has not ended.
fn unfinished(store: &Store, id: Option<&str>) -> Result<RunRow, Error> {
    let run = match id {
        Some(id) => store.find(Some(id))?,
        None => store.newest_unfinished()?.ok_or_else(|| {
            StoreError::NotFound("no unfinished run to resume (`cairn runs` lists them)".to_owned())
        })?,
    };
    if run.status.is_over() {
        return Err(Error::Usage(format!(
            "run {} has {}; only paused, interrupted or crashed runs go on (start a new one with `cairn run {}`)",
            run.id, run.status, run.file
        )));
    }
    Ok(run)
}

/// Refuses a run whose record does not verify: its params, plan or log
/// may have been edited to change what runs.
pub(crate) fn verified(store: &Store, run: &RunRow) -> Result<(), Error> {
    match store.verify(&run.id)? {
        Ok(_) => Ok(()),
        Err(problem) => Err(Error::Tampered {
            run: run.id.clone(),
            problem,
        }),
    }
}

/// Checks a plan's text; diagnostics are printed as `cairn check` would.
fn checked(source: &Arc<Source>) -> Result<Plan, Error> {
    let checked = report::check(source);
    report::human(&checked.diagnostics);
    checked.plan.ok_or_else(|| {
        let count = checked.diagnostics.iter().filter(|d| d.is_error()).count();
        report::error(&Error::Invalid { count });
        Error::Invalid { count }
    })
}

/// The plan the run began with: as it was checked then, or, for a run
/// recorded before plans were kept (or by a build that encodes them
/// differently), its recorded source checked again.
pub(crate) fn recorded_plan(
    run: &RunRow,
    text: &str,
    stored: Option<Encoded>,
) -> Result<Plan, Error> {
    match stored.as_ref().and_then(Encoded::decode) {
        Some(plan) => Ok(plan),
        None => checked(&Source::new(
            run.plan_file().display().to_string(),
            text.to_owned(),
        )),
    }
}

/// The plan the run began with, and the plan file as it is now if it, or
/// a plan it imports, changed since.
fn plans(
    run: &RunRow,
    text: &str,
    stored: Option<Encoded>,
) -> Result<(Plan, Option<Edited>), Error> {
    let recorded = recorded_plan(run, text, stored)?;
    let path = run.plan_file();
    if !path.exists() {
        return Ok((recorded, None));
    }
    let source = cairn_engine::read::read(&path)?;
    let files = if source.text() != text {
        format!("`{}`", run.file)
    } else {
        let imports: Vec<String> = recorded
            .imports
            .iter()
            .filter_map(|import| Some((import.file.as_ref()?, &import.sha256)))
            .filter(|(file, checked)| {
                // A file that cannot be read now is not compared, like a
                // plan file that is gone.
                cairn_engine::read::read(&run.resolve(file))
                    .is_ok_and(|now| cairn_lang::source::sha256(now.text()) != **checked)
            })
            .map(|(file, _)| format!("`{file}`"))
            .collect();
        if imports.is_empty() {
            return Ok((recorded, None));
        }
        format!("{}, imported by `{}`,", imports.join(", "), run.file)
    };
    let plan = checked(&source)?;
    Ok((
        recorded,
        Some(Edited {
            files,
            source,
            plan,
        }),
    ))
}

/// A plan that changed since its run began.
struct Edited {
    /// Which files changed, for messages (`` `p.plan` ``).
    files: String,
    /// The plan file as it is now.
    source: Arc<Source>,
    /// Its checked plan.
    plan: Plan,
}

/// What `cairn resume` was asked to do.
pub struct ResumeArgs {
    pub run: Option<String>,
    pub allow_changed: bool,
    pub approve: Vec<String>,
    pub events: Option<String>,
    pub max_parallel: Option<usize>,
    pub state_dir: PathBuf,
    pub durability: Durability,
}

/// `cairn resume`: continue a paused, interrupted or crashed run.
pub fn resume(args: ResumeArgs) -> Result<i32, Error> {
    let store = open(&args.state_dir, args.durability)?;
    let row = unfinished(&store, args.run.as_deref())?;
    // Refuse while another process still runs it, and hold the run from
    // reading its log until it stops.
    let claim = store.claim(&row.id)?;
    // Whatever the run's previous process left running goes first.
    stop_left_running(&store, &row.id)?;
    let inputs = store.source(&row.id)?;
    let stored = store.plan(&row.id)?;
    // Verifying the record, decoding the plan and folding the log are
    // independent, and on a long run each takes a while: the first two run
    // on threads of their own. Nothing is used before the record verifies.
    let (verdict, plans, history) = std::thread::scope(|scope| {
        let verdict = scope.spawn(|| verified(&store, &row));
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
            if !changes.is_empty() && !args.allow_changed {
                return Err(Error::Usage(describe_changes(
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
                    },
                )?;
            }
            store.replace_source(&row.id, source.text(), &plan)?;
            (plan, invalidated)
        }
    };
    let originals = store.originals(&history.originals)?;
    let mut resume = history.resume(&invalidated);
    resume.originals = originals;
    let resume = Arc::new(resume);
    super::leak_until_exit(Arc::clone(&resume));
    let session = Session {
        store,
        run_id: row.id.clone(),
        state_dir: args.state_dir,
        events: args.events,
        claim: Some(claim),
    };
    let options = Options {
        params: inputs.params,
        seed: Some(inputs.seed),
        max_parallel: args.max_parallel,
        approvals: args.approve,
        dir: plan_dir(&row.plan_file()),
        resume: Some(Arc::clone(&resume)),
        ..Options::default()
    };
    session.execute(plan, options)
}

/// Makes sure no command the run's previous process started still runs
/// (its process group is recorded while it runs): each one still running is
/// killed and waited for, and said so on stderr. One that cannot be stopped
/// refuses the resume, its row kept for the next.
pub(crate) fn stop_left_running(store: &Store, run: &str) -> Result<(), Error> {
    let stopped = store.stop_processes(run)?;
    for group in &stopped.killed {
        eprintln!(
            "stopped step `{}`'s command (process group {}), left running when run {run} was stopped",
            group.step, group.pgid
        );
    }
    match stopped.left.as_slice() {
        [] => Ok(()),
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

/// `cairn approve` / `cairn reject`: answer a waiting gate of a stopped run.
pub fn answer(
    state_dir: &Path,
    ids: &[String],
    approved: bool,
    reason: &str,
    by: Option<String>,
) -> Result<i32, Error> {
    let (run, gate) = match ids {
        [gate] => (None, gate),
        [run, gate] => (Some(run.as_str()), gate),
        _ => return Err(Error::Usage("expected `[run] <gate>`".to_owned())),
    };
    let store = open(state_dir, Durability::Normal)?;
    let row = unfinished(&store, run)?;
    let _claim = store.claim(&row.id)?;
    verified(&store, &row)?;
    let steps = store.steps(&row.id)?;
    let waiting: Vec<&str> = steps
        .iter()
        .filter(|s| s.status == StepState::At(StepStatus::Waiting))
        .map(|s| s.step.as_str())
        .collect();
    if !waiting.contains(&gate.as_str()) {
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
        return Err(Error::Usage(format!(
            "gate `{gate}` of run {} is not waiting for an answer ({now})",
            row.id
        )));
    }
    // A gate whose timeout passed is rejected by `resume`; approving it
    // late would overrule the plan.
    if approved && store.history(&row.id)?.gate_expired(gate) {
        return Err(Error::Usage(format!(
            "gate `{gate}` of run {} timed out before it was answered; `cairn resume {}` rejects it",
            row.id, row.id
        )));
    }
    let by = by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let event = if approved {
        Event::GateApproved {
            step: gate.clone(),
            by,
            reason: reason.to_owned(),
            at_ms: 0,
        }
    } else {
        Event::GateRejected {
            step: gate.clone(),
            by,
            reason: reason.to_owned(),
            at_ms: 0,
        }
    };
    store.append(&row.id, &event)?;
    let verb = if approved { "approved" } else { "rejected" };
    println!(
        "{verb} gate `{gate}` of run {}; `cairn resume {}` goes on",
        row.id, row.id
    );
    Ok(0)
}

/// `cairn replay`: run the plan again against the recording, touching nothing.
pub fn replay(state_dir: &Path, id: Option<&str>) -> Result<i32, Error> {
    // Touches nothing: a read-only store replays too.
    let store = super::runs::open(state_dir)?;
    let row = store.find(id)?;
    let inputs = store.source(&row.id)?;
    let (recorded, current) = plans(&row, &inputs.source, store.plan(&row.id)?)?;
    let plan = match current {
        Some(Edited { files, plan, .. }) => {
            println!("{files} changed since the run; replaying the edited plan");
            plan
        }
        None => recorded,
    };
    let history = store.history(&row.id)?;
    let mut gates = Resume::default();
    for (id, settled) in history.settled_steps() {
        if matches!(settled, Settled::Answered(_)) {
            gates.keep(id, settled.clone());
        }
    }
    let replay = Replay {
        calls: history
            .calls
            .iter()
            .map(|(key, calls)| (key.clone(), Arc::new(calls.clone())))
            .collect(),
        divergence: Default::default(),
        settled: Arc::new(
            history
                .settled_in_order()
                .into_iter()
                .map(|(step, _)| step.to_owned())
                .collect(),
        ),
    };
    let options = Options {
        params: inputs.params,
        seed: Some(inputs.seed),
        max_parallel: Some(1),
        dir: plan_dir(&row.plan_file()),
        state_dir: Some(state_dir.to_path_buf()),
        resume: Some(Arc::new(gates)),
        replay: Some(replay.clone()),
        registrars: cairn_engine::stdlib::registrars(),
        ..Options::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the runtime: {e}")))?;
    let mut again = cairn_store::History::default();
    let report = runtime.block_on(run::run(Arc::new(plan), options, |event| {
        if let Ok(text) = serde_json::to_string(event) {
            again.fold(&text);
        }
    }))?;
    let divergence = replay
        .divergence
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(divergence) = divergence {
        println!("replay of run {} diverged at {divergence}", row.id);
        return Ok(1);
    }
    // Every step must end as recorded, in the recorded order.
    let recorded = history.settled_in_order();
    for &(step, before) in &recorded {
        match again.settled(step) {
            Some(now) if now == before => {}
            now => {
                println!(
                    "replay of run {} diverged at step `{step}`: recorded {}, replayed {}",
                    row.id,
                    outcome(Some(before)),
                    outcome(now)
                );
                return Ok(1);
            }
        }
    }
    if let Some((extra, now)) = again
        .settled_in_order()
        .into_iter()
        .find(|(s, _)| history.settled(s).is_none())
    {
        println!(
            "replay of run {} diverged at step `{extra}`: recorded nothing, replayed {}",
            row.id,
            outcome(Some(now))
        );
        return Ok(1);
    }
    let _ = report;
    println!(
        "replayed {} steps of run {}, identical",
        recorded.len(),
        row.id
    );
    Ok(0)
}

fn outcome(settled: Option<&Settled>) -> String {
    match settled {
        None => "no outcome".to_owned(),
        Some(Settled::Succeeded { output, .. }) => format!("succeeded with {output}"),
        Some(Settled::Failed { error, .. }) => format!("failed: {error}"),
        Some(Settled::Skipped { reason }) => format!("skipped: {reason}"),
        Some(Settled::Chose { target, .. }) => format!("chose `{target}`"),
        Some(Settled::Answered(a)) if a.approved => format!("approved by {}", a.by),
        Some(Settled::Answered(a)) => format!("rejected by {}", a.by),
    }
}
