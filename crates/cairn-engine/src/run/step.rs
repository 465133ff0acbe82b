//! Running one step on a blocking thread: `when`, `input`, attempts with
//! retries and timeouts, `expect`, decisions and compensation bodies.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, Map, Scope};

use super::events::Event;
use super::machine::{Outcome, Part};
use crate::failure::{ErrorKind, Failure, Location};
use crate::script::context::{
    self, CostMeter, Hypotheses, Journal, Note, NoteSink, SplitMix64, StepContext, Tape,
};
use crate::script::MAX_OPERATIONS;
use cairn_lang::plan::{Decision, Grant, Plan, Script, Step, Task};

/// What every step of one run shares.
pub struct Shared {
    pub plan: Arc<Plan>,
    pub dir: PathBuf,
    /// Where kept command outputs go (the run store's `blobs/`).
    pub blobs: Option<Arc<std::path::Path>>,
    /// Where commands' process groups are recorded while they run.
    pub processes: Option<Arc<dyn context::ProcessLog>>,
    /// What each capability of the run provides.
    pub capabilities: Arc<cairn_lang::script::Capabilities>,
    /// Where file capabilities may reach, built once per run.
    pub confinement: Arc<crate::script::confine::Confinement>,
    pub grants: Arc<Vec<Grant>>,
    pub cancel: Arc<AtomicBool>,
    pub cost: Arc<CostMeter>,
    pub journal: Arc<Mutex<Journal>>,
    pub seed: u64,
    pub params: Dynamic,
    /// Each imported plan's params, by alias.
    pub import_params: std::collections::HashMap<String, Dynamic>,
    /// Each imported plan's `allow:` grants, by alias.
    pub import_grants: std::collections::HashMap<String, Arc<Vec<Grant>>>,
    /// Where events go to be observed.
    pub events: Arc<super::outbox::Outbox>,
    /// Called with every event before it is reported (the run store).
    pub recorder: Option<Arc<dyn super::Recorder>>,
    /// Settling events already in the log of a resumed run, by step: not recorded again.
    pub already: Option<Arc<super::Resume>>,
    /// The first error the recorder returned.
    pub record_error: Mutex<Option<String>>,
    /// The run's clock, and its monotonic reading when the run began.
    pub clock: Arc<dyn crate::clock::Clock>,
    pub started_ms: u64,
    /// The plan's hypotheses and the evidence weighed so far.
    pub hypotheses: Arc<Hypotheses>,
    /// In a replay: each (step, attempt)'s recorded calls, and the first divergence.
    pub replay: Option<super::Replay>,
    /// What `plan:` tasks pass down to their child runs.
    pub(crate) nesting: super::subplan::Nesting,
}

impl Shared {
    pub fn at_ms(&self) -> u64 {
        self.clock.monotonic_ms().saturating_sub(self.started_ms)
    }

    /// Records the event (durably, if a recorder is set) and reports it.
    /// A recorder that fails stops the run: what is not recorded could not
    /// be resumed.
    pub fn emit(&self, event: Event) {
        if let (Some(resume), Some(step)) = (&self.already, event.step()) {
            if event.settles() && resume.logged(step, event.kind()) {
                return;
            }
        }
        if let Some(Err(error)) = self.recorder.as_ref().map(|r| r.record(&event)) {
            self.recording_failed(error);
        }
        self.events.send(event);
    }

    /// Commits what was recorded so far, before a step with effects starts.
    pub fn sync(&self) {
        if let Some(Err(error)) = self.recorder.as_ref().map(|r| r.sync()) {
            self.recording_failed(error);
        }
    }

