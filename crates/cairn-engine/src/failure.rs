//! Why a step failed: the kind of failure, its words, a command's exit code
//! and where in the plan file the code that failed is.

use serde::{Deserialize, Serialize};

/// What sort of failure it was: `error.kind` in a retry predicate,
/// `failure.kind` in a fallback, `kind` in `step_failed` events and status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// A command exited with a non-zero code (`error.code` says which).
    Exit,
    /// An attempt ran past its `timeout:` (or the plan's `default_timeout:`,
    /// or `retry: … total`).
    Timeout,
    /// An `expect:` criterion was false (or a loop did not converge).
    Expect,
    /// The code itself: a Rhai error, `fail(…)`, `throw`. (Also what a
    /// failure recorded before kinds existed reads as.)
    #[default]
    Script,
    /// The sandbox refused: a path, host or capability the step was not granted.
    Capability,
    /// An outside call failed: a file that cannot be read, a connection refused.
    Io,
    /// The run's cost budget was crossed.
    Budget,
    /// The run was cancelled, interrupted or aborted while it ran.
    Cancelled,
    /// A gate was rejected or timed out.
    Rejected,
}

impl ErrorKind {
    /// The kind as plan code compares it: `"exit"`, `"timeout"`, …
    pub fn word(self) -> &'static str {
        match self {
            Self::Exit => "exit",
            Self::Timeout => "timeout",
            Self::Expect => "expect",
            Self::Script => "script",
            Self::Capability => "capability",
            Self::Io => "io",
            Self::Budget => "budget",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
        }
    }

    /// The kind a word names, as [`ErrorKind::word`] spells it.
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.word() == word)
    }

    /// Every kind, in the order the docs list them.
    pub const ALL: [Self; 9] = [
        Self::Exit,
        Self::Timeout,
        Self::Expect,
        Self::Script,
        Self::Capability,
        Self::Io,
        Self::Budget,
        Self::Cancelled,
        Self::Rejected,
    ];
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// A place in the plan file: line and column, from 1 (the column in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The line, from 1.
    pub line: u32,
    /// The column, in characters, from 1.
    pub column: u32,
}

/// A step's failure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failure {
    /// What sort of failure.
    pub kind: ErrorKind,
    /// What went wrong, in words (with `line L, column C:` in front when
    /// the code that failed is known).
    pub message: String,
    /// A command's exit code, for [`ErrorKind::Exit`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// Where the code that failed is in the plan file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<Location>,
}

impl Failure {
    /// A failure of `kind` with nothing more known than its message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            code: None,
            at: None,
        }
    }

    /// The failure of the code itself.
    pub fn script(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Script, message)
    }

    /// The same failure with `context` in front of its message
    /// (`input \`x\`: …`, `` `task[2]` failed: … ``).
    pub fn within(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}{}", self.message);
        self
    }

    /// The same failure with a new message.
    pub fn reworded(mut self, message: String) -> Self {
        self.message = message;
        self
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
