//! `cairn run`: check a plan, run it, show progress and a summary table.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::report;
use crate::error::Error;
use cairn_engine::run::{
    self, Approval, Event, GateRequest, Options, Report, RunStatus, StepStatus,
};
use cairn_store::{Durability, RunProcesses, RunRecorder, Store};

/// What `cairn run` was asked to do.
pub struct Args {
    pub file: PathBuf,
    pub set: Vec<String>,
    pub max_parallel: Option<usize>,
    pub seed: Option<u64>,
    pub approve: Vec<String>,
    pub events: Option<String>,
    pub dry_run: bool,
    /// Where the run store lives.
    pub state_dir: PathBuf,
    /// What each commit promises.
    pub durability: Durability,
}

/// Runs the plan and returns the exit code for how it ended.
pub fn run(args: Args) -> Result<i32, Error> {
    let (source, plan) = report::load(&args.file)?;
    let params = set_params(&args.set)?;
    run::check_approvals(&plan, &args.approve)?;
    if args.dry_run {
        run::check_params(&plan, &params)?;
        let width = args.max_parallel.unwrap_or(plan.max_parallel);
        let registry = cairn_engine::stdlib::registry();
        print!("{}", run::explain(&plan, width, registry.capabilities()));
        return Ok(0);
    }
    run::check_params(&plan, &params)?;
    // Every run is recorded: what ran is committed before any step that
    // can reach outside starts (docs/durable.md, "What a commit promises").
    let store = Arc::new(Store::open(&args.state_dir, args.durability)?);
    let seed = args.seed.or(plan.seed).unwrap_or(0);
    let run_id = store.begin(&plan, source.name(), source.text(), &params, seed)?;
    let session = Session {
        store,
        run_id,
        state_dir: args.state_dir,
        events: args.events,
        json: false,
        claim: None,
        retrying: false,
        source,
    };
    let options = Options {
        params,
        max_parallel: args.max_parallel,
        seed: args.seed,
        approvals: args.approve,
        dir: plan_dir(&args.file),
        ..Options::default()
    };
    session.execute(plan, options)
}

