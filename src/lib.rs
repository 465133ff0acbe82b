//! cairn: check, graph and run `.plan` files — a planning DSL interpreter.
//!
//! The pipeline is one stage per module: [`syntax`] parses text into an AST,
//! [`check`] lowers it into a checked [`plan::Plan`] or diagnostics, and
//! [`run`] executes it, with plan code in the [`script`] sandbox. An
//! application embeds it through [`Engine`].

#![warn(missing_docs)]

pub mod check;
pub mod cli;
pub mod diagnostic;
mod engine;
pub mod error;
pub mod export;
pub mod plan;
pub mod repl;
pub mod resolve;
pub mod run;
pub mod script;
pub mod source;
pub mod span;
pub mod stdlib;
pub mod store;
pub mod syntax;
pub mod units;

pub use engine::Engine;
pub use error::Error;
/// The Rhai crate, for registering host functions.
pub use rhai;

/// `docs/embedding.md`, compiled and run as a doctest so its program stays true.
#[doc = include_str!("../docs/embedding.md")]
#[cfg(doctest)]
pub struct EmbeddingGuide;
