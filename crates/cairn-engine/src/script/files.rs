//! The `fs.read` and `fs.write` capabilities, confined to the plan's
//! directory and the scopes of its grants (see [`super::confine`]).

use std::path::{Path, PathBuf};

use rhai::{Array, Engine, EvalAltResult};

use serde_json::json;

use super::confine::{self, MAX_FILE_BYTES};
use super::context::{io_failed, outside, refused, runtime, Note, StepContext};

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

/// Registers the `fs.read` functions: `read_file`, `exists` and `list_dir`.
pub fn register_read(engine: &mut Engine) {
    engine.register_fn("read_file", |path: &str| -> Result<String> {
        outside("read_file", json!([path]), |ctx| {
            let full = resolve(ctx, path, "fs.read")?;
            let bytes = confine::read(&full, MAX_FILE_BYTES)
                .map_err(|e| io_failed(format!("read_file(\"{path}\"): {e}")))?;
            String::from_utf8(bytes)
                .map_err(|_| runtime(format!("read_file(\"{path}\"): the file is not UTF-8 text")))
        })
    });
    engine.register_fn("exists", |path: &str| -> Result<bool> {
        outside("exists", json!([path]), |ctx| {
            let full = match ctx
                .confinement
                .locate_within(path, ctx.grant_lists(), "fs.read")
            {
                Ok(full) => full,
                // `missing/..` or `file/x`: no such file.
                Err(confine::Refusal::Io(_, e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    return Ok(false)
                }
                Err(e) => return Err(refusal(e)),
            };
            confine::exists(&full).map_err(|e| io_failed(format!("exists(\"{path}\"): {e}")))
        })
    });
    engine.register_fn("list_dir", |path: &str| -> Result<Array> {
        outside("list_dir", json!([path]), |ctx| {
            let full = resolve(ctx, path, "fs.read")?;
            let names = confine::list(&full)
                .map_err(|e| io_failed(format!("list_dir(\"{path}\"): {e}")))?;
            Ok(names
                .into_iter()
                // The run store is not there as far as plans can tell.
                .filter(|name| !ctx.confinement.is_sealed(&full.join(name)))
                .map(|name| name.to_string_lossy().into_owned().into())
                .collect())
        })
    });
}

/// Registers the `fs.write` functions: `write_file`, `edit_file` and `restore_file`.
pub fn register_write(engine: &mut Engine) {
    engine.register_fn("write_file", |path: &str, contents: &str| -> Result<()> {
        outside("write_file", json!([path, contents]), |ctx| {
            let full = resolve(ctx, path, "fs.write")?;
            remember(ctx, path, &full)?;
            confine::write_atomically(&full, contents.as_bytes())
                .map_err(|e| io_failed(format!("write_file(\"{path}\"): {e}")))
        })
    });
    engine.register_fn("edit_file", |path: &str, old: &str, new: &str| -> Result<bool> {
        outside("edit_file", json!([path, old, new]), |ctx| {
            let full = resolve(ctx, path, "fs.write")?;
            let text = confine::read(&full, MAX_FILE_BYTES)
                .map_err(|e| io_failed(format!("edit_file(\"{path}\"): {e}")))?;
            let text = String::from_utf8(text)
                .map_err(|_| runtime(format!("edit_file(\"{path}\"): the file is not UTF-8 text")))?;
            // Already applied: editing again changes nothing (checked first,
            // since the new text may contain the old).
            if !new.is_empty() && new.contains(old) && text.contains(new) {
                return Ok(false);
            }
            match text.matches(old).count() {
                1 => {
                    remember(ctx, path, &full)?;
                    let edited = text.replacen(old, new, 1);
                    confine::write_atomically(&full, edited.as_bytes())
                        .map_err(|e| io_failed(format!("edit_file(\"{path}\"): {e}")))?;
                    Ok(true)
                }
                // Already applied: editing again changes nothing.
                0 if !new.is_empty() && text.contains(new) => Ok(false),
                0 => Err(runtime(format!("edit_file(\"{path}\"): the text to replace is not in the file"))),
                n => Err(runtime(format!(
                    "edit_file(\"{path}\"): the text to replace appears {n} times; include more context so it appears once"
                ))),
            }
        })
    });
    engine.register_fn("restore_file", |path: &str| -> Result<bool> {
        outside("restore_file", json!([path]), |ctx| {
            let full = resolve(ctx, path, "fs.write")?;
            restore(ctx, &full)
        })
    });
}

/// Puts a file back as it was before this run first changed it. `full` is
/// the resolved path the change was made to (a journal key): the restore
/// acts on exactly that file, through no link.
pub fn restore(ctx: &StepContext, full: &Path) -> Result<bool> {
    let original = {
        let journal = ctx.journal.lock().unwrap_or_else(|e| e.into_inner());
        match journal.originals.get(full) {
            Some(original) => original.clone(),
            None => return Ok(false),
        }
    };
    match original {
        Some(bytes) => confine::write_atomically(full, &bytes),
        None => confine::remove(full),
    }
    .map_err(|e| runtime(format!("restoring `{}`: {e}", full.display())))?;
    Ok(true)
}

/// Records a file's contents before the run's first change to it, keyed by
/// the resolved path that is about to change.
fn remember(ctx: &StepContext, path: &str, full: &Path) -> Result<()> {
    let key = full.to_path_buf();
    let (original, new_to_step) = {
        let journal = ctx.journal.lock().unwrap_or_else(|e| e.into_inner());
        let new_to_step = !journal
            .by_task
            .get(&ctx.task)
            .is_some_and(|files| files.contains(&key));
        (journal.originals.get(&key).cloned(), new_to_step)
    };
    if !new_to_step {
        return Ok(());
    }
    let original = match original {
        Some(original) => original,
        None => match confine::read(full, MAX_FILE_BYTES) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            // Without the original, compensation could not put it back.
            Err(e) => {
                return Err(runtime(format!(
                    "`{path}`: cannot keep its contents for restore_file and compensation: {e}"
                )))
            }
        },
    };
    if full.to_str().is_none() {
        return Err(runtime(format!(
            "`{path}`: its resolved path is not UTF-8, so the run store cannot keep it for compensation"
        )));
    }
    ctx.charge(original.as_ref().map_or(0, |o| o.len() as u64))?;
    // Kept in the store (and committed) before the change is made, so a
    // crash right after it still leaves what undoes it.
    ctx.note(Note::Original {
        path: full,
        content: original.as_deref(),
    });
    let mut journal = ctx.journal.lock().unwrap_or_else(|e| e.into_inner());
    journal.originals.entry(key.clone()).or_insert(original);
    let files = journal.by_task.entry(ctx.task.clone()).or_default();
    if !files.contains(&key) {
        files.push(key);
    }
    Ok(())
}

/// Resolves a plan-relative path through every symbolic link and checks
/// the result against `capability`'s grants: the plan's directory unless
/// `allow: <capability>(…)` scopes say otherwise, never the run store.
pub fn resolve(ctx: &StepContext, path: &str, capability: &str) -> Result<PathBuf> {
    ctx.confinement
        .locate_within(path, ctx.grant_lists(), capability)
        .map_err(refusal)
}

/// A path the sandbox refuses is a capability failure; one that cannot be
/// resolved (a missing directory before `..`), an outside one.
fn refusal(error: confine::Refusal) -> Box<EvalAltResult> {
    match error {
        confine::Refusal::Io(..) => io_failed(error.to_string()),
        _ => refused(error.to_string()),
    }
}