/// `--set name=value` pairs, as given (read against the plan's params later).
pub fn set_params(set: &[String]) -> Result<Vec<(String, String)>, Error> {
    set.iter()
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("`--set {pair}`: expected `name=value`")))?;
            Ok((name.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

/// The directory `sh` runs in and paths resolve against: the plan file's.
pub fn plan_dir(file: &Path) -> PathBuf {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// A recorded run about to execute (`cairn run` or `cairn resume`).
pub struct Session {
    pub store: Arc<Store>,
    pub run_id: String,
    pub state_dir: PathBuf,
    /// `--events`: where JSON lines go.
    pub events: Option<String>,
    /// `--json`: how the run ended, as one JSON object on stdout.
    pub json: bool,
    /// The run's claim, if the caller already holds it (`resume` does, from
    /// before it reads the log until the run stops).
    pub claim: Option<cairn_store::RunClaim>,
    /// `cairn retry`: a child run that failed or was cancelled is retried too.
    pub retrying: bool,
    /// The plan's text, to show where failed steps went wrong.
    pub source: Arc<cairn_lang::source::Source>,
}

impl Session {
    /// Runs the plan with its progress shown and every event recorded, then
    /// prints the summary and, at a gate, how to go on. Returns the exit code.
    pub fn execute(
        mut self,
        plan: cairn_lang::plan::Plan,
        mut options: Options,
    ) -> Result<i32, Error> {
        options
            .state_dir
            .get_or_insert_with(|| self.state_dir.clone());
        let _claim = match self.claim.take() {
            Some(claim) => claim,
            None => self.store.claim(&self.run_id)?,
        };
        let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        // On a terminal a live line shows what runs; elsewhere, plain lines only.
        let to_stderr = self.events.as_deref() == Some("-") || self.json;
        // `-q`: no progress at all, live or in lines.
        let quiet = super::style::quiet();
        let mut live = (!quiet && !to_stderr && std::io::stdout().is_terminal())
            .then(|| Live::new(plan.tasks.len()));
        let bar = live.as_ref().map(|l| l.bar.clone());
        let approver = move |request: &GateRequest| match &bar {
            // The question must not be drawn over by the live line.
            Some(bar) => bar.suspend(|| ask(request)),
            None => ask(request),
        };
        options.recorder = Some(Arc::new(RunRecorder {
            store: Arc::clone(&self.store),
            run: self.run_id.clone(),
        }));
        let processes = Arc::new(RunProcesses::new(
            Arc::clone(&self.store),
            self.run_id.clone(),
        ));
        // Each command's process group is in the store while it runs.
        options.processes = Some(Arc::clone(&processes) as Arc<dyn run::ProcessLog>);
        options.approver = interactive.then(|| Arc::new(approver) as run::Approver);
        // A `plan:` step's child run is kept beside this one, linked to it.
        let (store, run) = (Arc::clone(&self.store), self.run_id.clone());
        options.children = Some(Arc::new(if self.retrying {
            cairn_store::ChildRunsOf::retrying(store, run)
        } else {
            cairn_store::ChildRunsOf::new(store, run)
        }));
        // With `--events -` the JSON lines own stdout and progress goes to stderr.
        let mut events_out: Option<Box<dyn Write>> = match self.events.as_deref() {
            None => None,
            Some("-") => Some(Box::new(std::io::stdout())),
            Some(path) => Some(Box::new(std::fs::File::create(path).map_err(|source| {
                Error::Create {
                    path: path.to_owned(),
                    source,
                }
            })?)),
        };
        let mut progress: Box<dyn Write> = if to_stderr {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Usage(format!("cannot start the runtime: {e}")))?;
        let plan = Arc::new(plan);
        let (interrupter, _listening) = super::signals::interrupter(&runtime, true);
        let _watching = CancelWatch::start(&self.store, &self.run_id, interrupter.clone());
        options.interrupter = Some(interrupter);
        let mut write_failed = None;
        let engine = cairn_engine::stdlib::engine();
        let run_id = self.run_id.clone();
        let report = runtime.block_on(engine.run(Arc::clone(&plan), options, |event| {
            if let Some(out) = events_out.as_mut() {
                let line = match event {
                    // The run's start says which run it is.
                    Event::RunStarted { .. } | Event::RunResumed { .. } => {
                        let mut value = serde_json::to_value(event).expect("events serialize");
                        value["run"] = serde_json::Value::String(run_id.clone());
                        value.to_string()
                    }
                    _ => serde_json::to_string(event).expect("events serialize"),
                };
                if let Err(e) = writeln!(out, "{line}") {
                    write_failed.get_or_insert(e);
                }
            }
            let line = describe(event);
            match live.as_mut() {
                Some(live) => live.update(event, line.as_deref()),
                None => {
                    if let Some(line) = line.filter(|_| !quiet) {
                        let _ = writeln!(progress, "{line}");
                    }
                }
            }
        }));
        // Every command has ended: none of their rows is left.
        processes.flush();
        let report = report?;
        if let Some(live) = live.take() {
            live.bar.finish_and_clear();
        }
        if let Some(e) = write_failed {
            return Err(Error::Output(e));
        }
        if let Some(out) = events_out.as_mut() {
            out.flush().map_err(Error::Output)?;
        }
        let id = &self.run_id;
        if self.json {
            let steps: Vec<serde_json::Value> = report
                .steps
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "step": s.id,
                        "status": s.status.word(s.error.as_ref().map(|e| e.kind)),
                        "attempts": s.attempts,
                        "error": s.error.as_ref().map(|e| &e.message),
                        "error_kind": s.error.as_ref().map(|e| e.kind),
                    })
                })
                .collect();
            let value = serde_json::json!({
                "run": self.run_id,
                "status": report.status.word(),
                "message": report.message,
                "steps": steps,
            });
            println!("{value}");
        }
        // Quiet, a success needs no table.
        if quiet && report.status == RunStatus::Succeeded {
            let _ = writeln!(progress, "run succeeded");
        } else {
            // Where steps went wrong first, then the table, as a compiler
            // shows its errors before the count.
            let failures = super::failures::render(&self.source, &plan, &report);
            let _ = write!(progress, "{}{}", failures, summary(&report));
        }
        let db = self.state_dir.join("state.db");
        match &report.unrecorded {
            None => {
                let _ = writeln!(progress, "run {id} is recorded in {}", db.display());
            }
            Some(error) => {
                let _ = writeln!(
                    progress,
                    "run {id} is not recorded in full ({error}): {} keeps it up to its last commit, from which `cairn resume {id}` goes on once the store can be written",
                    db.display()
                );
                super::leak_until_exit(report);
                super::leak_until_exit(plan);
                return Ok(1);
            }
        }
        let state = if self.state_dir == Path::new(".cairn") {
            String::new()
        } else {
            format!(" --state-dir {}", self.state_dir.display())
        };
        match report.status {
            RunStatus::Paused => {
                // Gates of child runs by the names `approve` takes.
                let waiting = cairn_store::services::waiting_gates(&self.store, id, "")
                    .map_err(Error::from)?;
                for gate in waiting {
                    let g = &gate.name;
                    let _ = writeln!(
                        progress,
                        "gate `{g}` waits: cairn{state} approve {id} {g} --reason \"…\"  (or reject), then cairn{state} resume {id}"
                    );
                }
            }
            RunStatus::Interrupted => {
                let _ = writeln!(progress, "to continue: cairn{state} resume {id}");
            }
            RunStatus::Cancelled => {
                // Its children were interrupted with it; they are over too.
                let reason = self.store.cancel_requested(id)?.unwrap_or_default();
                cairn_store::services::cancel_children(&self.store, id, &reason)
                    .map_err(Error::from)?;
            }
            _ => {}
        }
        let code = super::signals::exit_code(report.status);
        super::leak_until_exit(report);
        super::leak_until_exit(plan);
        Ok(code)
    }
}

