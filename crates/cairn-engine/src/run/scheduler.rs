//! The scheduler: which steps start when, and what each outcome means for the rest.
//!
//! Ready steps start in a fixed order (higher `priority` first, then file
//! order), at most `max_parallel` at once and within the plan's resources.
//! Every script runs on a blocking thread; this loop only keeps the books.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petgraph::visit::EdgeRef;
use petgraph::Direction;
use rhai::{Dynamic, Map};
use std::sync::Condvar;

use super::events::{Event, RunStatus, StepStatus};
use super::outbox::{Outbox, TICK};
use super::params::{eval_with_params, param_map, param_values};
use super::step::{self, Job, Outcome, Shared};
use super::{Approval, GateRequest, Options, Report, Settled, StepReport};
use crate::error::Error;
use crate::script::context::{CostMeter, Hypotheses, Journal};
use crate::script::Sandbox;
use cairn_lang::plan::{EdgeKind, FailurePolicy, Plan, StepKind};

/// Per-step bookkeeping.
#[derive(Clone, Debug)]
struct Node {
    status: StepStatus,
    started: bool,
    /// Incoming edges whose source has not settled yet.
    unresolved: usize,
    /// An incoming `on failure ->` or branch edge was taken.
    routed: bool,
    /// Incoming `needs` / `on success` edges, and how many came from skipped steps.
    ordering: usize,
    ordering_skipped: usize,
    attempts: u32,
    started_at: Option<Instant>,
    duration_ms: u64,
    error: Option<String>,
    output: Option<serde_json::Value>,
    /// For a decision: the branch taken (`None` inside means `else`).
    chosen: Option<Option<usize>>,
}

/// Runs a checked plan to its end (or to a gate), reporting every event.
pub async fn run(
    plan: Arc<Plan>,
    options: Options,
    mut observe: impl FnMut(&Event),
) -> Result<Report, Error> {
    let sandbox = Arc::new(Sandbox::new(
        plan.tasks
            .iter()
            .map(|t| t.using.as_slice())
            .chain([&[][..]]),
        &options.registrars,
    ));
    let (params, import_params) = evaluate_params(&plan, &options, &sandbox).await?;
    let events = Arc::new(Outbox::default());
    let seed = options.seed.or(plan.seed).unwrap_or(0);
    // An empty directory means the current one.
    let dir = if options.dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        options.dir.as_path()
    };
    let dir = dir.canonicalize().map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let confinement = Arc::new(crate::script::confine::Confinement::new(
        &dir,
        options.state_dir.as_deref(),
    ));
    let shared = Arc::new(Shared {
        plan: Arc::clone(&plan),
        dir,
        confinement,
        blobs: options
            .state_dir
            .as_ref()
            .map(|d| Arc::from(d.join("blobs"))),
        processes: options.processes.clone(),
        grants: Arc::new(plan.allow.clone()),
        cancel: Arc::new(AtomicBool::new(false)),
        cost: Arc::new(CostMeter::resumed(
            plan.budget.cost,
            options.resume.as_ref().map_or(0.0, |r| r.spent_cost),
        )),
        journal: Arc::new(Mutex::new(Journal::resumed(
            options.resume.as_deref().map_or(&[][..], |r| &r.originals),
        ))),
        seed,
        params,
        import_params,
        import_grants: plan
            .imports
            .iter()
            .map(|i| (i.alias.clone(), Arc::new(i.allow.clone())))
            .collect(),
        events: Arc::clone(&events),
        started: Instant::now(),
        recorder: options.recorder.clone(),
        already: options.resume.clone(),
        record_error: Mutex::new(None),
        replay: options.replay.clone(),
        hypotheses: Arc::new(hypotheses(&plan, options.resume.as_deref())),
    });
    let max_parallel = options.max_parallel.unwrap_or(plan.max_parallel).max(1);
    tracing::info!(plan = %plan.id, steps = plan.tasks.len(), max_parallel, seed, "run started");
    shared.emit(Event::RunStarted {
        plan: plan.id.clone(),
        steps: plan.tasks.len(),
        max_parallel,
        seed,
    });
    if let Some(resume) = &options.resume {
        shared.emit(Event::RunResumed {
            kept: resume.kept(),
            invalidated: resume.invalidated.clone(),
        });
    }
    let interrupter = options.interrupter.clone();
    let mut scheduler = Scheduler::new(
        Arc::clone(&plan),
        Arc::clone(&shared),
        &sandbox,
        options,
        max_parallel,
    );
    for i in 0..plan.tasks.len() {
        if scheduler.nodes[i].unresolved == 0 {
            scheduler.decide(i);
        }
    }
    let pool = Arc::new(Pool {
        state: Mutex::new(scheduler),
        wake: Condvar::new(),
    });
    // If this future is dropped before the run ends (a caller's timeout, a
    // `select!`), the workers go on without an observer: cancel them, and
    // let a gate waiting for the observer ask anyway.
    let _abandoned = Abandoned {
        cancel: Arc::clone(&shared.cancel),
        events: Arc::clone(&events),
        pool: Arc::downgrade(&pool),
    };
    drive(
        &pool,
        &plan,
        max_parallel,
        interrupter,
        &events,
        &mut observe,
    )
    .await;
    let scheduler = Arc::try_unwrap(pool)
        .ok()
        .expect("the workers are done")
        .state
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Ok(scheduler.finish(&events, &mut observe).await)
}