    /// Why recording failed, if it did.
    pub fn record_error(&self) -> Option<String> {
        self.record_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What is not recorded could not be resumed: the run stops.
    fn recording_failed(&self, error: String) {
        tracing::error!(%error, "recording failed; stopping the run");
        self.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        self.record_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(error);
    }

    /// Keeps the first divergence of a replay and returns the step's error.
    pub fn diverged(&self, divergence: context::Divergence) -> Failure {
        let message = format!("replay diverged: {divergence}");
        if let Some(replay) = &self.replay {
            replay
                .divergence
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(divergence);
        }
        Failure::script(message)
    }

    /// When an attempt of `task` starting now must end: its `timeout:`, or
    /// the plan's `default_timeout:` (every script has a wall-clock limit;
    /// the operations limit alone does not bound time).
    pub fn deadline(&self, task: &Task) -> Option<Instant> {
        let ms = task.timeout_ms.unwrap_or(self.plan.default_timeout_ms);
        Instant::now().checked_add(Duration::from_millis(ms))
    }

    /// A timeout says which limit, when it was the plan's default.
    fn explain_default_timeout(&self, error: Failure) -> Failure {
        if error.kind == ErrorKind::Timeout && error.message == TIMED_OUT {
            let message = format!(
                "timed out after {}, the plan's `default_timeout:` (give the task a `timeout:` to allow longer)",
                cairn_lang::units::human_ms(self.plan.default_timeout_ms)
            );
            error.reworded(message)
        } else {
            error
        }
    }

    /// A context for one attempt of a step (0: its compensation).
    pub fn context(
        self: &Arc<Self>,
        task: &Task,
        id: &str,
        attempt: u32,
        deadline: Option<Instant>,
        cancel: Arc<AtomicBool>,
    ) -> Arc<StepContext> {
        let salt = if attempt == 0 {
            "compensate".to_owned()
        } else {
            attempt.to_string()
        };
        let tape = match &self.replay {
            Some(replay) => Tape::Replay {
                calls: replay
                    .calls
                    .get(&(id.to_owned(), attempt))
                    .cloned()
                    .unwrap_or_default(),
                divergence: Arc::clone(&replay.divergence),
            },
            None if self.recorder.is_some() => Tape::Record,
            None => Tape::Off,
        };
        Arc::new(StepContext {
            clock: Arc::clone(&self.clock),
            task: id.to_owned(),
            dir: self.dir.clone(),
            confinement: Arc::clone(&self.confinement),
            output_limit: task.output_limit.unwrap_or(context::DEFAULT_OUTPUT_LIMIT),
            blobs: self.blobs.clone(),
            processes: self.processes.clone(),
            stored: Default::default(),
            logged: Default::default(),
            printed: Default::default(),
            grants: Arc::clone(
                task.import
                    .as_ref()
                    .and_then(|alias| self.import_grants.get(alias))
                    .unwrap_or(&self.grants),
            ),
            ceilings: Arc::clone(&self.nesting.ceilings),
            cancel,
            deadline,
            rng: Mutex::new(SplitMix64::new(
                self.seed ^ context::stable_hash(&[id, &salt]),
            )),
            cost: Arc::clone(&self.cost),
            journal: Arc::clone(&self.journal),
            on_note: Some(note_sink(self)),
            hypotheses: Arc::clone(&self.hypotheses),
            attempt,
            tape,
            calls: Default::default(),
            using: task.using.clone(),
            capabilities: Arc::clone(&self.capabilities),
            raised: Default::default(),
        })
    }
}

/// One step to run, with what its code may read.
pub struct Job {
    /// The scheduler's node.
    pub index: usize,
    /// The plan task it runs.
    pub task: usize,
    pub engine: Arc<Engine>,
    pub outputs: Map,
    /// For a fallback: the step that failed and its error.
    pub failure: Option<(String, Failure)>,
    /// For a `finally:` step: how the run went (`run` in its scope).
    pub run: Option<serde_json::Value>,
    /// The node's step id (`task[3]` for an instance of `each:`, `task#2`
    /// for an iteration of `repeat:`).
    pub id: String,
    /// Which part of its task it runs, if it runs one.
    pub part: Option<Part>,
}

/// The stack a step's code runs on. Rhai clones, compares, prints and drops
/// arrays and maps by recursion, a few hundred bytes a level, and its size
/// limits let a script nest about 110,000 levels (100,000 arrays and 10,000
/// maps in one value): a thread's default 2 MiB overflows at a few thousand,
/// which aborts the process. The memory is reserved, not used, until a
/// script goes that deep.
pub const SCRIPT_STACK: usize = 256 << 20;

/// Runs `f` on a stack of at least [`SCRIPT_STACK`]: on this thread if its
/// stack is that large (the scheduler's workers' are), else on a thread of
/// its own, waited for.
pub fn on_script_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if stack_size().is_some_and(|size| size >= SCRIPT_STACK) {
        return f();
    }
    let f = Mutex::new(Some(f));
    let take = || f.lock().unwrap_or_else(|e| e.into_inner()).take();
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("cairn-step".to_owned())
            .stack_size(SCRIPT_STACK)
            .spawn_scoped(scope, || take().map(|f| f()));
        match spawned.map(std::thread::ScopedJoinHandle::join) {
            Ok(Ok(Some(result))) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            // No thread (out of memory or threads): here, as before.
            Ok(Ok(None)) | Err(_) => take().expect("not taken by a thread that never ran")(),
        }
    })
}

