//! Folding a run's log into what each step did: what `resume` keeps and
//! what `replay` answers from and compares against.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::run::{Approval, Call, Resume, Settled};
use crate::script::context::Tally;

/// What a run's events say, step by step.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Each step's settled outcome, if it has one.
    pub settled: HashMap<String, Settled>,
    /// Steps in the order they first settled.
    pub order: Vec<String>,
    /// The settling events logged for each step (`step_succeeded`, …).
    pub recorded: HashMap<String, Vec<String>>,
    /// Each (step, attempt)'s outside calls, from the step's last start.
    pub calls: HashMap<(String, u32), Vec<Call>>,
    /// The attempts of each step that made calls: what a new start clears.
    attempts_with_calls: HashMap<String, Vec<u32>>,
    /// Evidence given: (step, hypothesis, verdict), in order, from each step's last start.
    pub evidence: Vec<(String, String, String)>,
    /// Steps that started and have not settled (running when the process stopped).
    pub unsettled: HashSet<String>,
    /// When each unanswered gate with a `timeout:` expires (ms since 1970),
    /// counted from the first time it waited.
    pub gate_expiry: HashMap<String, u64>,
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
}

impl History {
    /// Takes one event into account, as logged (its JSON text). Text that
    /// is not an event is ignored.
    pub fn fold(&mut self, body: &str) {
        let Ok(event) = serde_json::from_str::<Logged>(body) else {
            return;
        };
        let Some(step) = event.step.as_deref() else {
            return;
        };
        let text = |field: &Option<Cow<str>>| field.as_deref().unwrap_or_default().to_owned();
        let attempts = event.attempts.unwrap_or(1);
        let name = event.event.as_ref();
        let settled = match name {
            "step_started" | "step_reset" => {
                // Started again (a rerun after a crash or a changed plan) or
                // reset: what it did before no longer counts.
                if self.settled.remove(step).is_some() {
                    self.order.retain(|s| s != step);
                }
                self.recorded.remove(step);
                for attempt in self.attempts_with_calls.remove(step).unwrap_or_default() {
                    self.calls.remove(&(step.to_owned(), attempt));
                }
                if self.evidence.iter().any(|(s, _, _)| s == step) {
                    self.evidence.retain(|(s, _, _)| s != step);
                }
                if name == "step_started" {
                    self.unsettled.insert(step.to_owned());
                } else {
                    // A gate waits afresh after a reset; a restart of the
                    // same gate (a resume) keeps its first deadline.
                    self.unsettled.remove(step);
                    self.gate_expiry.remove(step);
                }
                return;
            }
            "gate_waiting" => {
                match event.expires_at {
                    Some(at) => {
                        self.gate_expiry.entry(step.to_owned()).or_insert(at);
                    }
                    // Waiting without one: its timeout was removed.
                    None => {
                        self.gate_expiry.remove(step);
                    }
                }
                return;
            }
            "call" => {
                if let Ok(call) = serde_json::from_str::<Call>(body) {
                    let attempt = event.attempt.unwrap_or(1);
                    let made = self.attempts_with_calls.entry(step.to_owned()).or_default();
                    if !made.contains(&attempt) {
                        made.push(attempt);
                    }
                    self.calls
                        .entry((step.to_owned(), attempt))
                        .or_default()
                        .push(call);
                }
                return;
            }
            "evidence" => {
                self.evidence.push((
                    step.to_owned(),
                    text(&event.hypothesis),
                    text(&event.verdict),
                ));
                return;
            }
            "step_succeeded" => Settled::Succeeded {
                output: event.output,
                attempts,
            },
            "step_failed" => Settled::Failed {
                error: text(&event.error),
                attempts,
            },
            "step_skipped" => Settled::Skipped {
                reason: text(&event.reason),
            },
            "decision_made" => Settled::Chose {
                branch: text(&event.branch),
                target: text(&event.target),
            },
            "gate_approved" | "gate_rejected" => Settled::Answered(Approval {
                approved: name == "gate_approved",
                by: text(&event.by),
                reason: text(&event.reason),
            }),
            "step_recovered" | "compensated" => {
                self.record(step, name);
                return;
            }
            _ => return,
        };
        self.unsettled.remove(step);
        self.gate_expiry.remove(step);
        self.record(step, name);
        if let Some(before) = self.settled.get_mut(step) {
            *before = settled;
        } else {
            self.order.push(step.to_owned());
            self.settled.insert(step.to_owned(), settled);
        }
    }

    /// Notes that `step` logged the settling event `name`.
    fn record(&mut self, step: &str, name: &str) {
        match self.recorded.get_mut(step) {
            Some(names) => names.push(name.to_owned()),
            None => {
                self.recorded.insert(step.to_owned(), vec![name.to_owned()]);
            }
        }
    }

    /// Whether `gate` waited with a `timeout:` that has passed: `resume`
    /// rejects it, so it can no longer be approved.
    pub fn gate_expired(&self, gate: &str) -> bool {
        self.gate_expiry
            .get(gate)
            .is_some_and(|&at| super::now_ms() >= at as i64)
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
        let keep = |step: &String| !invalidated.contains(step);
        // A step that did not settle runs again and gives its evidence again.
        let evidence = self
            .evidence
            .into_iter()
            .filter(|(s, _, _)| keep(s) && self.settled.contains_key(s))
            .map(|(_, h, v)| (h, v))
            .collect();
        let (settled, recorded) = if invalidated.is_empty() {
            (self.settled, self.recorded)
        } else {
            (
                self.settled.into_iter().filter(|(s, _)| keep(s)).collect(),
                self.recorded.into_iter().filter(|(s, _)| keep(s)).collect(),
            )
        };
        Resume {
            settled,
            recorded,
            invalidated: invalidated.to_vec(),
            evidence,
            gate_expiry: self
                .gate_expiry
                .into_iter()
                .filter(|(s, _)| keep(s))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::History;

    fn fold(events: &[serde_json::Value]) -> History {
        let mut history = History::default();
        for event in events {
            history.fold(&event.to_string());
        }
        history
    }

    #[test]
    fn a_step_started_again_is_unsettled_and_out_of_the_order() {
        let history = fold(&[
            json!({"event": "step_started", "step": "a"}),
            json!({"event": "step_succeeded", "step": "a", "attempts": 1, "output": 1}),
            json!({"event": "step_reset", "step": "a", "reason": "edited"}),
        ]);
        assert!(history.settled.is_empty());
        assert!(history.order.is_empty());
        assert!(history.unsettled.is_empty());
        let history = fold(&[
            json!({"event": "step_succeeded", "step": "a", "attempts": 1, "output": 1}),
            json!({"event": "step_started", "step": "a"}),
        ]);
        assert!(history.order.is_empty() && history.unsettled.contains("a"));
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
        assert_eq!(resume.settled.len(), 1);
    }
}