/// Cancels the run's workers and closes its outbox when dropped: at the
/// end of [`run`], or when its future is dropped half-way.
struct Abandoned {
    cancel: Arc<AtomicBool>,
    events: Arc<Outbox>,
    /// Gone once the run has finished with it.
    pool: std::sync::Weak<Pool>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.events.close();
        if let Some(pool) = self.pool.upgrade() {
            self.cancel.store(true, Ordering::SeqCst);
            pool.lock().cancel("the run was dropped".to_owned(), true);
            pool.wake.notify_all();
        }
    }
}

/// What a worker does next.
enum Work {
    Step(Job),
    Gate(usize, GateRequest, super::Approver),
}

/// The scheduler's books, shared by its workers.
struct Pool {
    state: Mutex<Scheduler>,
    /// Signalled whenever a step finishes or the run is cancelled.
    wake: Condvar,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Workers run steps on their own threads (never the runtime's) while this
/// task reports events and watches the time budget and Ctrl-C. A worker that
/// finishes a step takes the next ready one itself, with no thread hop.
async fn drive(
    pool: &Arc<Pool>,
    plan: &Plan,
    max_parallel: usize,
    interrupter: Option<super::Interrupter>,
    events: &Outbox,
    observe: &mut impl FnMut(&Event),
) {
    let workers = max_parallel.min(plan.tasks.len()).clamp(1, MAX_WORKERS);
    let crew = Arc::clone(pool);
    let mut done = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            for _ in 0..workers {
                // Deep values recurse inside Rhai (clone, drop, compare):
                // workers get the stack a step's script needs.
                std::thread::Builder::new()
                    .name("cairn-worker".into())
                    .stack_size(step::SCRIPT_STACK)
                    .spawn_scoped(scope, || work(&crew))
                    .expect("a worker thread starts");
            }
        });
    });
    // A resumed run has spent some of its budget in earlier processes.
    let spent = pool
        .lock()
        .shared
        .already
        .as_ref()
        .map_or(0, |r| r.spent_ms);
    let budget = plan
        .budget
        .time_ms
        .map(|ms| Duration::from_millis(ms.saturating_sub(spent)));
    let watchdog = tokio::time::sleep(budget.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(watchdog);
    // The host's Ctrl-C (or whatever it chooses): the library listens to
    // no signal of its own.
    let interrupted_from_outside = async {
        match &interrupter {
            Some(interrupter) => interrupter.interrupted().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(interrupted_from_outside);
    // After each drain the observer rests a tick, so a busy run wakes it
    // at most once a tick (see `outbox`).
    let resting = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(resting);
    let mut rested = true;
    let mut timed_out = false;
    let mut interrupted = false;
    loop {
        tokio::select! {
            joined = &mut done => {
                joined.expect("workers do not panic");
                break;
            }
            () = events.ready(), if rested => {
                events.drain(observe);
                resting.as_mut().reset(tokio::time::Instant::now() + TICK);
                rested = false;
            }
            () = &mut resting, if !rested => {
                // Whatever came while resting goes now; then rest again
                // only if there was something.
                if events.drain(observe) {
                    resting.as_mut().reset(tokio::time::Instant::now() + TICK);
                } else {
                    rested = true;
                }
            }
            () = &mut watchdog, if budget.is_some() && !timed_out => {
                timed_out = true;
                let text = plan.budget.time_ms.map(cairn_lang::units::human_ms).unwrap_or_default();
                pool.lock().cancel(format!("the time budget of {text} ran out; running steps were cancelled"), false);
                pool.wake.notify_all();
            }
            reason = &mut interrupted_from_outside, if !interrupted => {
                interrupted = true;
                pool.lock().cancel(reason, true);
                pool.wake.notify_all();
            }
        }
    }
    events.drain(observe);
}

/// Threads for running steps; `max_parallel` above this still bounds how
/// many run, but no more than this many scripts run at once.
const MAX_WORKERS: usize = 256;

/// One worker: take work, do it without the lock, record the outcome.
fn work(pool: &Pool) {
    let mut state = pool.lock();
    loop {
        // A gate whose timeout passed while steps ran is rejected now (its
        // failure route may start something).
        state.expire_gates();
        // Every step that may start, starts now (in order, whatever the
        // threads are doing); workers only pick the started steps up.
        state.dispatch();
        if std::mem::take(&mut state.new_deadline) {
            // Workers asleep without a timeout wake to wait for it.
            pool.wake.notify_all();
        }
        if let Some(work) = state.queue.pop_front() {
            if !state.queue.is_empty() {
                pool.wake.notify_all();
            }
            let shared = Arc::clone(&state.shared);
            drop(state);
            // Everything finished so far is committed before this step's
            // effects begin (outside the lock: other workers go on).
            shared.sync();
            // A panic (in a host's tool or approver, say) fails the step:
            // unwinding past here would leave the run waiting for it forever.
            let (i, outcome) = match work {
                Work::Step(job) => {
                    let i = job.index;
                    (i, unpanicked(|| step::run(&shared, job)))
                }
                Work::Gate(i, request, ask) => {
                    // The question comes after the lines about earlier steps.
                    shared.events.flush();
                    let answer = unpanicked(|| Outcome::Gate(ask(&request)));
                    // An approval that came after the deadline does not count.
                    let late = request
                        .expires_at
                        .is_some_and(|at| std::time::SystemTime::now() >= at);
                    match answer {
                        Outcome::Gate(Some(a)) if a.approved && late => (
                            i,
                            Outcome::Gate(Some(Approval::timed_out(
                                request.timeout_ms.unwrap_or_default(),
                            ))),
                        ),
                        answer => (i, answer),
                    }
                }
            };
            state = pool.lock();
            state.running -= 1;
            state.finished(i, outcome);
            // No wake-up here: this worker goes round again, starts what
            // became ready and wakes others only for work left over.
            continue;
        }
        if state.running == 0 && state.ready.is_empty() && state.unstick() {
            continue;
        }
        if state.running == 0 {
            // Nothing runs and nothing can start: the run is over.
            pool.wake.notify_all();
            return;
        }
        // Steps are running: wait for one to finish, or for a waiting
        // gate's timeout.
        state = match state.until_a_gate_expires() {
            Some(wait) => {
                pool.wake
                    .wait_timeout(state, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => pool.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// Now, in milliseconds since 1970: gate deadlines outlive the process.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs `f`, turning a panic into a failed outcome that says what it was.
fn unpanicked(f: impl FnOnce() -> Outcome) -> Outcome {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Outcome::Failed {
            error: format!("internal error: the step panicked ({what})"),
            attempts: 1,
        }
    })
}

/// Param defaults, overridden by `--set`, and each imported plan's params,
/// overridden by its `with` values; evaluated off the async threads.
async fn evaluate_params(
    plan: &Arc<Plan>,
    options: &Options,
    sandbox: &Arc<Sandbox>,
) -> Result<(Dynamic, HashMap<String, Dynamic>), Error> {
    let plan = Arc::clone(plan);
    let engine = sandbox.engine(&[]);
    let overrides = options.params.clone();
    let limit = std::time::Duration::from_millis(plan.default_timeout_ms);
    tokio::task::spawn_blocking(move || {
        crate::script::context::within(limit, || {
            let main = param_values(&plan, &overrides, &engine)?;
            let mut imports: HashMap<String, Dynamic> = HashMap::new();
            for import in &plan.imports {
                let outer = match &import.parent {
                    Some(parent) => imports.get(parent).cloned().unwrap_or(Dynamic::UNIT),
                    None => main.clone(),
                };
                let mut with = Vec::new();
                for (name, script) in &import.with {
                    let value = eval_with_params(&engine, script, outer.clone()).map_err(|e| {
                        Error::Usage(format!("`{}` with {name}: {e}", import.reference))
                    })?;
                    with.push((name.clone(), value));
                }
                let prefix = format!("{}: ", import.alias);
                let map = param_map(&engine, &import.params, &with, &prefix)?;
                imports.insert(import.alias.clone(), map);
            }
            Ok((main, imports))
        })
    })
    .await
    .expect("param evaluation does not panic")
}

struct Scheduler {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    /// The engine of each step's capability set.
    engines: Vec<Arc<rhai::Engine>>,
    /// For each step, the steps its code names in `outputs[…]`, by index.
    reads: Vec<Vec<usize>>,
    options: Options,
    max_parallel: usize,
    nodes: Vec<Node>,
    /// In a resumed run, the outcome each step keeps from before (by
    /// index; empty otherwise), taken when the step settles.
    kept: Vec<Option<Outcome>>,
    /// Ready steps by (-priority, file order).
    ready: BTreeSet<(i64, usize)>,
    /// Steps started and not finished yet (queued or being worked on).
    running: usize,
    /// Started steps waiting for a worker, in start order.
    queue: std::collections::VecDeque<Work>,
    in_use: HashMap<String, f64>,
    /// A failed step waiting for its fallback: fallback → failed step.
    awaiting: HashMap<usize, Vec<usize>>,
    completed: Vec<usize>,
    stopping: bool,
    failed: bool,
    compensate: bool,
    interrupted: bool,
    message: Option<String>,
    waiting_gates: Vec<usize>,
    /// When each opened gate with a `timeout:` expires (ms since 1970).
    gate_expiry: HashMap<usize, u64>,
    /// A gate began waiting with a deadline: sleeping workers must learn it.
    new_deadline: bool,
    /// `on failure ->` edges taken as "did not fail" before their source
    /// ran, so a fallback they share could run: (source, fallback).
    unstuck: std::collections::HashSet<(usize, usize)>,
    /// Steps started in this run (kept outcomes of a resumed run aside).
    started_count: usize,
}

/// The outcome a resumed run keeps for `task`, as the scheduler takes it.
fn kept_outcome(task: &cairn_lang::plan::Task, settled: &Settled) -> Outcome {
    match settled.clone() {
        Settled::Succeeded { output, attempts } => Outcome::Succeeded { output, attempts },
        Settled::Failed { error, attempts } => Outcome::Failed { error, attempts },
        Settled::Skipped { reason } => Outcome::Skipped(reason),
        Settled::Chose { branch, target } => Outcome::Chose {
            branch: task
                .branches
                .iter()
                .position(|b| format!("when {}", b.condition.text) == branch),
            target,
        },
        Settled::Answered(approval) => Outcome::Gate(Some(approval)),
    }
}

impl Scheduler {
    fn new(
        plan: Arc<Plan>,
        shared: Arc<Shared>,
        sandbox: &Sandbox,
        options: Options,
        max_parallel: usize,
    ) -> Self {
        let nodes = (0..plan.tasks.len())
            .map(|i| {
                let (mut unresolved, mut ordering) = (0, 0);
                for edge in plan
                    .graph
                    .edges_directed(Plan::node(i), Direction::Incoming)
                {
                    unresolved += 1;
                    ordering += usize::from(!edge.weight().kind.is_conditional());
                }
                Node {
                    status: StepStatus::NotRun,
                    started: false,
                    unresolved,
                    routed: false,
                    ordering,
                    ordering_skipped: 0,
                    attempts: 0,
                    started_at: None,
                    duration_ms: 0,
                    error: None,
                    output: None,
                    chosen: None,
                }
            })
            .collect();
        // Only built when some code reads outputs by name.
        let index: HashMap<&str, usize> = if plan.tasks.iter().any(|t| !t.reads.is_empty()) {
            plan.tasks
                .iter()
                .enumerate()
                .map(|(i, t)| (t.id.as_str(), i))
                .collect()
        } else {
            HashMap::new()
        };
        let reads = plan
            .tasks
            .iter()
            .map(|t| {
                t.reads
                    .iter()
                    .filter_map(|id| index.get(id.as_str()).copied())
                    .collect()
            })
            .collect();
        let engines = plan
            .tasks
            .iter()
            .map(|t| sandbox.engine(&t.using))
            .collect();
        let kept = match options.resume.as_deref() {
            Some(resume) => plan
                .tasks
                .iter()
                .map(|t| Some(kept_outcome(t, resume.settled(&t.id)?)))
                .collect(),
            None => Vec::new(),
        };
        Self {
            plan,
            shared,
            engines,
            reads,
            options,
            max_parallel,
            nodes,
            kept,
            ready: BTreeSet::new(),
            running: 0,
            queue: std::collections::VecDeque::new(),
            in_use: HashMap::new(),
            awaiting: HashMap::new(),
            completed: Vec::new(),
            stopping: false,
            failed: false,
            compensate: false,
            interrupted: false,
            message: None,
            waiting_gates: Vec::new(),
            gate_expiry: HashMap::new(),
            new_deadline: false,
            unstuck: Default::default(),
            started_count: 0,
        }
    }

    fn at_ms(&self) -> u64 {
        self.shared.at_ms()
    }

    fn emit(&self, event: Event) {
        self.shared.emit(event);
    }

    /// All incoming edges are resolved: run the step, or skip it.
    fn decide(&mut self, i: usize) {
        let task = &self.plan.tasks[i];
        let node = &self.nodes[i];
        if task.conditional && !node.routed {
            let reason = "not routed to: no `on failure ->` or decision branch led here".to_owned();
            return self.skip(i, reason);
        }
        if node.ordering > 0 && node.ordering_skipped == node.ordering {
            return self.skip(i, "every step it needs was skipped".to_owned());
        }
        self.ready.insert((-task.priority, i));
    }

    fn skip(&mut self, i: usize, reason: String) {
        self.nodes[i].status = StepStatus::Skipped;
        self.emit(Event::StepSkipped {
            step: self.plan.tasks[i].id.clone(),
            reason,
            at_ms: self.at_ms(),
        });
        self.resolve_failure_routes(i, false);
        self.settle(i);
    }

    /// Resolves this step's `on failure ->` edges: taken only if it failed.
    fn resolve_failure_routes(&mut self, i: usize, failed: bool) {
        let targets: Vec<usize> = self
            .plan
            .graph
            .edges_directed(Plan::node(i), Direction::Outgoing)
            .filter(|e| e.weight().kind == EdgeKind::OnFailure)
            .map(|e| e.target().index())
            .filter(|&t| !self.unstuck.contains(&(i, t)))
            .collect();
        for t in targets {
            if failed {
                self.nodes[t].routed = true;
                self.awaiting.entry(t).or_default().push(i);
            }
            self.resolve(t);
        }
    }

    /// The step's outcome is final: resolve its remaining outgoing edges.
    fn settle(&mut self, i: usize) {
        let status = self.nodes[i].status;
        let chosen = self.nodes[i].chosen;
        let edges: Vec<(usize, EdgeKind)> = self
            .plan
            .graph
            .edges_directed(Plan::node(i), Direction::Outgoing)
            .map(|e| (e.target().index(), e.weight().kind))
            .filter(|(_, k)| *k != EdgeKind::OnFailure)
            .collect();
        for (t, kind) in edges {
            match kind {
                EdgeKind::Branch { index } => self.nodes[t].routed |= chosen == Some(Some(index)),
                EdgeKind::Else => self.nodes[t].routed |= chosen == Some(None),
                _ => {
                    if status == StepStatus::Skipped {
                        self.nodes[t].ordering_skipped += 1;
                    }
                }
            }
            self.resolve(t);
        }
        // A fallback settled: the step it stands in for is recovered or failed.
        for failed in self.awaiting.remove(&i).unwrap_or_default() {
            if status == StepStatus::Succeeded {
                self.nodes[failed].status = StepStatus::Recovered;
                self.emit(Event::StepRecovered {
                    step: self.plan.tasks[failed].id.clone(),
                    by: self.plan.tasks[i].id.clone(),
                    at_ms: self.at_ms(),
                });
                self.settle(failed);
            } else {
                self.fail_for_good(failed);
            }
        }
    }

    fn resolve(&mut self, t: usize) {
        let node = &mut self.nodes[t];
        node.unresolved -= 1;
        if node.unresolved == 0 {
            self.decide(t);
        }
    }

    /// A failure with no fallback left: apply the step's failure policy.
    fn fail_for_good(&mut self, i: usize) {
        let task = &self.plan.tasks[i];
        let policy = task.on_failure.unwrap_or(self.plan.on_failure);
        let budget = self.shared.cost.exceeded.load(Ordering::SeqCst);
        match policy {
            FailurePolicy::Continue if !budget => self.settle(i),
            _ => {
                self.stopping = true;
                self.failed = true;
                self.compensate |= policy == FailurePolicy::Compensate;
                if self.message.is_none() {
                    let error = self.nodes[i].error.clone().unwrap_or_default();
                    self.message = Some(format!("`{}` failed: {error}", task.id));
                }
            }
        }
    }

    fn fits(&self, i: usize) -> bool {
        let task = &self.plan.tasks[i];
        task.resources.amounts.iter().all(|(name, amount)| {
            self.plan
                .resources
                .amounts
                .get(name)
                .is_none_or(|capacity| {
                    self.in_use.get(name).copied().unwrap_or(0.0) + amount <= capacity + 1e-9
                })
        })
    }

    /// Starts every ready step that may start now.
    fn dispatch(&mut self) {
        while let Some(work) = self.take_work() {
            self.queue.push_back(work);
        }
    }

    /// The next piece of work for a worker, if a ready step may start now.
    /// Nothing runs and nothing is ready, yet a failed step waits for its
    /// fallback. That happens when steps that depend on each other share the
    /// fallback (`a`, and `b` needing `a`, both `on failure -> rollback`):
    /// the fallback waits for `b`'s route, and `b` for `a`. A step that has
    /// not started has not failed, so its route to a routed fallback is
    /// taken as not failing now; if it fails later, it has no fallback left.
    /// Whether anything became ready.
    fn unstick(&mut self) -> bool {
        if self.stopping {
            return false;
        }
        let mut freed = Vec::new();
        for &fallback in self.awaiting.keys() {
            if self.nodes[fallback].started || self.nodes[fallback].unresolved == 0 {
                continue;
            }
            for edge in self
                .plan
                .graph
                .edges_directed(Plan::node(fallback), Direction::Incoming)
            {
                let source = edge.source().index();
                if edge.weight().kind == EdgeKind::OnFailure
                    && !self.nodes[source].started
                    && self.nodes[source].status == StepStatus::NotRun
                    && !self.unstuck.contains(&(source, fallback))
                {
                    freed.push((source, fallback));
                }
            }
        }
        for &(source, fallback) in &freed {
            self.unstuck.insert((source, fallback));
            self.resolve(fallback);
        }
        !freed.is_empty()
    }

    /// Steps that need no thread (no code, gates approved up front) are
    /// completed here on the way.
    fn take_work(&mut self) -> Option<Work> {
        let shared = Arc::clone(&self.shared);
        let replayed = shared.replay.as_ref().map(|r| &r.settled);
        while (!self.stopping || replayed.is_some()) && self.running < self.max_parallel {
            // A stepping caller (the REPL) may hold steps back.
            let kept = |i: usize| self.keeps(i);
            if self
                .options
                .start_limit
                .is_some_and(|limit| self.started_count >= limit)
            {
                // Steps already settled still settle: they are not "started".
                let &(key, i) = self.ready.iter().find(|&&(_, i)| kept(i))?;
                self.ready.remove(&(key, i));
                self.start(i);
                continue;
            }
            let allowed = |i: usize| {
                let id = &self.plan.tasks[i].id;
                kept(i)
                    || (self
                        .options
                        .only
                        .as_ref()
                        .is_none_or(|only| only.contains(id))
                        && replayed.is_none_or(|settled| settled.contains(id)))
            };
            let &(key, i) = self
                .ready
                .iter()
                .find(|&&(_, i)| self.fits(i) && allowed(i))?;
            self.ready.remove(&(key, i));
            if !self.keeps(i) {
                self.started_count += 1;
            }
            if let Some(work) = self.start(i) {
                self.running += 1;
                return Some(work);
            }
        }
        None
    }

    fn start(&mut self, i: usize) -> Option<Work> {
        let task = &self.plan.tasks[i];
        if let Some(outcome) = self.kept.get_mut(i).and_then(Option::take) {
            for (name, amount) in &task.resources.amounts {
                *self.in_use.entry(name.clone()).or_default() += amount;
            }
            self.nodes[i].started = true;
            if task.step == StepKind::Gate {
                self.nodes[i].attempts = 1;
            }
            self.finished(i, outcome);
            return None;
        }
        if task.step == StepKind::Gate && task.when.is_none() {
            return self.open_gate(i);
        }
        for (name, amount) in &task.resources.amounts {
            *self.in_use.entry(name.clone()).or_default() += amount;
        }
        let node = &mut self.nodes[i];
        node.started = true;
        node.started_at = Some(Instant::now());
        tracing::debug!(step = %task.id, "step started");
        self.emit(Event::StepStarted {
            step: task.id.clone(),
            at_ms: self.at_ms(),
        });
        // A step with no code has nothing to block on: it completes here.
        if task.run.is_none()
            && task.when.is_none()
            && task.input.is_empty()
            && task.expect.is_empty()
            && task.step == StepKind::Task
        {
            let outcome = Outcome::Succeeded {
                output: serde_json::Value::Null,
                attempts: 1,
            };
            self.finished(i, outcome);
            return None;
        }
        Some(Work::Step(Job {
            index: i,
            engine: Arc::clone(&self.engines[i]),
            outputs: self.visible_outputs(i),
            failure: self
                .awaiting
                .get(&i)
                .and_then(|failed| failed.first())
                .map(|&f| {
                    (
                        self.plan.tasks[f].id.clone(),
                        self.nodes[f].error.clone().unwrap_or_default(),
                    )
                }),
        }))
    }

    /// Whether the step keeps an outcome from an earlier part of a resumed run.
    fn keeps(&self, i: usize) -> bool {
        self.kept.get(i).is_some_and(Option::is_some)
    }

    /// Outputs of the step's direct predecessors and of every step its code
    /// names, so what a script sees never depends on timing.
    fn visible_outputs(&self, i: usize) -> Map {
        let mut map = Map::new();
        let predecessors = self
            .plan
            .graph
            .neighbors_directed(Plan::node(i), Direction::Incoming)
            .map(|n| n.index());
        // An imported step's code names its plan's steps without the alias.
        let local = self.plan.tasks[i]
            .import
            .as_ref()
            .map(|alias| format!("{alias}."));
        for j in predecessors.chain(self.reads[i].iter().copied()) {
            if let Some(output) = &self.nodes[j].output {
                let value = rhai::serde::to_dynamic(output).unwrap_or(Dynamic::UNIT);
                let id = self.plan.tasks[j].id.as_str();
                if let Some(short) = local.as_deref().and_then(|l| id.strip_prefix(l)) {
                    map.insert(short.into(), value.clone());
                }
                map.insert(id.into(), value);
            }
        }
        map
    }

    /// Approved up front, asked by a worker, or left waiting; rejected if
    /// its `timeout:` has passed since it first waited.
    fn open_gate(&mut self, i: usize) -> Option<Work> {
        // The plan is shared: hold it, not `self`, while answering.
        let plan = Arc::clone(&self.plan);
        let task = &plan.tasks[i];
        self.nodes[i].started = true;
        self.nodes[i].attempts = 1;
        if let Some(timeout) = task.timeout_ms {
            let recorded = self
                .options
                .resume
                .as_ref()
                .and_then(|r| r.gate_expiry.get(&task.id).copied());
            let now = unix_ms();
            let expires_at = recorded.unwrap_or_else(|| now.saturating_add(timeout));
            if now >= expires_at {
                self.answer(i, Some(Approval::timed_out(timeout)));
                return None;
            }
            self.gate_expiry.insert(i, expires_at);
        }
        if self.options.approvals.contains(&task.id) {
            let approval = Approval {
                approved: true,
                by: "--approve".to_owned(),
                reason: "approved on the command line".to_owned(),
            };
            self.answer(i, Some(approval));
            return None;
        }
        let Some(ask) = self.options.approver.clone() else {
            self.answer(i, None);
            return None;
        };
        if self.gate_expiry.contains_key(&i) {
            // Logged before the question, so a crash while it is asked
            // keeps the deadline.
            self.emit(self.gate_waiting(i));
        }
        let request = GateRequest {
            id: task.id.clone(),
            title: task.title.clone(),
            checks: task.checks.clone(),
            cancelled: Arc::clone(&self.shared.cancel),
            expires_at: self
                .gate_expiry
                .get(&i)
                .map(|&ms| std::time::UNIX_EPOCH + Duration::from_millis(ms)),
            timeout_ms: task.timeout_ms,
        };
        Some(Work::Gate(i, request, ask))
    }

    fn answer(&mut self, i: usize, approval: Option<Approval>) {
        let task = &self.plan.tasks[i];
        match approval {
            Some(a) if a.approved => {
                self.emit(Event::GateApproved {
                    step: task.id.clone(),
                    by: a.by,
                    reason: a.reason,
                    at_ms: self.at_ms(),
                });
                self.nodes[i].status = StepStatus::Succeeded;
                self.completed.push(i);
                self.resolve_failure_routes(i, false);
                self.settle(i);
            }
            Some(a) => {
                self.emit(Event::GateRejected {
                    step: task.id.clone(),
                    by: a.by.clone(),
                    reason: a.reason.clone(),
                    at_ms: self.at_ms(),
                });
                self.nodes[i].status = StepStatus::Failed;
                self.nodes[i].error = Some(format!("rejected by {}: {}", a.by, a.reason));
                self.after_failure(i);
            }
            None => {
                self.nodes[i].status = StepStatus::Waiting;
                self.waiting_gates.push(i);
                self.new_deadline |= self.gate_expiry.contains_key(&i);
                self.emit(self.gate_waiting(i));
            }
        }
    }

    /// The event of gate `i` waiting for an answer, with its deadline.
    fn gate_waiting(&self, i: usize) -> Event {
        let task = &self.plan.tasks[i];
        Event::GateWaiting {
            step: task.id.clone(),
            title: task.title.clone(),
            checks: task.checks.clone(),
            expires_at: self.gate_expiry.get(&i).copied(),
            at_ms: self.at_ms(),
        }
    }

    /// Rejects every waiting gate whose `timeout:` has passed; whether any was.
    fn expire_gates(&mut self) -> bool {
        if self.waiting_gates.is_empty() || self.stopping {
            return false;
        }
        let now = unix_ms();
        let expired: Vec<usize> = self
            .waiting_gates
            .iter()
            .copied()
            .filter(|g| self.gate_expiry.get(g).is_some_and(|&at| now >= at))
            .collect();
        for &gate in &expired {
            self.waiting_gates.retain(|&g| g != gate);
            let timeout = self.plan.tasks[gate].timeout_ms.unwrap_or_default();
            self.answer(gate, Some(Approval::timed_out(timeout)));
        }
        !expired.is_empty()
    }

    /// How long until the next waiting gate expires, if one has a timeout.
    fn until_a_gate_expires(&self) -> Option<Duration> {
        if self.stopping {
            // Nothing is answered any more; waking for it would spin.
            return None;
        }
        let next = self
            .waiting_gates
            .iter()
            .filter_map(|g| self.gate_expiry.get(g))
            .min()?;
        Some(Duration::from_millis(next.saturating_sub(unix_ms())))
    }

    fn after_failure(&mut self, i: usize) {
        // A fallback that already ran for an earlier step is not this one's.
        let has_fallback = self
            .plan
            .graph
            .edges_directed(Plan::node(i), Direction::Outgoing)
            .any(|e| {
                e.weight().kind == EdgeKind::OnFailure
                    && !self.unstuck.contains(&(i, e.target().index()))
            });
        self.resolve_failure_routes(i, true);
        if !has_fallback {
            self.fail_for_good(i);
        }
    }

    fn finished(&mut self, i: usize, outcome: Outcome) {
        self.record(i, outcome);
        // A crossed cost budget stops the run even if a script caught the error.
        if self.shared.cost.exceeded.load(Ordering::SeqCst) && !self.stopping {
            self.stopping = true;
            self.failed = true;
            self.message.get_or_insert_with(|| {
                format!(
                    "the cost budget of {} was exceeded",
                    self.plan.budget.cost.unwrap_or_default()
                )
            });
        }
    }

    fn record(&mut self, i: usize, outcome: Outcome) {
        let task = &self.plan.tasks[i];
        tracing::debug!(step = %task.id, ?outcome, "step finished");
        for (name, amount) in &task.resources.amounts {
            *self.in_use.entry(name.clone()).or_default() -= amount;
        }
        let node = &mut self.nodes[i];
        node.duration_ms = node
            .started_at
            .map_or(0, |s| s.elapsed().as_millis() as u64);
        let at_ms = self.shared.at_ms();
        match outcome {
            Outcome::Skipped(reason) => self.skip(i, reason),
            Outcome::Succeeded { output, attempts } => {
                node.status = StepStatus::Succeeded;
                node.attempts = attempts;
                node.output = Some(output.clone());
                self.completed.push(i);
                self.emit(Event::StepSucceeded {
                    step: task.id.clone(),
                    attempts,
                    output,
                    spent: self.shared.cost.spent_by(&task.id),
                    at_ms,
                });
                self.resolve_failure_routes(i, false);
                self.settle(i);
            }
            Outcome::Chose { branch, target } => {
                node.status = StepStatus::Succeeded;
                node.attempts = 1;
                node.chosen = Some(branch);
                node.output = Some(serde_json::Value::String(target.clone()));
                self.completed.push(i);
                let label = branch.map_or_else(
                    || "else".to_owned(),
                    |b| format!("when {}", task.branches[b].condition.text),
                );
                self.emit(Event::DecisionMade {
                    step: task.id.clone(),
                    branch: label,
                    target,
                    at_ms,
                });
                self.resolve_failure_routes(i, false);
                self.settle(i);
            }
            Outcome::Failed { error, attempts } => {
                node.status = StepStatus::Failed;
                node.attempts = attempts;
                node.error = Some(error.clone());
                self.emit(Event::StepFailed {
                    step: task.id.clone(),
                    attempts,
                    error,
                    spent: self.shared.cost.spent_by(&task.id),
                    at_ms,
                });
                self.after_failure(i);
            }
            Outcome::Gate(approval) => self.answer(i, approval),
            Outcome::Cancelled { attempts } => {
                node.status = StepStatus::Failed;
                node.attempts = attempts;
                node.error = Some("cancelled".to_owned());
                self.emit(Event::StepCancelled {
                    step: task.id.clone(),
                    attempts,
                    at_ms,
                });
            }
            Outcome::GateOpen if self.stopping => {}
            Outcome::GateOpen => {
                // The gate's `when:` held: open it now.
                if let Some(work) = self.open_gate(i) {
                    self.running += 1;
                    self.queue.push_back(work);
                }
            }
        }
    }

    fn cancel(&mut self, message: String, interrupted: bool) {
        tracing::info!(%message, "cancelling the run");
        self.shared.cancel.store(true, Ordering::SeqCst);
        self.stopping = true;
        self.failed |= !interrupted;
        self.interrupted |= interrupted;
        self.message.get_or_insert(message);
    }

    async fn finish(mut self, events: &Outbox, observe: &mut impl FnMut(&Event)) -> Report {
        // A fallback that never ran (say it also needs the step it stands in
        // for) leaves that step failed for good.
        // (A fallback that is ready but held back by a stepping caller will
        // still run when the run goes on.)
        let held: std::collections::HashSet<usize> = self.ready.iter().map(|&(_, i)| i).collect();
        let orphaned: Vec<usize> = self
            .awaiting
            .drain()
            .filter(|(fallback, _)| !held.contains(fallback))
            .flat_map(|(_, failed)| failed)
            .collect();
        for failed in orphaned {
            self.fail_for_good(failed);
        }
        if self.compensate {
            // Failed steps first (only their file edits are undone: their
            // bodies did not complete), then completed ones, newest first.
            let failed =
                (0..self.nodes.len()).filter(|&i| self.nodes[i].status == StepStatus::Failed);
            let completed = self
                .completed
                .iter()
                .rev()
                .copied()
                .filter(|&i| self.nodes[i].status == StepStatus::Succeeded);
            let order: Vec<(usize, bool)> = failed
                .map(|i| (i, false))
                .chain(completed.map(|i| (i, true)))
                .collect();
            for (i, completed) in order {
                let task = &self.plan.tasks[i];
                if task.step != StepKind::Task {
                    continue;
                }
                let edits = self
                    .shared
                    .journal
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .by_task
                    .contains_key(&task.id);
                if (task.compensate.is_none() || !completed) && !edits {
                    continue;
                }
                self.emit(Event::Compensating {
                    step: task.id.clone(),
                    at_ms: self.at_ms(),
                });
                let shared = Arc::clone(&self.shared);
                let engine = Arc::clone(&self.engines[i]);
                let output = self.nodes[i].output.clone().unwrap_or_default();
                let result = tokio::task::spawn_blocking(move || {
                    step::compensate(&shared, i, &engine, &output, completed)
                })
                .await
                .expect("compensation does not panic");
                match result {
                    Ok(()) => {
                        if completed {
                            self.nodes[i].status = StepStatus::Compensated;
                        }
                        self.emit(Event::Compensated {
                            step: self.plan.tasks[i].id.clone(),
                            at_ms: self.at_ms(),
                        });
                    }
                    Err(error) => {
                        let id = &self.plan.tasks[i].id;
                        let note = format!("; compensating `{id}` failed: {error}");
                        self.message.get_or_insert_with(String::new).push_str(&note);
                    }
                }
                events.drain(observe);
            }
        }
        events.drain(observe);
        let record_error = self.shared.record_error();
        if let Some(error) = record_error {
            self.failed = true;
            self.interrupted = false;
            self.message = Some(format!(
                "the run could not be recorded ({error}), so it was stopped"
            ));
        }
        let status = if self.interrupted {
            RunStatus::Interrupted
        } else if self.failed {
            RunStatus::Failed
        } else if !self.waiting_gates.is_empty() {
            let ids: Vec<String> = self
                .waiting_gates
                .iter()
                .map(|&g| format!("`{}`", self.plan.tasks[g].id))
                .collect();
            self.message = Some(format!("waiting for approval of {}", ids.join(", ")));
            RunStatus::Paused
        } else if !self.ready.is_empty() {
            // Held back by `start_limit` or `only`: the run goes on later.
            self.message = Some(format!("{} steps ready, held back", self.ready.len()));
            RunStatus::Paused
        } else {
            RunStatus::Succeeded
        };
        self.emit(Event::RunFinished {
            status,
            message: self.message.clone(),
            at_ms: self.at_ms(),
        });
        self.shared.sync();
        events.drain(observe);
        // The last commit may have failed too (a full disk stays full).
        let unrecorded = self.shared.record_error();
        let ready = self
            .ready
            .iter()
            .map(|&(_, i)| self.plan.tasks[i].id.clone())
            .collect();
        Report {
            status,
            message: self.message,
            unrecorded,
            ready,
            steps: self
                .plan
                .tasks
                .iter()
                .zip(self.nodes)
                .map(|(task, node)| StepReport {
                    id: task.id.clone(),
                    status: node.status,
                    attempts: node.attempts,
                    duration_ms: node.duration_ms,
                    error: node.error,
                    output: node.output,
                })
                .collect(),
            hypotheses: self
                .shared
                .hypotheses
                .report()
                .into_iter()
                .map(|(id, statement, tally)| super::HypothesisReport {
                    id,
                    statement,
                    confidence: tally.confidence(),
                    tally,
                })
                .collect(),
        }
    }
}

/// The plan's hypotheses, with the evidence a resumed run weighed before.
fn hypotheses(plan: &Plan, resume: Option<&super::Resume>) -> Hypotheses {
    let hypotheses = Hypotheses::new(
        plan.hypotheses
            .iter()
            .map(|h| (h.id.clone(), h.statement.clone()))
            .collect(),
    );
    for (id, verdict) in resume.map(|r| r.evidence.as_slice()).unwrap_or_default() {
        // Evidence for a hypothesis an edited plan dropped no longer counts.
        let _ = hypotheses.add(id, verdict);
    }
    hypotheses
}
