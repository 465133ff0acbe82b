//! Fan-out: a task with `each:` runs as one instance per element, and settles once they have.
//!
//! The task's own node evaluates `each:` and hands back the elements; each
//! becomes a node of its own (`task[i]`) with no edges, released at most the
//! task's `max_parallel:` at a time. The task settles for its dependents
//! when every instance has, with the array of their outputs; under `on
//! failure: continue` a failed instance leaves `()` in its slot, otherwise
//! the first instance failing for good fails the task.

use std::collections::VecDeque;

use super::{Machine, Node, Outcome, Part};
use crate::failure::Failure;
use crate::run::events::Event;
use cairn_lang::plan::{Each, FailurePolicy};

/// How an instance ended, for its task.
enum Ended {
    /// It failed for good, with this error (naming the instance).
    Failed(Failure),
    /// The run cancelled it.
    Cancelled,
}

/// What a node that runs part of a task is: an instance of `each:` or an
/// iteration of `repeat:`, and whose.
#[derive(Debug)]
pub(super) struct Instance {
    /// The node of the task it is part of.
    pub parent: usize,
    /// Which part.
    pub part: Part,
    /// `task[index]` or `task#number`.
    pub id: String,
}

/// A fanned-out task's instances, as they go.
#[derive(Debug)]
pub(super) struct Fan {
    /// Each instance's output, in element order (`()` until it has one).
    outputs: Vec<serde_json::Value>,
    /// Instances not settled yet.
    pending: usize,
    /// Instances not released yet, in element order.
    queued: VecDeque<usize>,
    /// Instances released and not settled.
    running: usize,
    /// At most this many released at once.
    limit: usize,
    /// Instances that failed under `on failure: continue`.
    failed: usize,
    /// The first of their failures: the task's own failure has its kind
    /// and exit code.
    first_failure: Option<Failure>,
    /// The task failed (an instance failed for good, or was cancelled):
    /// what is left is not released, what runs is not waited for.
    over: bool,
}

impl Machine {
    /// Node `i`'s task gave its `each:` elements: an instance each, or
    /// success with `[]` when there are none.
    pub(super) fn fan_out(&mut self, i: usize, items: Vec<serde_json::Value>) {
        let task_index = self.nodes[i].task;
        let id = self.id(i).to_owned();
        self.emit(Event::StepFannedOut {
            step: id.clone(),
            items: items.clone(),
            at_ms: self.now.at_ms,
        });
        if items.is_empty() {
            return self.fan_in(i, Vec::new(), (0, None));
        }
        let limit = self.plan.tasks[task_index]
            .each
            .as_ref()
            .and_then(|e| e.max_parallel)
            .unwrap_or(usize::MAX);
        let count = items.len();
        let first = self.nodes.len();
        self.nodes.reserve(count);
        for (index, item) in items.into_iter().enumerate() {
            let instance_id = Each::instance_id(&id, index);
            let mut node = Node::new(task_index);
            node.kept = self.kept_instances.remove(&instance_id);
            node.instance = Some(Box::new(Instance {
                parent: i,
                part: Part::Element { index, item },
                id: instance_id,
            }));
            self.nodes.push(node);
        }
        self.nodes[i].fan = Some(Box::new(Fan {
            outputs: vec![serde_json::Value::Null; count],
            pending: count,
            queued: (first..first + count).collect(),
            running: 0,
            limit,
            failed: 0,
            first_failure: None,
            over: false,
        }));
        self.release(i);
    }

    /// Makes ready as many of node `i`'s queued instances as its limit allows.
    fn release(&mut self, i: usize) {
        let priority = self.task(i).priority;
        let Some(fan) = self.nodes[i].fan.as_deref_mut() else {
            return;
        };
        let mut ready = Vec::new();
        while !fan.over && fan.running < fan.limit {
            let Some(node) = fan.queued.pop_front() else {
                break;
            };
            fan.running += 1;
            ready.push(node);
        }
        for node in ready {
            self.ready.insert((-priority, node));
        }
    }

    /// An instance of node `i` stopped running without settling (it
    /// waits): its slot goes to a sibling.
    pub(super) fn instance_left(&mut self, i: usize) {
        if let Some(fan) = self.nodes[i].fan.as_deref_mut() {
            fan.running = fan.running.saturating_sub(1);
            self.release(i);
        }
    }

