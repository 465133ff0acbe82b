//! `cairn resume`, `retry`, `cancel`, `approve`, `reject` and `replay`:
//! going on with recorded runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::report;
use super::run::{plan_dir, Session};
use crate::error::Error;
use cairn_engine::run::Options;
use cairn_lang::plan::Plan;
use cairn_store::services::{self, ServiceError};
use cairn_store::{Durability, Encoded, RunRow, Store};

fn open(dir: &Path, durability: Durability) -> Result<Arc<Store>, Error> {
    Ok(Arc::new(super::runs::existing(dir, durability)?))
}

/// Shows what a service found wrong the way `cairn check` would (a plan
/// with errors gets its diagnostics), and gives the command's error.
pub(crate) fn refused(error: ServiceError) -> Error {
    match error {
        ServiceError::Invalid(diagnostics) => {
            report::human(&diagnostics);
            let count = diagnostics.iter().filter(|d| d.is_error()).count();
            report::error(&Error::Invalid { count });
            Error::Invalid { count }
        }
        other => other.into(),
    }
}

/// Refuses a run whose record does not verify (the REPL's check).
pub(crate) fn verified(store: &Store, run: &RunRow) -> Result<(), Error> {
    services::verified(store, run).map_err(refused)
}

/// The plan the run began with (the REPL's).
pub(crate) fn recorded_plan(
    run: &RunRow,
    text: &str,
    stored: Option<Encoded>,
) -> Result<Plan, Error> {
    services::recorded_plan(run, text, stored).map_err(refused)
}

/// Stops what the run's last process left running, saying so on stderr.
pub(crate) fn stop_left_running(store: &Store, run: &str) -> Result<(), Error> {
    let killed = services::stop_left_running(store, run).map_err(refused)?;
    said_stopped(&killed, run);
    Ok(())
}

fn said_stopped(killed: &[cairn_store::Group], run: &str) {
    for group in killed {
        eprintln!(
            "stopped step `{}`'s command (process group {}), left running when run {run} was stopped",
            group.step, group.pgid
        );
    }
}

/// What `cairn resume` was asked to do.
pub struct ResumeArgs {
    pub run: Option<String>,
    pub allow_changed: bool,
    pub approve: Vec<String>,
    pub going: GoingOn,
}

/// `cairn resume`: continue a paused, interrupted or crashed run.
pub fn resume(args: ResumeArgs) -> Result<i32, Error> {
    let store = open(&args.going.state_dir, args.going.durability)?;
    let prepared = services::prepare_resume(&store, args.run.as_deref(), args.allow_changed)
        .map_err(refused)?;
    cairn_engine::run::check_approvals(&prepared.plan, &args.approve)?;
    args.going.on(store, prepared, args.approve, false)
}

/// What `cairn retry` was asked to do.
pub struct RetryArgs {
    pub run: Option<String>,
    pub steps: Vec<String>,
    pub going: GoingOn,
}

/// `cairn retry`: run a failed or cancelled run's unsuccessful steps again.
pub fn retry(args: RetryArgs) -> Result<i32, Error> {
    let store = open(&args.going.state_dir, args.going.durability)?;
    let (prepared, reset) =
        services::prepare_retry(&store, args.run.as_deref(), &args.steps).map_err(refused)?;
    let shown: Vec<String> = reset.iter().map(|s| format!("`{s}`")).collect();
    eprintln!(
        "retrying run {}: {}",
        prepared.row.id,
        if shown.is_empty() {
            "no step failed; the steps not reached run".to_owned()
        } else {
            format!("{} run again, every other result is kept", shown.join(", "))
        }
    );
    args.going.on(store, prepared, Vec::new(), true)
}

/// What `cairn fork` was asked to do.
pub struct ForkArgs {
    pub run: String,
    pub at: String,
    pub set: Vec<String>,
    pub going: GoingOn,
}

/// `cairn fork`: a new run keeping what a run's steps before `--at` did.
pub fn fork(args: ForkArgs) -> Result<i32, Error> {
    let store = open(&args.going.state_dir, args.going.durability)?;
    let set = super::run::set_params(&args.set)?;
    let forked = services::fork(&store, &args.run, &args.at, &set).map_err(refused)?;
    let prepared = services::prepare_resume(&store, Some(&forked), false).map_err(refused)?;
    eprintln!(
        "forked run {forked} from run {} at `{}`: {} steps keep their recorded outcome",
        store
            .forked_from(&forked)?
            .map(|(from, _)| from)
            .unwrap_or_default(),
        args.at,
        prepared.resume.kept()
    );
    args.going.on(store, prepared, Vec::new(), false)
}

/// How `resume`, `retry` and `fork` run the run they go on with.
pub struct GoingOn {
    pub json: bool,
    pub events: Option<String>,
    pub max_parallel: Option<usize>,
    pub state_dir: PathBuf,
    pub durability: Durability,
}

