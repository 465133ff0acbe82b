//! The scheduler's driver: sets a run up, runs the steps the state machine
//! (`machine.rs`) asks for on worker threads, keeps time with the run's
//! [`Clock`], and reports.
//!
//! Every script runs on a worker thread, never the async runtime's; the
//! runtime's task only reports events and watches the time budget and the
//! caller's interrupter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rhai::{Dynamic, Map};

use super::events::Event;
use super::machine::{kept_outcome, Action, Finished, Halt, Machine, Now, Outcome, Policy};
use super::outbox::{Outbox, TICK};
use super::params::{eval_with_params, param_map, param_values};
use super::step::{self, Job, Shared};
use super::subplan::Nesting;
use super::{Approval, Approver, GateRequest, Options, Report, Resume};
use crate::clock::Clock;
use crate::error::Error;
use crate::script::context::{CostMeter, Hypotheses, Journal};
use crate::script::Sandbox;
use cairn_lang::plan::Plan;

/// Runs a checked plan to its end (or to a gate), reporting every event.
pub async fn run(
    plan: Arc<Plan>,
    options: Options,
    observe: impl FnMut(&Event),
) -> Result<Report, Error> {
    let registry = options.capabilities.clone().unwrap_or_default();
    let nesting = Nesting::top(&plan, &options, registry);
    run_inner(plan, options, nesting, None, observe).await
}

/// Runs the plan of a `plan:` task as a child run, with `params` as its
/// params (see `subplan.rs`).
pub(crate) async fn run_nested(
    plan: Arc<Plan>,
    options: Options,
    nesting: Nesting,
    params: Dynamic,
    observe: impl FnMut(&Event),
) -> Result<Report, Error> {
    run_inner(plan, options, nesting, Some(params), observe).await
}

async fn run_inner(
    plan: Arc<Plan>,
    mut options: Options,
    nesting: Nesting,
    given: Option<Dynamic>,
    mut observe: impl FnMut(&Event),
) -> Result<Report, Error> {
    if let Some(resume) = &mut options.resume {
        finally_again(&plan, resume);
    }
    let sandbox = Arc::clone(&nesting.sandbox);
    let registry = nesting.registry.clone();
    let (params, import_params) = evaluate_params(&plan, &options, &sandbox, given).await?;
    let clock: Arc<dyn Clock> = options
        .clock
        .clone()
        .unwrap_or_else(|| Arc::new(crate::clock::SystemClock::default()));
    let events = Arc::new(Outbox::default());
    let _closing = Closing(Arc::clone(&events));
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
        capabilities: Arc::new(registry.capabilities().clone()),
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
        started_ms: clock.monotonic_ms(),
        clock: Arc::clone(&clock),
        recorder: options.recorder.clone(),
        already: options.resume.clone(),
        record_error: Mutex::new(None),
        replay: options.replay.clone(),
        hypotheses: Arc::new(hypotheses(&plan, options.resume.as_deref())),
        nesting,
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
    let mut books = Books::new(
        Arc::clone(&plan),
        Arc::clone(&shared),
        &sandbox,
        options,
        max_parallel,
    );
    books.machine.begin(books.now());
    // A resumed run has spent some of its budget in earlier processes.
    let spent = shared.already.as_ref().map_or(0, |r| r.spent_ms);
    let budget = plan
        .budget
        .time_ms
        .map(|ms| Duration::from_millis(ms.saturating_sub(spent)));
    let phase = Phase {
        plan: &plan,
        max_parallel,
        budget,
        interrupter: interrupter.clone(),
    };
    let mut books = phase.drive(books, &events, &mut observe).await;
    books.compensate(&events, &mut observe).await;
    // Then the finally steps, whatever happened: what stopped the others
    // (a failure, Ctrl-C, the budget) does not stop them.
    if books.machine.ends() && books.machine.begin_finally(books.now()) {
        shared.cancel.store(false, Ordering::SeqCst);
        let phase = Phase {
            budget: None,
            // Already interrupted: a second Ctrl-C is the host's to handle.
            interrupter: interrupter.filter(|i| !i.is_interrupted()),
            ..phase
        };
        books = phase.drive(books, &events, &mut observe).await;
    }
    Ok(books.conclude(&events, &mut observe).await)
}

