//! How a run ends in the state machine: cancelling, what compensation
//! undoes and in which order, the final status and the steps' report.

use std::collections::HashSet;

use super::{Machine, Node, Now};
use crate::run::events::{Event, RunStatus, StepStatus};
use cairn_lang::plan::Step;

/// Why a run stops before its steps are done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halt {
    /// A limit ran out (the time budget): the run fails.
    Failure,
    /// Ctrl-C, or the run's future dropped: it ends `interrupted`, resumable.
    Interrupt,
    /// Cancelled for good: it ends `cancelled`.
    Cancel,
}

impl Machine {
    /// Stops the run: nothing more starts (`interrupted`: by the caller,
    /// not a failure).
    pub fn cancel(&mut self, message: String, halt: Halt) {
        tracing::info!(%message, ?halt, "cancelling the run");
        self.stopping = true;
        self.halted = true;
        match halt {
            Halt::Failure => self.failed = true,
            Halt::Interrupt => self.interrupted = true,
            Halt::Cancel => self.cancelled = true,
        }
        self.message.get_or_insert(message);
    }

    /// The run's steps are done: a fallback that never ran (say it also
    /// needs the step it stands in for) leaves that step failed for good.
    /// Then, under `compensate`, what to undo: (node, whether it completed),
    /// failed steps first (only their file edits are undone), then completed
    /// ones, newest first.
    pub fn wind_down(&mut self) -> Vec<(usize, bool)> {
        // (A fallback that is ready but held back by a stepping caller will
        // still run when the run goes on.)
        let held: HashSet<usize> = self.ready.iter().map(|&(_, i)| i).collect();
        let orphaned: Vec<usize> = self
            .awaiting
            .drain()
            .filter(|(fallback, _)| !held.contains(fallback))
            .flat_map(|(_, failed)| failed)
            .collect();
        for failed in orphaned {
            self.fail_for_good(failed);
        }
        // A fan-out or loop the stopping run left unfinished was cancelled
        // by it (a resume goes on with its parts).
        if self.stopping {
            let unfinished: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| {
                    let node = &self.nodes[i];
                    let task = self.task(i);
                    node.instance.is_none()
                        && node.started
                        && !node.settled
                        && node.status == StepStatus::NotRun
                        && (task.each.is_some() || task.repeat.is_some())
                })
                .collect();
            for i in unfinished {
                self.cancelled(i, 1);
            }
        }
        if !self.compensate {
            return Vec::new();
        }
        let failed = (0..self.nodes.len()).filter(|&i| self.nodes[i].status == StepStatus::Failed);
        let completed = self
            .completed
            .iter()
            .rev()
            .copied()
            .filter(|&i| self.nodes[i].status == StepStatus::Succeeded);
        failed
            .map(|i| (i, false))
            .chain(completed.map(|i| (i, true)))
            // A task that fanned out or looped is undone part by part.
            .filter(|&(i, _)| {
                let task = self.task(i);
                let whole = task.each.is_some() || task.repeat.is_some();
                matches!(task.step, Step::Task) && !(whole && self.nodes[i].instance.is_none())
            })
            .collect()
    }

    /// Node `i`'s output, if it has one.
    pub fn output(&self, i: usize) -> Option<&serde_json::Value> {
        self.nodes[i].output.as_ref()
    }

    /// Node `i`'s compensation succeeded (`completed`: it had completed).
    pub fn compensated(&mut self, i: usize, completed: bool) {
        if completed {
            self.nodes[i].status = StepStatus::Compensated;
        }
    }

    /// Adds to why the run failed.
    pub fn note(&mut self, note: &str) {
        self.message.get_or_insert_with(String::new).push_str(note);
    }

    /// Ends the run: its status (recording failed with `record_error`, if
    /// it did), with the `run_finished` event.
    pub fn conclude(&mut self, record_error: Option<String>, now: Now) -> RunStatus {
        self.now = now;
        if let Some(error) = record_error {
            self.failed = true;
            self.interrupted = false;
            self.message = Some(format!(
                "the run could not be recorded ({error}), so it was stopped"
            ));
        }
        let status = if self.cancelled {
            RunStatus::Cancelled
        } else if self.interrupted {
            RunStatus::Interrupted
        } else if self.failed {
            RunStatus::Failed
        } else if !self.waiting_gates.is_empty() || !self.waiting_children.is_empty() {
            let gates = self.waiting_gates.iter().map(|&g| self.id(g).to_owned());
            // Children finish waiting in any order; name them in the plan's.
            let mut children: Vec<&(usize, Vec<String>)> = self.waiting_children.iter().collect();
            children.sort_by_key(|(node, _)| *node);
            let inside = children.into_iter().flat_map(|(_, on)| on.iter().cloned());
            let ids: Vec<String> = gates.chain(inside).map(|id| format!("`{id}`")).collect();
            self.message = Some(format!("waiting for approval of {}", ids.join(", ")));
            RunStatus::Paused
        } else if !self.ready.is_empty() {
            // Held back by `start_limit` or `only`: the run goes on later.
            self.message = Some(format!("{} steps ready, held back", self.ready.len()));
            RunStatus::Paused
        } else {
            RunStatus::Succeeded
        };
        self.emit(Event::RunFinished {
            status,
            message: self.message.clone(),
            at_ms: self.now.at_ms,
        });
        status
    }

    /// Why the run failed, paused or was interrupted.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The ids of steps ready and held back.
    pub fn held_back(&self) -> Vec<String> {
        self.ready
            .iter()
            .map(|&(_, i)| self.id(i).to_owned())
            .collect()
    }

    /// Each node's report, in node order.
    /// (The instances of `each:` and iterations of `repeat:` follow their task.)
    pub fn into_steps(self) -> Vec<crate::run::StepReport> {
        let plan = self.plan;
        // A task whose instance or iteration waits (at a gate of its child
        // run) waits too, rather than reading as not run.
        let waiting_parts: HashSet<usize> = self
            .nodes
            .iter()
            .filter(|node| node.status == StepStatus::Waiting)
            .filter_map(|node| Some(node.instance.as_ref()?.parent))
            .collect();
        let mut nodes: Vec<(usize, Node)> = self.nodes.into_iter().enumerate().collect();
        for (i, node) in &mut nodes {
            if waiting_parts.contains(i) && node.status == StepStatus::NotRun {
                node.status = StepStatus::Waiting;
            }
        }
        nodes.sort_by_key(|(i, node)| match &node.instance {
            Some(instance) => (instance.parent, 1, instance.part.position()),
            None => (*i, 0, 0),
        });
        nodes
            .into_iter()
            .map(|(_, node)| crate::run::StepReport {
                id: match node.instance {
                    Some(instance) => instance.id,
                    None => plan.tasks[node.task].id.clone(),
                },
                status: node.status,
                attempts: node.attempts,
                duration_ms: node.duration_ms,
                error: node.error,
                output: node.output,
            })
            .collect()
    }
}