/// The size of this thread's stack, where the platform says.
fn stack_size() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is
        // read, and destroyed once.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                return None;
            }
            let mut size = 0;
            let read = libc::pthread_attr_getstacksize(&attr, &mut size) == 0;
            libc::pthread_attr_destroy(&mut attr);
            read.then_some(size)
        }
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Runs one step, on a stack deep enough for any value its code can build.
pub fn run(shared: &Arc<Shared>, job: Job) -> Outcome {
    on_script_stack(|| run_here(shared, job))
}

fn run_here(shared: &Arc<Shared>, job: Job) -> Outcome {
    let task = &shared.plan.tasks[job.task];
    let id = job.id.as_str();
    let ctx = |attempt: u32, deadline: Option<Instant>| {
        shared.context(task, id, attempt, deadline, Arc::clone(&shared.cancel))
    };
    let scope = |attempt: u32, input: &Dynamic| base_scope(shared, &job, task, attempt, input);
    // `when:` and `input:` are evaluated once, before the first attempt.
    // They count against the first attempt's `timeout:` like the body does.
    // `retry: … total`: every attempt ends by then, and none starts after.
    let total_end = task
        .retry
        .total_ms
        .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
    let within_total = |deadline: Option<Instant>| match (deadline, total_end) {
        (Some(d), Some(t)) => Some(d.min(t)),
        (d, t) => d.or(t),
    };
    let first_deadline = within_total(shared.deadline(task));
    let first = ctx(1, first_deadline);
    // A part of a task (an instance, an iteration) runs after its task's
    // `when:` held.
    let when = task.when.as_deref().filter(|_| job.part.is_none());
    if let Some(when) = when {
        match context::enter(&first, || {
            truth(&job.engine, &mut scope(1, &Dynamic::UNIT), when)
        }) {
            Ok(true) => {}
            Ok(false) => return Outcome::Skipped(format!("`when: {}` is false", when.text)),
            Err(e) => return failed_or_cancelled(shared, e.within("when: "), 0),
        }
    }
    match &task.step {
        Step::Decision(decision) => return decide(shared, &job, task, decision, &first),
        Step::Gate(_) => return Outcome::GateOpen,
        Step::Task => {}
    }
    if let (Some(each), None) = (&task.each, &job.part) {
        return fan_out(shared, &job, task, each, &first);
    }
    if let (Some(_), None) = (&task.repeat, &job.part) {
        return Outcome::Looping;
    }
    // An iteration of a loop with `until` reads it over each result.
    let until = match &job.part {
        Some(Part::Iteration { .. }) => task.repeat.as_deref().and_then(|r| r.until.as_ref()),
        _ => None,
    };
    let mut input = Map::new();
    for (key, script) in &task.input {
        match context::enter(&first, || {
            eval(&job.engine, &mut scope(1, &Dynamic::UNIT), script)
        }) {
            Ok(value) => {
                input.insert(key.as_str().into(), value);
            }
            Err(e) => return failed_or_cancelled(shared, e.within(format!("input `{key}`: ")), 0),
        }
    }
    let input = Dynamic::from_map(input);
    let attempts = task.retry.count + 1;
    let mut rng = SplitMix64::new(shared.seed ^ context::stable_hash(&[id, "retry"]));
    for attempt in 1..=attempts {
        let deadline = if attempt == 1 {
            first_deadline
        } else {
            within_total(shared.deadline(task))
        };
        // The first attempt goes on with the context `when:` and `input:`
        // used, so its calls are numbered on from theirs.
        let step = if attempt == 1 {
            Arc::clone(&first)
        } else {
            ctx(attempt, deadline)
        };
        let caller = super::subplan::Caller {
            shared,
            engine: &job.engine,
            id,
            task_id: &task.id,
            attempt,
            timeout_ms: task.timeout_ms,
            grants: Arc::clone(&step.grants),
        };
        let mut result = context::enter(&step, || {
            attempt_once(&caller, &mut scope(attempt, &input), task, until)
        });
        if let Some(divergence) = step.unused_calls() {
            result = Err(shared.diverged(divergence));
        }
        // A replay does not wait between attempts: where `total` cut the
        // retries short, it follows the recording (whether it holds the
        // next attempt's calls) instead of the clock.
        let out_of_total = match &shared.replay {
            Some(replay) if total_end.is_some() => {
                !replay.calls.contains_key(&(id.to_owned(), attempt + 1))
            }
            _ => total_end.is_some_and(|t| Instant::now() >= t),
        };
        match result {
            Err(e) if e.kind == ErrorKind::Timeout && out_of_total => {
                result = Err(e.reworded(format!(
                    "timed out: `retry: … total {}` ran out in attempt {attempt}",
                    cairn_lang::units::human_ms(task.retry.total_ms.unwrap_or_default())
                )));
            }
            Err(e) if task.timeout_ms.is_none() => {
                result = Err(shared.explain_default_timeout(e));
            }
            _ => {}
        }
        match result {
            Ok(Attempted::Waiting(on)) => return Outcome::Waiting(on),
            Ok(Attempted::Passed(output, None)) => {
                return Outcome::Succeeded {
                    output,
                    attempts: attempt,
                }
            }
            Ok(Attempted::Passed(output, Some(converged))) => {
                return Outcome::Iterated {
                    output,
                    attempts: attempt,
                    converged,
                }
            }
            Err(error) => {
                if shared.cancel.load(std::sync::atomic::Ordering::SeqCst) {
                    return Outcome::Cancelled { attempts: attempt };
                }
                // Crossing the cost budget stops the plan: no retries.
                if attempt == attempts
                    || out_of_total
                    || shared
                        .cost
                        .exceeded
                        .load(std::sync::atomic::Ordering::SeqCst)
                {
                    return Outcome::Failed {
                        error,
                        attempts: attempt,
                    };
                }
                // `retry: … if`: a failure the predicate does not hold for
                // is final.
                if let Some(predicate) = &task.retry.predicate {
                    let mut scope = scope(attempt, &input);
                    scope.push_constant("error", Dynamic::from_map(error_map(&error)));
                    let deadline = within_total(shared.deadline(task));
                    let verdict = context::enter(&ctx(attempt, deadline), || {
                        truth(&job.engine, &mut scope, predicate)
                    });
                    match verdict {
                        Ok(true) => {}
                        Ok(false) => {
                            return Outcome::Failed {
                                error,
                                attempts: attempt,
                            }
                        }
                        Err(e) => {
                            let e = e.within(format_args!("retry if: "));
                            return failed_or_cancelled(shared, e, attempt);
                        }
                    }
                }
                let delay = backoff(task, attempt, &mut rng);
                // No attempt could start within `total`: the failure is final.
                if shared.replay.is_none() && total_end.is_some_and(|t| Instant::now() + delay >= t)
                {
                    return Outcome::Failed {
                        error,
                        attempts: attempt,
                    };
                }
                shared.emit(Event::AttemptFailed {
                    step: id.to_owned(),
                    attempt,
                    error: error.message,
                    kind: error.kind,
                    code: error.code,
                    at_ms: shared.at_ms(),
                });
                shared.emit(Event::Retrying {
                    step: id.to_owned(),
                    attempt: attempt + 1,
                    delay_ms: delay.as_millis() as u64,
                    at_ms: shared.at_ms(),
                });
                // The wait ends early if the run is cancelled.
                if context::enter(&ctx(attempt, None), || crate::script::pause(delay)).is_err() {
                    return Outcome::Cancelled { attempts: attempt };
                }
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// The delay before attempt `attempt + 1`: exponential, capped, plus up to
/// 10% jitter drawn from the run's seed.
pub fn backoff(task: &Task, attempt: u32, rng: &mut SplitMix64) -> Duration {
    let retry = &task.retry;
    let base = retry.backoff_ms as f64 * retry.factor.powi(attempt as i32 - 1);
    let capped = retry.max_ms.map_or(base, |max| base.min(max as f64));
    let jittered = capped * (1.0 + 0.1 * rng.next_f64());
    Duration::from_millis(jittered.min(u64::MAX as f64 / 2.0) as u64)
}

fn failed_or_cancelled(shared: &Shared, error: Failure, attempts: u32) -> Outcome {
    if shared.cancel.load(std::sync::atomic::Ordering::SeqCst) {
        Outcome::Cancelled { attempts }
    } else {
        Outcome::Failed { error, attempts }
    }
}

/// What an attempt that did not fail came to.
enum Attempted {
    /// Its output, and (for an iteration with `until`) whether `until` held.
    Passed(serde_json::Value, Option<bool>),
    /// Its child run waits at these gates.
    Waiting(Vec<String>),
}

/// The body (or the child run of `plan:`), then every expectation over its
/// result, then (for an iteration of `repeat:`) whether `until` holds over it.
fn attempt_once(
    caller: &super::subplan::Caller<'_>,
    scope: &mut Scope,
    task: &Task,
    until: Option<&Script>,
) -> Result<Attempted, Failure> {
    use super::subplan::Unfinished;
    let engine = caller.engine;
    let value = match (&task.run, &task.call) {
        (_, Some(call)) => match super::subplan::run(caller, scope, call) {
            Ok(value) => value,
            Err(Unfinished::Failed(error)) => return Err(error),
            Err(Unfinished::Waiting(on)) => return Ok(Attempted::Waiting(on)),
        },
        (Some(body), None) => eval(engine, scope, body)?,
        (None, None) => Dynamic::UNIT,
    };
    let depth = context::nesting(&value);
    if depth > context::MAX_NESTING {
        return Err(Failure::script(context::nesting_error("the output", depth)));
    }
    let output: serde_json::Value = rhai::serde::from_dynamic(&value)
        .map_err(|e| Failure::script(format!("the result cannot be stored as JSON: {e}")))?;
    scope.set_value("result", value);
    for expectation in &task.expect {
        if !truth(engine, scope, expectation)? {
            // The message quotes the criterion; the caret shows where it is.
            return Err(Failure {
                kind: ErrorKind::Expect,
                message: format!("expectation failed: `{}`", expectation.text),
                code: None,
                at: start_of(expectation),
            });
        }
    }
    let converged = match until {
        Some(until) => Some(truth(engine, scope, until).map_err(|e| e.within("until: "))?),
        None => None,
    };
    Ok(Attempted::Passed(output, converged))
}

fn decide(
    shared: &Shared,
    job: &Job,
    task: &Task,
    decision: &Decision,
    ctx: &Arc<StepContext>,
) -> Outcome {
    let mut scope = base_scope(shared, job, task, 1, &Dynamic::UNIT);
    for (index, branch) in decision.branches.iter().enumerate() {
        match context::enter(ctx, || truth(&job.engine, &mut scope, &branch.condition)) {
            Ok(true) => {
                return Outcome::Chose {
                    branch: Some(index),
                    target: branch.target.clone(),
                }
            }
            Ok(false) => {}
            Err(e) => {
                return failed_or_cancelled(
                    shared,
                    e.within(format!("`when {}`: ", branch.condition.text)),
                    1,
                )
            }
        }
    }
    match &decision.else_target {
        Some(target) => Outcome::Chose {
            branch: None,
            target: target.clone(),
        },
        None => Outcome::Failed {
            error: Failure::script("no branch condition held and the decision has no `else`"),
            attempts: 1,
        },
    }
}

/// Runs a step's `compensate:` body with `result` in scope, then restores
/// the files its `edit_file` / `write_file` calls changed.
pub fn compensate(
    shared: &Arc<Shared>,
    index: usize,
    id: &str,
    engine: &Arc<Engine>,
    done: Done<'_>,
    run_body: bool,
) -> Result<(), String> {
    on_script_stack(|| compensate_here(shared, index, id, engine, done, run_body))
}

/// What a step being undone did: its output, and the part of its task it
/// was (its `item`, `index` or `iteration` are in scope again).
pub struct Done<'a> {
    /// Its output.
    pub output: &'a serde_json::Value,
    /// The part of its task it ran, if it ran one.
    pub part: Option<Part>,
}

fn compensate_here(
    shared: &Arc<Shared>,
    index: usize,
    id: &str,
    engine: &Arc<Engine>,
    done: Done<'_>,
    run_body: bool,
) -> Result<(), String> {
    let Done { output, part } = done;
    let task = &shared.plan.tasks[index];
    let deadline = shared.deadline(task);
    let ctx = shared.context(task, id, 0, deadline, Arc::new(AtomicBool::new(false)));
    let job = Job {
        index,
        task: index,
        engine: Arc::clone(engine),
        outputs: Map::new(),
        failure: None,
        run: None,
        id: id.to_owned(),
        part,
    };
    // Files the step itself changed; what its compensation writes stays.
    let files = {
        let journal = shared.journal.lock().unwrap_or_else(|e| e.into_inner());
        journal.by_task.get(id).cloned().unwrap_or_default()
    };
    let mut scope = base_scope(shared, &job, task, 1, &Dynamic::UNIT);
    let result = rhai::serde::to_dynamic(output).unwrap_or(Dynamic::UNIT);
    scope.set_value("result", result);
    if let Some(body) = task.compensate.as_ref().filter(|_| run_body) {
        let _ = context::enter(&ctx, || eval(engine, &mut scope, body)).map_err(|e| e.message)?;
    }
    for file in files.iter().rev() {
        crate::script::files::restore(&ctx, file).map_err(|e| describe(&e))?;
    }
    Ok(())
}

/// What host functions report becomes events: log lines, recorded calls,
/// evidence, and artifacts (whose content the store keeps by hash; a replay
/// keeps none).
fn note_sink(shared: &Arc<Shared>) -> NoteSink {
    let shared = Arc::clone(shared);
    Arc::new(move |step: &str, note: Note<'_>| {
        let step = step.to_owned();
        let at_ms = shared.at_ms();
        let event = match note {
            Note::Log(line) => Event::Log {
                step,
                line: line.to_owned(),
                stream: None,
                at_ms,
            },
            Note::Output(stream, line) => Event::Log {
                step,
                line: line.to_owned(),
                stream: Some(stream),
                at_ms,
            },
            Note::Call {
                attempt,
                number,
                call,
            } => Event::Call {
                step,
                attempt,
                call: number,
                record: call.clone(),
                at_ms,
            },
            Note::Evidence(evidence) => Event::Evidence {
                step,
                hypothesis: evidence.hypothesis.clone(),
                verdict: evidence.verdict.clone(),
                note: evidence.note.clone(),
                confidence: evidence.confidence,
                at_ms,
            },
            Note::Artifact(_) | Note::Original { .. } if shared.replay.is_some() => return,
            Note::Original { path, content } => {
                shared.emit(Event::FileOriginal {
                    step,
                    path: path.to_string_lossy().into_owned(),
                    sha256: content.map(cairn_lang::source::sha256),
                    content: content.map(|c| Arc::new(c.to_vec())),
                    at_ms,
                });
                // Durable before the file changes.
                shared.sync();
                return;
            }
            Note::Artifact(artifact) => Event::Artifact {
                step,
                name: artifact.name.clone(),
                sha256: artifact.sha256.clone(),
                bytes: artifact.content.len(),
                content: artifact.content.clone(),
                at_ms,
            },
        };
        shared.emit(event);
    })
}

fn base_scope(
    shared: &Shared,
    job: &Job,
    task: &Task,
    attempt: u32,
    input: &Dynamic,
) -> Scope<'static> {
    let mut scope = Scope::new();
    let mut info = Map::new();
    info.insert("id".into(), job.id.clone().into());
    info.insert("title".into(), task.title.clone().into());
    info.insert(
        "kind".into(),
        task.kind.clone().map_or(Dynamic::UNIT, Into::into),
    );
    info.insert("attempt".into(), i64::from(attempt).into());
    let failure = match &job.failure {
        Some((id, error)) => {
            let mut map = error_map(error);
            map.insert("id".into(), id.clone().into());
            map.insert("error".into(), error.message.clone().into());
            Dynamic::from_map(map)
        }
        None => Dynamic::UNIT,
    };
    scope
        .push_dynamic("input", input.clone())
        .push_dynamic(
            "params",
            task.import
                .as_ref()
                .and_then(|alias| shared.import_params.get(alias))
                .unwrap_or(&shared.params)
                .clone(),
        )
        .push_dynamic("outputs", Dynamic::from_map(job.outputs.clone()))
        .push_dynamic("task", Dynamic::from_map(info))
        .push_dynamic("result", Dynamic::UNIT)
        .push_dynamic("failure", failure)
        .push_dynamic(
            "run",
            job.run.as_ref().map_or(Dynamic::UNIT, |r| {
                rhai::serde::to_dynamic(r).unwrap_or(Dynamic::UNIT)
            }),
        );
    let (index, item, iteration) = match &job.part {
        Some(Part::Element { index, item }) => (
            Dynamic::from(*index as i64),
            rhai::serde::to_dynamic(item).unwrap_or(Dynamic::UNIT),
            Dynamic::UNIT,
        ),
        Some(Part::Iteration { number, previous }) => {
            let mut map = Map::new();
            map.insert("index".into(), Dynamic::from(i64::from(*number)));
            let previous = match previous {
                serde_json::Value::Null => Dynamic::UNIT,
                value => rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT),
            };
            map.insert("previous".into(), previous);
            (Dynamic::UNIT, Dynamic::UNIT, Dynamic::from_map(map))
        }
        None => (Dynamic::UNIT, Dynamic::UNIT, Dynamic::UNIT),
    };
    scope
        .push_dynamic("item", item)
        .push_dynamic("index", index)
        .push_dynamic("iteration", iteration);
    scope
}