/// A resumed run that runs other steps again runs its finally steps again
/// at its end: they keep what they did only when nothing else runs now.
fn finally_again(plan: &Plan, resume: &mut Arc<Resume>) {
    let ids: std::collections::HashSet<&str> = plan
        .tasks
        .iter()
        .filter(|t| t.finally)
        .map(|t| t.id.as_str())
        .collect();
    if ids.is_empty() {
        return;
    }
    let finally = |id: &str| ids.contains(cairn_lang::plan::part_of(id).unwrap_or(id));
    let others_run = plan
        .tasks
        .iter()
        .any(|t| !t.finally && resume.settled(&t.id).is_none());
    if others_run {
        Arc::make_mut(resume).steps.retain(|id, _| !finally(id));
    }
}

/// One stretch of a run on the workers: its steps, then its finally steps.
struct Phase<'a> {
    plan: &'a Plan,
    max_parallel: usize,
    /// What is left of `budget: time`, if the plan has one.
    budget: Option<Duration>,
    interrupter: Option<super::Interrupter>,
}

impl Phase<'_> {
    /// Runs what the machine asks for until nothing more can run.
    async fn drive(
        &self,
        books: Books,
        events: &Arc<Outbox>,
        observe: &mut impl FnMut(&Event),
    ) -> Books {
        let cancel = Arc::clone(&books.shared.cancel);
        let pool = Arc::new(Pool {
            state: Mutex::new(books),
            wake: Condvar::new(),
        });
        // If this future is dropped before the run ends (a caller's timeout, a
        // `select!`), the workers go on without an observer: cancel them, and
        // let a gate waiting for the observer ask anyway.
        let abandoned = Abandoned {
            cancel,
            pool: Arc::downgrade(&pool),
        };
        drive(
            &pool,
            self.plan,
            self.max_parallel,
            self.budget,
            self.interrupter.clone(),
            events,
            observe,
        )
        .await;
        let books = Arc::try_unwrap(pool)
            .ok()
            .expect("the workers are done")
            .state
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        drop(abandoned);
        books
    }
}

/// Closes the run's outbox when dropped: at the end of [`run`], or when
/// its future is dropped half-way.
struct Closing(Arc<Outbox>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Cancels a phase's workers when dropped before they are done (the run's
/// future dropped half-way).
struct Abandoned {
    cancel: Arc<AtomicBool>,
    /// Gone once the run has finished with it.
    pool: std::sync::Weak<Pool>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            self.cancel.store(true, Ordering::SeqCst);
            pool.lock()
                .cancel("the run was dropped".to_owned(), Halt::Interrupt);
            pool.wake.notify_all();
        }
    }
}

/// What a worker does next.
enum Work {
    Step(Job),
    Gate(usize, GateRequest, Approver),
}

impl Work {
    /// Whether it may act outside the run: a step that declares a
    /// capability, or a person asked about a gate (who sees what ran).
    fn reaches_outside(&self, plan: &Plan) -> bool {
        match self {
            Work::Step(job) => !plan.tasks[job.task].using.is_empty(),
            Work::Gate(..) => true,
        }
    }
}

/// The scheduler's books, shared by its workers.
struct Pool {
    state: Mutex<Books>,
    /// Signalled whenever a step finishes or the run is cancelled.
    wake: Condvar,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Books> {
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
    budget: Option<Duration>,
    interrupter: Option<super::Interrupter>,
    events: &Outbox,
    observe: &mut impl FnMut(&Event),
) {
    let (granted, wanted) = {
        let state = pool.lock();
        (
            state.shared.nesting.workers,
            workers_for(plan, max_parallel),
        )
    };
    let workers = granted.map_or(wanted, |g| g.min(wanted)).max(1);
    let crew = Arc::clone(pool);
    let mut done = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let mut started = 0;
            for _ in 0..workers {
                // Deep values recurse inside Rhai (clone, drop, compare):
                // workers get the stack a step's script needs.
                let spawned = std::thread::Builder::new()
                    .name("cairn-worker".into())
                    .stack_size(step::SCRIPT_STACK)
                    .spawn_scoped(scope, || work(&crew));
                match spawned {
                    Ok(_) => started += 1,
                    // The system is out of threads: the run goes on with
                    // the workers it has, or stops if it has none.
                    Err(error) => {
                        tracing::warn!(%error, started, "cannot start a worker thread");
                        if started == 0 {
                            crew.lock().cancel(
                                format!("cannot start a worker thread: {error}"),
                                Halt::Failure,
                            );
                            crew.wake.notify_all();
                        }
                        break;
                    }
                }
            }
        });
    });
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
                pool.lock().cancel(format!("the time budget of {text} ran out; running steps were cancelled"), Halt::Failure);
                pool.wake.notify_all();
            }
            stop = &mut interrupted_from_outside, if !interrupted => {
                interrupted = true;
                let halt = if stop.for_good { Halt::Cancel } else { Halt::Interrupt };
                pool.lock().cancel(stop.reason, halt);
                pool.wake.notify_all();
            }
        }
    }
    events.drain(observe);
}

