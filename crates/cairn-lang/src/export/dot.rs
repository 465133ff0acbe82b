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
        let shape = match task.kind() {
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
        if let Some(label) = edge_label(from, to, kind) {
            attrs.push(format!("label={}", quote(&label)));
        }
        if matches!(kind, EdgeKind::OnFailure | EdgeKind::OnReject) {
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

/// A DOT double-quoted string. Only `"` is escaped by DOT itself; `\` and
/// `&` are special in labels (`\N`, `\l`, entities) and are escaped so the
/// text shows as written; line breaks become `\n` and other control
/// characters spaces, so plan text never ends the string or the line.
fn quote(text: &str) -> String {
    // Graphviz before 2.42 reads `\\"` as a backslash and an escaped quote, so a
    // string ending in a backslash would not end: trailing backslashes are
    // written as entities (`&#92;&#92;`, which labels show as one `\`).
    let body = text.trim_end_matches('\\');
    let trailing = text.len() - body.len();
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in super::chars(body) {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '&' => out.push_str("&amp;"),
            c if super::is_line_break(c) => out.push_str("\\n"),
            c if super::is_unsafe(c) => out.push(' '),
            c => out.push(c),
        }
    }
    for _ in 0..trailing {
        out.push_str("&#92;&#92;");
    }
    out.push('"');
    out
}
