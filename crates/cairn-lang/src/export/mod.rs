//! Exporting a checked plan's graph for people and tools: Mermaid and Graphviz DOT.

mod dot;
mod mermaid;

pub use dot::dot;
pub use mermaid::mermaid;

use crate::plan::{Awaited, EdgeKind, StepKind, Task};

/// Whether a character may not reach an export as it is: a control
/// character (newline, carriage return, tab, NUL, …) or a Unicode line or
/// paragraph separator. Plan text can hold them (`"a\nb"` is a newline), and
/// written raw they would end a line of the output and start plan-chosen syntax.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Whether a character ends a line of text (`\r\n` counts once: see [`chars`]).
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// The text's characters with `\r\n` read as one `\n`.
fn chars(text: &str) -> impl Iterator<Item = char> + '_ {
    let mut rest = text.chars().peekable();
    std::iter::from_fn(move || {
        let c = rest.next()?;
        if c == '\r' && rest.peek() == Some(&'\n') {
            rest.next();
            return Some('\n');
        }
        Some(c)
    })
}

/// The edge label both formats show, if any.
fn edge_label(from: &Task, to: &Task, kind: EdgeKind) -> Option<String> {
    match kind {
        EdgeKind::Needs => None,
        // The results `to` waits for from `from` (`failed`, `any: skipped`).
        EdgeKind::After => {
            let words: Vec<String> = to
                .qualified
                .iter()
                .flat_map(|entry| {
                    let any = entry.len() > 1;
                    entry.iter().filter(|n| n.id == from.id).map(move |n| {
                        let word = match n.result {
                            Awaited::Succeeded => "succeeded",
                            Awaited::Failed => "failed",
                            Awaited::Skipped => "skipped",
                            Awaited::Done => "done",
                        };
                        if any {
                            format!("any: {word}")
                        } else {
                            word.to_owned()
                        }
                    })
                })
                .collect();
            Some(words.join(", "))
        }
        EdgeKind::OnSuccess => Some("on success".to_owned()),
        EdgeKind::OnFailure => Some("on failure".to_owned()),
        EdgeKind::OnReject => Some("on reject".to_owned()),
        EdgeKind::Branch { index } => Some(from.branch(index).condition.text.to_string()),
        EdgeKind::Else => Some("else".to_owned()),
    }
}

/// The lines of a node's label: id, title, and kind if any.
fn node_lines(task: &Task) -> Vec<String> {
    let mut lines = vec![task.id.clone(), task.title.clone()];
    let kind = match (task.kind(), &task.kind) {
        (StepKind::Task, Some(kind)) => Some(kind.clone()),
        (StepKind::Task, None) => None,
        (StepKind::Decision, _) => Some("decision".to_owned()),
        (StepKind::Gate, _) => Some("gate".to_owned()),
    };
    lines.extend(kind.map(|k| format!("({k})")));
    if task.finally {
        lines.push("finally: after every other step".to_owned());
    }
    // A fan-out is one node, marked: its instances exist only at run time.
    if let Some(each) = &task.each {
        lines.push(format!("for each of {}", each.over.text));
    }
    // A sub-plan is one node too: its steps are the child run's.
    if let Some(call) = &task.call {
        lines.push(format!("runs plan {}", call.reference));
    }
    // So is a loop: its iterations exist only at run time.
    if let Some(repeat) = &task.repeat {
        lines.push(match &repeat.until {
            Some(until) => format!("repeat at most {} until {}", repeat.max, until.text),
            None => format!("repeat {} times", repeat.max),
        });
    }
    lines
}
