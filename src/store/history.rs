//! Folding a run's log into what each step did: what `resume` keeps and
//! what `replay` answers from and compares against.

use std::collections::HashMap;

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
    in_order: std::collections::HashSet<String>,
    /// The settling events logged for each step (`step_succeeded`, …).
    pub recorded: HashMap<String, Vec<String>>,
    /// Each (step, attempt)'s outside calls, from the step's last start.
    pub calls: HashMap<(String, u32), Vec<Call>>,
    /// Evidence given: (step, hypothesis, verdict), in order, from each step's last start.
    pub evidence: Vec<(String, String, String)>,
    /// Steps that started and have not settled (running when the process stopped).
    pub unsettled: std::collections::HashSet<String>,
}

impl History {
    /// Takes one event (as JSON, as logged) into account.
    pub fn fold(&mut self, event: &Value) {
        let Some(step) = event["step"].as_str() else {
            return;
        };
        let text = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
        let attempts = event["attempts"].as_u64().unwrap_or(1) as u32;
        let name = event["event"].as_str().unwrap_or_default();
        let settled = match name {
            "step_started" | "step_reset" => {
                // Started again (a rerun after a crash or a changed plan) or
                // reset: what it did before no longer counts.
                self.settled.remove(step);
                self.recorded.remove(step);
                if self.in_order.remove(step) {
                    self.order.retain(|s| s != step);
                }
                self.calls.retain(|(s, _), _| s != step);
                self.evidence.retain(|(s, _, _)| s != step);
                if name == "step_started" {
                    self.unsettled.insert(step.to_owned());
                } else {
                    self.unsettled.remove(step);
                }
                return;
            }
            "call" => {
                if let Ok(call) = serde_json::from_value::<Call>(event.clone()) {
                    let attempt = event["attempt"].as_u64().unwrap_or(1) as u32;
                    self.calls
                        .entry((step.to_owned(), attempt))
                        .or_default()
                        .push(call);
                }
                return;
            }
            "evidence" => {
                self.evidence
                    .push((step.to_owned(), text("hypothesis"), text("verdict")));
                return;
            }
            "step_succeeded" => Settled::Succeeded {
                output: event["output"].clone(),
                attempts,
            },
            "step_failed" => Settled::Failed {
                error: text("error"),
                attempts,
            },
            "step_skipped" => Settled::Skipped {
                reason: text("reason"),
            },
            "decision_made" => Settled::Chose {
                branch: text("branch"),
                target: text("target"),
            },
            "gate_approved" | "gate_rejected" => Settled::Answered(Approval {
                approved: name == "gate_approved",
                by: text("by"),
                reason: text("reason"),
            }),
            "step_recovered" | "compensated" => {
                self.recorded
                    .entry(step.to_owned())
                    .or_default()
                    .push(name.to_owned());
                return;
            }
            _ => return,
        };
        self.unsettled.remove(step);
        if self.in_order.insert(step.to_owned()) {
            self.order.push(step.to_owned());
        }
        self.recorded
            .entry(step.to_owned())
            .or_default()
            .push(name.to_owned());
        self.settled.insert(step.to_owned(), settled);
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
    pub fn resume(&self, invalidated: &[String]) -> Resume {
        let keep = |step: &String| !invalidated.contains(step);
        Resume {
            settled: self
                .settled
                .iter()
                .filter(|(s, _)| keep(s))
                .map(|(s, o)| (s.clone(), o.clone()))
                .collect(),
            recorded: self
                .recorded
                .iter()
                .filter(|(s, _)| keep(s))
                .map(|(s, o)| (s.clone(), o.clone()))
                .collect(),
            invalidated: invalidated.to_vec(),
            // A step that did not settle runs again and gives its evidence again.
            evidence: self
                .evidence
                .iter()
                .filter(|(s, _, _)| keep(s) && self.settled.contains_key(s))
                .map(|(_, h, v)| (h.clone(), v.clone()))
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
            history.fold(event);
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
