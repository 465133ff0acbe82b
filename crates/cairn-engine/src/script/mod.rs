//! The Rhai sandbox at run time: the engines plan code runs in, the step
//! context it reaches the host through, and the built-in capabilities.

pub mod confine;
pub mod context;
pub mod files;
mod host;
mod sandbox;
pub mod shell;
pub mod web;

pub use crate::capability::Registrar;
pub use cairn_lang::script::{
    compile, Capabilities, Capability, CompileMode, MAX_OPERATIONS, SCOPE_VARIABLES,
};
pub use host::{pause, url_encode};
pub use sandbox::{always_callable, Sandbox};
