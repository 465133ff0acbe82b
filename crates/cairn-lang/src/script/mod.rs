//! Plan code as the checker sees it: compiling Rhai with the sandbox's
//! limits, and the capabilities a plan may name.

pub(crate) mod capabilities;
mod compile;

pub use capabilities::{Capabilities, Capability};
pub use compile::{
    compile, limit, CompileMode, INSTANCE_VARIABLES, MAX_ARRAY_SIZE, MAX_OPERATIONS,
    MAX_STRING_SIZE, SCOPE_VARIABLES,
};
