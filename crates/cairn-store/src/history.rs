//! Folding a run's log into what each step did: what `resume` keeps and
//! what `replay` answers from and compares against.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde_json::Value;

use cairn_engine::failure::{ErrorKind, Failure, Location};
use cairn_engine::run::{Approval, Call, EventKind, Kept, Resume, Settled, StepMap};
use cairn_engine::script::context::Tally;

/// What a run's events say, step by step.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Every step the log names, in the order first named, with its
    /// outcome and settling events: what a resume keeps, ready to hand over.
    steps: StepMap<Kept>,
    /// The rest of each step's part of the log, by its place in `steps`.
    logs: Vec<StepLog>,
    /// Settlings folded so far: each settled step's place in the order.
    settlings: u64,
    /// Each (step, attempt)'s outside calls, from the step's last start.
    pub calls: HashMap<(String, u32), Vec<Call>>,
    /// Evidence given: (step, hypothesis, verdict), in order, from each
    /// step's last start.
    evidence: Vec<(String, String, String)>,
    /// Events that could not be read, each said in words (see
    /// [`History::unreadable`]).
    unreadable: Vec<String>,
    /// Files steps changed, with what each held before the run first
    /// changed it: (step, resolved path, sha256 of the contents before,
    /// `None` if it did not exist), in order. A step started again keeps
    /// them: its earlier attempt may have changed the file.
    pub originals: Vec<(String, String, Option<String>)>,
    /// Running time of the processes before the last one (each from its
    /// `run_started` / `run_resumed` to its last event), and of the last
    /// one so far, in milliseconds: what `budget: time` has used.
    spent_ms: u64,
    segment_ms: u64,
}

/// One step's part of the log, from its last start (or reset), beside
/// its outcome.
#[derive(Clone, Debug, Default)]
struct StepLog {
    /// When it settled, counting settlings: its place in the order.
    settled_as: u64,
    /// Attempts that made outside calls: what a new start clears.
    call_attempts: Vec<u32>,
    /// Whether it gave evidence: a new start withdraws it.
    gave_evidence: bool,
    /// An unanswered gate with a `timeout:`: when it expires (ms since
    /// 1970), counted from the first time it waited.
    gate_expiry: Option<u64>,
    /// What it spent (`spend`), as its settling event says.
    spent: f64,
}

/// The fields of a logged event that the fold reads; the rest of the JSON
/// is skipped without being built (a run's log can hold millions of events).
#[derive(serde::Deserialize)]
struct Logged<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    step: Option<Cow<'a, str>>,
    #[serde(default)]
    attempts: Option<u32>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    output: Value,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    at: Option<Location>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    branch: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    target: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    by: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    hypothesis: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    verdict: Option<Cow<'a, str>>,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    at_ms: Option<u64>,
    #[serde(default)]
    spent: Option<f64>,
    #[serde(borrow, default)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sha256: Option<Cow<'a, str>>,
    #[serde(default)]
    items: Option<Vec<Value>>,
    #[serde(default)]
    until: Option<bool>,
    #[serde(default)]
    keep_parts: bool,
    #[serde(default)]
    input: serde_json::Map<String, Value>,
}

/// What can be read of an event whose body does not read whole (a value in
/// it nested past serde_json's 128 levels): its name and step, the rest
/// skipped without recursion.
#[derive(serde::Deserialize)]
pub(crate) struct Head {
    pub event: String,
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    pub at_ms: Option<i64>,
    #[serde(default)]
    pub attempts: Option<i64>,
}

/// Why the body of event `seq` cannot be read, and what of it can: for
/// reports.
pub fn unreadable(seq: i64, body: &str, error: &serde_json::Error) -> String {
    match serde_json::from_str::<Head>(body) {
        Ok(Head {
            event,
            step: Some(step),
            ..
        }) => format!("event {seq} ({event} of step `{step}`) cannot be read: {error}"),
        Ok(Head { event, .. }) => format!("event {seq} ({event}) cannot be read: {error}"),
        Err(_) => format!("event {seq} cannot be read: {error}"),
    }
}

