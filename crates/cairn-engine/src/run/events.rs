//! What happens during a run, one event at a time (also written as JSON lines).

use serde::Serialize;

use crate::failure::{ErrorKind, Location};

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
    /// Stopped by Ctrl-C: it can be resumed.
    Interrupted,
    /// Stopped for good from outside (`cairn cancel`, [`super::Interrupter::cancel`]):
    /// its running steps were cancelled, and it does not resume.
    Cancelled,
}

impl Event {
    /// The step the event is about, if it is about one.
    pub fn step(&self) -> Option<&str> {
        match self {
            Event::RunInputs { .. }
            | Event::RunStarted { .. }
            | Event::RunResumed { .. }
            | Event::RunFinished { .. } => None,
            Event::StepStarted { step, .. }
            | Event::AttemptFailed { step, .. }
            | Event::Retrying { step, .. }
            | Event::StepSucceeded { step, .. }
            | Event::StepFailed { step, .. }
            | Event::StepCancelled { step, .. }
            | Event::StepReset { step, .. }
            | Event::StepRecovered { step, .. }
            | Event::StepSkipped { step, .. }
            | Event::StepFannedOut { step, .. }
            | Event::StepLooping { step, .. }
            | Event::SubPlanStarted { step, .. }
            | Event::StepWaiting { step, .. }
            | Event::DecisionMade { step, .. }
            | Event::GateWaiting { step, .. }
            | Event::GateApproved { step, .. }
            | Event::GateRejected { step, .. }
            | Event::Log { step, .. }
            | Event::Call { step, .. }
            | Event::Artifact { step, .. }
            | Event::FileOriginal { step, .. }
            | Event::Evidence { step, .. }
            | Event::Compensating { step, .. }
            | Event::Compensated { step, .. } => Some(step),
        }
    }

    /// The event's name as written in JSON (`step_succeeded`).
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Whether the event settles its step for good: a resumed run keeps it
    /// and never records it twice.
    pub fn settles(&self) -> bool {
        self.kind().settles()
    }
}

impl RunStatus {
    /// Every status.
    pub const ALL: &'static [RunStatus] = &[
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Paused,
        RunStatus::Interrupted,
        RunStatus::Cancelled,
    ];

    /// The word for it, as the log's `run_finished` and `cairn runs` write it.
    pub fn word(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Paused => "paused",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// The process exit code for this outcome.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Succeeded => 0,
            Self::Failed | Self::Cancelled => 1,
            Self::Paused => 3,
            Self::Interrupted => 130,
        }
    }
}

/// A command's output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Its standard output.
    Stdout,
    /// Its standard error.
    Stderr,
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

impl StepStatus {
    /// The word for a step in this status, the one `cairn status` and the
    /// summary of `cairn run` both print. A step the run cancelled is
    /// `Failed` with a failure of kind `cancelled`: "cancelled".
    pub fn word(self, error: Option<ErrorKind>) -> &'static str {
        match self {
            StepStatus::NotRun => "not run",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed if error == Some(ErrorKind::Cancelled) => "cancelled",
            StepStatus::Failed => "failed",
            StepStatus::Recovered => "recovered",
            StepStatus::Skipped => "skipped",
            StepStatus::Waiting => "waiting",
            StepStatus::Compensated => "compensated",
        }
    }
}

/// Which event an [`Event`] is, without its fields: what the store's fold,
/// its queries and the audit check match on. The one list of event names:
/// `kinds!` makes the enum, [`EventKind::name`], [`EventKind::from_name`] and
/// [`Event::kind`] from it, and a test holds the names to serde's (the JSON
/// tag of [`Event`] is its variant's name in snake case, as each name here).
macro_rules! kinds {
    ($($variant:ident = $name:literal,)*) => {
        /// An event's kind: [`Event`] without its fields.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum EventKind {
            $(
                #[doc = concat!("`", $name, "`: see [`Event::", stringify!($variant), "`].")]
                $variant,
            )*
        }

        impl EventKind {
            /// Every kind, in the order [`Event`] declares them.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            /// The name the log writes (`step_succeeded`).
            pub fn name(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            /// The kind a logged name stands for; `None` for a name this
            /// build does not know (a newer cairn's, or a damaged row).
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(EventKind::$variant),)*
                    _ => None,
                }
            }
        }

        impl Event {
            /// Which event this is.
            pub fn kind(&self) -> EventKind {
                match self {
                    $(Event::$variant { .. } => EventKind::$variant,)*
                }
            }
        }
    };
}