/// Threads for running steps; `max_parallel` above this still bounds how
/// many run, but no more than this many scripts run at once.
const MAX_WORKERS: usize = 256;

/// How many worker threads a run of `plan` at `max_parallel` starts.
pub(crate) fn workers_for(plan: &Plan, max_parallel: usize) -> usize {
    // A plan with `each:` has as many steps as its lists have elements.
    let steps = if plan.tasks.iter().any(|t| t.each.is_some()) {
        usize::MAX
    } else {
        plan.tasks.len()
    };
    max_parallel.min(steps).clamp(1, MAX_WORKERS)
}

/// One worker: take work, do it without the lock, record the outcome.
fn work(pool: &Pool) {
    let mut state = pool.lock();
    loop {
        // A gate whose timeout passed while steps ran is rejected now (its
        // failure route may start something), and every step that may
        // start, starts now (in order, whatever the threads are doing);
        // workers only pick the started steps up.
        state.tick();
        if state.machine.take_new_deadline() {
            // Workers asleep without a timeout wake to wait for it.
            pool.wake.notify_all();
        }
        if let Some(action) = state.machine.next_action() {
            if state.machine.has_actions() {
                pool.wake.notify_all();
            }
            let work = state.work(action);
            let shared = Arc::clone(&state.shared);
            drop(state);
            // Everything finished so far is committed before a step that
            // can reach outside the run starts (outside the lock: other
            // workers go on). A step that declares no capability changes
            // nothing but the run's record: if a crash loses its outcome,
            // resume runs it again, so its events wait for the next commit.
            let outside = work.reaches_outside(&shared.plan);
            if outside {
                shared.sync();
            }
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
                        .is_some_and(|at| shared.clock.unix_ms() >= unix_ms_of(at));
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
            state.finished(i, outcome);
            if outside {
                // Its outcome is committed before anything else starts
                // here: what reached outside must not run again because a
                // crash lost that it had (outside the lock, as above).
                drop(state);
                shared.sync();
                state = pool.lock();
            }
            // No wake-up here: this worker goes round again, starts what
            // became ready and wakes others only for work left over.
            continue;
        }
        if state.machine.running() == 0 && state.machine.nothing_ready() && state.unstick() {
            continue;
        }
        if state.machine.running() == 0 {
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

/// A `SystemTime` in milliseconds since 1970.
fn unix_ms_of(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
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
            error: crate::Failure::script(format!("internal error: the step panicked ({what})")),
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
    given: Option<Dynamic>,
) -> Result<(Dynamic, HashMap<String, Dynamic>), Error> {
    let plan = Arc::clone(plan);
    let engine = sandbox.engine(&[]);
    let overrides = options.params.clone();
    let limit = std::time::Duration::from_millis(plan.default_timeout_ms);
    tokio::task::spawn_blocking(move || {
        crate::script::context::within(limit, || {
            let main = match given {
                Some(params) => params,
                None => param_values(&plan, &overrides, &engine)?,
            };
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

/// The machine, and what the driver needs beside it to turn its actions
/// into work: the run's shared state and each task's engine.
struct Books {
    machine: Machine,
    shared: Arc<Shared>,
    /// The engine of each task's capability set, by plan task.
    engines: Vec<Arc<rhai::Engine>>,
    approver: Option<Approver>,
    /// Whether any gate has a `timeout:`: only then does the machine read
    /// the time of day (a system call the busiest loops can do without).
    timed_gates: bool,
}

impl Books {
    fn new(
        plan: Arc<Plan>,
        shared: Arc<Shared>,
        sandbox: &Sandbox,
        options: Options,
        max_parallel: usize,
    ) -> Self {
        let kept = match options.resume.as_deref() {
            Some(resume) => plan
                .tasks
                .iter()
                .map(|t| Some(kept_outcome(t, resume.settled(&t.id)?)))
                .collect(),
            None => Vec::new(),
        };
        let policy = Policy {
            max_parallel,
            approvals: options.approvals,
            can_ask: options.approver.is_some(),
            start_limit: options.start_limit,
            only: options.only,
            replayed: options.replay.as_ref().map(|r| Arc::clone(&r.settled)),
            gate_expiry: options
                .resume
                .as_ref()
                .map(|r| r.gate_expiry.clone())
                .unwrap_or_default(),
        };
        let engines = plan
            .tasks
            .iter()
            .map(|t| sandbox.engine(&t.using))
            .collect();
        let mut machine = Machine::new(plan, policy, kept);
        if let Some(resume) = options.resume.as_deref() {
            machine.keep_instances(kept_instances(&shared.plan, resume));
        }
        // Recorded and reported as they happen, in the lock, as before the
        // step that follows them starts.
        let reporter = Arc::clone(&shared);
        machine.report_to(Box::new(move |event| reporter.emit(event)));
        let timed_gates = plan_has_timed_gates(&shared.plan);
        Self {
            timed_gates,
            machine,
            shared,
            engines,
            approver: options.approver,
        }
    }

    fn now(&self) -> Now {
        Now {
            at_ms: self.shared.at_ms(),
            unix_ms: if self.timed_gates {
                self.shared.clock.unix_ms()
            } else {
                0
            },
        }
    }

    fn over_budget(&self) -> bool {
        self.shared.cost.exceeded.load(Ordering::SeqCst)
    }

    fn tick(&mut self) {
        let (now, over_budget) = (self.now(), self.over_budget());
        self.machine.tick(now, over_budget);
    }

    fn finished(&mut self, i: usize, outcome: Outcome) {
        let finished = Finished {
            spent: self.shared.cost.spent_by(self.machine.id(i)),
            over_budget: self.over_budget(),
        };
        let now = self.now();
        self.machine.finished(i, outcome, finished, now);
        if self.machine.take_abort() {
            // What runs is interrupted; the run stays failed, not cancelled.
            let message = self.machine.message().unwrap_or_default().to_owned();
            self.cancel(message, Halt::Failure);
        }
    }

    fn unstick(&mut self) -> bool {
        self.machine.unstick()
    }

    fn cancel(&mut self, message: String, halt: Halt) {
        self.shared.cancel.store(true, Ordering::SeqCst);
        self.machine.cancel(message, halt);
    }

    /// How long until the next waiting gate expires, if one has a timeout.
    fn until_a_gate_expires(&self) -> Option<Duration> {
        let next = self.machine.next_gate_expiry()?;
        Some(Duration::from_millis(
            next.saturating_sub(self.shared.clock.unix_ms()),
        ))
    }

    /// The work an action asks for, with what its code may read.
    fn work(&self, action: Action) -> Work {
        match action {
            Action::Run { node, failure } => {
                let mut outputs = Map::new();
                self.machine.visible_outputs(node, |id, output| {
                    let value = rhai::serde::to_dynamic(output).unwrap_or(Dynamic::UNIT);
                    outputs.insert(id.into(), value);
                });
                let task = self.machine.task_index(node);
                let run = self
                    .machine
                    .task(node)
                    .finally
                    .then(|| self.machine.summary());
                Work::Step(Job {
                    index: node,
                    task,
                    engine: Arc::clone(&self.engines[task]),
                    outputs,
                    failure,
                    run,
                    id: self.machine.id(node).to_owned(),
                    part: self.machine.part(node).cloned(),
                })
            }
            Action::Ask { node, expires_at } => {
                let task = self.machine.task(node);
                let request = GateRequest {
                    id: task.id.clone(),
                    title: task.title.clone(),
                    checks: task.checks().to_vec(),
                    cancelled: Arc::clone(&self.shared.cancel),
                    expires_at: expires_at
                        .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms)),
                    timeout_ms: task.timeout_ms,
                    input: match &task.step {
                        cairn_lang::plan::Step::Gate(gate) => gate.input.clone(),
                        _ => Vec::new(),
                    },
                };
                let ask = self
                    .approver
                    .clone()
                    .expect("a gate is asked about only with an approver");
                Work::Gate(node, request, ask)
            }
        }
    }

    /// Compensation, when the plan's failure asks for it.
    async fn compensate(&mut self, events: &Outbox, observe: &mut impl FnMut(&Event)) {
        let order = self.machine.wind_down();
        for (i, completed) in order {
            let task = self.machine.task(i);
            let id = self.machine.id(i).to_owned();
            let edits = self
                .shared
                .journal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .by_task
                .contains_key(&id);
            if (task.compensate.is_none() || !completed) && !edits {
                continue;
            }
            // Compensation acts outside: what ran is committed first.
            self.shared.sync();
            self.shared.emit(Event::Compensating {
                step: id.clone(),
                at_ms: self.shared.at_ms(),
            });
            let shared = Arc::clone(&self.shared);
            let index = self.machine.task_index(i);
            let step_id = id.clone();
            let engine = Arc::clone(&self.engines[index]);
            let output = self.machine.output(i).cloned().unwrap_or_default();
            let part = self.machine.part(i).cloned();
            let result = tokio::task::spawn_blocking(move || {
                let done = step::Done {
                    output: &output,
                    part,
                };
                step::compensate(&shared, index, &step_id, &engine, done, completed)
            })
            .await
            .expect("compensation does not panic");
            match result {
                Ok(()) => {
                    self.machine.compensated(i, completed);
                    self.shared.emit(Event::Compensated {
                        step: id,
                        at_ms: self.shared.at_ms(),
                    });
                }
                Err(error) => self
                    .machine
                    .note(&format!("; compensating `{id}` failed: {error}")),
            }
            events.drain(observe);
        }
        events.drain(observe);
    }

    /// The final event and the report.
    async fn conclude(mut self, events: &Outbox, observe: &mut impl FnMut(&Event)) -> Report {
        let now = self.now();
        let status = self.machine.conclude(self.shared.record_error(), now);
        self.shared.sync();
        events.drain(observe);
        // The last commit may have failed too (a full disk stays full).
        let unrecorded = self.shared.record_error();
        Report {
            status,
            message: self.machine.message().map(str::to_owned),
            unrecorded,
            ready: self.machine.held_back(),
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
            steps: self.machine.into_steps(),
        }
    }
}

/// The outcomes instances of `each:` and iterations of `repeat:` keep in a
/// resumed run, by id (`task[i]`, `task#n`), for the tasks that still fan
/// out or loop that way.
fn kept_instances(plan: &Plan, resume: &super::Resume) -> HashMap<String, Outcome> {
    use cairn_lang::plan::{Each, Repeat};
    let fanned: HashMap<&str, &cairn_lang::plan::Task> = plan
        .tasks
        .iter()
        .filter(|t| t.each.is_some() || t.repeat.is_some())
        .map(|t| (t.id.as_str(), t))
        .collect();
    if fanned.is_empty() {
        return HashMap::new();
    }
    let mut kept = HashMap::new();
    for (id, step) in &resume.steps {
        let Some(settled) = &step.settled else {
            continue;
        };
        let task = match (Each::parse_instance_id(id), Repeat::parse_iteration_id(id)) {
            (Some((task, _)), _) => fanned.get(task).filter(|t| t.each.is_some()),
            (_, Some((task, _))) => fanned.get(task).filter(|t| t.repeat.is_some()),
            _ => None,
        };
        let Some(task) = task else {
            continue;
        };
        kept.insert(id.to_string(), kept_outcome(task, settled));
    }
    kept
}

/// Whether a gate of the plan has a `timeout:`.
fn plan_has_timed_gates(plan: &Plan) -> bool {
    plan.tasks
        .iter()
        .any(|t| matches!(t.step, cairn_lang::plan::Step::Gate(_)) && t.timeout_ms.is_some())
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
