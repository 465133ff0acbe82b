//! Mermaid flowcharts: decisions as diamonds, gates as hexagons, failure routes dashed.

use std::fmt::Write;

use petgraph::visit::EdgeRef;

use super::{edge_label, node_lines};
use crate::plan::{EdgeKind, Plan, StepKind};

/// The plan as a Mermaid `flowchart`.
pub fn mermaid(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "---\ntitle: {}\n---", yaml_string(&plan.title));
    out.push_str("flowchart TD\n");
    for (i, task) in plan.tasks.iter().enumerate() {
        let label = node_lines(task)
            .iter()
            .map(|l| escape(l))
            .collect::<Vec<_>>()
            .join("<br/>");
        let (open, close) = match task.kind() {
            StepKind::Task => ("[", "]"),
            StepKind::Decision => ("{", "}"),
            StepKind::Gate => ("{{", "}}"),
        };
        let _ = writeln!(out, "  n{i}{open}\"{label}\"{close}");
    }
    // Steps that run only when routed to are drawn dashed.
    let conditional: Vec<String> = (0..plan.tasks.len())
        .filter(|&i| plan.tasks[i].conditional)
        .map(|i| format!("n{i}"))
        .collect();
    if !conditional.is_empty() {
        out.push_str("  classDef conditional stroke-dasharray: 5 5;\n");
        let _ = writeln!(out, "  class {} conditional;", conditional.join(","));
    }
    for edge in plan.graph.edge_references() {
        let (from, to) = (edge.source().index(), edge.target().index());
        let kind = edge.weight().kind;
        let arrow = if matches!(kind, EdgeKind::OnFailure | EdgeKind::OnReject) {
            "-.->"
        } else {
            "-->"
        };
        match edge_label(&plan.tasks[from], &plan.tasks[to], kind) {
            Some(label) => {
                let _ = writeln!(out, "  n{from} {arrow}|\"{}\"| n{to}", escape(&label));
            }
            None => {
                let _ = writeln!(out, "  n{from} {arrow} n{to}");
            }
        }
    }
    out
}

/// Mermaid labels are quoted; quotes and markup characters become entities,
/// and so do `%` (`%%{init: …}%%` directives are found anywhere in the text
/// and change the configuration), `` ` `` (it starts markdown strings), `&`
/// and `#` (entities); line breaks and other control characters become
/// spaces, so plan text never starts a line of its own.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in super::chars(text) {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '#' => out.push_str("#35;"),
            '&' => out.push_str("#38;"),
            '%' => out.push_str("#37;"),
            '`' => out.push_str("#96;"),
            c if super::is_unsafe(c) => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A double-quoted YAML string on one line, for the front matter: titles may
/// hold `:`, `#` or brackets, and a raw newline would end the front matter
/// (`\n---\n`) and let the rest of the title be read as diagram lines.
fn yaml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Mermaid 10 looks for `%%{…}%%` directives in the whole text, front
            // matter included; `\x25` is a `%` that only YAML reads.
            '%' => out.push_str("\\x25"),
            c if super::is_unsafe(c) => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
