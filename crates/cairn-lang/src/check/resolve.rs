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
