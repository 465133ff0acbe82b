//! The command's error type and its mapping to exit codes.

use thiserror::Error;

/// Everything that can stop a command, each with a clear message.
#[derive(Debug, Error)]
pub enum Error {
    /// Loading or running a plan failed (reading it, checking it, its params).
    #[error(transparent)]
    Engine(#[from] cairn_engine::Error),
    /// The diagnostics were already printed.
    #[error("{count} {} found", if *count == 1 { "error" } else { "errors" })]
    Invalid {
        /// How many errors were found (in `cairn check`'s final result: how many files failed).
        count: usize,
    },
    /// Wrong command-line use (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The run store failed.
    #[error(transparent)]
    Store(#[from] cairn_store::StoreError),
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
        problem: cairn_store::AuditError,
    },
    /// Writing the command's output (stdout or the `--events` file) failed.
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
}

impl From<cairn_store::services::ServiceError> for Error {
    fn from(error: cairn_store::services::ServiceError) -> Self {
        use cairn_store::services::ServiceError;
        match error {
            ServiceError::Store(e) => Error::Store(e),
            ServiceError::Engine(e) => Error::Engine(e),
            ServiceError::Invalid(diagnostics) => {
                Error::Engine(cairn_engine::Error::Check(diagnostics))
            }
            ServiceError::Tampered { run, problem } => Error::Tampered { run, problem },
            ServiceError::Refused(message) => Error::Usage(message),
        }
    }
}

impl Error {
    /// The process exit code: 2 for invalid plans and bad input (a run
    /// that does not exist included), 1 for a store or output that failed.
    pub fn exit_code(&self) -> i32 {
        match self {
            // No such run (or none yet) is bad input, as in a store that
            // does not exist: the same code either way.
            Error::Store(cairn_store::StoreError::NotFound(_)) => 2,
            Error::Output(_) | Error::Store(_) | Error::Tampered { .. } => 1,
            _ => 2,
        }
    }
}
