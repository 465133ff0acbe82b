//! Running a task's `plan:` as a child run, on the task's worker thread.
//!
//! The child is a run of its own (its steps, events, record and resume),
//! driven by a nested driver on a runtime of its own, so the parent's
//! worker simply waits for it like for any long body. It shares the
//! parent's sandbox (one engine per capability set across every level),
//! clock and directory; it sees only its params; its steps reach no
//! further than the grants of every plan above it; and its gates are
//! answered under the task's id (`round.ship`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, Map, Scope};

use super::events::Event;
use super::{Approver, GateRequest, Options, Recorder, Replay, Resume, RunStatus};
use crate::failure::{ErrorKind, Failure};
use crate::script::context::ProcessLog;
use crate::script::Sandbox;
use cairn_lang::plan::{Call, Grant, Plan};

/// How deep plans may call plans: a plan calling itself stops here.
pub const MAX_DEPTH: usize = 64;

/// Where a run's `plan:` tasks keep their child runs (the run store does).
pub trait ChildRuns: Send + Sync {
    /// The child run of attempt `attempt` of step `step`: the one an
    /// earlier process began for it (to go on with), or a new one.
    fn open(&self, request: ChildRequest<'_>) -> Result<ChildRun, String>;

    /// The attempt that ran child run `run` went on without it (it timed
    /// out): the child is over, and a resumed parent does not go on with it.
    fn abandon(&self, run: &str, reason: &str) {
        let _ = (run, reason);
    }

    /// The params the child run of attempt `attempt` of step `step` began
    /// with, if an earlier process began one: it goes on with them, and the
    /// `with` values (which may call capabilities) are not evaluated again.
    fn began_with(&self, step: &str, attempt: u32) -> Result<Option<serde_json::Value>, String> {
        let _ = (step, attempt);
        Ok(None)
    }
}

/// What a child run is opened for.
pub struct ChildRequest<'a> {
    /// The calling step's id (a part's own: `round#2`).
    pub step: &'a str,
    /// The calling step's attempt, from 1.
    pub attempt: u32,
    /// `plan:` as written.
    pub reference: &'a str,
    /// The plan the child runs.
    pub plan: &'a Plan,
    /// Its params, as given by `with` and defaults, for the record.
    pub params: &'a serde_json::Value,
    /// Its seed.
    pub seed: u64,
}

/// A child run, ready to run.
#[derive(Default)]
pub struct ChildRun {
    /// Its id, as `cairn status` takes it.
    pub id: String,
    /// Keeps its events.
    pub recorder: Option<Arc<dyn Recorder>>,
    /// Keeps its commands' process groups.
    pub processes: Option<Arc<dyn ProcessLog>>,
    /// What it keeps from an earlier process.
    pub resume: Option<Arc<Resume>>,
    /// In a replay: its recording.
    pub replay: Option<Replay>,
    /// Where its own `plan:` tasks keep their child runs.
    pub children: Option<Arc<dyn ChildRuns>>,
    /// Held while it runs, dropped when it ends (the store's claim on it).
    pub hold: Option<Box<dyn std::any::Any + Send>>,
}

/// What a run passes down to the child runs of its `plan:` tasks.
#[derive(Clone)]
pub(crate) struct Nesting {
    /// Every plan a `plan:` task may run, by [`Call::plan`].
    pub library: Arc<Vec<Arc<Plan>>>,
    /// The engines of every capability set of every plan in the library.
    pub sandbox: Arc<Sandbox>,
    pub registry: crate::Registry,
    /// The plans from the top run down to this one (ids), for the depth.
    pub chain: Vec<String>,
    /// The grants of every plan above this one: a child's steps reach only
    /// what each of them allows too.
    pub ceilings: Arc<Vec<Arc<Vec<Grant>>>>,
    pub children: Option<Arc<dyn ChildRuns>>,
    /// Gates approved up front, as this run names them.
    pub approvals: Vec<String>,
    pub approver: Option<Approver>,
    pub state_dir: Option<PathBuf>,
    /// Set once plans nest too deep, for every level above to fail with
    /// (instead of each wrapping the one below's failure).
    pub too_deep: Arc<std::sync::OnceLock<String>>,
    /// The threads the child runs of the whole tree have, together.
    pub threads: Arc<Threads>,
    /// For a child run: how many worker threads it was granted.
    pub workers: Option<usize>,
}

/// The threads child runs may start, together: a plan that fans out into
/// sub-plans that fan out again would otherwise start threads until the
/// system has none left.
#[derive(Debug, Default)]
pub(crate) struct Threads {
    live: AtomicUsize,
}

