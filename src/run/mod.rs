//! Stage 4, run: executing a checked plan — scheduling, steps, routing, gates.

mod dry;
pub mod events;
mod scheduler;
mod step;

use std::path::PathBuf;
use std::sync::Arc;

pub use dry::explain;
pub use events::{Event, RunStatus, StepStatus};
pub use scheduler::{check_params, run};

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
}

/// A person's answer to a gate.
#[derive(Clone, Debug)]
pub struct Approval {
    /// `true` approves the gate, `false` rejects it (a rejection fails the gate).
    pub approved: bool,
    /// Who answered, as shown in events.
    pub by: String,
    /// Why, as shown in events.
    pub reason: String,
}

/// Records an event durably before it is reported; an error stops the run.
pub type Recorder = Arc<dyn Fn(&Event) -> Result<(), String> + Send + Sync>;

/// Asks for approval (e.g. on a terminal); `None` means nobody can answer now.
pub type Approver = Arc<dyn Fn(&GateRequest) -> Option<Approval> + Send + Sync>;

/// How to run a plan.
#[derive(Clone, Default)]
pub struct Options {
    /// `--set name=value`: values are Rhai literals (`42`, `"text"`,
    /// `true`); anything that is not one is taken as a string.
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
    /// Asked at gates not approved up front.
    pub approver: Option<Approver>,
    /// Called with every event, in order, before it is reported; the run
    /// store records a run through it.
    pub recorder: Option<Recorder>,
    /// Extra capabilities: name → registration of their functions.
    pub registrars: std::collections::HashMap<String, crate::script::Registrar>,
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
    pub error: Option<String>,
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
}
