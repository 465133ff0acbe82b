//! `cairn run`: check a plan, run it, show progress and a summary table.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::report;
use crate::error::Error;
use crate::run::{self, Approval, Event, GateRequest, Options, Report, RunStatus, StepStatus};

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
}

/// Runs the plan and returns the exit code for how it ended.
pub fn run(args: Args) -> Result<i32, Error> {
    let (source, plan) = report::load(&args.file)?;
    let mut params = Vec::new();
    for pair in &args.set {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("`--set {pair}`: expected `name=value`")))?;
        params.push((name.trim().to_owned(), value.to_owned()));
    }
    if args.dry_run {
        run::check_params(&plan, &params)?;
        let width = args.max_parallel.unwrap_or(plan.max_parallel);
        print!("{}", run::explain(&plan, width));
        return Ok(0);
    }
    let dir = args
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    // On a terminal a live line shows what runs; elsewhere, plain lines only.
    let to_stderr = args.events.as_deref() == Some("-");
    let mut live =
        (!to_stderr && std::io::stdout().is_terminal()).then(|| Live::new(plan.tasks.len()));
    let bar = live.as_ref().map(|l| l.bar.clone());
    let approver = move |request: &GateRequest| match &bar {
        // The question must not be drawn over by the live line.
        Some(bar) => bar.suspend(|| ask(request)),
        None => ask(request),
    };
    // Every run is recorded: each event is committed before it is shown.
    let store = Arc::new(crate::store::Store::open(&args.state_dir).map_err(Error::Store)?);
    let seed = args.seed.or(plan.seed).unwrap_or(0);
    let run_id = store
        .begin(&plan, source.name(), source.text(), &params, seed)
        .map_err(Error::Store)?;
    let recorder = {
        let store = Arc::clone(&store);
        let run_id = run_id.clone();
        Arc::new(move |event: &Event| store.record(&run_id, event).map_err(|e| e.to_string()))
            as run::Recorder
    };
    let options = Options {
        recorder: Some(recorder),
        params,
        max_parallel: args.max_parallel,
        seed: args.seed,
        approvals: args.approve.clone(),
        dir: dir.to_path_buf(),
        approver: interactive.then(|| Arc::new(approver) as run::Approver),
        registrars: Default::default(),
    };
    // With `--events -` the JSON lines own stdout and progress goes to stderr.
    let mut events_out: Option<Box<dyn Write>> = match args.events.as_deref() {
        None => None,
        Some("-") => Some(Box::new(std::io::stdout())),
        Some(path) => Some(Box::new(std::fs::File::create(path).map_err(|source| {
            Error::Io {
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
    let mut write_failed = None;
    let report = runtime.block_on(run::run(Arc::clone(&plan), options, |event| {
        if let Some(out) = events_out.as_mut() {
            let line = serde_json::to_string(event).expect("events serialize");
            if let Err(e) = writeln!(out, "{line}") {
                write_failed.get_or_insert(e);
            }
        }
        let line = describe(event);
        match live.as_mut() {
            Some(live) => live.update(event, line.as_deref()),
            None => {
                if let Some(line) = line {
                    let _ = writeln!(progress, "{line}");
                }
            }
        }
    }))?;
    if let Some(live) = live.take() {
        live.bar.finish_and_clear();
    }
    if let Some(e) = write_failed {
        return Err(Error::Output(e));
    }
    if let Some(out) = events_out.as_mut() {
        out.flush().map_err(Error::Output)?;
    }
    let _ = write!(progress, "{}", summary(&report));
    let _ = writeln!(
        progress,
        "run {run_id} is recorded in {}",
        args.state_dir.join("state.db").display()
    );
    if report.status == RunStatus::Paused {
        let gates: Vec<&str> = report
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Waiting)
            .map(|s| s.id.as_str())
            .collect();
        let approve: String = gates.iter().map(|g| format!(" --approve {g}")).collect();
        let _ = writeln!(
            progress,
            "to approve, run again with{approve} (or answer on a terminal)"
        );
    }
    Ok(report.status.exit_code())
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
            Event::StepStarted { step, .. } => self.running.push(step.clone()),
            Event::StepSucceeded { step, .. }
            | Event::StepFailed { step, .. }
            | Event::StepSkipped { step, .. }
            | Event::DecisionMade { step, .. }
            | Event::GateApproved { step, .. }
            | Event::GateRejected { step, .. }
            | Event::GateWaiting { step, .. } => {
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
fn describe(event: &Event) -> Option<String> {
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
        Event::StepStarted { step, .. } => format!("  start     {step}"),
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
        Event::Log { step, line, .. } => format!("  log       {step}: {line}"),
        Event::Compensating { step, .. } => format!("  undo      {step}"),
        Event::Compensated { step, .. } => format!("  undone    {step}"),
        Event::RunFinished { .. } => return None,
    };
    Some(line)
}

/// The table printed at the end: step, status, attempts, time, error.
pub fn summary(report: &Report) -> String {
    let rows: Vec<[String; 5]> = report
        .steps
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                status_word(s.status).to_owned(),
                s.attempts.to_string(),
                if s.attempts > 0 {
                    format!("{:.2}s", s.duration_ms as f64 / 1000.0)
                } else {
                    String::new()
                },
                s.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = String::from("\n");
    out.push_str(&super::report::table(
        ["step", "status", "attempts", "time", "error"],
        &rows,
    ));
    let verdict = match report.status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Paused => "paused",
        RunStatus::Interrupted => "interrupted",
    };
    match &report.message {
        Some(message) => out.push_str(&format!("\nrun {verdict}: {message}\n")),
        None => out.push_str(&format!("\nrun {verdict}\n")),
    }
    out
}

fn status_word(status: StepStatus) -> &'static str {
    match status {
        StepStatus::NotRun => "not run",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
        StepStatus::Recovered => "recovered",
        StepStatus::Skipped => "skipped",
        StepStatus::Waiting => "waiting",
        StepStatus::Compensated => "compensated",
    }
}

/// Asks on the terminal whether to approve a gate; gives up (`None`) if the
/// run is cancelled while waiting.
fn ask(request: &GateRequest) -> Option<Approval> {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\ngate `{}`: {}", request.id, request.title);
    for check in &request.checks {
        let _ = writeln!(err, "  [ ] {check}");
    }
    let _ = write!(err, "approve? [y/n] ");
    let _ = err.flush();
    let answer = read_line(&request.cancelled)?;
    let approved = matches!(answer.trim(), "y" | "Y" | "yes");
    let _ = write!(err, "reason: ");
    let _ = err.flush();
    let reason = read_line(&request.cancelled)?;
    let by = std::env::var("USER").unwrap_or_else(|_| "terminal".to_owned());
    Some(Approval {
        approved,
        by,
        reason: reason.trim().to_owned(),
    })
}

/// A line from stdin, or `None` at end of input or once `cancelled` is set.
/// Stdin is polled and read a byte at a time (no hidden buffer), so a
/// cancelled run never waits for Enter.
fn read_line(cancelled: &std::sync::atomic::AtomicBool) -> Option<String> {
    let mut line = Vec::new();
    loop {
        if cancelled.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
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
            1 if byte == b'\n' => return Some(String::from_utf8_lossy(&line).into_owned()),
            1 => line.push(byte),
            _ => return (!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned()),
        }
    }
}
