//! Where `use` finds the plans it imports: a [`Resolver`], so that checking
//! reads no file of its own (an editor resolves unsaved buffers its way).

use std::sync::Arc;

use crate::source::Source;

/// A plan a `use` reference leads to.
pub struct Found {
    /// What identifies the plan (a canonical path, `template <name>`), to
    /// find import cycles.
    pub identity: String,
    /// Its text, named as diagnostics should show it.
    pub source: Arc<Source>,
    /// The file it was read from, if any (recorded so that `resume` sees an
    /// edited import); `None` for a template.
    pub file: Option<String>,
}

/// Finds the plans `use` names.
pub trait Resolver: Send + Sync {
    /// The plan that `reference` (a `use` line of `from`) names, or why there
    /// is none, in words that follow "cannot be imported: ".
    fn resolve(&self, from: &Source, reference: &str) -> Result<Found, String>;
    /// What identifies `source`, the plan being checked, for cycles.
    fn identity(&self, source: &Source) -> String;
    /// The templates a bare name may refer to, for the help of an unknown
    /// import.
    fn templates(&self) -> Vec<String>;
}

/// The help for a `use` or `plan:` that names nothing: the template it is
/// close to, or the templates there are.
pub(super) fn not_found_help(resolver: &dyn Resolver, reference: &str) -> String {
    let templates = resolver.templates();
    if let Some(close) = super::suggest::closest(reference, templates.iter().map(String::as_str)) {
        return format!("did you mean the stdlib template `{close}`?");
    }
    let listed: Vec<String> = templates.iter().map(|t| format!("`{t}`")).collect();
    format!(
        "name a stdlib template ({}) or a plan file relative to this one",
        listed.join(", ")
    )
}