/// Watches the store for `cairn cancel` of the run, from a thread of its
/// own (a store read must not block the async runtime), and cancels the run
/// through its interrupter. Stops when dropped.
struct CancelWatch {
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl CancelWatch {
    /// How often the store is asked.
    const EVERY: std::time::Duration = std::time::Duration::from_millis(250);

    fn start(store: &Arc<Store>, run: &str, interrupter: run::Interrupter) -> Self {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (store, run, stop) = (Arc::clone(store), run.to_owned(), Arc::clone(&done));
        let watching = std::thread::Builder::new()
            .name("cairn-cancel-watch".into())
            .spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok(Some(reason)) = store.cancel_requested(&run) {
                        interrupter.cancel(reason);
                        return;
                    }
                    std::thread::sleep(Self::EVERY);
                }
            });
        if let Err(error) = watching {
            tracing::warn!(%error, "cannot watch for `cairn cancel`");
        }
        Self { done }
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The live view on a terminal: done / total, what runs, elapsed time.
struct Live {
    bar: indicatif::ProgressBar,
    running: Vec<String>,
}

impl Live {
    fn new(total: usize) -> Self {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} done  {elapsed}  {wide_msg}",
            )
            .expect("a valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Self {
            bar,
            running: Vec::new(),
        }
    }

    fn update(&mut self, event: &Event, line: Option<&str>) {
        if let Some(line) = line {
            self.bar.println(line);
        }
        match event {
            Event::RunResumed { kept, .. } => self.bar.inc(*kept as u64),
            Event::StepStarted { step, .. } => self.running.push(step.clone()),
            Event::StepSucceeded { step, .. }
            | Event::StepFailed { step, .. }
            | Event::StepCancelled { step, .. }
            | Event::StepSkipped { step, .. }
            | Event::DecisionMade { step, .. }
            | Event::GateApproved { step, .. }
            | Event::GateRejected { step, .. }
            | Event::GateWaiting { step, .. }
            | Event::StepWaiting { step, .. } => {
                self.running.retain(|r| r != step);
                self.bar.inc(1);
            }
            _ => {}
        }
        self.bar.set_message(if self.running.is_empty() {
            String::new()
        } else {
            format!("running: {}", self.running.join(", "))
        });
    }
}

