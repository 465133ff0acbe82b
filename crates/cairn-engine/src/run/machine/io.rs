//! What goes into the state machine and what comes out: outcomes and the
//! time they happened at, the run's policy, and the actions it asks for.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::failure::Failure;
use crate::run::{Approval, Settled};
use cairn_lang::plan::Task;

/// How a step ended, as the driver reports it.
#[derive(Debug)]
pub enum Outcome {
    /// Not run, for this reason (`when:` was false).
    Skipped(String),
    /// Its attempt passed.
    Succeeded {
        /// The `run:` body's value.
        output: serde_json::Value,
        /// Attempts it took.
        attempts: u32,
    },
    /// Its last attempt failed.
    Failed {
        /// Why.
        error: Failure,
        /// Attempts made (0 when `when:` or `input:` failed).
        attempts: u32,
    },
    /// A decision chose a branch.
    Chose {
        /// The branch's index, or `None` for `else`.
        branch: Option<usize>,
        /// The step the branch routes to.
        target: String,
    },
    /// The run was cancelled while the step ran.
    Cancelled {
        /// Attempts started, the cancelled one included.
        attempts: u32,
    },
    /// A gate's answer (`None`: nobody could answer).
    Gate(Option<Approval>),
    /// A gate whose `when:` held: it may open.
    GateOpen,
    /// A task with `each:` gave its elements: its instances run next.
    FannedOut(Vec<serde_json::Value>),
    /// A task with `repeat:` may loop (its `when:` held): its first
    /// iteration runs next.
    Looping,
    /// A task with `plan:` whose child run paused at gates nobody could
    /// answer now (their names as `cairn approve` takes them): the task
    /// waits, and runs again (going on with its child) on resume.
    Waiting(Vec<String>),
    /// An iteration of `repeat:` with `until` passed, and `until` was read.
    Iterated {
        /// The body's value.
        output: serde_json::Value,
        /// Attempts it took.
        attempts: u32,
        /// Whether `until` held over it: the loop ends here.
        converged: bool,
    },
}

/// What part of its task a node runs, when it runs one.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// An instance of `each:`: its element and the element's position.
    Element {
        /// The position, from 0.
        index: usize,
        /// The element.
        item: serde_json::Value,
    },
    /// An iteration of `repeat:`: its number and the output before it.
    Iteration {
        /// The number, from 1.
        number: u32,
        /// The previous iteration's output (`()` for the first).
        previous: serde_json::Value,
    },
}

impl Part {
    /// Where it sorts among its task's parts.
    pub fn position(&self) -> usize {
        match self {
            Part::Element { index, .. } => *index,
            Part::Iteration { number, .. } => *number as usize,
        }
    }
}

/// When something happened: what the driver's clock said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds since the run started (its events' `at_ms`).
    pub at_ms: u64,
    /// Milliseconds since 1970 (gate deadlines outlive the process); read
    /// only for gates with a `timeout:`, so a driver may leave it 0 when
    /// the plan has none.
    pub unix_ms: u64,
}

/// What the run was asked to do beyond the plan, fixed for the run.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// At most this many steps at once.
    pub max_parallel: usize,
    /// Gates approved up front (`--approve`).
    pub approvals: Vec<String>,
    /// Whether someone can be asked about a gate; if not, it waits.
    pub can_ask: bool,
    /// Start at most this many steps (the REPL steps one at a time).
    pub start_limit: Option<usize>,
    /// Start only these steps (kept outcomes still settle).
    pub only: Option<HashSet<String>>,
    /// In a replay: the steps the recording settled, the only ones started.
    pub replayed: Option<Arc<HashSet<String>>>,
    /// Deadlines of gates that waited before, by id (ms since 1970).
    pub gate_expiry: HashMap<String, u64>,
}

/// What the machine asks the driver to do.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Run the step's code on a worker. `failure` is, for a fallback, the
    /// step that failed and its error.
    Run {
        /// The node to run.
        node: usize,
        /// For a fallback: the step that failed, and its error.
        failure: Option<(String, Failure)>,
    },
    /// Ask whether gate `node` is approved (someone can be asked).
    Ask {
        /// The gate's node.
        node: usize,
        /// When the gate is rejected if still unanswered (ms since 1970).
        expires_at: Option<u64>,
    },
}

/// What the driver knew when a step finished, beside its outcome.
#[derive(Clone, Copy, Debug, Default)]
pub struct Finished {
    /// What the step reported with `spend`, if anything.
    pub spent: Option<f64>,
    /// Whether the run's cost budget is now exceeded.
    pub over_budget: bool,
}

/// The outcome a resumed run keeps for `task`, as the machine takes it.
pub fn kept_outcome(task: &Task, settled: &Settled) -> Outcome {
    match settled.clone() {
        Settled::Succeeded {
            output,
            attempts,
            until: Some(converged),
        } => Outcome::Iterated {
            output,
            attempts,
            converged,
        },
        Settled::Succeeded {
            output, attempts, ..
        } => Outcome::Succeeded { output, attempts },
        Settled::Failed { error, attempts } => Outcome::Failed { error, attempts },
        Settled::Skipped { reason } => Outcome::Skipped(reason),
        Settled::Chose { branch, target } => Outcome::Chose {
            branch: task.step.decision().and_then(|decision| {
                let branches = &decision.branches;
                branches
                    .iter()
                    .position(|b| format!("when {}", b.condition.text) == branch)
            }),
            target,
        },
        Settled::Answered(approval) => Outcome::Gate(Some(approval)),
        Settled::FannedOut { items } => Outcome::FannedOut(items),
        Settled::Looping => Outcome::Looping,
    }
}
