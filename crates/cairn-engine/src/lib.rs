//! cairn's engine: runs a checked plan, with plan code in a Rhai sandbox.
//!
//! [`run`] schedules the steps and reports what happened through typed
//! events; [`script`] is the sandbox and the built-in capabilities (`sh`,
//! `fs`, `http`); [`stdlib`] the tools the stdlib's templates use. An
//! application embeds it through [`Engine`]. Recording a run is the store's
//! (`cairn-store`): the engine knows only a [`run::Recorder`].

#![warn(missing_docs)]

pub mod capability;
pub mod clock;
mod engine;
pub mod error;
pub mod failure;
pub mod read;
pub mod resolve;
pub mod run;
pub mod script;
pub mod stdlib;

/// The front end the engine runs plans from.
pub use cairn_lang as lang;
pub use capability::Registry;
pub use engine::Engine;
pub use error::Error;
pub use failure::{ErrorKind, Failure};
/// The Rhai crate, for registering host functions.
pub use rhai;

use std::sync::Arc;

use cairn_lang::check::Checked;
use cairn_lang::script::Capabilities;
use cairn_lang::source::Source;

/// Checks plan text with the built-in capabilities; `use` finds stdlib
/// templates and plan files beside this one.
pub fn check(source: &Arc<Source>) -> Checked {
    check_with(source, Registry::builtin().capabilities())
}

/// Checks plan text; `capabilities` adds an embedding application's tools.
/// `use` finds stdlib templates and plan files beside this one.
pub fn check_with(source: &Arc<Source>, capabilities: &Capabilities) -> Checked {
    cairn_lang::check::check_using(source, capabilities, &resolve::Files)
}