impl History {
    /// Takes one event into account, as logged (its JSON text). Text that
    /// is not an event is ignored.
    pub fn fold(&mut self, body: &str) {
        self.fold_row(0, body);
    }

    /// [`History::fold`] for the event at position `seq` of the log: one
    /// that cannot be read is skipped (a step it would have settled is not
    /// settled: a resume runs it again) and kept in [`History::unreadable`].
    pub fn fold_row(&mut self, seq: i64, body: &str) {
        let event = match serde_json::from_str::<Logged>(body) {
            Ok(event) => event,
            Err(error) => {
                self.unreadable.push(unreadable(seq, body, &error));
                return;
            }
        };
        // A kind this build does not know (a newer cairn's) says nothing
        // it could use.
        let Some(kind) = EventKind::from_name(&event.event) else {
            return;
        };
        // Each process counts `at_ms` from its own start.
        if matches!(kind, EventKind::RunStarted | EventKind::RunResumed) {
            self.spent_ms += std::mem::take(&mut self.segment_ms);
        } else if let Some(at) = event.at_ms {
            self.segment_ms = self.segment_ms.max(at);
        }
        let Some(step) = event.step.as_deref() else {
            return;
        };
        let text = |field: &Option<Cow<str>>| field.as_deref().unwrap_or_default().to_owned();
        let attempts = event.attempts.unwrap_or(1);
        let slot = match self.steps.get_index_of(step) {
            Some(slot) => slot,
            None => {
                self.logs.push(StepLog::default());
                self.steps.insert_full(step.into(), Kept::default()).0
            }
        };
        let kept = &mut self.steps[slot];
        let log = &mut self.logs[slot];
        if matches!(kind, EventKind::StepSucceeded | EventKind::StepFailed) {
            log.spent = event.spent.unwrap_or_default();
        }
        let settled = match kind {
            EventKind::StepStarted | EventKind::StepReset => {
                // Started again (a rerun after a crash or a changed plan) or
                // reset: what it did before no longer counts.
                self.forget(slot, kind == EventKind::StepReset);
                // A reset task's instances and iterations go with it (a
                // restart keeps them: a resumed fan-out or loop goes on).
                if kind == EventKind::StepReset && !event.keep_parts {
                    let parts: Vec<usize> = (0..self.steps.len())
                        .filter(|&i| {
                            let (id, _) = self.steps.get_index(i).expect("in range");
                            cairn_lang::plan::part_of(id) == Some(step)
                        })
                        .collect();
                    for part in parts {
                        self.forget(part, true);
                    }
                }
                return;
            }
            EventKind::GateWaiting => {
                match event.expires_at {
                    Some(at) => {
                        log.gate_expiry.get_or_insert(at);
                    }
                    // Waiting without one: its timeout was removed.
                    None => log.gate_expiry = None,
                }
                return;
            }
            EventKind::Call => {
                if let Ok(call) = serde_json::from_str::<Call>(body) {
                    let attempt = event.attempt.unwrap_or(1);
                    if !log.call_attempts.contains(&attempt) {
                        log.call_attempts.push(attempt);
                    }
                    self.calls
                        .entry((step.to_owned(), attempt))
                        .or_default()
                        .push(call);
                }
                return;
            }
            EventKind::FileOriginal => {
                self.originals.push((
                    step.to_owned(),
                    text(&event.path),
                    event.sha256.as_deref().map(str::to_owned),
                ));
                return;
            }
            EventKind::Evidence => {
                log.gave_evidence = true;
                self.evidence.push((
                    step.to_owned(),
                    text(&event.hypothesis),
                    text(&event.verdict),
                ));
                return;
            }
            EventKind::StepSucceeded => Settled::Succeeded {
                output: event.output,
                attempts,
                until: event.until,
            },
            EventKind::StepFailed => Settled::Failed {
                error: Failure {
                    kind: event
                        .kind
                        .as_deref()
                        .and_then(ErrorKind::from_word)
                        .unwrap_or_default(),
                    message: text(&event.error),
                    code: event.code,
                    at: event.at,
                },
                attempts,
            },
            EventKind::StepSkipped => Settled::Skipped {
                reason: text(&event.reason),
            },
            EventKind::DecisionMade => Settled::Chose {
                branch: text(&event.branch),
                target: text(&event.target),
            },
            // Not an outcome yet: what a resume fans out again, until the
            // task's own outcome (later in the log) replaces it.
            EventKind::StepFannedOut => Settled::FannedOut {
                items: event.items.unwrap_or_default(),
            },
            // Likewise: what a resume begins looping again.
            EventKind::StepLooping => Settled::Looping,
            EventKind::GateApproved | EventKind::GateRejected => Settled::Answered(Approval {
                approved: kind == EventKind::GateApproved,
                by: text(&event.by),
                reason: text(&event.reason),
                input: event.input,
            }),
            EventKind::StepRecovered | EventKind::Compensated => {
                kept.logged.insert(kind);
                return;
            }
            _ => return,
        };
        log.gate_expiry = None;
        kept.logged.insert(kind);
        if kept.settled.is_none() {
            self.settlings += 1;
            log.settled_as = self.settlings;
        }
        kept.settled = Some(settled);
    }