/// A Rhai type name as a plan author knows it.
fn friendly(type_name: &str) -> &str {
    match type_name {
        "string" | "ImmutableString" => "a string",
        "i64" | "f64" => "a number",
        "bool" => "true or false",
        "map" => "a map",
        "()" => "`()`",
        other => other,
    }
}

/// Evaluates a task's `each:`: its elements, for the instances to run.
fn fan_out(
    shared: &Shared,
    job: &Job,
    task: &Task,
    each: &cairn_lang::plan::Each,
    ctx: &Arc<StepContext>,
) -> Outcome {
    let mut scope = base_scope(shared, job, task, 1, &Dynamic::UNIT);
    let value = match context::enter(ctx, || eval(&job.engine, &mut scope, &each.over)) {
        Ok(value) => value,
        Err(e) => return failed_or_cancelled(shared, e.within("each: "), 0),
    };
    let type_name = value.type_name();
    let most = cairn_lang::script::MAX_ARRAY_SIZE as i64;
    // `range(0, n)` is a fan-out of n, bounded as an array would be.
    let range = if let Some(range) = value.read_lock::<std::ops::Range<i64>>() {
        Some(range.clone())
    } else {
        value
            .read_lock::<std::ops::RangeInclusive<i64>>()
            .map(|r| *r.start()..r.end().saturating_add(1))
    };
    let elements: rhai::Array = match range {
        Some(range) if range.end.saturating_sub(range.start) > most => {
            return Outcome::Failed {
                error: Failure::script(format!(
                    "each: `{}` has more than the {most} elements an array may hold",
                    each.over.text
                )),
                attempts: 0,
            }
        }
        Some(range) => range.map(Dynamic::from).collect(),
        None => match value.into_array() {
            Ok(elements) => elements,
            Err(_) => {
                return Outcome::Failed {
                    error: Failure::script(format!(
                        "each: `{}` is {}, not an array",
                        each.over.text,
                        friendly(type_name)
                    )),
                    attempts: 0,
                }
            }
        },
    };
    let mut items = Vec::with_capacity(elements.len());
    for (index, element) in elements.iter().enumerate() {
        let depth = context::nesting(element);
        if depth > context::MAX_NESTING {
            return Outcome::Failed {
                error: Failure::script(format!(
                    "each: element {index}: {}",
                    context::nesting_error("the element", depth)
                )),
                attempts: 0,
            };
        }
        match rhai::serde::from_dynamic::<serde_json::Value>(element) {
            Ok(item) => items.push(item),
            Err(e) => {
                return Outcome::Failed {
                    error: Failure::script(format!(
                        "each: element {index} cannot be stored as JSON: {e}"
                    )),
                    attempts: 0,
                }
            }
        }
    }
    Outcome::FannedOut(items)
}