/// At most this many threads run the child runs of one run, at any depth.
pub const MAX_CHILD_THREADS: usize = 1024;

/// Threads taken from [`Threads`], given back when dropped.
pub(crate) struct Lease {
    threads: Arc<Threads>,
    count: usize,
}

impl Threads {
    /// Between `least` and `most` threads, as many as are left; `None`
    /// when fewer than `least` are.
    fn lease(self: &Arc<Self>, least: usize, most: usize) -> Option<Lease> {
        let mut live = self.live.load(Ordering::SeqCst);
        loop {
            let left = MAX_CHILD_THREADS.saturating_sub(live);
            if left < least {
                return None;
            }
            let count = most.min(left);
            match self
                .live
                .compare_exchange(live, live + count, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    return Some(Lease {
                        threads: Arc::clone(self),
                        count,
                    })
                }
                Err(now) => live = now,
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.threads.live.fetch_sub(self.count, Ordering::SeqCst);
    }
}

impl Nesting {
    /// For the top run: the library its plan holds, and engines for every
    /// capability set in it.
    pub fn top(plan: &Plan, options: &Options, registry: crate::Registry) -> Self {
        let library: Vec<Arc<Plan>> = plan.library.iter().cloned().map(Arc::new).collect();
        let sets = plan
            .tasks
            .iter()
            .chain(library.iter().flat_map(|p| p.tasks.iter()))
            .map(|t| t.using.as_slice())
            .chain([&[][..]]);
        Self {
            sandbox: Arc::new(Sandbox::new(sets, &registry)),
            library: Arc::new(library),
            registry,
            chain: vec![plan.id.clone()],
            ceilings: Arc::new(Vec::new()),
            children: options.children.clone(),
            approvals: options.approvals.clone(),
            approver: options.approver.clone(),
            state_dir: options.state_dir.clone(),
            too_deep: Arc::default(),
            threads: Arc::default(),
            workers: None,
        }
    }
}

/// How a child run ended, when it gave no output.
pub(crate) enum Unfinished {
    /// The attempt failed: why.
    Failed(Failure),
    /// It waits at these gates (named as `cairn approve` takes them).
    Waiting(Vec<String>),
}

/// What the calling step passes to its child.
pub(crate) struct Caller<'a> {
    pub shared: &'a Arc<super::step::Shared>,
    pub engine: &'a Engine,
    /// The step's id and task id (they differ for a part).
    pub id: &'a str,
    pub task_id: &'a str,
    pub attempt: u32,
    pub timeout_ms: Option<u64>,
    /// The grants the calling step has.
    pub grants: Arc<Vec<Grant>>,
}