    /// Drops what the step in `slot` did before: it starts again (`reset`:
    /// afresh, also as a gate's wait).
    fn forget(&mut self, slot: usize, reset: bool) {
        let (step, kept) = self.steps.get_index_mut(slot).expect("in range");
        *kept = Kept::default();
        let log = &mut self.logs[slot];
        log.spent = 0.0;
        for attempt in std::mem::take(&mut log.call_attempts) {
            self.calls.remove(&(step.to_string(), attempt));
        }
        if std::mem::take(&mut log.gave_evidence) {
            self.evidence.retain(|(s, _, _)| **s != **step);
        }
        // A gate waits afresh after a reset; a restart of the same gate (a
        // resume) keeps its first deadline.
        if reset {
            log.gate_expiry = None;
        }
    }

    /// The step's settled outcome, if it has one.
    pub fn settled(&self, step: &str) -> Option<&Settled> {
        self.steps.get(step)?.settled.as_ref()
    }

    /// The events that could not be read, in order, each said in words
    /// (its position, name and step where they can be read, and why).
    pub fn unreadable(&self) -> &[String] {
        &self.unreadable
    }

    /// Steps with a settled outcome, in the order the log first named them.
    pub fn settled_steps(&self) -> impl Iterator<Item = (&str, &Settled)> {
        self.steps
            .iter()
            .filter_map(|(id, kept)| Some((&**id, kept.settled.as_ref()?)))
    }

    /// Steps with a settled outcome, in the order they settled (a step
    /// started again after settling counts from when it settled again).
    pub fn settled_in_order(&self) -> Vec<(&str, &Settled)> {
        let mut settled: Vec<(u64, &str, &Settled)> = self
            .steps
            .iter()
            .zip(&self.logs)
            .filter_map(|((id, kept), log)| Some((log.settled_as, &**id, kept.settled.as_ref()?)))
            .collect();
        settled.sort_unstable_by_key(|&(at, _, _)| at);
        settled.into_iter().map(|(_, id, s)| (id, s)).collect()
    }

    /// How many steps have a settled outcome.
    pub fn settled_count(&self) -> usize {
        self.steps
            .values()
            .filter(|kept| kept.settled.is_some())
            .count()
    }

    /// When an unanswered gate that waited with a `timeout:` expires (ms
    /// since 1970).
    pub fn gate_expiry(&self, gate: &str) -> Option<u64> {
        self.logs[self.steps.get_index_of(gate)?].gate_expiry
    }

    /// Forgets the gate's deadline, so its next wait counts afresh (its
    /// `timeout:` was edited); whether it had one.
    pub fn forget_gate_expiry(&mut self, gate: &str) -> bool {
        self.steps
            .get_index_of(gate)
            .and_then(|slot| self.logs[slot].gate_expiry.take())
            .is_some()
    }

    /// Whether `gate` waited with a `timeout:` that has passed: `resume`
    /// rejects it, so it can no longer be approved.
    pub fn gate_expired(&self, gate: &str) -> bool {
        self.gate_expiry(gate)
            .is_some_and(|at| super::now_ms() >= at as i64)
    }