/// One progress line per event that matters to a person.
pub fn describe(event: &Event) -> Option<String> {
    let line = match event {
        Event::RunStarted {
            plan,
            steps,
            max_parallel,
            seed,
        } => {
            let noun = if *steps == 1 { "step" } else { "steps" };
            format!("running `{plan}`: {steps} {noun}, max_parallel {max_parallel}, seed {seed}")
        }
        Event::RunResumed { kept, invalidated } => {
            let mut line = format!("resuming: {kept} steps keep their recorded outcome");
            if !invalidated.is_empty() {
                line.push_str(&format!("; running again: {}", invalidated.join(", ")));
            }
            line
        }
        Event::StepStarted { step, .. } => format!("  start     {step}"),
        Event::StepFannedOut { step, items, .. } => {
            let noun = if items.len() == 1 {
                "instance"
            } else {
                "instances"
            };
            format!("  each      {step}: {} {noun}", items.len())
        }
        Event::StepLooping { step, max, .. } => {
            format!("  repeat    {step}: at most {max} iterations")
        }
        Event::SubPlanStarted {
            step, run, plan, ..
        } if run.is_empty() => {
            format!("  plan      {step}: runs `{plan}`")
        }
        Event::SubPlanStarted {
            step, run, plan, ..
        } => {
            format!("  plan      {step}: runs `{plan}` as run {run}")
        }
        Event::StepWaiting { step, on, .. } => {
            format!("  waiting   {step}: on {}", on.join(", "))
        }
        Event::StepCancelled { step, .. } => format!("  cancelled {step}"),
        Event::StepReset { step, reason, .. } => format!("  reset     {step}: {reason}"),
        Event::Call { .. } | Event::RunInputs { .. } | Event::FileOriginal { .. } => return None,
        Event::Evidence {
            step,
            hypothesis,
            verdict,
            note,
            confidence,
            ..
        } => format!(
            "  evidence  {step}: {verdict} {hypothesis} ({note}); confidence {confidence:.2}"
        ),
        Event::Artifact {
            step,
            name,
            sha256,
            bytes,
            ..
        } => format!(
            "  artifact  {step}: {name} ({bytes} bytes, sha256 {})",
            &sha256[..12]
        ),
        Event::StepSucceeded {
            step,
            until: Some(held),
            ..
        } => {
            let until = if *held { "holds" } else { "does not hold yet" };
            format!("  ok        {step} (`until` {until})")
        }
        Event::StepSucceeded { step, attempts, .. } if *attempts > 1 => {
            format!("  ok        {step} (attempt {attempts})")
        }
        Event::StepSucceeded { step, .. } => format!("  ok        {step}"),
        Event::AttemptFailed {
            step,
            attempt,
            error,
            ..
        } => {
            format!("  retry     {step}: attempt {attempt} failed: {error}")
        }
        Event::Retrying { .. } => return None,
        Event::StepFailed { step, error, .. } => format!("  failed    {step}: {error}"),
        Event::StepRecovered { step, by, .. } => format!("  recovered {step} (by `{by}`)"),
        Event::StepSkipped { step, reason, .. } => format!("  skipped   {step}: {reason}"),
        Event::DecisionMade {
            step,
            branch,
            target,
            ..
        } => format!("  chose     {step} -> {target} ({branch})"),
        Event::GateWaiting { step, title, .. } => format!("  waiting   {step}: {title}"),
        Event::GateApproved { step, by, .. } => format!("  approved  {step} (by {by})"),
        Event::GateRejected {
            step, by, reason, ..
        } => format!("  rejected  {step} (by {by}): {reason}"),
        Event::Log {
            step, line, stream, ..
        } => match stream {
            None => format!("  log       {step}: {line}"),
            Some(run::Stream::Stdout) => format!("  out       {step}: {line}"),
            Some(run::Stream::Stderr) => format!("  err       {step}: {line}"),
        },
        Event::Compensating { step, .. } => format!("  undo      {step}"),
        Event::Compensated { step, .. } => format!("  undone    {step}"),
        Event::RunFinished { .. } => return None,
    };
    Some(line)
}

