//! Bounded loops: a task with `repeat:` runs its body as iterations, one
//! after another, until `until` holds or `max` of them have run.
//!
//! The task's own node reads its `when:`; then each iteration is a node of
//! its own (`task#1`, `task#2`, …) with no edges, added when the one before
//! it succeeded and given that one's output as `iteration.previous`. The
//! task settles for its dependents with the last iteration's output: it
//! succeeds when `until` held (or, without `until`, after exactly `max`),
//! and fails when an iteration fails for good or `max` ran without `until`
//! holding.

use super::fan::Instance;
use super::{Machine, Node, Outcome, Part};
use crate::failure::{ErrorKind, Failure};
use crate::run::events::Event;
use cairn_lang::plan::Repeat;

impl Machine {
    /// Node `i`'s task may loop: its first iteration is ready.
    pub(super) fn loop_begin(&mut self, i: usize) {
        let max = self.task(i).repeat.as_ref().map_or(1, |r| r.max);
        self.emit(Event::StepLooping {
            step: self.id(i).to_owned(),
            max,
            at_ms: self.now.at_ms,
        });
        self.iterate(i, 1, serde_json::Value::Null);
    }

    /// Adds iteration `number` of node `parent`'s loop, ready to start.
    fn iterate(&mut self, parent: usize, number: u32, previous: serde_json::Value) {
        let id = Repeat::iteration_id(self.id(parent), number);
        let mut node = Node::new(self.nodes[parent].task);
        node.kept = self.kept_instances.remove(&id);
        node.instance = Some(Box::new(Instance {
            parent,
            part: Part::Iteration { number, previous },
            id,
        }));
        let n = self.nodes.len();
        self.nodes.push(node);
        let priority = self.task(parent).priority;
        self.ready.insert((-priority, n));
    }

    /// A task kept whole by a resumed run gets its kept instances and
    /// iterations back as settled nodes, so that compensation undoes them
    /// as it would have in the process that ran them.
    pub(super) fn restore_parts(&mut self, i: usize) {
        use cairn_lang::plan::parse_part;
        let task = self.task(i);
        let looping = task.repeat.is_some();
        if (task.each.is_none() && !looping) || self.kept_instances.is_empty() {
            return;
        }
        let id = self.id(i).to_owned();
        let mut parts: Vec<(usize, String)> = self
            .kept_instances
            .keys()
            .filter_map(|key| match parse_part(key) {
                Some((task, position)) if task == id => Some((position, key.clone())),
                _ => None,
            })
            .collect();
        parts.sort_unstable();
        let mut previous = serde_json::Value::Null;
        for (position, key) in parts {
            let Some(outcome) = self.kept_instances.remove(&key) else {
                continue;
            };
            let part = match looping {
                // (An element is not kept with a task's outcome.)
                false => Part::Element {
                    index: position,
                    item: serde_json::Value::Null,
                },
                true => Part::Iteration {
                    number: position as u32,
                    previous: std::mem::take(&mut previous),
                },
            };
            let mut node = Node::new(self.nodes[i].task);
            node.started = true;
            node.settled = true;
            node.instance = Some(Box::new(Instance {
                parent: i,
                part,
                id: key,
            }));
            match outcome {
                Outcome::Succeeded { output, attempts }
                | Outcome::Iterated {
                    output, attempts, ..
                } => {
                    node.status = crate::run::events::StepStatus::Succeeded;
                    node.attempts = attempts;
                    previous = output.clone();
                    node.output = Some(output);
                    self.completed.push(self.nodes.len());
                }
                Outcome::Failed { error, attempts } => {
                    node.status = crate::run::events::StepStatus::Failed;
                    node.attempts = attempts;
                    node.error = Some(error);
                }
                _ => {}
            }
            self.nodes.push(node);
        }
    }

    /// Iteration node `i` ended with `outcome`: its own events, then the
    /// next iteration or the end of its task.
    pub(super) fn iteration_outcome(&mut self, i: usize, outcome: Outcome, spent: Option<f64>) {
        let at_ms = self.now.at_ms;
        let Some((parent, number)) = self.nodes[i]
            .instance
            .as_ref()
            .map(|x| (x.parent, x.part.position() as u32))
        else {
            return;
        };
        let node = &mut self.nodes[i];
        node.duration_ms = node.started_ms.map_or(0, |s| at_ms.saturating_sub(s));
        let Some(repeat) = self.task(parent).repeat.as_deref() else {
            return;
        };
        let (max, until) = (repeat.max, repeat.until.as_ref().map(|u| u.text.clone()));
        let (output, attempts, converged) = match outcome {
            Outcome::Iterated {
                output,
                attempts,
                converged,
            } => (output, attempts, Some(converged)),
            Outcome::Succeeded { output, attempts } => (output, attempts, None),
            Outcome::Failed { error, attempts } => {
                let task_error = error
                    .clone()
                    .within(format_args!("`{}` failed: ", self.id(i)));
                self.failed(i, error, attempts, spent);
                // The task keeps the last output an iteration gave.
                if let Some(Part::Iteration { previous, .. }) =
                    self.nodes[i].instance.as_ref().map(|x| &x.part)
                {
                    if !previous.is_null() {
                        self.nodes[parent].output = Some(previous.clone());
                    }
                }
                let outcome = Outcome::Failed {
                    error: task_error,
                    attempts: 1,
                };
                return self.outcome_of_task(parent, outcome);
            }
            Outcome::Cancelled { attempts } => {
                self.cancelled(i, attempts);
                return self.cancelled(parent, 1);
            }
            // Iterations have no `when:`, gates, branches or parts of their own.
            Outcome::Skipped(_)
            | Outcome::Chose { .. }
            | Outcome::Gate(_)
            | Outcome::GateOpen
            | Outcome::FannedOut(_)
            | Outcome::Waiting(_)
            | Outcome::Looping => return,
        };
        self.succeeded(i, output.clone(), attempts, spent, converged);
        let done = match (&until, converged) {
            (Some(_), Some(true)) => true,
            (None, _) => number >= max,
            // (An `until` added since a kept iteration ran is read from
            // the next iteration on.)
            (Some(_), _) => false,
        };
        if done {
            let outcome = Outcome::Succeeded {
                output,
                attempts: 1,
            };
            return self.outcome_of_task(parent, outcome);
        }
        if number >= max {
            let until = until.unwrap_or_default();
            let error = Failure::new(
                ErrorKind::Expect,
                format!(
                    "did not converge after {max} iteration{}: `until {until}` is still false",
                    if max == 1 { "" } else { "s" }
                ),
            );
            self.nodes[parent].output = Some(output);
            return self.outcome_of_task(parent, Outcome::Failed { error, attempts: 1 });
        }
        // A stopping run starts no next iteration: the loop is left
        // unfinished, and a resume goes on with it.
        if self.stopping {
            self.nodes[parent].output = Some(output);
            return;
        }
        self.iterate(parent, number + 1, output);
    }
}
