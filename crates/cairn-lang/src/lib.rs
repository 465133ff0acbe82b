//! cairn's front end: plan text in, a checked [`plan::Plan`] or diagnostics out.
//!
//! [`syntax`] parses text into an AST, [`check`] lowers it into a checked
//! plan, reporting every problem at once, and [`export`] draws it. Nothing
//! here touches the file system, the network, the clock or a process: `use`
//! finds the plans it imports through a [`check::Resolver`] the caller gives
//! (the engine's reads files; [`templates::Templates`] knows only the stdlib).

#![warn(missing_docs)]

pub mod check;
pub mod diagnostic;
pub mod export;
pub mod plan;
pub mod script;
pub mod source;
pub mod span;
pub mod syntax;
pub mod templates;
pub mod units;

/// The Rhai crate, whose parser checks plan code.
pub use rhai;