/// Runs `call`'s plan as a child run to its end; its output.
pub(crate) fn run(
    caller: &Caller<'_>,
    scope: &mut Scope,
    call: &Call,
) -> Result<Dynamic, Unfinished> {
    let shared = caller.shared;
    let nesting = &shared.nesting;
    let failed = |e: String| Unfinished::Failed(Failure::script(e));
    let plan = nesting
        .library
        .get(call.plan)
        .cloned()
        .ok_or_else(|| failed(format!("`{}` is not in the plan's library", call.reference)))?;
    if nesting.chain.len() >= MAX_DEPTH {
        let error = nesting
            .too_deep
            .get_or_init(|| too_deep(&nesting.chain, &plan.id));
        return Err(failed(error.clone()));
    }
    // The child's workers, and the thread its runtime hands them out from.
    let max_parallel = plan.max_parallel.max(1);
    let wanted = super::driver::workers_for(&plan, max_parallel);
    let lease = nesting.threads.lease(2, wanted + 1).ok_or_else(|| {
        failed(format!(
            "sub-plans running at once would need more than {MAX_CHILD_THREADS} threads; `{}` cannot start (lower `max_parallel:` of the plans that fan out into sub-plans)",
            call.reference
        ))
    })?;
    // The child's own code outside its steps (param defaults, `output:`)
    // has no capability: not the calling task's, nor any the child allows.
    let bare = nesting.sandbox.engine(&[]);
    let began = match &nesting.children {
        Some(children) => children
            .began_with(caller.id, caller.attempt)
            .map_err(|e| failed(format!("cannot read the run of `{}`: {e}", call.reference)))?,
        None => None,
    };
    let (params, recorded) = match began {
        Some(recorded) => (
            rhai::serde::to_dynamic(&recorded).unwrap_or(Dynamic::UNIT),
            recorded,
        ),
        None => {
            let mut with = Vec::new();
            for (name, script) in &call.with {
                let value = super::step::eval(caller.engine, scope, script)
                    .map_err(|e| failed(format!("with {name}: {e}")))?;
                with.push((name.clone(), value));
            }
            let params = super::params::param_map(&bare, &plan.params, &with, "")
                .map_err(|e| failed(e.to_string()))?;
            let recorded: serde_json::Value =
                rhai::serde::from_dynamic(&params).unwrap_or_default();
            (params, recorded)
        }
    };
    let child = match &nesting.children {
        Some(children) => children
            .open(ChildRequest {
                step: caller.id,
                attempt: caller.attempt,
                reference: &call.reference,
                plan: &plan,
                params: &recorded,
                seed: shared.seed,
            })
            .map_err(|e| failed(format!("cannot begin the run of `{}`: {e}", call.reference)))?,
        None => ChildRun::default(),
    };
    let shown = if child.id.is_empty() {
        String::new()
    } else {
        format!(" (run {})", child.id)
    };
    shared.emit(Event::SubPlanStarted {
        step: caller.id.to_owned(),
        attempt: caller.attempt,
        run: child.id.clone(),
        plan: call.reference.clone(),
        at_ms: shared.at_ms(),
    });
    // What it starts is recorded as its caller's: committed first.
    shared.sync();
    let mut ceilings = (*nesting.ceilings).clone();
    ceilings.push(Arc::clone(&caller.grants));
    let mut chain = nesting.chain.clone();
    chain.push(plan.id.clone());
    let interrupter = super::Interrupter::new();
    let options = Options {
        seed: Some(shared.seed),
        approvals: approvals_below(&nesting.approvals, caller),
        dir: shared.dir.clone(),
        state_dir: nesting.state_dir.clone(),
        approver: nesting
            .approver
            .as_ref()
            .map(|ask| prefixed(ask, caller.id)),
        recorder: child.recorder.clone(),
        processes: child.processes.clone(),
        resume: child.resume.clone(),
        replay: child.replay.clone(),
        interrupter: Some(interrupter.clone()),
        clock: Some(Arc::clone(&shared.clock)),
        capabilities: Some(nesting.registry.clone()),
        children: child.children.clone(),
        ..Options::default()
    };
    let below = Nesting {
        library: Arc::clone(&nesting.library),
        sandbox: Arc::clone(&nesting.sandbox),
        registry: nesting.registry.clone(),
        chain,
        ceilings: Arc::new(ceilings),
        children: child.children.clone(),
        approvals: options.approvals.clone(),
        approver: options.approver.clone(),
        state_dir: nesting.state_dir.clone(),
        too_deep: Arc::clone(&nesting.too_deep),
        threads: Arc::clone(&nesting.threads),
        workers: Some(lease.count - 1),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the child run's runtime: {e}")))?;
    let deadline = caller
        .timeout_ms
        .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
    let cancel = Arc::clone(&shared.cancel);
    let mut waiting = BTreeSet::new();
    let prefix = caller.id;
    let report = runtime.block_on(async {
        // The parent's cancel (Ctrl-C, a budget, a failure elsewhere) and
        // the task's `timeout:` interrupt the child.
        let watch = interrupter.clone();
        let watcher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if cancel.load(Ordering::SeqCst) {
                    watch.interrupt("the run above it was stopped");
                    return false;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    watch.interrupt("timed out");
                    return true;
                }
            }
        });
        let report =
            super::driver::run_nested(Arc::clone(&plan), options, below, params.clone(), |event| {
                match event {
                    Event::GateWaiting { step, .. } => {
                        waiting.insert(format!("{prefix}.{step}"));
                    }
                    Event::GateApproved { step, .. } | Event::GateRejected { step, .. } => {
                        waiting.remove(&format!("{prefix}.{step}"));
                    }
                    Event::StepWaiting { on, .. } => {
                        waiting.extend(on.iter().map(|gate| format!("{prefix}.{gate}")));
                    }
                    _ => {}
                }
            })
            .await;
        let timed_out = watcher.is_finished() && matches!(watcher.await, Ok(true));
        (report, timed_out)
    });
    drop(child.hold);
    drop(lease);
    let (report, timed_out) = report;
    if let (true, Some(children)) = (timed_out, &nesting.children) {
        children.abandon(&child.id, "the attempt that ran it timed out");
    }
    let report = report.map_err(|e| failed(format!("`{}`{shown}: {e}", call.reference)))?;
    match report.status {
        RunStatus::Succeeded => output(&bare, &plan, &report, params).map_err(|e| {
            failed(format!(
                "sub-plan `{}`{shown} failed: its `output:`: {e}",
                call.reference
            ))
        }),
        RunStatus::Paused => Err(Unfinished::Waiting(waiting.into_iter().collect())),
        RunStatus::Interrupted if timed_out => Err(Unfinished::Failed(Failure::new(
            ErrorKind::Timeout,
            format!(
                "timed out after {}: sub-plan `{}`{shown} was stopped",
                cairn_lang::units::human_ms(caller.timeout_ms.unwrap_or_default()),
                call.reference
            ),
        ))),
        // The chain of plans is the whole story, said once.
        RunStatus::Failed if nesting.too_deep.get().is_some() => {
            Err(failed(nesting.too_deep.get().cloned().unwrap_or_default()))
        }
        RunStatus::Failed | RunStatus::Interrupted | RunStatus::Cancelled => {
            // The child's failure has the kind (and exit code) of its
            // first step that failed for good, not of one a fallback
            // recovered or the stop cancelled.
            let first = match report.status {
                RunStatus::Failed => report.steps.iter().find_map(|s| {
                    let error = s.error.as_ref()?;
                    let failed =
                        s.status == super::StepStatus::Failed && error.kind != ErrorKind::Cancelled;
                    failed.then(|| error.clone())
                }),
                _ => Some(Failure::new(ErrorKind::Cancelled, "")),
            };
            let message = format!(
                "sub-plan `{}`{shown} {}: {}",
                call.reference,
                report.status.word(),
                report.message.as_deref().unwrap_or("no reason given")
            );
            let failure = Failure {
                message,
                at: None,
                ..first.unwrap_or_else(|| Failure::script(""))
            };
            Err(Unfinished::Failed(failure))
        }
    }
}

