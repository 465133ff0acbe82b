//! The Rhai sandbox: how plan code is compiled and run, and which capabilities exist.

mod capabilities;
pub mod confine;
pub mod context;
mod engine;
pub mod files;
mod host;
mod sandbox;
pub mod shell;
pub mod web;

pub use capabilities::{Capabilities, Capability};
pub use engine::{compile, CompileMode, MAX_OPERATIONS, SCOPE_VARIABLES};
pub use host::{pause, url_encode};
pub use sandbox::{Registrar, Sandbox};