/// The table printed at the end: step, status, attempts, time, error.
pub fn summary(report: &Report) -> String {
    // A long run lists only the steps that did not succeed, after a count
    // by status: a table of thousands of green rows hides what matters.
    let long = report.steps.len() > SUMMARY_ROWS;
    let rows: Vec<[String; 5]> = report
        .steps
        .iter()
        .filter(|s| !long || s.status != StepStatus::Succeeded)
        .take(if long { SUMMARY_ROWS } else { usize::MAX })
        .map(|s| {
            [
                s.id.clone(),
                s.status.word(s.error.as_ref().map(|e| e.kind)).to_owned(),
                s.attempts.to_string(),
                if s.attempts > 0 {
                    format!("{:.2}s", s.duration_ms as f64 / 1000.0)
                } else {
                    String::new()
                },
                s.error
                    .as_ref()
                    .map(|e| e.message.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = String::from("\n");
    if long {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for step in &report.steps {
            let word = step.status.word(step.error.as_ref().map(|e| e.kind));
            match counts.iter_mut().find(|(w, _)| *w == word) {
                Some((_, n)) => *n += 1,
                None => counts.push((word, 1)),
            }
        }
        let counts: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
        out.push_str(&format!(
            "{} steps: {}",
            report.steps.len(),
            counts.join(", ")
        ));
        let unlisted = report
            .steps
            .iter()
            .filter(|s| s.status != StepStatus::Succeeded)
            .count()
            .saturating_sub(rows.len());
        if unlisted > 0 {
            out.push_str(&format!(" (the first {} listed)", rows.len()));
        }
        out.push_str("; `cairn status` shows every step\n");
    }
    if !rows.is_empty() {
        out.push_str(&super::report::table(
            ["step", "status", "attempts", "time", "error"],
            &rows,
        ));
    }
    if !report.hypotheses.is_empty() {
        let rows: Vec<[String; 5]> = report
            .hypotheses
            .iter()
            .map(|h| {
                [
                    h.id.clone(),
                    format!("{:.2}", h.confidence),
                    h.tally.supports.to_string(),
                    h.tally.refutes.to_string(),
                    h.statement.clone(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&super::report::table(
            [
                "hypothesis",
                "confidence",
                "supports",
                "refutes",
                "statement",
            ],
            &rows,
        ));
    }
    let verdict = report.status.word();
    match &report.message {
        Some(message) => out.push_str(&format!("\nrun {verdict}: {message}\n")),
        None => out.push_str(&format!("\nrun {verdict}\n")),
    }
    out
}

/// Runs with more steps than this get a shorter summary.
const SUMMARY_ROWS: usize = 50;

/// Asks on the terminal whether to approve a gate; gives up (`None`) if the
/// run is cancelled while waiting.
fn ask(request: &GateRequest) -> Option<Approval> {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\ngate `{}`: {}", request.id, request.title);
    for check in &request.checks {
        let _ = writeln!(err, "  [ ] {check}");
    }
    if let Some(at) = request.expires_at {
        // Whole seconds, rounded up: 500 ms left reads "1s", not "0s".
        let left = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            .as_millis()
            .div_ceil(1000);
        let left = match left {
            0..=119 => format!("{left}s"),
            120..=7199 => format!("{}m", left / 60),
            _ => format!("{}h", left / 3600),
        };
        let _ = writeln!(err, "  (rejected if not answered within {left})");
    }
    let _ = write!(err, "approve? [y/n] ");
    let _ = err.flush();
    let answer = match read_line(request) {
        Read::Line(line) => line,
        Read::Expired => return Some(timed_out(request, &mut err)),
        Read::Cancelled => return None,
    };
    let approved = matches!(answer.trim(), "y" | "Y" | "yes");
    let _ = write!(err, "reason: ");
    let _ = err.flush();
    let reason = match read_line(request) {
        Read::Line(line) => line,
        Read::Expired => return Some(timed_out(request, &mut err)),
        Read::Cancelled => return None,
    };
    let mut input = serde_json::Map::new();
    if approved {
        for field in &request.input {
            let value = loop {
                let default = field
                    .default
                    .as_ref()
                    .map(|d| format!(", default {d}"))
                    .unwrap_or_default();
                let _ = write!(err, "{} ({}{default}): ", field.name, field.accepts());
                let _ = err.flush();
                let line = match read_line(request) {
                    Read::Line(line) => line,
                    Read::Expired => return Some(timed_out(request, &mut err)),
                    Read::Cancelled => return None,
                };
                let text = match (line.trim(), &field.default) {
                    ("", Some(default)) => default.clone(),
                    _ => line.trim().to_owned(),
                };
                match field.read(&text) {
                    Ok(value) => break value,
                    Err(why) => {
                        let _ = writeln!(err, "  {why}");
                    }
                }
            };
            input.insert(field.name.clone(), value);
        }
    }
    let by = std::env::var("USER").unwrap_or_else(|_| "terminal".to_owned());
    Some(Approval {
        approved,
        by,
        reason: reason.trim().to_owned(),
        input,
    })
}

/// A line from stdin, or `None` at end of input or once `cancelled` is set.
/// Stdin is polled and read a byte at a time (no hidden buffer), so a
/// cancelled run never waits for Enter.
/// A line typed on the terminal, or why there is none.
enum Read {
    Line(String),
    /// The run was cancelled while waiting.
    Cancelled,
    /// The gate's `timeout:` passed while waiting.
    Expired,
}

fn read_line(request: &GateRequest) -> Read {
    let mut line = Vec::new();
    loop {
        if request.cancelled.load(std::sync::atomic::Ordering::SeqCst) {
            return Read::Cancelled;
        }
        if request
            .expires_at
            .is_some_and(|at| std::time::SystemTime::now() >= at)
        {
            return Read::Expired;
        }
        let mut fd = libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut fd, 1, 100) } <= 0 {
            continue;
        }
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into a valid one-byte buffer.
        match unsafe { libc::read(libc::STDIN_FILENO, (&mut byte as *mut u8).cast(), 1) } {
            1 if byte == b'\n' => return Read::Line(String::from_utf8_lossy(&line).into_owned()),
            1 => line.push(byte),
            _ if line.is_empty() => return Read::Cancelled,
            _ => return Read::Line(String::from_utf8_lossy(&line).into_owned()),
        }
    }
}

/// The answer when nobody answered in time.
fn timed_out(request: &GateRequest, err: &mut impl Write) -> Approval {
    let approval = Approval::timed_out(request.timeout_ms.unwrap_or_default());
    let _ = writeln!(err, "\n{}", approval.reason);
    approval
}
