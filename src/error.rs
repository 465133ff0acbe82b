//! The top-level error type and its mapping to exit codes.

use thiserror::Error;

/// Everything that can stop a command, each with a clear message.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is a directory, not a plan file")]
    IsDirectory { path: String },
    #[error("`{path}` is {}; cairn reads plans up to {} MiB", mib(*bytes, *limit), limit / 1048576)]
    TooLarge {
        path: String,
        bytes: u64,
        limit: u64,
    },
    #[error(
        "`{path}` is not UTF-8 text: invalid byte at line {line}, column {column} (byte {offset})"
    )]
    NotUtf8 {
        path: String,
        offset: usize,
        line: usize,
        column: usize,
    },
    /// The diagnostics were already printed.
    #[error("{count} {} found", if *count == 1 { "error" } else { "errors" })]
    Invalid { count: usize },
    /// The plan has errors; each diagnostic says what and where.
    #[error("the plan is invalid: {}", .0.iter().filter(|d| d.is_error()).map(|d| d.message.as_str()).collect::<Vec<_>>().join("; "))]
    Check(Vec<crate::diagnostic::Diagnostic>),
    /// Wrong command-line use (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
}

/// "47.7 MiB", or "more than 32 MiB" when reading stopped at the limit.
fn mib(bytes: u64, limit: u64) -> String {
    if bytes > limit && bytes == limit + 1 {
        format!("more than {} MiB", limit / 1048576)
    } else {
        format!("{:.1} MiB", bytes as f64 / 1048576.0)
    }
}

impl Error {
    /// The process exit code: 2 for invalid plans and bad input.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Output(_) => 1,
            _ => 2,
        }
    }
}
