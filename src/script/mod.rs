//! The Rhai sandbox: how plan code is compiled, and which capabilities exist.

mod capabilities;
mod engine;

pub use capabilities::{Capabilities, Capability};
pub use engine::{compile, CompileMode, SCOPE_VARIABLES};
