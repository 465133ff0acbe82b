//! What can stop the engine before or while it runs a plan.

use cairn_lang::diagnostic::Diagnostic;
use thiserror::Error;

/// Everything that stops loading or running a plan, each with a clear message.
#[derive(Debug, Error)]
pub enum Error {
    /// A file system call on `path` failed: reading a plan, or resolving its directory.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The path names a directory.
    #[error("`{path}` is a directory, not a plan file")]
    IsDirectory {
        /// The path as given.
        path: String,
    },
    /// The file is over [`cairn_lang::source::MAX_SOURCE_BYTES`].
    #[error("`{path}` is {}; cairn reads plans up to {} MiB", mib(*bytes, *limit), limit / 1048576)]
    TooLarge {
        /// The path as given.
        path: String,
        /// The file's size in bytes, or the limit plus one when reading stopped there.
        bytes: u64,
        /// The largest size cairn reads, in bytes.
        limit: u64,
    },
    /// The file holds bytes that are not valid UTF-8.
    #[error(
        "`{path}` is not UTF-8 text: invalid byte at line {line}, column {column} (byte {offset})"
    )]
    NotUtf8 {
        /// The path as given.
        path: String,
        /// Byte offset of the first invalid byte.
        offset: usize,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 1-based column, in characters, of the first invalid byte.
        column: usize,
    },
    /// The plan has errors; each diagnostic says what and where.
    #[error("the plan is invalid: {}", .0.iter().filter(|d| d.is_error()).map(|d| d.message.as_str()).collect::<Vec<_>>().join("; "))]
    Check(Vec<Diagnostic>),
    /// The run was asked for something it cannot do: a param value of the
    /// wrong type, an unknown param, a runtime that would not start.
    #[error("{0}")]
    Usage(String),
}

/// "47.7 MiB", or "more than 32 MiB" when reading stopped at the limit.
fn mib(bytes: u64, limit: u64) -> String {
    if bytes > limit && bytes == limit + 1 {
        format!("more than {} MiB", limit / 1048576)
    } else {
        format!("{:.1} MiB", bytes as f64 / 1048576.0)
    }
}