    /// The evidence given for each hypothesis, in the order first named.
    pub fn hypotheses(&self) -> Vec<(String, Tally)> {
        let mut tallies: Vec<(String, Tally)> = Vec::new();
        for (_, id, verdict) in &self.evidence {
            let index = match tallies.iter().position(|(h, _)| h == id) {
                Some(i) => i,
                None => {
                    tallies.push((id.clone(), Tally::default()));
                    tallies.len() - 1
                }
            };
            let tally = &mut tallies[index].1;
            match verdict.as_str() {
                "supports" => tally.supports += 1,
                "refutes" => tally.refutes += 1,
                _ => tally.neutral += 1,
            }
        }
        tallies
    }

    /// What a resume keeps: every settled step except `invalidated` ones.
    pub fn resume(self, invalidated: &[String]) -> Resume {
        let dropped: HashSet<&str> = invalidated.iter().map(String::as_str).collect();
        // An instance of `each:` or iteration of `repeat:` goes with its task.
        let keep = |step: &str| {
            !dropped.contains(step)
                && cairn_lang::plan::part_of(step).is_none_or(|task| !dropped.contains(task))
        };
        let spent_ms = self.spent_ms + self.segment_ms;
        let Self {
            mut steps,
            logs,
            evidence,
            ..
        } = self;
        // A step that did not settle runs again and gives its evidence again.
        let evidence = evidence
            .into_iter()
            .filter(|(s, _, _)| {
                keep(s) && steps.get(s.as_str()).is_some_and(|k| k.settled.is_some())
            })
            .map(|(_, h, v)| (h, v))
            .collect();
        let gate_expiry = steps
            .keys()
            .zip(&logs)
            .filter(|(id, _)| keep(id))
            .filter_map(|(id, log)| Some((id.to_string(), log.gate_expiry?)))
            .collect();
        let spent_cost = steps
            .iter()
            .zip(&logs)
            .filter(|((id, kept), _)| keep(id) && kept.settled.is_some())
            .map(|(_, log)| log.spent)
            .sum();
        // In place: a long run keeps nearly every step.
        steps.retain(|id, kept| keep(id) && (kept.settled.is_some() || !kept.logged.is_empty()));
        Resume {
            steps,
            invalidated: invalidated.to_vec(),
            evidence,
            gate_expiry,
            // Their contents are in the store's blobs: see `Store::originals`.
            originals: Vec::new(),
            spent_ms,
            spent_cost,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::History;
    use cairn_engine::failure::{ErrorKind, Failure, Location};
    use cairn_engine::run::{EventKind, Settled};

    fn fold(events: &[serde_json::Value]) -> History {
        let mut history = History::default();
        for event in events {
            history.fold(&event.to_string());
        }
        history
    }

    #[test]
    fn a_step_started_again_is_unsettled() {
        let history = fold(&[
            json!({"event": "step_started", "step": "a"}),
            json!({"event": "step_succeeded", "step": "a", "attempts": 1, "output": 1}),
            json!({"event": "step_reset", "step": "a", "reason": "edited"}),
        ]);
        assert_eq!(history.settled_count(), 0);
        assert!(history.settled_in_order().is_empty());
        let history = fold(&[
            json!({"event": "step_succeeded", "step": "a", "attempts": 1, "output": 1}),
            json!({"event": "step_started", "step": "a"}),
        ]);
        assert!(history.settled("a").is_none() && history.settled_in_order().is_empty());
    }

    #[test]
    fn steps_settle_in_order_and_a_rerun_moves_to_the_end() {
        let history = fold(&[
            json!({"event": "step_succeeded", "step": "a", "attempts": 1, "output": 1}),
            json!({"event": "step_failed", "step": "b", "attempts": 2, "error": "boom"}),
            json!({"event": "step_succeeded", "step": "c", "attempts": 1, "output": 3}),
            // A recovery logs more about `b` without moving it.
            json!({"event": "step_recovered", "step": "b", "by": "c"}),
            json!({"event": "step_started", "step": "a"}),
            json!({"event": "step_succeeded", "step": "a", "attempts": 1, "output": 2}),
        ]);
        let order: Vec<&str> = history.settled_in_order().iter().map(|(s, _)| *s).collect();
        assert_eq!(order, ["b", "c", "a"]);
        assert_eq!(
            history.settled("a"),
            Some(&Settled::Succeeded {
                output: json!(2),
                attempts: 1,
                until: None,
            })
        );
        let first_named: Vec<&str> = history.settled_steps().map(|(s, _)| s).collect();
        assert_eq!(first_named, ["a", "b", "c"]);
    }

    #[test]
    fn a_failure_keeps_its_kind_and_one_logged_before_kinds_reads_as_script() {
        let history = fold(&[
            json!({"event": "step_failed", "step": "old", "attempts": 1, "error": "boom"}),
            json!({"event": "step_failed", "step": "new", "attempts": 2, "error": "`x` exited with code 3",
                   "kind": "exit", "code": 3, "at": {"line": 6, "column": 8}}),
        ]);
        let failure = |step| match history.settled(step) {
            Some(Settled::Failed { error, .. }) => error.clone(),
            other => panic!("{step}: {other:?}"),
        };
        assert_eq!(failure("old"), Failure::script("boom"));
        let new = failure("new");
        assert_eq!((new.kind, new.code), (ErrorKind::Exit, Some(3)));
        assert_eq!(new.at, Some(Location { line: 6, column: 8 }));
    }

    #[test]
    fn a_resume_keeps_settled_steps_and_their_logged_events_but_not_invalidated_ones() {
        let history = fold(&[
            json!({"event": "step_failed", "step": "a", "attempts": 1, "error": "boom"}),
            json!({"event": "step_recovered", "step": "a", "by": "fix"}),
            json!({"event": "step_succeeded", "step": "fix", "attempts": 1, "output": null}),
            json!({"event": "step_succeeded", "step": "edited", "attempts": 1, "output": null}),
            json!({"event": "step_started", "step": "running"}),
            json!({"event": "gate_waiting", "step": "ship", "expires_at": 99}),
        ]);
        let resume = history.resume(&["edited".to_owned()]);
        assert_eq!(resume.kept(), 2);
        assert!(
            resume.logged("a", EventKind::StepFailed)
                && resume.logged("a", EventKind::StepRecovered)
        );
        assert!(!resume.logged("a", EventKind::StepSucceeded));
        assert!(resume.settled("edited").is_none() && resume.settled("running").is_none());
        assert_eq!(resume.invalidated, ["edited"]);
        assert_eq!(resume.gate_expiry.get("ship"), Some(&99));
    }

    #[test]
    fn a_reset_forgets_a_gate_deadline_and_a_restart_keeps_it() {
        let history = fold(&[
            json!({"event": "gate_waiting", "step": "g", "expires_at": 5}),
            json!({"event": "step_started", "step": "g"}),
            json!({"event": "gate_waiting", "step": "g", "expires_at": 9}),
        ]);
        assert_eq!(history.gate_expiry("g"), Some(5));
        let mut history = fold(&[
            json!({"event": "gate_waiting", "step": "g", "expires_at": 5}),
            json!({"event": "step_reset", "step": "g", "reason": "edited"}),
            json!({"event": "gate_waiting", "step": "g", "expires_at": 9}),
        ]);
        assert_eq!(history.gate_expiry("g"), Some(9));
        assert!(history.forget_gate_expiry("g") && history.gate_expiry("g").is_none());
    }

    #[test]
    fn only_settled_steps_keep_their_evidence() {
        let history = fold(&[
            json!({"event": "evidence", "step": "done", "hypothesis": "h", "verdict": "supports"}),
            json!({"event": "step_succeeded", "step": "done", "attempts": 1, "output": null}),
            json!({"event": "step_started", "step": "running"}),
            json!({"event": "evidence", "step": "running", "hypothesis": "h", "verdict": "refutes"}),
        ]);
        let resume = history.resume(&[]);
        assert_eq!(
            resume.evidence,
            vec![("h".to_owned(), "supports".to_owned())]
        );
        assert_eq!(resume.kept(), 1);
    }
}
