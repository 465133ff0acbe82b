//! Stage 4, run: executing a checked plan — scheduling, steps, routing, gates.

mod approvals;
mod changes;
mod driver;
mod dry;
pub mod events;
mod interrupt;
pub mod machine;
mod outbox;
mod params;
mod resume;
mod step;
mod subplan;

use std::path::PathBuf;
use std::sync::Arc;

pub use crate::script::context::{Call, Divergence, ProcessLog};
pub use approvals::check_approvals;
pub use changes::Changes;
pub use driver::run;
pub use dry::explain;
pub use events::{Event, EventKind, RunStatus, StepStatus, Stream};
pub use interrupt::Interrupter;
pub use params::{check_params, param_values};
pub use resume::{Kept, Resume, Settled, Settlings, StepMap};
pub use step::describe as describe_error;
pub use subplan::{ChildRequest, ChildRun, ChildRuns, MAX_CHILD_THREADS, MAX_DEPTH};

/// A gate asking for a decision.
#[derive(Clone, Debug)]
pub struct GateRequest {
    /// The gate's id.
    pub id: String,
    /// The gate's title.
    pub title: String,
    /// The gate's `checks:` list, to confirm before approving.
    pub checks: Vec<String>,
    /// Set when the run is cancelled (time budget, Ctrl-C): an approver that
    /// waits for a person should give up and return `None`.
    pub cancelled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// With `timeout:`, when the gate is rejected if still unanswered: an
    /// approver that waits for a person should stop waiting then and return
    /// [`Approval::timed_out`].
    pub expires_at: Option<std::time::SystemTime>,
    /// The gate's `timeout:`, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// The gate's `input:` fields, for the approver to fill in.
    pub input: Vec<cairn_lang::plan::InputField>,
}

/// A person's answer to a gate.
#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    /// `true` approves the gate, `false` rejects it (a rejection fails the gate).
    pub approved: bool,
    /// Who answered, as shown in events.
    pub by: String,
    /// Why, as shown in events.
    pub reason: String,
    /// The values of the gate's `input:` fields the approver gave (the
    /// others take their defaults; values that do not fit reject the gate).
    pub input: serde_json::Map<String, serde_json::Value>,
}

/// An approved gate's output, as its dependents read it (`outputs["ship"]`)
/// and `status` shows it: `#{ approved, by, reason, input }`.
pub fn gate_output(
    by: &str,
    reason: &str,
    input: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({ "approved": true, "by": by, "reason": reason, "input": input })
}

impl Approval {
    /// The rejection of a gate nobody answered within its `timeout:`.
    pub fn timed_out(timeout_ms: u64) -> Self {
        Self {
            approved: false,
            by: "timeout".to_owned(),
            reason: format!(
                "no answer within {}",
                cairn_lang::units::human_ms(timeout_ms)
            ),
            input: serde_json::Map::new(),
        }
    }
}

/// Keeps a run's events durably (the run store is one). An error from
/// either method stops the run: what is not recorded could not be resumed.
pub trait Recorder: Send + Sync {
    /// Takes the next event, in order. It may be held back until [`Recorder::sync`].
    fn record(&self, event: &Event) -> Result<(), String>;
    /// Makes every event taken so far durable. The scheduler calls it before
    /// a step that declares a capability starts (and before a gate asks, a
    /// file is changed, or compensation runs), so every step finished before
    /// it is committed first, and once more at the end of the run. Steps
    /// without capabilities in between are committed in groups.
    fn sync(&self) -> Result<(), String>;
}

/// What `cairn replay` answers calls from.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    /// Each (step, attempt)'s recorded outside calls, in order.
    pub calls: std::collections::HashMap<(String, u32), Arc<Vec<crate::script::context::Call>>>,
    /// The first divergence found.
    pub divergence: Arc<std::sync::Mutex<Option<crate::script::context::Divergence>>>,
    /// The steps the recording settled, by id: a replay starts these and
    /// only these, also after a failure stopped the plan (a sibling running
    /// beside the failed step settled in the recording; a step the run
    /// cancelled did not).
    pub settled: Arc<std::collections::HashSet<String>>,
}

/// Asks for approval (e.g. on a terminal); `None` means nobody can answer now.
pub type Approver = Arc<dyn Fn(&GateRequest) -> Option<Approval> + Send + Sync>;

