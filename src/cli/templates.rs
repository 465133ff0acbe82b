//! `cairn templates` and `cairn new`: the stdlib's template plans.

use std::io::Write;
use std::path::PathBuf;

use super::report;
use crate::error::Error;
use cairn_lang::templates::{self, TEMPLATES};

/// `cairn templates`: name, purpose and params of every template.
pub fn list(as_json: bool) -> Result<(), Error> {
    let mut out = String::new();
    if as_json {
        for t in TEMPLATES {
            let value = serde_json::json!({
                "name": t.name,
                "purpose": t.purpose(),
                "params": t.params(),
            });
            out.push_str(&format!("{value}\n"));
        }
    } else {
        for t in TEMPLATES {
            out.push_str(&format!("{}\n  {}\n", t.name, t.purpose()));
            let rows: Vec<[String; 3]> = t
                .params()
                .into_iter()
                .map(|p| [format!("  {}", p.name), p.default, p.doc])
                .collect();
            if !rows.is_empty() {
                out.push_str(&report::table(["  param", "default", ""], &rows));
            }
            out.push('\n');
        }
        out.push_str("run one with `cairn run <name> [--set param=value]…`; `cairn new <name>` writes an editable copy\n");
    }
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .map_err(Error::Output)
}

/// `cairn new`: writes a template's text to a new file.
pub fn new(name: &str, file: Option<PathBuf>) -> Result<(), Error> {
    let template = templates::template(name).ok_or_else(|| {
        let names: Vec<String> = TEMPLATES.iter().map(|t| format!("`{}`", t.name)).collect();
        Error::Usage(format!(
            "no template `{name}`; the stdlib has {}",
            names.join(", ")
        ))
    })?;
    let path = file.unwrap_or_else(|| PathBuf::from(format!("{name}.plan")));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| Error::Create {
            path: path.display().to_string(),
            source,
        })?;
    out.write_all(template.text.as_bytes())
        .map_err(|source| Error::Create {
            path: path.display().to_string(),
            source,
        })?;
    println!(
        "wrote {}; run it with `cairn run {}`",
        path.display(),
        path.display()
    );
    Ok(())
}
