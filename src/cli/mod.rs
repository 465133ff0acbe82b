//! The `cairn` command line: argument parsing and dispatch to one module per command.

mod check;
mod graph;
mod report;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::Error;

/// cairn checks, draws and runs `.plan` files: DAGs of tasks with checks, routing, decisions and gates.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, long_about = None)]
pub struct Cli {
    /// Format of the logs on stderr (their level comes from `RUST_LOG`,
    /// e.g. `RUST_LOG=cairn=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How `tracing` logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Plain text lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs go to stderr, filtered by `RUST_LOG` (nothing but warnings by default).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check plans and report every problem at once (exit 0 clean, 2 on errors).
    Check {
        /// Plan files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// `human` diagnostics on stderr, or `json`: one object per line on stdout.
        #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
        format: DiagnosticFormat,
    },
    /// Run a plan: exit 0 succeeded, 1 failed, 2 invalid, 3 waiting at a gate, 130 interrupted.
    Run {
        /// The plan file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Set a param: `name=value` (a Rhai literal, or plain text).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Run at most this many steps at once (overrides `max_parallel:`).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
        max_parallel: Option<u64>,
        /// Seed for `rand()` and retry jitter (overrides `seed:`).
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// Approve this gate up front (repeatable).
        #[arg(long, value_name = "GATE")]
        approve: Vec<String>,
        /// Write every event as a JSON line to FILE (`-` for stdout).
        #[arg(long, value_name = "FILE")]
        events: Option<String>,
        /// Execute nothing: print the waves of steps, why each would run or
        /// be skipped, and the capability calls it would make.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a plan's graph as Mermaid, Graphviz DOT or the checked plan in JSON.
    Graph {
        /// The plan file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// `mermaid` flowchart, Graphviz `dot`, or the checked plan as `json`.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
}

/// How `cairn check` prints diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiagnosticFormat {
    /// Rendered diagnostics with source excerpts, on stderr.
    Human,
    /// One JSON object per diagnostic, one per line, on stdout.
    Json,
}

/// What `cairn graph` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// A Graphviz DOT digraph.
    Dot,
    /// The whole checked plan as pretty-printed JSON.
    Json,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Command::Check { files, format } => check::run(&files, format),
        Command::Graph { file, format } => graph::run(&file, format),
        Command::Run {
            file,
            set,
            max_parallel,
            seed,
            approve,
            events,
            dry_run,
        } => {
            let args = run::Args {
                dry_run,
                file,
                set,
                max_parallel: max_parallel.map(|n| n as usize),
                seed,
                approve,
                events,
            };
            return match run::run(args) {
                Ok(code) => code,
                Err(Error::Invalid { .. }) => 2,
                Err(err) => {
                    report::error(&err);
                    err.exit_code()
                }
            };
        }
    };
    match result {
        Ok(()) => 0,
        Err(Error::Invalid { .. }) => 2,
        Err(err) => {
            report::error(&err);
            err.exit_code()
        }
    }
}
