//! cairn: check and graph `.plan` files — a planning DSL interpreter.
//!
//! The pipeline is one stage per module: [`syntax`] parses text into an AST,
//! [`check`] lowers it into a checked [`plan::Plan`] or diagnostics.

pub mod check;
pub mod cli;
pub mod diagnostic;
pub mod error;
pub mod export;
pub mod plan;
pub mod run;
pub mod script;
pub mod source;
pub mod span;
pub mod syntax;
pub mod units;

pub use error::Error;
