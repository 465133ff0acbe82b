//! A recorded run's state and each step's, typed: what `runs`, `status`
//! and the audit compare, written as the words the store and `--json` show.

use std::fmt;

use cairn_engine::run::{RunStatus, StepStatus};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Serialize, Serializer};

/// Where a recorded run is: still going (or its process died), or stopped
/// with a [`RunStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Begun and not stopped: being run, or its process died (a lease tells).
    Running,
    /// Stopped: finished, failed, paused at a gate or interrupted.
    Stopped(RunStatus),
}

impl RunState {
    /// The word the store keeps and `cairn runs` shows (`running`, `paused`).
    pub fn word(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Stopped(status) => status.word(),
        }
    }

    /// The state a stored word names; `None` for a word this build does not know.
    pub fn from_word(word: &str) -> Option<Self> {
        if word == RunState::Running.word() {
            return Some(RunState::Running);
        }
        RunStatus::ALL
            .iter()
            .find(|s| s.word() == word)
            .map(|s| RunState::Stopped(*s))
    }

    /// Whether the run is over for good (succeeded, failed or cancelled): nothing
    /// about it goes on.
    pub fn is_over(self) -> bool {
        matches!(
            self,
            RunState::Stopped(RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled)
        )
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

impl Serialize for RunState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.word())
    }
}

impl ToSql for RunState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.word()))
    }
}

impl FromSql for RunState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let word = value.as_str()?;
        RunState::from_word(word)
            .ok_or_else(|| FromSqlError::Other(format!("unknown run status `{word}`").into()))
    }
}

/// Where a recorded step is, as its events say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepState {
    /// Started and not settled.
    Running,
    /// Cancelled while it ran (a resumed run runs it again).
    Cancelled,
    /// Settled, waiting at its gate, or reset ([`StepStatus::NotRun`]).
    At(StepStatus),
}

impl StepState {
    /// The word `cairn status` shows, the same the summary of `cairn run` uses.
    pub fn word(self) -> &'static str {
        match self {
            StepState::Running => "running",
            StepState::Cancelled => {
                StepStatus::Failed.word(Some(cairn_engine::failure::ErrorKind::Cancelled))
            }
            StepState::At(status) => status.word(None),
        }
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

impl Serialize for StepState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.word())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_states_read_back_from_their_words() {
        let states = std::iter::once(RunState::Running)
            .chain(RunStatus::ALL.iter().map(|s| RunState::Stopped(*s)));
        for state in states {
            assert_eq!(RunState::from_word(state.word()), Some(state));
            assert_eq!(
                serde_json::to_value(state).expect("serializes"),
                state.word()
            );
        }
        assert_eq!(RunState::from_word("exploded"), None);
    }
}
