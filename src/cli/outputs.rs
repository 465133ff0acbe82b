//! `cairn output` and `cairn artifact`: what a run's steps gave, read back.

use std::io::Write;
use std::path::Path;

use super::runs::{open, out};
use crate::error::Error;
use cairn_store::StepState;

/// `cairn output [run] <step> [--raw]`: the step's output as JSON (a string
/// as its text with `--raw`).
pub fn output(dir: &Path, ids: &[String], raw: bool) -> Result<(), Error> {
    let (run, step) = match ids {
        [step] => (None, step.as_str()),
        [run, step] => (Some(run.as_str()), step.as_str()),
        _ => return Err(Error::Usage("give `[run] <step>`".to_owned())),
    };
    let store = open(dir)?;
    let run = store.run(run)?;
    let steps = store.steps(&run.id)?;
    let Some(row) = steps.iter().find(|s| s.step == step) else {
        let ids = steps.iter().map(|s| s.step.as_str());
        let hint = cairn_lang::check::closest(step, ids)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(Error::Usage(format!(
            "run {} has no step `{step}` that started{hint}",
            run.id
        )));
    };
    let Some(output) = &row.output else {
        let why = match (&row.status, &row.error) {
            (_, Some(error)) => format!("it {}: {error}", row.status),
            (StepState::Running, None) => "it is still running".to_owned(),
            (status, None) => format!("it is {status}"),
        };
        return Err(Error::Usage(format!(
            "step `{step}` of run {} has no output: {why}",
            run.id
        )));
    };
    let text = match output {
        serde_json::Value::String(text) if raw => text.clone(),
        value => serde_json::to_string_pretty(value).expect("values serialize"),
    };
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    out(&format!("{text}{newline}"))
}

/// `cairn artifact [run] [name] [-o file]`: lists a run's artifacts, or
/// writes one's content to stdout or a file. One argument is an artifact
/// of the newest run if it has one of that name, else a run.
pub fn artifact(dir: &Path, ids: &[String], to: Option<&Path>) -> Result<(), Error> {
    let store = open(dir)?;
    let (run, name) = match ids {
        [] => (store.run(None)?, None),
        [one] => {
            let newest = store.run(None)?;
            let named = store.artifacts(&newest.id)?.iter().any(|a| &a.name == one);
            match (named, store.run(Some(one))) {
                (true, _) => (newest, Some(one.as_str())),
                (false, Ok(run)) => (run, None),
                (false, Err(cairn_store::StoreError::NotFound(_))) => {
                    return Err(Error::Usage(format!(
                        "the newest run ({}) has no artifact `{one}`, and `{one}` is not one run's id",
                        newest.id
                    )))
                }
                (false, Err(e)) => return Err(e.into()),
            }
        }
        [run, name] => (store.run(Some(run))?, Some(name.as_str())),
        _ => return Err(Error::Usage("give `[run] [name]`".to_owned())),
    };
    let artifacts = store.artifacts(&run.id)?;
    let Some(name) = name else {
        if to.is_some() {
            return Err(Error::Usage(
                "`-o` writes one artifact: name it (`cairn artifact [run] <name> -o <file>`)"
                    .to_owned(),
            ));
        }
        if artifacts.is_empty() {
            return out(&format!("run {} saved no artifacts\n", run.id));
        }
        return out(&super::runs::artifact_table(&artifacts));
    };
    // A name saved more than once in the run: its last content.
    let Some(found) = artifacts.iter().rev().find(|a| a.name == name) else {
        let names = artifacts.iter().map(|a| a.name.as_str());
        let hint = cairn_lang::check::closest(name, names)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(Error::Usage(format!(
            "run {} has no artifact `{name}`{hint}",
            run.id
        )));
    };
    let content = store.blob(&found.sha256)?.ok_or_else(|| {
        Error::Usage(format!(
            "the content of artifact `{name}` (sha256 {}) is missing from the store",
            found.sha256
        ))
    })?;
    match to {
        None => std::io::stdout()
            .lock()
            .write_all(&content)
            .map_err(Error::Output),
        Some(path) => write_whole(path, &content),
    }
}

/// Writes `content` to `path` through a temporary file beside it, so the
/// file appears whole or not at all (and an existing one is replaced whole).
fn write_whole(path: &Path, content: &[u8]) -> Result<(), Error> {
    let create = |source| Error::Create {
        path: path.display().to_string(),
        source,
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(parent).map_err(create)?;
    temp.write_all(content).map_err(create)?;
    temp.as_file().sync_all().map_err(create)?;
    temp.persist(path).map_err(|e| create(e.error))?;
    Ok(())
}
