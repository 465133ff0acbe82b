//! `cairn templates` and `cairn new`: the stdlib's template plans.

use std::io::Write;
use std::path::PathBuf;

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
        // Within 80 columns: each param on its own line, its doc under it.
        for t in TEMPLATES {
            out.push_str(&format!("{}\n", t.name));
            out.push_str(&wrap(&t.purpose(), "  ", "  ", 80));
            for p in t.params() {
                let assignment = format!("{} = {}", p.name, p.default);
                out.push_str(&wrap(&assignment, "    ", "          ", 80));
                out.push_str(&wrap(&p.doc, "        ", "        ", 80));
            }
            out.push('\n');
        }
        out.push_str("run one with `cairn run <name> [--set param=value]…`;\n`cairn new <name>` writes an editable copy\n");
    }
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .map_err(Error::Output)
}

/// `text` in lines of at most `width` characters, the first after
/// `first`, the others after `rest` (a word longer than a line has a line
/// of its own).
fn wrap(text: &str, first: &str, rest: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    let mut indent = first;
    for word in text.split_whitespace() {
        let len = indent.chars().count() + line.chars().count() + 1 + word.chars().count();
        if !line.is_empty() && len > width {
            out.push_str(&format!("{indent}{line}\n"));
            line.clear();
            indent = rest;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{indent}{line}\n"));
    }
    out
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
