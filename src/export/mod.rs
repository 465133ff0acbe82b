//! Exporting a checked plan's graph for people and tools: Mermaid and Graphviz DOT.

mod dot;
mod mermaid;

pub use dot::dot;
pub use mermaid::mermaid;

use crate::plan::{EdgeKind, StepKind, Task};

/// The edge label both formats show, if any.
fn edge_label(from: &Task, kind: EdgeKind) -> Option<String> {
    match kind {
        EdgeKind::Needs => None,
        EdgeKind::OnSuccess => Some("on success".to_owned()),
        EdgeKind::OnFailure => Some("on failure".to_owned()),
        EdgeKind::Branch { index } => Some(from.branches[index].condition.text.to_string()),
        EdgeKind::Else => Some("else".to_owned()),
    }
}

/// The lines of a node's label: id, title, and kind if any.
fn node_lines(task: &Task) -> Vec<String> {
    let mut lines = vec![task.id.clone(), task.title.clone()];
    let kind = match (task.step, &task.kind) {
        (StepKind::Task, Some(kind)) => Some(kind.clone()),
        (StepKind::Task, None) => None,
        (StepKind::Decision, _) => Some("decision".to_owned()),
        (StepKind::Gate, _) => Some("gate".to_owned()),
    };
    lines.extend(kind.map(|k| format!("({k})")));
    lines
}
