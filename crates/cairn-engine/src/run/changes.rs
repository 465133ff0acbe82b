//! What changed between the plan a run began with and the plan file now,
//! and which recorded results that invalidates.

use std::collections::{BTreeSet, HashMap};

use petgraph::Direction;

use cairn_lang::plan::{Plan, Task};

/// How a plan's steps changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    /// Steps only in the new plan.
    pub added: Vec<String>,
    /// Steps only in the old plan.
    pub removed: Vec<String>,
    /// Steps in both whose definition (code, dependencies, routing,
    /// policies, anything but position in the file) differs.
    pub edited: Vec<String>,
}

impl Changes {
    /// Compares two plans step by step.
    pub fn between(old: &Plan, new: &Plan) -> Self {
        let before: HashMap<&str, String> = old
            .tasks
            .iter()
            .map(|t| (t.id.as_str(), fingerprint(old, t)))
            .collect();
        let after: HashMap<&str, &Task> = new.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
        let mut changes = Self::default();
        for task in &new.tasks {
            match before.get(task.id.as_str()) {
                None => changes.added.push(task.id.clone()),
                Some(print) if *print != fingerprint(new, task) => {
                    changes.edited.push(task.id.clone())
                }
                Some(_) => {}
            }
        }
        for task in &old.tasks {
            if !after.contains_key(task.id.as_str()) {
                changes.removed.push(task.id.clone());
            }
        }
        changes
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.edited.is_empty()
    }

    /// Of the `settled` steps, those whose result no longer stands: edited
    /// ones, removed ones, and everything downstream of an added or edited
    /// step in the new plan. In file order of the new plan, removed last.
    pub fn invalidated<'a>(&self, new: &Plan, settled: impl Fn(&str) -> bool + 'a) -> Vec<String> {
        let index = cairn_lang::plan::index_by_id(&new.tasks);
        let mut stale = BTreeSet::new();
        let mut stack: Vec<usize> = self
            .added
            .iter()
            .chain(&self.edited)
            .filter_map(|id| index.get(id.as_str()).copied())
            .collect();
        while let Some(i) = stack.pop() {
            if stale.insert(i) {
                stack.extend(
                    new.graph
                        .neighbors_directed(Plan::node(i), Direction::Outgoing)
                        .map(|n| n.index()),
                );
            }
        }
        stale
            .into_iter()
            .map(|i| new.tasks[i].id.clone())
            .chain(self.removed.iter().cloned())
            .filter(|id| settled(id))
            .collect()
    }
}

/// The step's definition without source positions, as canonical JSON,
/// with the `functions:` its code calls (its plan's, or its import's).
fn fingerprint(plan: &Plan, task: &Task) -> String {
    let mut value = serde_json::to_value(task).expect("tasks serialize");
    strip_spans(&mut value);
    let functions = match &task.import {
        None => plan.functions.as_ref(),
        Some(alias) => plan
            .imports
            .iter()
            .find(|i| &i.alias == alias)
            .and_then(|i| i.functions.as_ref()),
    };
    let functions = functions.map_or("", |f| &*f.text);
    format!("{value}\n{functions}\n{}", called(plan, task))
}

/// The text of every plan a `plan:` task runs, at any depth (by hash, in
/// the order they are reached): editing one edits the task.
fn called(plan: &Plan, task: &Task) -> String {
    let Some(call) = &task.call else {
        return String::new();
    };
    let mut seen = vec![false; plan.library.len()];
    let mut stack = vec![call.plan];
    let mut hashes = Vec::new();
    while let Some(index) = stack.pop() {
        let Some(entry) = plan.library.get(index) else {
            continue;
        };
        if std::mem::replace(&mut seen[index], true) {
            continue;
        }
        hashes.push(entry.origin.as_ref().map_or("", |o| o.sha256.as_str()));
        stack.extend(
            entry
                .tasks
                .iter()
                .rev()
                .filter_map(|t| Some(t.call.as_ref()?.plan)),
        );
    }
    hashes.join(",")
}

fn strip_spans(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            // Where a step sits in the file is not what it does.
            map.remove("span");
            map.remove("line_offsets");
            map.values_mut().for_each(strip_spans);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_spans),
        _ => {}
    }
}