pub(super) fn eval(
    engine: &Engine,
    scope: &mut Scope,
    script: &Script,
) -> Result<Dynamic, Failure> {
    let ast = script.ast.as_ref().ok_or_else(|| {
        Failure::script("the plan was not compiled (load it through cairn::check)")
    })?;
    engine
        .eval_ast_with_scope::<Dynamic>(scope, ast)
        .map_err(|e| failure_of(script, &e))
}

/// What an error of `script`'s code means: its kind (a host function's,
/// a timeout, the budget, or the code's own), its words, and, for the
/// errors of the code itself (a wrong type, an unknown function or
/// variable), where it is in the plan file.
/// A failure as plan code sees it: `#{ kind, message, code }` (`code` is
/// `()` unless a command exited non-zero).
fn error_map(failure: &Failure) -> Map {
    let mut map = Map::new();
    map.insert("kind".into(), failure.kind.word().into());
    map.insert("message".into(), failure.message.clone().into());
    map.insert(
        "code".into(),
        failure.code.map_or(Dynamic::UNIT, Dynamic::from),
    );
    map
}

fn failure_of(script: &Script, error: &EvalAltResult) -> Failure {
    let mut inner = error;
    while let EvalAltResult::ErrorInFunctionCall(_, _, next, _) = inner {
        inner = next;
    }
    let ctx = context::try_current();
    let mut code = None;
    let kind = match inner {
        EvalAltResult::ErrorTerminated(token, _) => match token.to_string().as_str() {
            "TimedOut" => ErrorKind::Timeout,
            "Cancelled" => ErrorKind::Cancelled,
            // What `spend` ends a script with when it crosses the budget.
            words if words.starts_with("cost budget of ") => ErrorKind::Budget,
            _ => ErrorKind::Script,
        },
        EvalAltResult::ErrorRuntime(value, _) => {
            match ctx.as_ref().and_then(|c| c.raised_as(&value.to_string())) {
                Some(raised) => {
                    code = raised.code;
                    raised.kind
                }
                None => ErrorKind::Script,
            }
        }
        EvalAltResult::ErrorFunctionNotFound(signature, _) => {
            let name = signature.split([' ', '(']).next().unwrap_or(signature);
            let declared = ctx.as_ref().is_some_and(|ctx| {
                capability_of(name).is_some_and(|capability| ctx.using.contains(&capability))
            });
            if capability_of(name).is_some() && !declared {
                ErrorKind::Capability
            } else {
                ErrorKind::Script
            }
        }
        _ => ErrorKind::Script,
    };
    let message = describe_in(error);
    // A timeout is nowhere in the code. A message the plan or a host
    // function wrote (`fail`, `throw`, a refused path) says what it means
    // without a place in front; the caret still shows the call.
    let at = match inner {
        EvalAltResult::ErrorTerminated(..) => None,
        _ => in_file(script, error.position()),
    };
    let message = match inner {
        EvalAltResult::ErrorRuntime(..) => message,
        _ => located(at, message),
    };
    Failure {
        kind,
        message,
        code,
        at,
    }
}

