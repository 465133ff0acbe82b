//! The resolvers `use` is checked with: the stdlib's templates, and plan
//! files on disk beside the importing plan.

use std::path::Path;

use crate::check::{Found, Resolver};
use crate::source::Source;

/// The stdlib's templates only: no file is read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Templates;

impl Resolver for Templates {
    fn resolve(&self, _from: &Source, reference: &str) -> Result<Found, String> {
        let template = crate::stdlib::template(reference)
            .ok_or_else(|| "it is not a stdlib template".to_owned())?;
        Ok(Found {
            identity: format!("template {}", template.name),
            source: Source::new(template.name, template.text),
            file: None,
        })
    }

    fn identity(&self, source: &Source) -> String {
        match crate::stdlib::template(source.name()) {
            Some(t) if t.text == source.text() => format!("template {}", t.name),
            _ => source.name().to_owned(),
        }
    }

    fn templates(&self) -> Vec<String> {
        crate::stdlib::TEMPLATES
            .iter()
            .map(|t| t.name.to_owned())
            .collect()
    }
}

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
        let source = Source::read(&path).map_err(|e| {
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
        match crate::stdlib::template(source.name()) {
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
