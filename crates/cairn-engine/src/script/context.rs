//! What host functions know about the step they run for, set per thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rhai::{Dynamic, EvalAltResult, Position};

use cairn_lang::plan::Grant;

/// Why a running step must stop now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// The attempt's `timeout:` deadline passed.
    TimedOut,
    /// The run was cancelled (a stopping failure, the time budget, or Ctrl-C).
    Cancelled,
}

/// Spending against `budget: cost`, shared by every step of a run.
#[derive(Debug, Default)]
pub struct CostMeter {
    /// Spent so far, in millionths (atomic without a lock).
    micros: AtomicU64,
    limit: Option<f64>,
    /// Set when a `spend` crossed the limit: the plan must stop.
    pub exceeded: AtomicBool,
    /// What each step spent, in millionths: recorded with its outcome, so a
    /// resumed run counts on from what its settled steps spent.
    by_step: Mutex<HashMap<String, u64>>,
}

impl CostMeter {
    /// A meter with nothing spent; `limit` is the plan's `budget: cost` (`None`: unlimited).
    pub fn new(limit: Option<f64>) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// A meter for a resumed run: `spent` is what its settled steps spent
    /// in earlier processes.
    pub fn resumed(limit: Option<f64>, spent: f64) -> Self {
        let meter = Self::new(limit);
        meter
            .micros
            .store((spent.max(0.0) * 1e6).round() as u64, Ordering::SeqCst);
        meter
    }

    /// What `step` has spent so far, if anything.
    pub fn spent_by(&self, step: &str) -> Option<f64> {
        let by_step = self.by_step.lock().unwrap_or_else(|e| e.into_inner());
        by_step.get(step).map(|&m| m as f64 / 1e6)
    }

