//! The `fs.read` and `fs.write` capabilities, confined to the plan's directory.

use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use rhai::{Array, Engine, EvalAltResult};

use serde_json::json;

use super::context::{outside, runtime, StepContext};

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

/// Registers the `fs.read` functions: `read_file`, `exists` and `list_dir`.
pub fn register_read(engine: &mut Engine) {
    engine.register_fn("read_file", |path: &str| -> Result<String> {
        outside("read_file", json!([path]), |ctx| {
            let full = resolve(ctx, path, "fs.read")?;
            std::fs::read_to_string(&full)
                .map_err(|e| runtime(format!("read_file(\"{path}\"): {e}")))
        })
    });
    engine.register_fn("exists", |path: &str| -> Result<bool> {
        outside("exists", json!([path]), |ctx| {
            Ok(resolve(ctx, path, "fs.read")?.exists())
        })
    });
    engine.register_fn("list_dir", |path: &str| -> Result<Array> {
        outside("list_dir", json!([path]), |ctx| {
            let full = resolve(ctx, path, "fs.read")?;
            let mut names: Vec<String> = std::fs::read_dir(&full)
                .map_err(|e| runtime(format!("list_dir(\"{path}\"): {e}")))?
                .filter_map(|entry| {
                    entry
                        .ok()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                })
                .collect();
            // Directory order is not stable across machines; plans must be.
            names.sort();
            Ok(names.into_iter().map(Into::into).collect())
        })
    });
}

/// Registers the `fs.write` functions: `write_file`, `edit_file` and `restore_file`.
pub fn register_write(engine: &mut Engine) {
    engine.register_fn("write_file", |path: &str, contents: &str| -> Result<()> {
        outside("write_file", json!([path, contents]), |ctx| {
            let full = resolve(ctx, path, "fs.write")?;
            remember(ctx, path, &full);
            write_atomically(&full, contents.as_bytes())
                .map_err(|e| runtime(format!("write_file(\"{path}\"): {e}")))
        })
    });
    engine.register_fn("edit_file", |path: &str, old: &str, new: &str| -> Result<bool> {
        outside("edit_file", json!([path, old, new]), |ctx| {
            let full = resolve(ctx, path, "fs.write")?;
            let text = std::fs::read_to_string(&full).map_err(|e| runtime(format!("edit_file(\"{path}\"): {e}")))?;
            // Already applied: editing again changes nothing (checked first,
            // since the new text may contain the old).
            if !new.is_empty() && new.contains(old) && text.contains(new) {
                return Ok(false);
            }
            match text.matches(old).count() {
                1 => {
                    remember(ctx, path, &full);
                    let edited = text.replacen(old, new, 1);
                    write_atomically(&full, edited.as_bytes())
                        .map_err(|e| runtime(format!("edit_file(\"{path}\"): {e}")))?;
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
            restore(ctx, path, &full)
        })
    });
}

/// Puts a file back as it was before this run first changed it.
pub fn restore(ctx: &StepContext, path: &str, full: &Path) -> Result<bool> {
    let original = {
        let journal = ctx.journal.lock().unwrap_or_else(|e| e.into_inner());
        match journal.originals.get(Path::new(path)) {
            Some(original) => original.clone(),
            None => return Ok(false),
        }
    };
    match original {
        Some(bytes) => write_atomically(full, &bytes),
        None => match std::fs::remove_file(full) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
    .map_err(|e| runtime(format!("restore_file(\"{path}\"): {e}")))?;
    Ok(true)
}

/// Records a file's contents before the run's first change to it.
fn remember(ctx: &StepContext, path: &str, full: &Path) {
    let mut journal = ctx.journal.lock().unwrap_or_else(|e| e.into_inner());
    let key = PathBuf::from(path);
    journal
        .originals
        .entry(key.clone())
        .or_insert_with(|| std::fs::read(full).ok());
    let files = journal.by_task.entry(ctx.task.clone()).or_default();
    if !files.contains(&key) {
        files.push(key);
    }
}

/// Writes next to the target and renames over it: a failed step never
/// leaves a half-written file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per write: steps of one run may write at the same time.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = path.with_file_name(format!(".{name}.cairn-{}-{n}", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// Resolves a plan-relative path, refusing anything outside the plan's
/// directory unless a scope in `allow: <capability>(…)` names it, and, when
/// the capability is narrowed by scopes, anything they do not name.
pub fn resolve(ctx: &StepContext, path: &str, capability: &str) -> Result<PathBuf> {
    let scopes: Vec<&str> = ctx
        .grants
        .iter()
        .filter(|g| g.capability == capability)
        .flat_map(|g| g.scopes.iter().map(String::as_str))
        .collect();
    // Paths and scopes are compared after `.` and `..` are resolved, so
    // `config/../../x` is judged as the file it names.
    let full = normalize(&ctx.dir.join(path));
    let in_scope = scopes.iter().any(|glob| {
        let pattern = normalize(&ctx.dir.join(glob));
        glob_matcher(&pattern.to_string_lossy()).is_some_and(|m| m.is_match(&full))
    });
    if !full.starts_with(&ctx.dir) {
        if in_scope {
            return Ok(full);
        }
        return Err(runtime(format!(
            "`{path}` is outside the plan's directory; plans read and write only below it unless `allow: {capability}(<glob>)` names the path"
        )));
    }
    if !scopes.is_empty() && !in_scope {
        return Err(runtime(format!(
            "`{path}` is not in the plan's `allow: {capability}({})`",
            scopes.join(", ")
        )));
    }
    // Symlinks are followed as far as the path exists; where it leads must
    // still be inside the plan's directory.
    let mut existing = full.as_path();
    while !existing.exists() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => break,
        }
    }
    if let Ok(real) = existing.canonicalize() {
        if !real.starts_with(&ctx.dir) {
            return Err(runtime(format!(
                "`{path}` leads outside the plan's directory through a symbolic link"
            )));
        }
    }
    Ok(full)
}

/// Resolves `.` and `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn glob_matcher(glob: &str) -> Option<GlobMatcher> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .ok()
        .map(|g| g.compile_matcher())
}