    /// Instance node `i` ended with `outcome`: its own events, then what it
    /// means for its task.
    pub(super) fn instance_outcome(&mut self, i: usize, outcome: Outcome, spent: Option<f64>) {
        let at_ms = self.now.at_ms;
        let id = self.id(i).to_owned();
        let Some((parent, index)) = self.nodes[i]
            .instance
            .as_ref()
            .map(|x| (x.parent, x.part.position()))
        else {
            return;
        };
        let node = &mut self.nodes[i];
        node.duration_ms = node.started_ms.map_or(0, |s| at_ms.saturating_sub(s));
        // What the task makes of it: a slot filled, a failure to carry on
        // from, or the end of the task.
        let failure = match outcome {
            Outcome::Succeeded { output, attempts } => {
                // (Its task may have failed already, its outputs handed on.)
                let fan = self.nodes[parent].fan.as_deref_mut();
                if let Some(slot) = fan.and_then(|fan| fan.outputs.get_mut(index)) {
                    *slot = output.clone();
                }
                self.succeeded(i, output, attempts, spent, None);
                None
            }
            Outcome::Failed { error, attempts } => {
                let failure = error.clone().within(format_args!("`{id}` failed: "));
                self.failed(i, error, attempts, spent);
                Some(Ended::Failed(failure))
            }
            Outcome::Cancelled { attempts } => {
                self.cancelled(i, attempts);
                Some(Ended::Cancelled)
            }
            // Instances have no `when:`, gates, branches or loops of their own.
            Outcome::Skipped(_)
            | Outcome::Chose { .. }
            | Outcome::Gate(_)
            | Outcome::GateOpen
            | Outcome::FannedOut(_)
            | Outcome::Looping
            | Outcome::Waiting(_)
            | Outcome::Iterated { .. } => None,
        };
        let task = self.task(parent);
        let policy = task.on_failure.unwrap_or(self.plan.on_failure);
        let has_fallback = task.fallback.is_some();
        let Some(fan) = self.nodes[parent].fan.as_deref_mut() else {
            return;
        };
        fan.running -= 1;
        if fan.over {
            return;
        }
        fan.pending -= 1;
        match failure {
            Some(Ended::Cancelled) => {
                fan.over = true;
                return self.cancelled(parent, 1);
            }
            Some(Ended::Failed(error))
                if matches!(policy, FailurePolicy::Continue | FailurePolicy::Finish)
                    && !has_fallback
                    && !self.over_budget =>
            {
                fan.first_failure.get_or_insert(error);
                fan.failed += 1;
            }
            Some(Ended::Failed(error)) => {
                fan.over = true;
                let outputs = std::mem::take(&mut fan.outputs);
                self.nodes[parent].output = Some(serde_json::Value::Array(outputs));
                return self.outcome_of_task(parent, Outcome::Failed { error, attempts: 1 });
            }
            None => {}
        }
        if fan.pending == 0 {
            let outputs = std::mem::take(&mut fan.outputs);
            let failed = (fan.failed, fan.first_failure.take());
            return self.fan_in(parent, outputs, failed);
        }
        self.release(parent);
    }

    /// Every instance of node `i` settled: the task succeeds with their
    /// outputs, or fails (under `continue`) with them if any failed.
    fn fan_in(
        &mut self,
        i: usize,
        outputs: Vec<serde_json::Value>,
        (failed, first): (usize, Option<Failure>),
    ) {
        let count = outputs.len();
        let output = serde_json::Value::Array(outputs);
        if failed == 0 {
            return self.outcome_of_task(
                i,
                Outcome::Succeeded {
                    output,
                    attempts: 1,
                },
            );
        }
        self.nodes[i].output = Some(output);
        let error = Failure {
            message: format!("{failed} of its {count} instances failed"),
            at: None,
            ..first.unwrap_or_else(|| Failure::script(""))
        };
        self.outcome_of_task(i, Outcome::Failed { error, attempts: 1 })
    }

    /// The task's own outcome, as any other task's: the output it already
    /// holds (a failed fan-out's partial outputs) stays.
    pub(super) fn outcome_of_task(&mut self, i: usize, outcome: Outcome) {
        let kept_output = self.nodes[i].output.take();
        let at_ms = self.now.at_ms;
        let node = &mut self.nodes[i];
        node.duration_ms = node.started_ms.map_or(0, |s| at_ms.saturating_sub(s));
        self.settle_outcome(i, outcome, None);
        if self.nodes[i].output.is_none() {
            self.nodes[i].output = kept_output;
        }
    }

    /// Which part of its task node `i` runs, if it runs one.
    pub fn part(&self, i: usize) -> Option<&Part> {
        Some(&self.nodes[i].instance.as_deref()?.part)
    }

    /// The node whose outputs node `i`'s code reads: its task's, for a part.
    pub(super) fn reader(&self, i: usize) -> usize {
        self.nodes[i].instance.as_ref().map_or(i, |x| x.parent)
    }
}
