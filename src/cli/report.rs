//! Printing diagnostics: miette's graphical report for people, JSON lines for tools.

use std::io::Write;

use miette::{GraphicalReportHandler, GraphicalTheme};
use serde_json::json;

use crate::error::Error;
use cairn_lang::diagnostic::Diagnostic;

/// Diagnostics are laid out for this many columns, so output is stable.
const WIDTH: usize = 100;

fn handler() -> GraphicalReportHandler {
    let theme = if super::style::color_on_stderr() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    GraphicalReportHandler::new_themed(theme)
        .with_width(WIDTH)
        .with_links(false)
}

/// Renders one diagnostic as text, in colour as `--color` says (by default
/// only on a terminal without `NO_COLOR`).
pub fn render(diagnostic: &Diagnostic) -> String {
    render_miette(diagnostic)
}

/// Renders any miette diagnostic the way [`render`] does a check's.
pub fn render_miette(diagnostic: &dyn miette::Diagnostic) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = handler().render_report(&mut out, diagnostic);
    out
}

/// Prints diagnostics for people on stderr.
pub fn human(diagnostics: &[Diagnostic]) {
    let mut stderr = std::io::stderr().lock();
    for d in diagnostics {
        let _ = write!(stderr, "{}", render(d));
    }
}

/// One diagnostic as a JSON object (file, line, column, span, severity, code,
/// message, help, labels).
pub fn json(diagnostic: &Diagnostic) -> serde_json::Value {
    let source = &diagnostic.source;
    let (line, column) = source.line_col(diagnostic.offset());
    let span = diagnostic.labels.first().map(|l| l.span);
    let labels: Vec<_> = diagnostic
        .labels
        .iter()
        .map(|l| {
            let (line, column) = source.line_col(l.span.start);
            json!({
                "line": line,
                "column": column,
                "span": { "start": l.span.start, "end": l.span.end },
                "text": l.text,
            })
        })
        .collect();
    json!({
        "file": source.name(),
        "line": line,
        "column": column,
        "span": span.map(|s| json!({ "start": s.start, "end": s.end })),
        "severity": diagnostic.severity,
        "code": diagnostic.code,
        "message": diagnostic.message,
        "help": diagnostic.help,
        "labels": labels,
    })
}

/// A plan file, or the stdlib template a name that is not a file names
/// (`debug-500`).
pub fn read_plan(
    path: &std::path::Path,
) -> Result<std::sync::Arc<cairn_lang::source::Source>, Error> {
    let bare = path.components().count() == 1 && path.extension().is_none();
    if bare && !path.exists() {
        let name = path.to_string_lossy();
        if let Some(template) = cairn_lang::templates::template(&name) {
            return Ok(cairn_lang::source::Source::new(
                template.name,
                template.text,
            ));
        }
        // Neither a file nor a template: a misspelt template's name?
        let names = cairn_lang::templates::TEMPLATES.iter().map(|t| t.name);
        if let Some(close) = cairn_lang::check::closest(&name, names) {
            return Err(Error::Usage(format!(
                "no plan file or stdlib template `{name}`; did you mean the template `{close}`? (`cairn templates` lists them)"
            )));
        }
    }
    Ok(cairn_engine::read::read(path)?)
}

/// Checks plan text with the capabilities `cairn` offers (the built-in ones
/// and the stdlib's tools).
pub fn check(source: &std::sync::Arc<cairn_lang::source::Source>) -> cairn_lang::check::Checked {
    cairn_engine::stdlib::engine().check(source)
}

/// Reads and checks a plan file, printing its diagnostics; the plan if it
/// has no errors (the shared first step of `graph` and `run`).
pub fn load(
    path: &std::path::Path,
) -> Result<
    (
        std::sync::Arc<cairn_lang::source::Source>,
        cairn_lang::plan::Plan,
    ),
    Error,
> {
    let source = read_plan(path)?;
    let checked = check(&source);
    human(&checked.diagnostics);
    let plan = checked.plan.ok_or_else(|| {
        let count = checked.diagnostics.iter().filter(|d| d.is_error()).count();
        error(&Error::Invalid { count });
        Error::Invalid { count }
    })?;
    Ok((source, plan))
}

/// A command-level error (a file that cannot be read, …) on stderr.
pub fn error(err: &Error) {
    let _ = writeln!(std::io::stderr(), "error: {err}");
}

/// Rows aligned in columns under a header, two spaces apart.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let start = text.len();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let _ = std::fmt::Write::write_fmt(&mut text, format_args!("{cell:width$}"));
        }
        text.truncate(start + text[start..].trim_end().len());
        text.push('\n');
    }
    text
}

/// A span of time a person reads at a glance: `850ms`, `4.2s`, `3m05s`,
/// `2h10m`, `3d4h` (a negative span, from a clock set back, is `0ms`).
pub fn human_age(ms: i64) -> String {
    let ms = ms.max(0) as u64;
    let (s, m, h, d) = (ms / 1000, ms / 60_000, ms / 3_600_000, ms / 86_400_000);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{m}m{:02}s", s % 60),
        3_600_000..86_400_000 => format!("{h}h{:02}m", m % 60),
        _ => format!("{d}d{}h", h % 24),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages_read_at_a_glance() {
        let cases = [
            (-5, "0ms"),
            (850, "850ms"),
            (4_249, "4.2s"),
            (185_000, "3m05s"),
            (7_800_000, "2h10m"),
            (3 * 86_400_000 + 4 * 3_600_000, "3d4h"),
        ];
        for (ms, text) in cases {
            assert_eq!(super::human_age(ms), text);
        }
    }
}