/// Where a position in `script`'s text is in the plan file, when Rhai
/// knows it and the script does.
fn in_file(script: &Script, position: rhai::Position) -> Option<Location> {
    match (position.line(), position.position(), script.line) {
        (Some(line), Some(column), first) if first > 0 => Some(Location {
            line: first + line as u32 - 1,
            column: script.column + column as u32 - 1,
        }),
        _ => None,
    }
}

/// Where `script` begins in the plan file, if it knows.
fn start_of(script: &Script) -> Option<Location> {
    (script.line > 0).then_some(Location {
        line: script.line,
        column: script.column,
    })
}

/// `message` after where it happened (`line 6, column 7: …`), if known.
fn located(at: Option<Location>, message: String) -> String {
    match at {
        Some(Location { line, column }) => format!("line {line}, column {column}: {message}"),
        None => message,
    }
}

fn truth(engine: &Engine, scope: &mut Scope, script: &Script) -> Result<bool, Failure> {
    let value = eval(engine, scope, script)?;
    value
        .as_bool()
        .map_err(|kind| Failure::script(format!("`{}` is {kind}, not true or false", script.text)))
}

/// [`describe`], telling a call with the wrong argument types apart from a
/// call to a capability the running step did not declare.
fn describe_in(error: &EvalAltResult) -> String {
    let mut inner = error;
    while let EvalAltResult::ErrorInFunctionCall(_, _, next, _) = inner {
        inner = next;
    }
    if let EvalAltResult::ErrorFunctionNotFound(signature, _) = inner {
        let name = signature.split([' ', '(']).next().unwrap_or(signature);
        let declared = context::try_current().is_some_and(|ctx| {
            capability_of(name).is_some_and(|capability| ctx.using.contains(&capability))
        });
        if declared {
            let args = plain_types(signature.trim_start_matches(name).trim());
            return format!("`{name}` cannot take {args}: check the arguments' types");
        }
    }
    describe(error)
}

