//! What happens during a run, one event at a time (also written as JSON lines).

use serde::Serialize;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// No failure stopped the run and no gate is waiting (steps under `on failure: continue` may have failed).
    Succeeded,
    /// A failure stopped the run: a step under `stop` or `compensate`, or the cost or time budget.
    Failed,
    /// Stopped at a gate that waits for approval.
    Paused,
    /// Stopped by Ctrl-C.
    Interrupted,
}

impl RunStatus {
    /// The process exit code for this outcome.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Succeeded => 0,
            Self::Failed => 1,
            Self::Paused => 3,
            Self::Interrupted => 130,
        }
    }
}

/// Where a step ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Never started (the run stopped first).
    NotRun,
    /// Finished: a task's attempt passed, a decision chose, or a gate was approved.
    Succeeded,
    /// Its last attempt failed, its gate was rejected, or the run cancelled it.
    Failed,
    /// Failed, but its `on failure ->` fallback succeeded.
    Recovered,
    /// Not run: `when:` was false, nothing routed to it, or every step it needs was skipped.
    Skipped,
    /// A gate waiting for approval.
    Waiting,
    /// Undone by compensation after the run failed.
    Compensated,
}

/// One thing that happened. `at_ms` is time since the run started.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run began.
    RunStarted {
        /// The plan's id.
        plan: String,
        /// How many tasks, decisions and gates the plan has.
        steps: usize,
        /// The effective limit on steps running at once (after `--max-parallel`).
        max_parallel: usize,
        /// The effective seed (after `--seed`; 0 when neither sets one).
        seed: u64,
    },
    /// A task or decision started (gates report `gate_*` events instead).
    StepStarted {
        /// The step's id.
        step: String,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// An attempt failed and another will follow (the last failure is `step_failed`).
    AttemptFailed {
        /// The step's id.
        step: String,
        /// The number of the attempt that failed, from 1.
        attempt: u32,
        /// Why the attempt failed.
        error: String,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// The step waits before its next attempt.
    Retrying {
        /// The step's id.
        step: String,
        /// The number of the attempt about to start.
        attempt: u32,
        /// The wait before it, in milliseconds (backoff plus jitter).
        delay_ms: u64,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A task finished successfully.
    StepSucceeded {
        /// The step's id.
        step: String,
        /// How many attempts it took.
        attempts: u32,
        /// The `run:` body's value as JSON (`null` without a body).
        output: serde_json::Value,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A task or decision failed after its last attempt (a fallback may still recover it).
    StepFailed {
        /// The step's id.
        step: String,
        /// How many attempts ran (0 when `when:` or `input:` failed).
        attempts: u32,
        /// The last error.
        error: String,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A failed step's `on failure ->` fallback succeeded.
    StepRecovered {
        /// The id of the step that failed.
        step: String,
        /// The id of the fallback that succeeded.
        by: String,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A step was skipped: its work does not run (it may have started to test `when:`).
    StepSkipped {
        /// The step's id.
        step: String,
        /// Why, in a sentence.
        reason: String,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A decision chose where to go.
    DecisionMade {
        /// The decision's id.
        step: String,
        /// The branch taken: `when <condition>` or `else`.
        branch: String,
        /// The id of the step the branch routes to.
        target: String,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A gate is waiting for an approval that nobody could give now.
    GateWaiting {
        /// The gate's id.
        step: String,
        /// The gate's title.
        title: String,
        /// The gate's `checks:` list.
        checks: Vec<String>,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A gate was approved (up front with `--approve`, or when asked).
    GateApproved {
        /// The gate's id.
        step: String,
        /// Who approved it (`--approve` for command-line approvals).
        by: String,
        /// The reason they gave.
        reason: String,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A gate was rejected; it fails like a step.
    GateRejected {
        /// The gate's id.
        step: String,
        /// Who rejected it.
        by: String,
        /// The reason they gave.
        reason: String,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A line from a step's `log`, `print` or `debug`.
    Log {
        /// The id of the step that logged it.
        step: String,
        /// The line, as logged.
        line: String,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A completed task is being undone after the plan failed under `compensate`.
    Compensating {
        /// The task's id.
        step: String,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A task's compensation succeeded and the files it changed were restored.
    Compensated {
        /// The task's id.
        step: String,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// The run ended; always the last event.
    RunFinished {
        /// How it ended.
        status: RunStatus,
        /// Why it failed, paused or was interrupted; `None` on success.
        message: Option<String>,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
}