/// How to run a plan.
#[derive(Clone, Default)]
pub struct Options {
    /// `--set name=value`: each value is read as a literal of the type of
    /// its param's default (see [`param_values`]), never evaluated.
    pub params: Vec<(String, String)>,
    /// Overrides the plan's `max_parallel`.
    pub max_parallel: Option<usize>,
    /// Overrides the plan's `seed` (default 0).
    pub seed: Option<u64>,
    /// Gates approved up front (`--approve`).
    pub approvals: Vec<String>,
    /// The plan's directory: `sh` runs there and paths resolve there
    /// (empty: the current directory).
    pub dir: PathBuf,
    /// The run store's directory, if the run is recorded: no file
    /// capability may reach into it (nor into the plan directory's `.cairn/`).
    pub state_dir: Option<PathBuf>,
    /// Asked at gates not approved up front.
    pub approver: Option<Approver>,
    /// Takes every event, in order, before it is reported; the run store
    /// records a run through it.
    pub recorder: Option<Arc<dyn Recorder>>,
    /// Keeps the process group of every running command (the run store
    /// does), so that a resume after cairn was killed can stop what it left
    /// running. `None`: kept nowhere.
    pub processes: Option<Arc<dyn ProcessLog>>,
    /// Continue a recorded run: steps settled before keep their outcomes.
    pub resume: Option<Arc<Resume>>,
    /// Replay a recorded run: outside calls are answered from the recording,
    /// never made. Gates take their answers from `resume`.
    pub replay: Option<Replay>,
    /// Start at most this many steps (steps whose outcome a resumed run
    /// keeps do not count); the rest wait, and the run ends paused. The REPL
    /// steps through a plan with it.
    pub start_limit: Option<usize>,
    /// Start only these steps (by id); the rest wait, and the run ends paused.
    pub only: Option<std::collections::HashSet<String>>,
    /// Interrupts the run from outside (a host's Ctrl-C handling): the
    /// library itself installs no signal handler.
    pub interrupter: Option<Interrupter>,
    /// The run's time: its events' `at_ms`, gate deadlines, `now()`,
    /// `sleep()` and retry backoff (the system's clock when `None`).
    pub clock: Option<Arc<dyn crate::clock::Clock>>,
    /// Where the child runs of `plan:` tasks are kept (the run store
    /// keeps them, linked to this run). `None`: they run unrecorded.
    pub children: Option<Arc<dyn ChildRuns>>,
    /// The capabilities steps may declare, with their registrations.
    /// `None`: [`crate::Engine::run`] uses the engine's, [`run`] the
    /// built-in ones.
    pub capabilities: Option<crate::Registry>,
}

/// What one step did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepReport {
    /// The step's id.
    pub id: String,
    /// Where the step ended up.
    pub status: StepStatus,
    /// How many attempts ran (0 if it never started or was skipped; gates and decisions count 1).
    pub attempts: u32,
    /// Wall-clock time from start to finish, in milliseconds (0 for gates and steps never started).
    pub duration_ms: u64,
    /// The last error, if it failed (`cancelled` when the run cancelled it).
    pub error: Option<crate::Failure>,
    /// The output as JSON: a task's `run:` value, or a decision's chosen target id.
    pub output: Option<serde_json::Value>,
}

/// How a run ended, step by step.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// How the run ended.
    pub status: RunStatus,
    /// Why the run failed or paused, in a sentence.
    pub message: Option<String>,
    /// One report per step, in file order.
    pub steps: Vec<StepReport>,
    /// Steps that were ready to start when the run ended (held back by
    /// `start_limit` or `only`), in the order they would start.
    pub ready: Vec<String>,
    /// Each hypothesis with the evidence weighed for it, in file order.
    pub hypotheses: Vec<HypothesisReport>,
    /// Why recording the run failed, if it did: the record ends at the last
    /// commit before (a resume goes on from there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrecorded: Option<String>,
}

/// Where a hypothesis stands at the end of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HypothesisReport {
    /// Its id.
    pub id: String,
    /// What it claims.
    pub statement: String,
    /// The evidence given for it.
    #[serde(flatten)]
    pub tally: crate::script::context::Tally,
    /// `(supports + 1) / (supports + refutes + 2)`.
    pub confidence: f64,
}
