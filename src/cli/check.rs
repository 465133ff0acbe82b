//! `cairn check`: report every problem in each file, and a summary line when clean.

use std::io::Write;
use std::path::PathBuf;

use serde_json::json;

use super::report;
use super::DiagnosticFormat;
use crate::error::Error;
use cairn_lang::check;

pub fn run(files: &[PathBuf], format: DiagnosticFormat) -> Result<(), Error> {
    let mut failed = 0;
    let mut stdout = std::io::stdout().lock();
    for path in files {
        let source = match report::read_plan(path) {
            Ok(source) => source,
            Err(err) => {
                failed += 1;
                match format {
                    DiagnosticFormat::Human => report::error(&err),
                    DiagnosticFormat::Json => {
                        // The same fields as a diagnostic, with no position.
                        let line = json!({
                            "file": path.display().to_string(),
                            "line": null,
                            "column": null,
                            "span": null,
                            "severity": "error",
                            "code": "cairn::unreadable",
                            "message": err.to_string(),
                            "help": null,
                            "labels": [],
                        });
                        writeln!(stdout, "{line}").map_err(Error::Output)?;
                    }
                }
                continue;
            }
        };
        let checked = report::check(&source);
        let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
        let warnings = checked.diagnostics.len() - errors;
        match format {
            DiagnosticFormat::Human => report::human(&checked.diagnostics),
            DiagnosticFormat::Json => {
                for d in &checked.diagnostics {
                    writeln!(stdout, "{}", report::json(d)).map_err(Error::Output)?;
                }
            }
        }
        if let Some(plan) = &checked.plan {
            if format == DiagnosticFormat::Human {
                let warned = match warnings {
                    0 => String::new(),
                    1 => ", 1 warning".to_owned(),
                    n => format!(", {n} warnings"),
                };
                writeln!(
                    stdout,
                    "{}: ok: plan `{}`, {} {}, {} {}, width {}{warned}",
                    source.name(),
                    plan.id,
                    plan.tasks.len(),
                    plural(plan.tasks.len(), "step", "steps"),
                    plan.graph.edge_count(),
                    plural(plan.graph.edge_count(), "edge", "edges"),
                    check::width(&plan.graph),
                )
                .map_err(Error::Output)?;
            }
        } else {
            failed += 1;
            if format == DiagnosticFormat::Human {
                report::error(&Error::Invalid { count: errors });
            }
        }
    }
    if failed > 0 {
        Err(Error::Invalid { count: failed })
    } else {
        Ok(())
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}