/// What a timed-out script or command says.
const TIMED_OUT: &str = "timed out";

/// A script error in words a plan author can act on.
pub fn describe(error: &EvalAltResult) -> String {
    match error {
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        EvalAltResult::ErrorTerminated(token, _) => match token.to_string().as_str() {
            "TimedOut" => TIMED_OUT.to_owned(),
            "Cancelled" => "cancelled".to_owned(),
            other => other.to_owned(),
        },
        EvalAltResult::ErrorTooManyOperations(_) => {
            format!("stopped after {MAX_OPERATIONS} operations (an endless loop?)")
        }
        EvalAltResult::ErrorFunctionNotFound(signature, _) => {
            let name = signature.split([' ', '(']).next().unwrap_or(signature);
            match capability_of(name) {
                Some(capability) => format!(
                    "`{name}` is not available: the task does not declare `using:{capability}`"
                ),
                None => {
                    let args = signature.trim_start_matches(name).trim();
                    format!("no function `{name}` takes {}", plain_types(args))
                }
            }
        }
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => describe(inner),
        other => plain_types(&other.to_string()),
    }
}

/// Rhai's names for types as a plan author knows them: `string`, `int`,
/// `float`, `map`, `array` (not `&str | ImmutableString | String`, `i64`).
pub fn plain_types(text: &str) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("&str | ImmutableString | String", "string"),
        ("ImmutableString", "string"),
        ("&str", "string"),
        ("rhai::Map", "map"),
        ("rhai::Array", "array"),
        ("rhai::FnPtr", "function"),
        ("i64", "int"),
        ("f64", "float"),
    ];
    NAMES.iter().fold(text.to_owned(), |text, (rhai, plain)| {
        text.replace(rhai, plain)
    })
}

/// The capability of the running step's run that provides `function`.
fn capability_of(function: &str) -> Option<String> {
    let ctx = context::try_current()?;
    let capability = ctx.capabilities.providing(function)?;
    Some(capability.name.clone())
}