kinds! {
    RunInputs = "run_inputs",
    RunStarted = "run_started",
    RunResumed = "run_resumed",
    StepStarted = "step_started",
    AttemptFailed = "attempt_failed",
    Retrying = "retrying",
    StepSucceeded = "step_succeeded",
    StepFailed = "step_failed",
    StepCancelled = "step_cancelled",
    StepReset = "step_reset",
    StepRecovered = "step_recovered",
    StepSkipped = "step_skipped",
    StepFannedOut = "step_fanned_out",
    StepLooping = "step_looping",
    SubPlanStarted = "sub_plan_started",
    StepWaiting = "step_waiting",
    DecisionMade = "decision_made",
    GateWaiting = "gate_waiting",
    GateApproved = "gate_approved",
    GateRejected = "gate_rejected",
    Log = "log",
    Call = "call",
    Artifact = "artifact",
    FileOriginal = "file_original",
    Evidence = "evidence",
    Compensating = "compensating",
    Compensated = "compensated",
    RunFinished = "run_finished",
}

impl EventKind {
    /// Whether an event of this kind settles its step for good: a resumed
    /// run keeps it and never records it twice.
    pub fn settles(self) -> bool {
        super::Settlings::bit(self).is_some()
    }
}

/// One thing that happened. `at_ms` is time since the run started.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// What the run runs, as the store keeps it: the plan file, sha256 of
    /// its source, of the plan as checked (its stored encoding) and of its
    /// params (their JSON as stored), and its seed. Recorded by the store
    /// when the run begins and whenever they change (`resume
    /// --allow-changed`, the REPL's `:set`), so the audit chain covers
    /// everything that decides what runs.
    RunInputs {
        /// The plan file as given.
        file: String,
        /// sha256 of the plan's source text.
        source_sha256: String,
        /// sha256 of the checked plan's stored encoding.
        plan_sha256: String,
        /// sha256 of the params as stored (JSON).
        params_sha256: String,
        /// The seed.
        seed: u64,
    },
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
    /// A recorded run continues (`cairn resume`): steps it settled before
    /// are not run again.
    RunResumed {
        /// Steps whose recorded outcome is kept.
        kept: usize,
        /// Steps whose recorded outcome was dropped because the plan changed.
        invalidated: Vec<String>,
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
        /// What sort of failure (`script` in logs from before kinds).
        #[serde(default)]
        kind: ErrorKind,
        /// A command's exit code, for kind `exit`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i64>,
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
        /// What its attempts reported with `spend`, if anything: a resumed
        /// run's `budget: cost` counts on from it.
        #[serde(skip_serializing_if = "Option::is_none")]
        spent: Option<f64>,
        /// For an iteration of `repeat:` with `until`: whether `until`
        /// held over its output (the loop ends there).
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<bool>,
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
        /// What sort of failure (`script` in logs from before kinds).
        #[serde(default)]
        kind: ErrorKind,
        /// A command's exit code, for kind `exit`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i64>,
        /// Where in the plan file the code that failed is, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<Location>,
        /// What its attempts reported with `spend`, if anything.
        #[serde(skip_serializing_if = "Option::is_none")]
        spent: Option<f64>,
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
    /// The run was cancelled (Ctrl-C, the time budget, a stopping failure)
    /// while the step ran; a resumed run runs it again.
    StepCancelled {
        /// The step's id.
        step: String,
        /// Attempts started, including the cancelled one.
        attempts: u32,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A settled step's outcome was dropped (`:retry` or `:reload` in the
    /// REPL, `resume --allow-changed`, `cairn retry`): it runs again when it
    /// is next ready.
    StepReset {
        /// The step's id.
        step: String,
        /// Why.
        reason: String,
        /// A task with `each:` or `repeat:` keeps its settled instances and
        /// iterations (`cairn retry` runs only the failed ones again);
        /// otherwise they go with it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        keep_parts: bool,
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
    /// A task with `each:` listed its elements: one instance per element
    /// runs next, as `step[0]`, `step[1]`, … (none: the task succeeds with `[]`).
    StepFannedOut {
        /// The task's id.
        step: String,
        /// The elements, in order: instance `i` has `item` = `items[i]`.
        items: Vec<serde_json::Value>,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A task with `repeat:` began its loop (its `when:` held): its
    /// iterations run next, one after another, as `step#1`, `step#2`, ….
    StepLooping {
        /// The task's id.
        step: String,
        /// The most iterations it may run.
        max: u32,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// An attempt of a task with `plan:` began (or went on with) its child
    /// run, which records the child's own steps.
    SubPlanStarted {
        /// The task's id (a part's: `round#2`).
        step: String,
        /// The attempt the child run belongs to.
        attempt: u32,
        /// The child run's id.
        run: String,
        /// The plan the child runs, as `plan:` names it.
        plan: String,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A task with `plan:` waits: its child run paused at gates nobody
    /// could answer. A resume goes on with the child once they are.
    StepWaiting {
        /// The task's id.
        step: String,
        /// The child's waiting gates, as `cairn approve` names them
        /// (`round.ship`, `round#2.ship`).
        on: Vec<String>,
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
        /// With `timeout:`, when the gate is rejected if still unanswered,
        /// in milliseconds since 1970 (it holds across processes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
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
        /// The values of the gate's `input:` fields, as given (defaults
        /// are filled in when the gate is answered).
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        input: serde_json::Map<String, serde_json::Value>,
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
    /// A line from a step's `log`, `print` or `debug`, or (with `stream`)
    /// a line its `sh` command wrote, as the command runs.
    Log {
        /// The id of the step that logged it.
        step: String,
        /// The line, as logged.
        line: String,
        /// For a command's output: which of its streams.
        #[serde(skip_serializing_if = "Option::is_none")]
        stream: Option<Stream>,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A call that reached outside the script (`sh`, `fs`, `http`, `now`,
    /// `rand`, a host tool), with its result: what `cairn replay` answers from.
    Call {
        /// The step that made it.
        step: String,
        /// Its attempt (0: its compensation).
        attempt: u32,
        /// The call's number within the attempt, from 1.
        call: u32,
        /// The function, its arguments and its result.
        #[serde(flatten)]
        record: crate::script::context::Call,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A step weighed evidence for a hypothesis.
    Evidence {
        /// The step that gave it.
        step: String,
        /// The hypothesis's id.
        hypothesis: String,
        /// `supports`, `refutes` or `neutral`.
        verdict: String,
        /// Why, in the step's words.
        note: String,
        /// The hypothesis's confidence after it.
        confidence: f64,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A step saved a value with `artifact(name, value)`; the store keeps it by hash.
    Artifact {
        /// The step that saved it.
        step: String,
        /// Its name.
        name: String,
        /// sha256 of the content.
        sha256: String,
        /// The content's size.
        bytes: u64,
        /// The content (kept in the store, not in the event).
        #[serde(skip)]
        content: crate::script::context::ArtifactBody,
        /// Milliseconds since the run started.
        at_ms: u64,
    },
    /// A step is about to change a file: what the file held before the run
    /// first changed it (`sha256` of it, `None` if it did not exist), kept
    /// in the store so compensation can put it back from any process.
    FileOriginal {
        /// The step changing it.
        step: String,
        /// The resolved path (free of links) that changes.
        path: String,
        /// sha256 of the contents before, if the file existed.
        sha256: Option<String>,
        /// The contents (kept in the store, not in the event).
        #[serde(skip)]
        content: Option<std::sync::Arc<Vec<u8>>>,
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

#[cfg(test)]
mod tests {
    use super::EventKind;

    /// The names `kinds!` lists are serde's for the same variants, so the
    /// log's `event` tag and [`EventKind::name`] never disagree.
    #[test]
    fn every_kind_is_named_as_serde_names_it() {
        for kind in EventKind::ALL {
            let tag = serde_json::to_value(kind).expect("serializes");
            assert_eq!(tag, kind.name(), "{kind:?}");
            assert_eq!(EventKind::from_name(kind.name()), Some(*kind));
            let back: EventKind = serde_json::from_value(tag).expect("deserializes");
            assert_eq!(back, *kind);
        }
        assert_eq!(EventKind::from_name("step_exploded"), None);
    }

    /// A run status's word is serde's name for it.
    #[test]
    fn run_status_words_are_serde_names() {
        for status in super::RunStatus::ALL {
            let name = serde_json::to_value(status).expect("serializes");
            assert_eq!(name, status.word());
        }
    }
}
