//! The resolver `use` is checked with on disk: a stdlib template for a bare
//! name, else a plan file beside the importing plan.

use std::path::Path;

use cairn_lang::check::{Found, Resolver};
use cairn_lang::source::Source;
use cairn_lang::templates::{template, Templates};

/// A bare name (no `/`, no `.plan`) is a stdlib template if there is one;
/// anything else is a plan file (its name ending in `.plan`) relative to
/// the importing plan's file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Files;

impl Resolver for Files {
    fn resolve(&self, from: &Source, reference: &str) -> Result<Found, String> {
        let bare = !reference.contains('/') && !reference.ends_with(".plan");
        if bare {
            if let Ok(found) = Templates.resolve(from, reference) {
                return Ok(found);
            }
        }
        // Only plan files: a hostile plan must not get another file's text
        // shown back in its diagnostics (`use "/home/me/.ssh/id_ed25519"`).
        if !reference.ends_with(".plan") {
            return Err(if bare {
                "it is neither a stdlib template nor a plan file (a plan file's name ends in `.plan`)".to_owned()
            } else {
                "only `.plan` files are plans".to_owned()
            });
        }
        let path = match Path::new(from.name()).parent() {
            Some(base) if !base.as_os_str().is_empty() => base.join(reference),
            _ => Path::new(reference).to_path_buf(),
        };
        let source = crate::read::read(&path).map_err(|e| e.to_string())?;
        Ok(Found {
            identity: canonical(&path),
            source,
            file: Some(path.display().to_string()),
        })
    }

    fn identity(&self, source: &Source) -> String {
        match template(source.name()) {
            Some(t) if t.text == source.text() => format!("template {}", t.name),
            _ => canonical(Path::new(source.name())),
        }
    }

    fn templates(&self) -> Vec<String> {
        Templates.templates()
    }
}

fn canonical(path: &Path) -> String {
    path.canonicalize()
        .map_or_else(|_| path.display().to_string(), |p| p.display().to_string())
}
