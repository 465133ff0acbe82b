//! Gates in the state machine: approved up front, asked about, left
//! waiting, or rejected when their `timeout:` runs out on the driver's clock.

use std::sync::Arc;

use super::{Action, Machine};
use crate::failure::{ErrorKind, Failure};
use crate::run::events::{Event, StepStatus};
use crate::run::Approval;
use cairn_lang::plan::{complete_json, Step};

impl Machine {
    /// Approved up front, asked by a worker, or left waiting; rejected if
    /// its `timeout:` has passed since it first waited.
    pub(super) fn open_gate(&mut self, i: usize) -> Option<Action> {
        self.nodes[i].started = true;
        self.nodes[i].attempts = 1;
        let plan = Arc::clone(&self.plan);
        let task = &plan.tasks[self.nodes[i].task];
        if let Some(timeout) = task.timeout_ms {
            let recorded = self.policy.gate_expiry.get(&task.id).copied();
            let now = self.now.unix_ms;
            let expires_at = recorded.unwrap_or_else(|| now.saturating_add(timeout));
            if now >= expires_at {
                self.answer(i, Some(Approval::timed_out(timeout)));
                return None;
            }
            self.gate_expiry.insert(i, expires_at);
        }
        if self.policy.approvals.contains(&task.id) {
            let approval = Approval {
                approved: true,
                by: "--approve".to_owned(),
                reason: "approved on the command line".to_owned(),
                input: serde_json::Map::new(),
            };
            self.answer(i, Some(approval));
            return None;
        }
        if !self.policy.can_ask {
            self.answer(i, None);
            return None;
        }
        if self.gate_expiry.contains_key(&i) {
            // Logged before the question, so a crash while it is asked
            // keeps the deadline.
            let waiting = self.gate_waiting(i);
            self.emit(waiting);
        }
        Some(Action::Ask {
            node: i,
            expires_at: self.gate_expiry.get(&i).copied(),
        })
    }

    pub(super) fn answer(&mut self, i: usize, approval: Option<Approval>) {
        match approval {
            Some(a) if a.approved => {
                let fields = match &self.task(i).step {
                    Step::Gate(gate) => gate.input.as_slice(),
                    _ => &[],
                };
                let input = match complete_json(fields, &a.input) {
                    Ok(input) => input,
                    // Input that does not fit is no approval.
                    Err(problems) => {
                        let refused = Approval {
                            approved: false,
                            reason: format!("its input was refused: {}", problems.join("; ")),
                            ..a
                        };
                        return self.answer(i, Some(refused));
                    }
                };
                self.nodes[i].output = Some(crate::run::gate_output(&a.by, &a.reason, &input));
                self.emit(Event::GateApproved {
                    step: self.id(i).to_owned(),
                    by: a.by,
                    reason: a.reason,
                    input,
                    at_ms: self.now.at_ms,
                });
                self.nodes[i].status = StepStatus::Succeeded;
                self.completed.push(i);
                self.resolve_failure_routes(i, false);
                self.settle(i);
            }
            Some(a) => {
                self.emit(Event::GateRejected {
                    step: self.id(i).to_owned(),
                    by: a.by.clone(),
                    reason: a.reason.clone(),
                    at_ms: self.now.at_ms,
                });
                self.nodes[i].status = StepStatus::Failed;
                self.nodes[i].error = Some(Failure::new(
                    ErrorKind::Rejected,
                    format!("rejected by {}: {}", a.by, a.reason),
                ));
                self.after_failure(i);
            }
            None => {
                self.nodes[i].status = StepStatus::Waiting;
                self.waiting_gates.push(i);
                self.new_deadline |= self.gate_expiry.contains_key(&i);
                let waiting = self.gate_waiting(i);
                self.emit(waiting);
            }
        }
    }

    /// The event of gate `i` waiting for an answer, with its deadline.
    fn gate_waiting(&self, i: usize) -> Event {
        let task = self.task(i);
        Event::GateWaiting {
            step: task.id.clone(),
            title: task.title.clone(),
            checks: task.checks().to_vec(),
            expires_at: self.gate_expiry.get(&i).copied(),
            at_ms: self.now.at_ms,
        }
    }

    /// Rejects every waiting gate whose `timeout:` has passed.
    pub(super) fn expire_gates(&mut self) {
        if self.waiting_gates.is_empty() || self.stopping {
            return;
        }
        let now = self.now.unix_ms;
        let expired: Vec<usize> = self
            .waiting_gates
            .iter()
            .copied()
            .filter(|g| self.gate_expiry.get(g).is_some_and(|&at| now >= at))
            .collect();
        for &gate in &expired {
            self.waiting_gates.retain(|&g| g != gate);
            let timeout = self.task(gate).timeout_ms.unwrap_or_default();
            self.answer(gate, Some(Approval::timed_out(timeout)));
        }
    }

    /// When the next waiting gate expires (ms since 1970), if one has a
    /// timeout and the run still answers gates.
    pub fn next_gate_expiry(&self) -> Option<u64> {
        if self.stopping {
            // Nothing is answered any more; waking for it would spin.
            return None;
        }
        self.waiting_gates
            .iter()
            .filter_map(|g| self.gate_expiry.get(g))
            .min()
            .copied()
    }
}