impl GoingOn {
    /// Runs `prepared` to its end (or next stop) with its recorded params
    /// and seed, as `cairn run` would; the exit code.
    fn on(
        self,
        store: Arc<Store>,
        prepared: services::Prepared,
        approvals: Vec<String>,
        retrying: bool,
    ) -> Result<i32, Error> {
        said_stopped(&prepared.stopped, &prepared.row.id);
        super::leak_until_exit(Arc::clone(&prepared.resume));
        let session = Session {
            store,
            run_id: prepared.row.id.clone(),
            state_dir: self.state_dir,
            events: self.events,
            json: self.json,
            claim: Some(prepared.claim),
            retrying,
            source: cairn_lang::source::Source::new(
                prepared.row.file.clone(),
                prepared.inputs.source.clone(),
            ),
        };
        let options = Options {
            params: prepared.inputs.params,
            seed: Some(prepared.inputs.seed),
            max_parallel: self.max_parallel,
            approvals,
            dir: plan_dir(&prepared.row.plan_file()),
            resume: Some(prepared.resume),
            ..Options::default()
        };
        session.execute(prepared.plan, options)
    }
}

/// `cairn approve` / `cairn reject`: answer a waiting gate of a stopped run.
pub fn answer(state_dir: &Path, answer: super::Answer, approved: bool) -> Result<i32, Error> {
    let (run, gate) = match answer.ids.as_slice() {
        [gate] => (None, gate),
        [run, gate] => (Some(run.as_str()), gate),
        _ => return Err(Error::Usage("expected `[run] <gate>`".to_owned())),
    };
    let store = open(state_dir, Durability::Normal)?;
    let by = answer
        .by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let request = services::Answer {
        run,
        gate,
        approved,
        reason: &answer.reason,
        by: by.clone(),
        input: &answer.input,
    };
    let run = services::answer_gate(&store, request).map_err(refused)?;
    let verb = if approved { "approved" } else { "rejected" };
    if answer.json {
        let value = serde_json::json!({
            "run": run, "gate": gate, "answer": verb, "by": by, "reason": answer.reason,
            "input": answer.input.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        });
        println!("{value}");
    } else {
        println!("{verb} gate `{gate}` of run {run}; `cairn resume {run}` goes on");
    }
    Ok(0)
}

/// `cairn cancel`: mark a stopped run cancelled, or ask the process that
/// runs a live one to cancel it and wait until it has.
pub fn cancel(state_dir: &Path, id: Option<&str>, reason: &str) -> Result<i32, Error> {
    let store = open(state_dir, Durability::Normal)?;
    let by = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    let reason = format!("{reason} ({by})");
    match services::cancel(&store, id, &reason).map_err(refused)? {
        services::Cancelled::Marked(run) => {
            println!("cancelled run {run}");
            Ok(0)
        }
        services::Cancelled::Asked(run) => {
            // Its process looks every 250 ms, then stops its steps (their
            // commands get a moment to exit before they are killed).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            while std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let row = store.find(Some(&run))?;
                match row.status {
                    cairn_store::RunState::Running => continue,
                    cairn_store::RunState::Stopped(cairn_engine::run::RunStatus::Cancelled) => {
                        println!("cancelled run {run}: its process stopped its steps");
                        return Ok(0);
                    }
                    // It ended before its process saw the request.
                    status if status.is_over() => {
                        store.clear_cancel(&run)?;
                        println!("run {run} ended ({status}) before it could be cancelled");
                        return Ok(1);
                    }
                    // It stopped (at a gate, say) first: marked now.
                    _ => {
                        services::cancel(&store, Some(&run), &reason).map_err(refused)?;
                        println!("cancelled run {run}");
                        return Ok(0);
                    }
                }
            }
            println!(
                "asked the process running run {run} to cancel it; it has not stopped yet (`cairn status {run}` shows when it has)"
            );
            Ok(1)
        }
    }
}

/// `cairn replay`: run the plan again against the recording, touching nothing.
pub fn replay(state_dir: &Path, id: Option<&str>, json: bool) -> Result<i32, Error> {
    // Touches nothing: a read-only store replays too.
    let store = std::sync::Arc::new(super::runs::open(state_dir)?);
    let replayed = services::replay(&store, state_dir, id).map_err(refused)?;
    if json {
        let value = serde_json::json!({
            "run": replayed.run,
            "steps": replayed.steps,
            "identical": replayed.divergence.is_none(),
            "divergence": replayed.divergence,
            "edited": replayed.edited,
        });
        println!("{value}");
        return Ok(i32::from(replayed.divergence.is_some()));
    }
    if let Some(files) = &replayed.edited {
        println!("{files} changed since the run; replaying the edited plan");
    }
    match &replayed.divergence {
        Some(divergence) => {
            println!("replay of run {} diverged at {divergence}", replayed.run);
            Ok(1)
        }
        None => {
            println!(
                "replayed {} steps of run {}, identical",
                replayed.steps, replayed.run
            );
            Ok(0)
        }
    }
}