/// The child's output: its `output:` over its outputs and params, or the
/// map of every step's output.
fn output(
    engine: &Engine,
    plan: &Plan,
    report: &super::Report,
    params: Dynamic,
) -> Result<Dynamic, String> {
    let mut outputs = Map::new();
    for step in &report.steps {
        let Some(value) = &step.output else { continue };
        if plan.task(&step.id).is_some() {
            outputs.insert(
                step.id.as_str().into(),
                rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT),
            );
        }
    }
    let Some(script) = &plan.output else {
        return Ok(Dynamic::from_map(outputs));
    };
    let mut scope = Scope::new();
    scope.push_constant("outputs", Dynamic::from_map(outputs));
    scope.push_constant("params", params);
    super::step::eval(engine, &mut scope, script).map_err(|e| e.message)
}

/// The approvals given to a run that name gates of the child of `caller`
/// (`round.ship`, `round#2.ship`), as the child names them (`ship`).
fn approvals_below(approvals: &[String], caller: &Caller<'_>) -> Vec<String> {
    let prefixes = [format!("{}.", caller.id), format!("{}.", caller.task_id)];
    approvals
        .iter()
        .filter_map(|a| {
            prefixes
                .iter()
                .find_map(|p| a.strip_prefix(p.as_str()))
                .map(str::to_owned)
        })
        .collect()
}

/// An approver that asks about a child's gate under its name above.
fn prefixed(ask: &Approver, prefix: &str) -> Approver {
    let ask = Arc::clone(ask);
    let prefix = prefix.to_owned();
    Arc::new(move |request: &GateRequest| {
        let mut named = request.clone();
        named.id = format!("{prefix}.{}", request.id);
        ask(&named)
    })
}

/// "plans call plans 64 deep: essay → round (×63)".
fn too_deep(chain: &[String], next: &str) -> String {
    let mut shown: Vec<(String, usize)> = Vec::new();
    for id in chain.iter().map(String::as_str).chain([next]) {
        match shown.last_mut() {
            Some((last, count)) if last == id => *count += 1,
            _ => shown.push((id.to_owned(), 1)),
        }
    }
    let path: Vec<String> = shown
        .into_iter()
        .map(|(id, n)| {
            if n == 1 {
                format!("`{id}`")
            } else {
                format!("`{id}` (×{n})")
            }
        })
        .collect();
    format!(
        "sub-plans nest deeper than {MAX_DEPTH} levels: {}; a plan that runs itself needs a `when:` that ends the recursion",
        path.join(" → ")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_depth_error_names_the_chain_with_repeats_counted() {
        let chain: Vec<String> = std::iter::once("essay".to_owned())
            .chain(std::iter::repeat_n("round".to_owned(), 63))
            .collect();
        assert_eq!(
            super::too_deep(&chain, "round"),
            "sub-plans nest deeper than 64 levels: `essay` → `round` (×64); a plan that runs itself needs a `when:` that ends the recursion"
        );
    }
}
