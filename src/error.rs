//! The top-level error type and its mapping to exit codes.

use thiserror::Error;

/// Everything that can stop a command, each with a clear message.
#[derive(Debug, Error)]
pub enum Error {
    /// A file system call on `path` failed: reading a plan, resolving its directory, or creating the `--events` file.
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
    /// The file is over [`crate::source::MAX_SOURCE_BYTES`].
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
    /// The diagnostics were already printed.
    #[error("{count} {} found", if *count == 1 { "error" } else { "errors" })]
    Invalid {
        /// How many errors were found (in `cairn check`'s final result: how many files failed).
        count: usize,
    },
    /// The plan has errors; each diagnostic says what and where.
    #[error("the plan is invalid: {}", .0.iter().filter(|d| d.is_error()).map(|d| d.message.as_str()).collect::<Vec<_>>().join("; "))]
    Check(Vec<crate::diagnostic::Diagnostic>),
    /// Wrong command-line use (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The run store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A file cairn was asked to write could not be created.
    #[error("cannot create `{path}`: {source}")]
    Create {
        /// The path as given.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A run's record does not verify: it is not gone on with, since what
    /// it would run or report may have been edited.
    #[error(
        "run {run} does not verify: {problem}; it is not gone on with (`cairn audit verify {run}`)"
    )]
    Tampered {
        /// The run's id.
        run: String,
        /// The first thing that does not check out.
        problem: crate::store::AuditError,
    },
    /// Writing the command's output (stdout or the `--events` file) failed.
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
            Error::Output(_) | Error::Store(_) | Error::Tampered { .. } => 1,
            _ => 2,
        }
    }
}
