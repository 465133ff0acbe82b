//! What a resumed run keeps from before: each settled step's outcome, and
//! which settling events the log already holds.

use std::collections::HashMap;

use super::{Approval, EventKind};
use crate::failure::Failure;

/// A map keyed by step id, in the order keys were first inserted. Resuming
/// a long run looks up every step's id several times: the hash is a fast
/// one (ids come from the run's own plan and log, not from an adversary).
pub type StepMap<V> = indexmap::IndexMap<Box<str>, V, ahash::RandomState>;

/// A step's outcome from an earlier part of the same run, kept by `resume`.
#[derive(Clone, Debug, PartialEq)]
pub enum Settled {
    /// The task succeeded with this output.
    Succeeded {
        /// Its output.
        output: serde_json::Value,
        /// Attempts it took.
        attempts: u32,
        /// For an iteration of `repeat:` with `until`: whether it held.
        until: Option<bool>,
    },
    /// The task or decision failed (a fallback may have recovered it).
    Failed {
        /// The last error.
        error: Failure,
        /// Attempts made.
        attempts: u32,
    },
    /// The task was skipped because its `when:` was false.
    Skipped {
        /// Why.
        reason: String,
    },
    /// The decision took this branch (`when …` or `else`) to this target.
    Chose {
        /// The branch as recorded.
        branch: String,
        /// The step it routed to.
        target: String,
    },
    /// The gate was answered.
    Answered(Approval),
    /// The task with `each:` listed these elements; its instances settle
    /// on their own (it has not settled yet).
    FannedOut {
        /// The elements, in order.
        items: Vec<serde_json::Value>,
    },
    /// The task with `repeat:` began its loop; its iterations settle on
    /// their own (it has not settled yet).
    Looping,
}

impl Settled {
    /// Whether it is the step's outcome: not a task that only fanned out
    /// or began its loop, whose parts are still to settle.
    pub fn is_outcome(&self) -> bool {
        !matches!(self, Settled::FannedOut { .. } | Settled::Looping)
    }
}

/// The settling events ([`super::Event::settles`]) logged for one step: a
/// resumed run does not log them again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settlings(u16);

impl Settlings {
    /// The bit for a settling event's kind; `None` for other kinds.
    pub(super) fn bit(kind: EventKind) -> Option<u16> {
        let index = match kind {
            EventKind::StepSucceeded => 0,
            EventKind::StepFailed => 1,
            EventKind::StepRecovered => 2,
            EventKind::StepSkipped => 3,
            EventKind::DecisionMade => 4,
            EventKind::GateApproved => 5,
            EventKind::GateRejected => 6,
            EventKind::Compensated => 7,
            EventKind::StepFannedOut => 8,
            EventKind::StepLooping => 9,
            _ => return None,
        };
        Some(1 << index)
    }

    /// Notes that an event of this kind was logged; other than settling
    /// events are ignored.
    pub fn insert(&mut self, kind: EventKind) {
        self.0 |= Self::bit(kind).unwrap_or(0);
    }

    /// Whether a settling event of this kind was logged.
    pub fn contains(self, kind: EventKind) -> bool {
        Self::bit(kind).is_some_and(|bit| self.0 & bit != 0)
    }

    /// Whether none was logged.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// One step as a resumed run finds it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kept {
    /// Its recorded outcome, if it settled: it never runs again.
    pub settled: Option<Settled>,
    /// The settling events already in the log, which are not logged again.
    pub logged: Settlings,
}

/// What a resumed run keeps from before.
#[derive(Clone, Debug, Default)]
pub struct Resume {
    /// Steps with a recorded outcome or settling events, by id.
    pub steps: StepMap<Kept>,
    /// Steps whose recorded outcome was dropped because the plan changed.
    pub invalidated: Vec<String>,
    /// Evidence kept steps gave: (hypothesis, verdict), in order.
    pub evidence: Vec<(String, String)>,
    /// When each gate that waited with a `timeout:` expires (ms since 1970):
    /// a gate's deadline counts from when it first waited, not from resume.
    pub gate_expiry: HashMap<String, u64>,
    /// Files steps changed before, with their contents before the run first
    /// changed them (`None`: they did not exist): (step, resolved path,
    /// contents), in order. Compensation puts them back as if this process
    /// had changed them.
    pub originals: Vec<(String, std::path::PathBuf, Option<Vec<u8>>)>,
    /// How long the run's earlier processes ran, in milliseconds (time
    /// between them, paused at a gate or after a crash, does not count):
    /// `budget: time` counts on from there.
    pub spent_ms: u64,
    /// What its settled steps reported with `spend`: `budget: cost` counts
    /// on from there (a step that runs again spends again).
    pub spent_cost: f64,
}

impl Resume {
    /// Keeps `settled` as the outcome of `step`: it will not run again.
    pub fn keep(&mut self, step: &str, settled: Settled) {
        self.steps.entry(step.into()).or_default().settled = Some(settled);
    }

    /// The recorded outcome of `step`, if it has one.
    pub fn settled(&self, step: &str) -> Option<&Settled> {
        self.steps.get(step)?.settled.as_ref()
    }

    /// How many steps keep a recorded outcome (a task that only fanned
    /// out or began its loop has none yet).
    pub fn kept(&self) -> usize {
        let outcome = |k: &Kept| k.settled.as_ref().is_some_and(Settled::is_outcome);
        self.steps.values().filter(|k| outcome(k)).count()
    }

    /// Whether a settling event of this kind is already logged for `step`.
    pub fn logged(&self, step: &str, kind: EventKind) -> bool {
        self.steps
            .get(step)
            .is_some_and(|kept| kept.logged.contains(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::{EventKind, Settlings};

    #[test]
    fn settlings_hold_settling_events_only() {
        let mut logged = Settlings::default();
        assert!(logged.is_empty());
        logged.insert(EventKind::StepFailed);
        logged.insert(EventKind::StepRecovered);
        logged.insert(EventKind::StepStarted);
        assert!(
            logged.contains(EventKind::StepFailed) && logged.contains(EventKind::StepRecovered)
        );
        assert!(
            !logged.contains(EventKind::StepSucceeded) && !logged.contains(EventKind::StepStarted)
        );
        assert!(EventKind::Compensated.settles() && !EventKind::Log.settles());
    }

    /// Each settling kind has a bit of its own.
    #[test]
    fn settling_kinds_have_distinct_bits() {
        let bits: Vec<u16> = EventKind::ALL
            .iter()
            .filter_map(|k| Settlings::bit(*k))
            .collect();
        let mut distinct = bits.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(bits.len(), distinct.len());
        assert_eq!(bits.len(), 10);
    }
}
