//! What happens during a run, one event at a time (also written as JSON lines).

use serde::Serialize;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
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
    Succeeded,
    Failed,
    /// Failed, but its `on failure ->` fallback succeeded.
    Recovered,
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
    RunStarted {
        plan: String,
        steps: usize,
        max_parallel: usize,
        seed: u64,
    },
    StepStarted {
        step: String,
        at_ms: u64,
    },
    AttemptFailed {
        step: String,
        attempt: u32,
        error: String,
        at_ms: u64,
    },
    Retrying {
        step: String,
        attempt: u32,
        delay_ms: u64,
        at_ms: u64,
    },
    StepSucceeded {
        step: String,
        attempts: u32,
        output: serde_json::Value,
        at_ms: u64,
    },
    StepFailed {
        step: String,
        attempts: u32,
        error: String,
        at_ms: u64,
    },
    StepRecovered {
        step: String,
        by: String,
        at_ms: u64,
    },
    StepSkipped {
        step: String,
        reason: String,
        at_ms: u64,
    },
    DecisionMade {
        step: String,
        branch: String,
        target: String,
        at_ms: u64,
    },
    GateWaiting {
        step: String,
        title: String,
        checks: Vec<String>,
        at_ms: u64,
    },
    GateApproved {
        step: String,
        by: String,
        reason: String,
        at_ms: u64,
    },
    GateRejected {
        step: String,
        by: String,
        reason: String,
        at_ms: u64,
    },
    Log {
        step: String,
        line: String,
        at_ms: u64,
    },
    Compensating {
        step: String,
        at_ms: u64,
    },
    Compensated {
        step: String,
        at_ms: u64,
    },
    RunFinished {
        status: RunStatus,
        message: Option<String>,
        at_ms: u64,
    },
}