    /// Adds `amount` spent by `step`; an error says by how much the budget
    /// is crossed.
    pub fn spend(&self, step: &str, amount: f64) -> Result<f64, String> {
        if !amount.is_finite() || amount < 0.0 {
            return Err(format!("spend({amount}): amounts must be zero or more"));
        }
        if amount > 1e12 {
            return Err(format!(
                "spend({amount}): amounts above 1e12 are not counted"
            ));
        }
        let micros = (amount * 1e6).round() as u64;
        *self
            .by_step
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(step.to_owned())
            .or_default() += micros;
        let before = self
            .micros
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |m| {
                Some(m.saturating_add(micros))
            })
            .unwrap_or_default();
        let total = before.saturating_add(micros) as f64 / 1e6;
        match self.limit {
            Some(limit) if total > limit => {
                self.exceeded.store(true, Ordering::SeqCst);
                Err(format!(
                    "cost budget of {limit} exceeded by {} (spent {total})",
                    trim(total - limit)
                ))
            }
            _ => Ok(total),
        }
    }

    /// Spent so far.
    pub fn spent(&self) -> f64 {
        self.micros.load(Ordering::SeqCst) as f64 / 1e6
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Original contents of files changed by `edit_file` / `write_file`, so
/// `restore_file` and compensation can put them back.
#[derive(Debug, Default)]
pub struct Journal {
    /// Resolved path (free of links) → contents before the first change in
    /// this run (`None`: the file did not exist).
    pub originals: HashMap<PathBuf, Option<Vec<u8>>>,
    /// Which task changed which files, in order.
    pub by_task: HashMap<String, Vec<PathBuf>>,
}

impl Journal {
    /// The journal a resumed run begins with: the files its steps changed
    /// before, each with its contents before the run first changed it.
    pub fn resumed(originals: &[(String, PathBuf, Option<Vec<u8>>)]) -> Self {
        let mut journal = Self::default();
        for (step, path, content) in originals {
            journal
                .originals
                .entry(path.clone())
                .or_insert_with(|| content.clone());
            let files = journal.by_task.entry(step.clone()).or_default();
            if !files.contains(path) {
                files.push(path.clone());
            }
        }
        journal
    }
}

/// What a host function reports about the step it runs for.
#[derive(Debug)]
pub enum Note<'a> {
    /// A line from `log`, `print` or `debug`.
    Log(&'a str),
    /// A line a running `sh` command wrote.
    Output(crate::run::Stream, &'a str),
    /// A call that reached outside the script, as made (with a recording tape).
    Call {
        /// The attempt it was made in (0: compensation).
        attempt: u32,
        /// Its number within the attempt, from 1.
        number: u32,
        /// The function, arguments and result.
        call: &'a Call,
    },
    /// An `evidence(…)` call.
    Evidence(&'a Evidence),
    /// An `artifact(…)` call.
    Artifact(&'a Artifact),
    /// A file's contents before the run first changed it (`None`: it did
    /// not exist), which compensation puts back: kept in the run store, so
    /// a resumed run can undo what an earlier process changed.
    Original {
        /// The resolved path that is about to change.
        path: &'a std::path::Path,
        /// Its contents now.
        content: Option<&'a [u8]>,
    },
}

/// Called with (step id, note) for everything a step reports.
pub type NoteSink = Arc<dyn Fn(&str, Note<'_>) + Send + Sync>;

/// One call that reached outside the script (`sh`, `fs`, `http`, `now`,
/// `rand`, a host tool), as recorded for replay.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Call {
    /// The function called, e.g. `sh`.
    pub function: String,
    /// Its arguments, as a JSON array.
    pub args: serde_json::Value,
    /// What it returned, or the error it raised.
    pub result: Result<serde_json::Value, String>,
    /// For an error that is not the code's own (a command's exit, a refusal,
    /// a failed request): its kind, so a replay fails the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_as: Option<Raised>,
}

/// The kind of a host function's error, and a command's exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Raised {
    /// What sort of failure.
    pub kind: crate::failure::ErrorKind,
    /// A command's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

impl Call {
    /// `sh("make test")`: how the call reads in a script.
    pub fn signature(&self) -> String {
        signature(&self.function, &self.args)
    }
}

fn signature(function: &str, args: &serde_json::Value) -> String {
    let args = match args {
        serde_json::Value::Array(items) => items
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    format!("{function}({args})")
}

/// The evidence weighed for one hypothesis so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// `evidence(id, "supports", …)` calls.
    pub supports: u32,
    /// `evidence(id, "refutes", …)` calls.
    pub refutes: u32,
    /// `evidence(id, "neutral", …)` calls.
    pub neutral: u32,
}

impl Tally {
    /// Laplace's rule of succession over supporting and refuting evidence:
    /// `(supports + 1) / (supports + refutes + 2)`. 0.5 with no evidence
    /// either way; neutral evidence is recorded but does not move it.
    pub fn confidence(&self) -> f64 {
        (f64::from(self.supports) + 1.0) / (f64::from(self.supports + self.refutes) + 2.0)
    }
}

/// A run's hypotheses and the evidence given for them, shared by its steps.
#[derive(Debug, Default)]
pub struct Hypotheses {
    /// Declared (id, statement) pairs, in file order.
    pub declared: Vec<(String, String)>,
    tally: Mutex<HashMap<String, Tally>>,
}

impl Hypotheses {
    /// The plan's hypotheses, with no evidence yet.
    pub fn new(declared: Vec<(String, String)>) -> Self {
        Self {
            declared,
            tally: Mutex::default(),
        }
    }

    /// Counts one piece of evidence; the hypothesis's tally after it.
    pub fn add(&self, id: &str, verdict: &str) -> Result<Tally, String> {
        if !self.declared.iter().any(|(d, _)| d == id) {
            let known: Vec<String> = self
                .declared
                .iter()
                .map(|(d, _)| format!("`{d}`"))
                .collect();
            return Err(if known.is_empty() {
                format!("no hypothesis `{id}`: the plan declares none")
            } else {
                format!(
                    "no hypothesis `{id}` (the plan declares {})",
                    known.join(", ")
                )
            });
        }
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        let entry = tally.entry(id.to_owned()).or_default();
        match verdict {
            "supports" => entry.supports += 1,
            "refutes" => entry.refutes += 1,
            "neutral" => entry.neutral += 1,
            other => {
                return Err(format!(
                    "evidence for `{id}`: `{other}` is not \"supports\", \"refutes\" or \"neutral\""
                ))
            }
        }
        Ok(*entry)
    }

    /// The tally of a declared hypothesis.
    pub fn tally(&self, id: &str) -> Result<Tally, String> {
        if !self.declared.iter().any(|(d, _)| d == id) {
            return Err(format!("no hypothesis `{id}`"));
        }
        let tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        Ok(tally.get(id).copied().unwrap_or_default())
    }

    /// The supported hypothesis with the highest confidence (the first
    /// declared on a tie), or `None` while no evidence supports any.
    pub fn best(&self) -> Option<String> {
        let tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        let mut best: Option<(&str, f64)> = None;
        for (id, _) in &self.declared {
            let Some(t) = tally.get(id).filter(|t| t.supports > 0) else {
                continue;
            };
            if best.is_none_or(|(_, c)| t.confidence() > c) {
                best = Some((id, t.confidence()));
            }
        }
        best.map(|(id, _)| id.to_owned())
    }

    /// Every hypothesis with its statement and tally, in file order.
    pub fn report(&self) -> Vec<(String, String, Tally)> {
        let tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        self.declared
            .iter()
            .map(|(id, statement)| {
                (
                    id.clone(),
                    statement.clone(),
                    tally.get(id).copied().unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// One `evidence(id, verdict, note)` call.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// The hypothesis.
    pub hypothesis: String,
    /// `supports`, `refutes` or `neutral`.
    pub verdict: String,
    /// Why, in the step's words.
    pub note: String,
    /// The hypothesis's confidence after it.
    pub confidence: f64,
}

/// A value a step saved with `artifact(name, value)`, or a command's
/// whole output kept with `keep_output`.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The name the step gave it.
    pub name: String,
    /// sha256 of the content, in lowercase hex.
    pub sha256: String,
    /// The content.
    pub content: ArtifactBody,
}

/// Where an artifact's bytes are.
#[derive(Clone, Debug)]
pub enum ArtifactBody {
    /// In memory: a string's UTF-8 bytes, or any other value as JSON.
    Bytes(Arc<Vec<u8>>),
    /// Streamed to a file named by its hash in the run store's `blobs/`
    /// directory (a command's kept output, too large to hold).
    File {
        /// The file.
        path: Arc<PathBuf>,
        /// Its size.
        bytes: u64,
    },
}

impl Default for ArtifactBody {
    fn default() -> Self {
        Self::Bytes(Arc::default())
    }
}

impl ArtifactBody {
    /// The content's size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes.len() as u64,
            Self::File { bytes, .. } => *bytes,
        }
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The first place a replay asked for something other than what was recorded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Divergence {
    /// The step.
    pub task: String,
    /// Its attempt, from 1 (0 for compensation).
    pub attempt: u32,
    /// The call's number within the attempt, from 1.
    pub call: u32,
    /// The recorded call (`nothing` when the recording ends here).
    pub recorded: String,
    /// The call the script made (`nothing` when it made fewer).
    pub asked: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step `{}`, attempt {}, call {}: recorded {}, asked {}",
            self.task, self.attempt, self.call, self.recorded, self.asked
        )
    }
}

/// What happens to calls that reach outside the script.
#[derive(Clone, Default)]
pub enum Tape {
    /// Made, not recorded.
    #[default]
    Off,
    /// Made, and each reported as a [`Note::Call`].
    Record,
    /// Never made: answered from the recording, in order. The first call
    /// that differs is stored in `divergence` and fails the step.
    Replay {
        /// This attempt's recorded calls.
        calls: Arc<Vec<Call>>,
        /// Where the first divergence of the replay is kept.
        divergence: Arc<Mutex<Option<Divergence>>>,
    },
}

/// Keeps the process group of every command while it runs (the run store
/// does, in `processes`), so that after cairn itself was killed, a resume
/// can make sure those groups are gone before their steps run again.
pub trait ProcessLog: Send + Sync {
    /// A command of `step` started; its process group is `pgid`. Durable
    /// when it returns: an error stops the command and fails the call.
    fn started(&self, step: &str, pgid: i32) -> Result<(), String>;
    /// That command ended and its group is gone.
    fn ended(&self, pgid: i32);
}

/// The step a host function runs for.
pub struct StepContext {
    /// The run's clock: `now()`, `sleep()` and retry backoff read and
    /// wait on it.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// The step's id; log lines and journal entries are filed under it.
    pub task: String,
    /// The plan's directory: `sh` runs there and relative paths resolve there.
    pub dir: PathBuf,
    /// The plan's `allow:` grants, whose scopes limit file paths and HTTP hosts.
    pub grants: Arc<Vec<Grant>>,
    /// In a child run of `plan:`, the grants of every plan above it: a
    /// path or host must be within each of them too.
    pub ceilings: Arc<Vec<Arc<Vec<Grant>>>>,
    /// Where file capabilities may reach: the resolved plan directory, the
    /// scopes, never the run store.
    pub confinement: Arc<super::confine::Confinement>,
    /// Plan-wide cancellation (stop, watchdog, Ctrl-C).
    pub cancel: Arc<AtomicBool>,
    /// End of this attempt's `timeout:`.
    pub deadline: Option<Instant>,
    /// Generator for `rand()`, seeded from the run's seed, the step id and the attempt.
    pub rng: Mutex<SplitMix64>,
    /// The run's cost meter, for `spend()`.
    pub cost: Arc<CostMeter>,
    /// The run's record of changed files, for `restore_file` and compensation.
    pub journal: Arc<Mutex<Journal>>,
    /// Where log lines, recorded calls, evidence and artifacts are reported
    /// as they happen (`None`: nowhere).
    pub on_note: Option<NoteSink>,
    /// The run's hypotheses, for `evidence`, `confidence` and `best_hypothesis`.
    pub hypotheses: Arc<Hypotheses>,
    /// The attempt this context is for, from 1 (0 for compensation).
    pub attempt: u32,
    /// Whether outside calls are recorded or answered from a recording.
    pub tape: Tape,
    /// Outside calls made so far in this attempt.
    pub calls: std::sync::atomic::AtomicU32,
    /// The capabilities the step declared (`using:`).
    pub using: Vec<String>,
    /// What every capability of the run provides: an error names the
    /// capability a missing function belongs to.
    pub capabilities: Arc<cairn_lang::script::Capabilities>,
    /// How much of a command's stdout and stderr the result keeps
    /// (`output_limit:`); the middle of a longer output is left out.
    pub output_limit: usize,
    /// Where kept command outputs are written, by hash (the run store's `blobs/`).
    pub blobs: Option<Arc<std::path::Path>>,
    /// Where the process group of each running command is recorded (the
    /// run store), if anywhere.
    pub processes: Option<Arc<dyn ProcessLog>>,
    /// What this attempt has put in the run store, against [`STORE_QUOTA`].
    pub stored: AtomicU64,
    /// What this attempt has logged, against [`LOG_LINES`] and [`LOG_BYTES`].
    pub logged: LogMeter,
    /// What its commands have written, against the same limits (kept apart:
    /// a chatty command does not silence the step's own `log`).
    pub printed: LogMeter,
    /// The last error a host function raised of a kind not the code's own,
    /// with its message: the step's failure is of that kind if the error
    /// it ends with is that one (not one the code caught and threw anew).
    pub raised: Mutex<Option<(Raised, String)>>,
}

/// Log lines and bytes one attempt has logged.
#[derive(Debug, Default)]
pub struct LogMeter {
    lines: AtomicU64,
    bytes: AtomicU64,
    dropping: AtomicBool,
}

/// The most one attempt may put in the run store: recorded calls,
/// artifacts and kept outputs. Past it the step fails: a plan cannot fill
/// the disk through the store.
pub const STORE_QUOTA: u64 = 256 << 20;
/// Log lines kept per attempt; later lines are dropped, with one note.
pub const LOG_LINES: u32 = 10_000;
/// Log bytes kept per attempt; later lines are dropped, with one note.
pub const LOG_BYTES: u64 = 1 << 20;
/// The longest log line kept whole; a longer one is cut.
const LOG_LINE_BYTES: usize = 16 << 10;
/// `output_limit:` when a task does not set it.
pub const DEFAULT_OUTPUT_LIMIT: usize = 1 << 20;

impl StepContext {
    /// The step's grants, then each plan's above it: what a file or host
    /// must be within, every one of them.
    pub fn grant_lists(&self) -> impl Iterator<Item = &[Grant]> {
        std::iter::once(self.grants.as_slice()).chain(self.ceilings.iter().map(|g| g.as_slice()))
    }

    /// A context for code evaluated outside any run (a REPL's prompt): no
    /// grants, no capabilities, no recording, the system's clock, files
    /// confined to `dir`. Change what differs with struct update syntax.
    pub fn outside_a_run(name: &str, dir: &std::path::Path, seed: u64) -> Self {
        Self {
            clock: Arc::new(crate::clock::SystemClock::default()),
            task: name.to_owned(),
            dir: dir.to_path_buf(),
            grants: Arc::new(Vec::new()),
            ceilings: Arc::default(),
            confinement: Arc::new(super::confine::Confinement::new(dir, None)),
            cancel: Arc::default(),
            deadline: None,
            rng: Mutex::new(SplitMix64::new(seed)),
            cost: Arc::default(),
            journal: Arc::default(),
            on_note: None,
            hypotheses: Arc::new(Hypotheses::new(Vec::new())),
            attempt: 0,
            tape: Tape::Off,
            calls: Default::default(),
            using: Vec::new(),
            capabilities: Arc::default(),
            output_limit: DEFAULT_OUTPUT_LIMIT,
            blobs: None,
            processes: None,
            stored: Default::default(),
            logged: Default::default(),
            printed: Default::default(),
            raised: Default::default(),
        }
    }

    /// Whether the step must stop, and why.
    pub fn interrupted(&self) -> Option<Interrupt> {
        if self.cancel.load(Ordering::Relaxed) {
            Some(Interrupt::Cancelled)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(Interrupt::TimedOut)
        } else {
            None
        }
    }

    /// Reports something about this step to `on_note`, if set.
    pub fn note(&self, note: Note<'_>) {
        if let Some(on_note) = &self.on_note {
            on_note(&self.task, note);
        }
    }

    /// Reports a log line, within the attempt's log limits: past them lines
    /// are dropped, and the first dropped line is replaced by a note saying so.
    pub fn log_line(&self, line: &str) {
        self.metered(&self.logged, line, |line| Note::Log(line));
    }

    /// Reports a line a running command wrote, within the attempt's limits
    /// for command output (as [`StepContext::log_line`]'s).
    pub fn output_line(&self, stream: crate::run::Stream, line: &str) {
        self.metered(&self.printed, line, |line| Note::Output(stream, line));
    }

    fn metered(&self, meter: &LogMeter, line: &str, note: impl for<'n> Fn(&'n str) -> Note<'n>) {
        let line = match line.char_indices().nth(LOG_LINE_BYTES) {
            Some((cut, _)) if line.len() > LOG_LINE_BYTES => std::borrow::Cow::Owned(format!(
                "{}… [cairn: line cut at {LOG_LINE_BYTES} characters]",
                &line[..cut]
            )),
            _ => std::borrow::Cow::Borrowed(line),
        };
        let lines = meter.lines.fetch_add(1, Ordering::Relaxed) + 1;
        let bytes = meter.bytes.fetch_add(line.len() as u64, Ordering::Relaxed) + line.len() as u64;
        if lines <= u64::from(LOG_LINES) && bytes <= LOG_BYTES {
            self.note(note(&line));
        } else if !meter.dropping.swap(true, Ordering::Relaxed) {
            // The first line over: say so once, then drop the rest.
            self.note(note(&format!(
                "[cairn: log limit reached ({LOG_LINES} lines or {} KiB per attempt); further lines are dropped]",
                LOG_BYTES >> 10
            )));
        }
    }

    /// Counts `bytes` this attempt puts in the run store; past
    /// [`STORE_QUOTA`] the step stops with an error `try` cannot catch.
    pub fn charge(&self, bytes: u64) -> Result<(), Box<EvalAltResult>> {
        let total = self.stored.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > STORE_QUOTA {
            return Err(Box::new(EvalAltResult::ErrorTerminated(
                format!(
                    "the step put more than {} MiB in the run store (recorded calls, artifacts, kept output); a step may store at most that much",
                    STORE_QUOTA >> 20
                )
                .into(),
                Position::NONE,
            )));
        }
        Ok(())
    }
}

impl StepContext {
    /// Whether calls are answered from a recording instead of being made.
    pub fn replaying(&self) -> bool {
        matches!(self.tape, Tape::Replay { .. })
    }

    /// In a replay, the recorded calls this attempt did not make, as a
    /// divergence (a body that now stops earlier than it did).
    pub fn unused_calls(&self) -> Option<Divergence> {
        let Tape::Replay { calls, .. } = &self.tape else {
            return None;
        };
        let made = self.calls.load(Ordering::SeqCst) as usize;
        calls.get(made).map(|next| Divergence {
            task: self.task.clone(),
            attempt: self.attempt,
            call: made as u32 + 1,
            recorded: next.signature(),
            asked: "nothing (the code made no more calls)".to_owned(),
        })
    }
}

/// Makes a call that reaches outside the script, through the step's tape:
/// made and recorded, made only, or answered from the recording in a replay
/// (where `make` never runs). Host tools of an embedding application call
/// this too, so their calls are recorded and replayed like `sh`.
pub fn outside<T: rhai::Variant + Clone>(
    function: &str,
    args: serde_json::Value,
    make: impl FnOnce(&StepContext) -> Result<T, Box<EvalAltResult>>,
) -> Result<T, Box<EvalAltResult>> {
    let ctx = current()?;
    let number = ctx.calls.fetch_add(1, Ordering::SeqCst) + 1;
    match &ctx.tape {
        Tape::Off => make(&ctx),
        Tape::Record => {
            // What goes into the log must read back: a result or arguments
            // nested too deep are refused (the call was made; it fails).
            let too_deep = |what: &str, depth: usize| {
                runtime(format!(
                    "{function}: {}",
                    nesting_error(&format!("the {what} of the call"), depth)
                ))
            };
            let depth = json_nesting(&args);
            let mut made = if depth > MAX_NESTING {
                Err(too_deep("arguments", depth))
            } else {
                make(&ctx)
            };
            if let Ok(value) = &made {
                let depth = nesting(&Dynamic::from(value.clone()));
                if depth > MAX_NESTING {
                    made = Err(too_deep("result", depth));
                }
            }
            let result = match &made {
                Ok(value) => Ok(serde_json::to_value(Dynamic::from(value.clone()))
                    .unwrap_or(serde_json::Value::Null)),
                Err(e) => Err(error_text(e)),
            };
            let failed_as = result.as_ref().err().and_then(|e| ctx.raised_as(e));
            let call = Call {
                function: function.to_owned(),
                args,
                result,
                failed_as,
            };
            let size = json_size(&call.args)
                + call
                    .result
                    .as_ref()
                    .map_or_else(|e| e.len() as u64, json_size);
            ctx.note(Note::Call {
                attempt: ctx.attempt,
                number,
                call: &call,
            });
            ctx.charge(size)?;
            made
        }
        Tape::Replay { calls, divergence } => {
            let asked = signature(function, &args);
            let diverged = |recorded: String| {
                let found = Divergence {
                    task: ctx.task.clone(),
                    attempt: ctx.attempt,
                    call: number,
                    recorded,
                    asked: asked.clone(),
                };
                let message = format!("replay diverged: {found}");
                divergence
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(found);
                Err(Box::new(EvalAltResult::ErrorTerminated(
                    message.into(),
                    Position::NONE,
                )))
            };
            let Some(recorded) = calls.get(number as usize - 1) else {
                return diverged("nothing (the recording has no more calls)".to_owned());
            };
            if recorded.function != function || recorded.args != args {
                return diverged(recorded.signature());
            }
            match &recorded.result {
                Err(message) => Err(match recorded.failed_as {
                    Some(Raised { kind, code }) => raise(kind, code, message.clone()),
                    None => runtime(message.clone()),
                }),
                Ok(value) => {
                    let dynamic: Dynamic = serde_json::from_value(value.clone()).map_err(|e| {
                        runtime(format!("{asked}: the recording is unreadable: {e}"))
                    })?;
                    // JSON has one number type: an integer-valued float
                    // comes back as an integer, so convert where needed.
                    let dynamic = match (dynamic.as_int(), std::any::type_name::<T>()) {
                        (Ok(n), "f64") => Dynamic::from(n as f64),
                        _ => dynamic,
                    };
                    dynamic.try_cast::<T>().ok_or_else(|| {
                        runtime(format!("{asked}: the recorded result has another type"))
                    })
                }
            }
        }
    }
}

/// The deepest a value leaving a step (its output, an artifact, evidence,
/// a recorded call) may nest: arrays and maps one inside another. What the
/// store keeps must read back (serde_json reads at most 128 levels, SQLite's
/// JSON functions 1,000), and a deep value costs a stack frame per level in
/// every reader.
pub const MAX_NESTING: usize = 64;

/// How deep `value` nests: 0 for a scalar, 1 for `[]` or `#{}`, one more for
/// each array or map inside another. Walked with a stack of its own, never
/// by recursion: a script can build a value 100,000 levels deep.
pub fn nesting(value: &Dynamic) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Dynamic, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        if value.is_shared() {
            // A variable a closure captured: read under its lock. Data never
            // holds shared values inside it, so this goes one level down.
            let inner = if let Some(array) = value.read_lock::<rhai::Array>() {
                1 + array.iter().map(nesting).max().unwrap_or(0)
            } else if let Some(map) = value.read_lock::<rhai::Map>() {
                1 + map.values().map(nesting).max().unwrap_or(0)
            } else {
                0
            };
            deepest = deepest.max(depth + inner);
            continue;
        }
        let children: Option<Box<dyn Iterator<Item = &Dynamic>>> =
            if let Some(array) = value.read_lock::<rhai::Array>() {
                // SAFETY: `value` is not shared, so the lock is a plain
                // reference into `value`'s own data, which lives (borrowed,
                // unchanged) for as long as `value` does.
                let array: &rhai::Array = unsafe { &*std::ptr::from_ref::<rhai::Array>(&*array) };
                Some(Box::new(array.iter()))
            } else if let Some(map) = value.read_lock::<rhai::Map>() {
                // SAFETY: as above.
                let map: &rhai::Map = unsafe { &*std::ptr::from_ref::<rhai::Map>(&*map) };
                Some(Box::new(map.values()))
            } else {
                None
            };
        if let Some(children) = children {
            deepest = deepest.max(depth + 1);
            stack.extend(children.map(|child| (child, depth + 1)));
        }
    }
    deepest
}

/// How deep a JSON value nests, counted like [`nesting`].
pub fn json_nesting(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    let mut deepest = 0;
    let mut stack = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(depth + 1);
                stack.extend(items.iter().map(|v| (v, depth + 1)));
            }
            Value::Object(fields) => {
                deepest = deepest.max(depth + 1);
                stack.extend(fields.values().map(|v| (v, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// The error for `what` ("the output", …) nested `depth` levels deep.
pub fn nesting_error(what: &str, depth: usize) -> String {
    format!(
        "{what} is nested {depth} levels deep; values leaving a step may nest at most {MAX_NESTING} levels"
    )
}

/// About how many bytes a value takes as JSON, without writing it out.
fn json_size(value: &serde_json::Value) -> u64 {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 20,
        Value::String(s) => s.len() as u64 + 2,
        Value::Array(items) => items.iter().map(json_size).sum::<u64>() + 2,
        Value::Object(map) => {
            map.iter()
                .map(|(k, v)| k.len() as u64 + 4 + json_size(v))
                .sum::<u64>()
                + 2
        }
    }
}

/// An error's message without Rhai's position suffix.
fn error_text(error: &EvalAltResult) -> String {
    match error {
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        EvalAltResult::ErrorTerminated(value, _) => value.to_string(),
        other => other.to_string(),
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<StepContext>>> = const { RefCell::new(None) };
}

thread_local! {
    static DEADLINE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` (code outside any step: param defaults) under a wall-clock
/// limit, as steps run under theirs; inside another `within`, the earlier
/// deadline holds.
pub fn within<T>(limit: std::time::Duration, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<Instant>);
    impl Drop for Reset {
        fn drop(&mut self) {
            DEADLINE.with(|d| d.set(self.0));
        }
    }
    let outer = DEADLINE.with(|d| d.get());
    let mine = Instant::now().checked_add(limit);
    let deadline = match (outer, mine) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let _reset = Reset(DEADLINE.with(|d| d.replace(deadline)));
    f()
}

/// Whether the code running on this thread must stop, asked after each
/// of its Rhai operations: cancellation every time (an atomic load), the
/// clock every 256 operations (reading it every time cost more than the
/// operations themselves).
pub fn interrupt_at(operations: u64) -> Option<Interrupt> {
    let clock = operations % 256 == 0;
    CURRENT.with(|c| match &*c.borrow() {
        Some(ctx) if ctx.cancel.load(Ordering::Relaxed) => Some(Interrupt::Cancelled),
        Some(ctx) => (clock && ctx.deadline.is_some_and(|d| Instant::now() >= d))
            .then_some(Interrupt::TimedOut),
        None => (clock
            && DEADLINE
                .with(|d| d.get())
                .is_some_and(|d| Instant::now() >= d))
        .then_some(Interrupt::TimedOut),
    })
}

/// Runs `f` with `context` as the current step on this thread.
pub fn enter<T>(context: &Arc<StepContext>, f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|c| *c.borrow_mut() = None);
        }
    }
    CURRENT.with(|c| *c.borrow_mut() = Some(Arc::clone(context)));
    let _reset = Reset;
    f()
}

/// The current step, for host functions.
pub fn current() -> Result<Arc<StepContext>, Box<EvalAltResult>> {
    CURRENT
        .with(|c| c.borrow().clone())
        .ok_or_else(|| runtime("host functions run only inside a step"))
}

/// The current step, if any (for engine callbacks).
pub fn try_current() -> Option<Arc<StepContext>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// A script error with a message.
pub fn runtime(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        message.into().into(),
        Position::NONE,
    ))
}

/// A host function's error of a kind not the code's own: `kind` (and a
/// command's exit `code`) is kept with the step, so the step fails as that
/// kind if this error is what it ends with.
pub fn raise(
    kind: crate::failure::ErrorKind,
    code: Option<i64>,
    message: impl Into<String>,
) -> Box<EvalAltResult> {
    let message = message.into();
    if let Some(ctx) = try_current() {
        *ctx.raised.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Raised { kind, code }, message.clone()));
    }
    runtime(message)
}

/// The sandbox refused: a path, host or capability not granted.
pub fn refused(message: impl Into<String>) -> Box<EvalAltResult> {
    raise(crate::failure::ErrorKind::Capability, None, message)
}

/// An outside call failed (a file, a connection).
pub fn io_failed(message: impl Into<String>) -> Box<EvalAltResult> {
    raise(crate::failure::ErrorKind::Io, None, message)
}

impl StepContext {
    /// The kind of the host error with this message, if a host function
    /// raised it (see [`raise`]).
    pub fn raised_as(&self, message: &str) -> Option<Raised> {
        let raised = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        raised
            .as_ref()
            .filter(|(_, text)| text == message)
            .map(|(raised, _)| *raised)
    }
}

/// A small, fast, seedable generator whose sequence never changes between
/// versions (a crate's could), so a seed means the same numbers forever.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next pseudo-random 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A stable 64-bit hash (FNV-1a) for deriving per-step seeds.
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}
