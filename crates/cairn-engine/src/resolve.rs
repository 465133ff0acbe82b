//! The resolver `use` is checked with on disk: a stdlib template for a bare
//! name, else a plan file beside the importing plan.

use std::path::Path;

use cairn_lang::check::{Found, Resolver};
use cairn_lang::source::Source;
use cairn_lang::templates::{template, Templates};

/// A bare name (no `/`, no `.plan`) is a stdlib template if there is one;
/// anything else is a plan file relative to the importing plan's file.
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
        let path = match Path::new(from.name()).parent() {
            Some(base) if !base.as_os_str().is_empty() => base.join(reference),
            _ => Path::new(reference).to_path_buf(),
        };
        let source = crate::read::read(&path).map_err(|e| {
            if bare {
                format!("it is not a stdlib template, and {e}")
            } else {
                e.to_string()
            }
        })?;
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
