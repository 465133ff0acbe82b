//! Graphviz DOT: render with `dot -Tsvg`.

use std::fmt::Write;

use petgraph::visit::EdgeRef;

use super::{edge_label, node_lines};
use crate::plan::{EdgeKind, Plan, StepKind};

/// The plan as a DOT `digraph`.
pub fn dot(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(&plan.id));
    let _ = writeln!(out, "  label={};\n  labelloc=t;", quote(&plan.title));
    out.push_str("  rankdir=TB;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n");
    for task in &plan.tasks {
        let shape = match task.step {
            StepKind::Task => "box",
            StepKind::Decision => "diamond",
            StepKind::Gate => "hexagon",
        };
        let style = if task.conditional {
            ", style=\"rounded,dashed\""
        } else {
            ""
        };
        let label = node_lines(task).join("\n");
        let _ = writeln!(
            out,
            "  {} [label={}, shape={shape}{style}];",
            quote(&task.id),
            quote(&label)
        );
    }
    for edge in plan.graph.edge_references() {
        let from = &plan.tasks[edge.source().index()];
        let to = &plan.tasks[edge.target().index()];
        let kind = edge.weight().kind;
        let mut attrs = Vec::new();
        if let Some(label) = edge_label(from, kind) {
            attrs.push(format!("label={}", quote(&label)));
        }
        if kind == EdgeKind::OnFailure {
            attrs.push("style=dashed".to_owned());
            attrs.push("color=red".to_owned());
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" [{}]", attrs.join(", "))
        };
        let _ = writeln!(out, "  {} -> {}{attrs};", quote(&from.id), quote(&to.id));
    }
    out.push_str("}\n");
    out
}

/// A DOT double-quoted string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
