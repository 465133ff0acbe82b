//! The `cairn` command line: argument parsing and dispatch to one module per command.

mod audit;
mod check;
mod durable;
mod failures;
mod graph;
mod outputs;
mod prune;
pub(crate) mod report;
mod run;
mod runs;
mod signals;
mod style;
mod templates;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::Error;
pub(crate) use durable::{recorded_plan, stop_left_running, verified};
pub(crate) use run::{describe, plan_dir};
pub(crate) use signals::interrupter;

/// The `--help` heading of the flags every command takes.
const GLOBAL: &str = "Global options";

/// `--state-dir`, taken by every command that reads or writes the run store.
#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// Where runs are recorded (`state.db` inside it; also `CAIRN_STATE_DIR`);
    /// by default the nearest `.cairn/` from the current directory up, else
    /// `.cairn` here.
    // `global`: a command's own subcommands (`runs prune`, `audit verify`) take it too.
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    state_dir: Option<PathBuf>,
}

/// cairn checks, draws and runs `.plan` files: DAGs of tasks with checks, routing, decisions and gates.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, long_about = None)]
pub struct Cli {
    /// Format of the logs on stderr (their level comes from `RUST_LOG`,
    /// e.g. `RUST_LOG=cairn=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, help_heading = GLOBAL)]
    log_format: LogFormat,
    /// Colour in diagnostics and logs: `auto` (on a terminal, unless
    /// `NO_COLOR` is set), `always` or `never`.
    #[arg(long, global = true, value_enum, default_value_t = style::ColorChoice::Auto, value_name = "WHEN", help_heading = GLOBAL)]
    color: style::ColorChoice,
    /// Say less: no progress lines while a run goes on (what went wrong, and
    /// where the run is, still show).
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL)]
    quiet: bool,
    /// Say more: the logs at `info` (`-v`), `debug` (`-vv`) or `trace`
    /// (`-vvv`) level, when `RUST_LOG` does not set them.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    verbose: u8,
    /// `--state-dir` before the command (`cairn --state-dir d status`), as
    /// older scripts write it; hidden, as the commands that use the store
    /// each take it ([`StoreArgs`]) and the others have no use for it.
    #[arg(long, value_name = "DIR", hide = true)]
    state_dir: Option<PathBuf>,
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
fn init_logs(format: LogFormat, quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(style::color_on_stderr())
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
    /// Run a plan: exit 0 succeeded, 1 failed or cancelled, 2 invalid, 3 waiting at a gate, 130 interrupted (143 by SIGTERM).
    Run {
        #[command(flatten)]
        store: StoreArgs,
        /// The plan file, or the name of a stdlib template (`debug-500`).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Set a param: `name=value`, a literal of the type of the param's default
        /// (text, a number, `true`/`false`, or JSON for an array or map); never code.
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
        /// What each step's commit promises: `normal` survives the process
        /// being killed, `full` also survives power loss (slower).
        #[arg(long, value_enum, default_value_t = DurabilityArg::Normal)]
        durability: DurabilityArg,
    },
    /// Continue a paused, interrupted or crashed run (the newest unfinished
    /// one if left out); steps whose end was committed never run again.
    Resume {
        /// The run's id (a unique prefix is enough).
        run: Option<String>,
        /// If the plan file (or a plan it imports) changed since the run
        /// began, run the steps whose results the change invalidates again
        /// with the edited plan.
        #[arg(long)]
        allow_changed: bool,
        /// Approve this gate up front (repeatable).
        #[arg(long, value_name = "GATE")]
        approve: Vec<String>,
        #[command(flatten)]
        going: GoingOnArgs,
    },
    /// Run a failed or cancelled run again, keeping every step that succeeded:
    /// only the failed, skipped and not-reached steps run (`--step`: those steps
    /// and every step after them).
    Retry {
        /// The run's id (a unique prefix is enough); the newest run if left out.
        run: Option<String>,
        /// Run this step again, and every step after it (repeatable); a part
        /// (`convert[2]`, `improve#3`) runs again with its task's others kept.
        #[arg(long = "step", value_name = "STEP")]
        steps: Vec<String>,
        #[command(flatten)]
        going: GoingOnArgs,
    },
    /// Start a new run from a recorded one: it keeps the recorded outcomes of
    /// every step before `--at` and runs from that step on (time travel).
    Fork {
        /// The run to fork (a unique prefix is enough).
        run: String,
        /// The step to run again from; it and every step after it run.
        #[arg(long, value_name = "STEP")]
        at: String,
        /// Set a param of the new run (as `cairn run --set`).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        #[command(flatten)]
        going: GoingOnArgs,
    },
    /// Approve a waiting gate of a stopped run; `cairn resume` then goes on.
    Approve(Answer),
    /// Reject a waiting gate of a stopped run: on `cairn resume` it fails like a step.
    Reject(Answer),
    /// Cancel a run for good: a running one from another terminal (its process
    /// stops its steps within a second), or a paused or interrupted one at once.
    Cancel {
        #[command(flatten)]
        store: StoreArgs,
        /// The run's id (a unique prefix is enough); the newest unfinished run if left out.
        run: Option<String>,
        /// Why, kept as the run's message.
        #[arg(long, default_value = "by `cairn cancel`")]
        reason: String,
    },
    /// Run a recorded run's plan again with every outside call answered from
    /// the recording: "identical" (exit 0) or the first divergence (exit 1).
    Replay {
        #[command(flatten)]
        store: StoreArgs,
        /// The run's id (a unique prefix is enough); the newest run if left out.
        run: Option<String>,
        /// Say how it went as one JSON object: `run`, `steps`, `identical`,
        /// `divergence`, `edited`.
        #[arg(long)]
        json: bool,
    },
    /// List recorded runs, newest first (`runs delete`, `runs prune`: remove them).
    #[command(args_conflicts_with_subcommands = true)]
    Runs {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        action: Option<RunsAction>,
        /// Show at most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Skip this many of the newest first.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Only runs in this state (`interrupted` includes runs whose process died).
        #[arg(long, value_enum)]
        status: Option<RunStateArg>,
        /// Only runs of the plan with this id.
        #[arg(long, value_name = "ID")]
        plan: Option<String>,
        /// One JSON object per run, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Show a run's steps (status, attempts, time, output preview, error or why it was skipped), waiting gates, hypotheses and artifacts.
    Status {
        #[command(flatten)]
        store: StoreArgs,
        /// The run's id (a unique prefix is enough); the newest run if left out.
        run: Option<String>,
        /// The run and its steps as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print a step's output as JSON (`--raw`: a string as its text).
    Output {
        #[command(flatten)]
        store: StoreArgs,
        /// `[run] <step>`: the run (the newest if left out) and the step
        /// (`convert[2]`, `improve#3` for a part of a task).
        #[arg(value_name = "RUN STEP", num_args = 1..=2, required = true)]
        ids: Vec<String>,
        /// Print a string output as its text, without quotes or escapes.
        #[arg(long)]
        raw: bool,
    },
    /// List a run's artifacts, or write one's content to stdout or a file.
    Artifact {
        #[command(flatten)]
        store: StoreArgs,
        /// `[run] [name]`: the run (the newest if left out) and the
        /// artifact; one argument is an artifact of the newest run if it
        /// has one of that name, else a run.
        #[arg(value_name = "RUN NAME", num_args = 0..=2)]
        ids: Vec<String>,
        /// Write the content to FILE (whole or not at all) instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print a run's events in order (`--follow` while it goes on).
    Log {
        #[command(flatten)]
        store: StoreArgs,
        /// The run's id (a unique prefix is enough); the newest run if left out.
        run: Option<String>,
        /// The events as JSON lines, as `--events` writes them.
        #[arg(long)]
        json: bool,
        /// Keep printing new events while the run goes on.
        #[arg(long, short)]
        follow: bool,
    },
    /// Check the run store's hash-chained event log.
    Audit {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Step through a plan interactively: a recorded run, one step at a time.
    Repl {
        #[command(flatten)]
        store: StoreArgs,
        /// The plan file (or stdlib template) to start a run of.
        #[arg(value_name = "FILE", required_unless_present = "resume")]
        file: Option<PathBuf>,
        /// Continue a recorded run instead (the newest unfinished one if no id is given).
        #[arg(long, value_name = "RUN", num_args = 0..=1, conflicts_with = "file")]
        resume: Option<Option<String>>,
    },
    /// List the stdlib's template plans: name, purpose and params.
    Templates {
        /// One JSON object per template, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Write an editable copy of a template plan.
    New {
        /// The template's name (`cairn templates` lists them).
        template: String,
        /// Where to write it (default `<template>.plan`); an existing file is never overwritten.
        file: Option<PathBuf>,
    },
    /// Print a shell completion script: `cairn completions bash > /etc/bash_completion.d/cairn`,
    /// `cairn completions zsh > "${fpath[1]}/_cairn"`, `cairn completions fish > ~/.config/fish/completions/cairn.fish`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the manual page in roff: `cairn man > cairn.1; man ./cairn.1`.
    Man,
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

/// The arguments of `cairn approve` and `cairn reject`.
#[derive(Debug, clap::Args)]
pub(crate) struct Answer {
    #[command(flatten)]
    store: StoreArgs,
    /// `[run] <gate>`: the run (the newest unfinished one if left out) and the gate.
    #[arg(value_name = "RUN GATE", num_args = 1..=2, required = true)]
    pub ids: Vec<String>,
    /// Why, as recorded in the log and audit.
    #[arg(long, required = true)]
    pub reason: String,
    /// Who answers (default: `$USER`).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// A value for one of the gate's `input:` fields (repeatable); the
    /// others take their defaults.
    #[arg(long, value_name = "FIELD=VALUE", value_parser = field_value)]
    pub input: Vec<(String, String)>,
    /// Say what was recorded as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `cairn audit …`.
#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check a run's record: its hash chain, and that its status, params,
    /// stored plan and artifacts are what the chain recorded. Prints "ok"
    /// with the count, or the first thing edited, removed or moved (exit 1).
    Verify {
        /// The run's id (a unique prefix is enough); the newest run if left out.
        #[arg(conflicts_with = "all")]
        run: Option<String>,
        /// A head hash kept elsewhere (from `cairn audit head`): the log must
        /// still contain it, which detects any rewrite of the log up to it.
        #[arg(long, value_name = "HASH", conflicts_with = "all")]
        head: Option<String>,
        /// Check every run in the store.
        #[arg(long)]
        all: bool,
        /// One JSON object per run checked: `run`, `intact`, `events`, `verdict`.
        #[arg(long)]
        json: bool,
    },
    /// Print the hash of the last event of a run's (intact) log, to keep
    /// where the store cannot reach it: a CI log, a ticket, a git note.
    Head {
        /// The run's id (a unique prefix is enough); the newest run if left out.
        run: Option<String>,
        /// Print `{"run", "head", "events"}` as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `cairn runs delete` and `cairn runs prune`.
#[derive(Debug, Subcommand)]
enum RunsAction {
    /// Delete runs with their child runs: their logs, plans and artifacts
    /// (a running run is refused).
    Delete {
        /// The runs' ids (a unique prefix is enough).
        #[arg(required = true, value_name = "RUN")]
        runs: Vec<String>,
    },
    /// Delete the runs that have ended (succeeded, failed, cancelled);
    /// paused and interrupted runs, which can go on, are kept.
    Prune {
        /// Only runs that began longer ago than this (`30d`, `12h`, `90m`).
        #[arg(long, value_name = "AGE", value_parser = age_ms)]
        older_than: Option<u64>,
        /// Keep this many of the newest ended runs, whatever their age.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
    },
}

/// `percent=25`: a gate input field and its value as typed.
fn field_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{text}` is not `FIELD=VALUE`")),
    }
}

/// `30d`, or a duration as plans write it (`12h`, `90m`), in milliseconds.
fn age_ms(text: &str) -> Result<u64, String> {
    match text.strip_suffix('d') {
        Some(days) => days
            .parse::<f64>()
            .ok()
            .filter(|d| d.is_finite() && *d >= 0.0 && *d < 1e9)
            .map(|d| (d * 86_400_000.0) as u64)
            .ok_or_else(|| format!("`{text}` is not a number of days")),
        None => cairn_lang::units::duration_ms(text),
    }
}

/// How `resume` and `retry` run the run they go on with.
#[derive(Debug, clap::Args)]
struct GoingOnArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Run at most this many steps at once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    max_parallel: Option<u64>,
    /// Write every event as a JSON line to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    events: Option<String>,
    /// What each step's commit promises (see `cairn run --help`).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Normal)]
    durability: DurabilityArg,
    /// Say how the run ended as one JSON object on stdout (`run`, `status`,
    /// `message`, `steps`); progress goes to stderr.
    #[arg(long, conflicts_with = "events")]
    json: bool,
}

impl GoingOnArgs {
    /// What the run goes on with, in the store at `state_dir`.
    fn with(self, state_dir: PathBuf) -> durable::GoingOn {
        durable::GoingOn {
            json: self.json,
            events: self.events,
            max_parallel: self.max_parallel.map(|n| n as usize),
            state_dir,
            durability: self.durability.into(),
        }
    }
}

/// `cairn runs --status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RunStateArg {
    /// Being run by a live process.
    Running,
    /// Stopped at a gate that waits for approval.
    Paused,
    /// Stopped by Ctrl-C, or its process died.
    Interrupted,
    /// Ended with success.
    Succeeded,
    /// Ended with a failure.
    Failed,
    /// Cancelled for good (`cairn cancel`).
    Cancelled,
}

impl From<RunStateArg> for cairn_store::RunState {
    fn from(arg: RunStateArg) -> Self {
        use cairn_engine::run::RunStatus;
        match arg {
            RunStateArg::Running => Self::Running,
            RunStateArg::Paused => Self::Stopped(RunStatus::Paused),
            RunStateArg::Interrupted => Self::Stopped(RunStatus::Interrupted),
            RunStateArg::Succeeded => Self::Stopped(RunStatus::Succeeded),
            RunStateArg::Failed => Self::Stopped(RunStatus::Failed),
            RunStateArg::Cancelled => Self::Stopped(RunStatus::Cancelled),
        }
    }
}

/// `--durability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// Survives the process being killed at any moment (SQLite WAL, synchronous=NORMAL).
    Normal,
    /// Survives power loss too (synchronous=FULL: an fsync per commit).
    Full,
}

impl From<DurabilityArg> for cairn_store::Durability {
    fn from(arg: DurabilityArg) -> Self {
        match arg {
            DurabilityArg::Normal => Self::Normal,
            DurabilityArg::Full => Self::Full,
        }
    }
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

/// The exit code of a command that chooses its own, or of its error.
fn exit(result: Result<i32, Error>) -> i32 {
    match result {
        Ok(code) => code,
        Err(Error::Invalid { .. }) => 2,
        Err(err) => {
            report::error(&err);
            err.exit_code()
        }
    }
}

/// Hands a large value over to the process's exit instead of freeing it
/// piece by piece: the command ends right after, and freeing a long run's
/// steps one string at a time took longer than much of a resume. Only for
/// what a command holds until it returns.
fn leak_until_exit<T>(value: T) {
    std::mem::forget(value);
}

impl Cli {
    /// The run store: `--state-dir` after the command, else before it, else
    /// `CAIRN_STATE_DIR`, else the nearest `.cairn/` (as git finds `.git`).
    fn state_dir(&self) -> PathBuf {
        self.command
            .store()
            .and_then(|store| store.state_dir.clone())
            .or_else(|| self.state_dir.clone())
            .or_else(|| {
                std::env::var_os("CAIRN_STATE_DIR")
                    .filter(|dir| !dir.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(nearest_state_dir)
    }
}

impl Command {
    /// The command's `--state-dir`, if it uses the run store.
    fn store(&self) -> Option<&StoreArgs> {
        match self {
            Self::Run { store, .. }
            | Self::Cancel { store, .. }
            | Self::Replay { store, .. }
            | Self::Runs { store, .. }
            | Self::Status { store, .. }
            | Self::Output { store, .. }
            | Self::Artifact { store, .. }
            | Self::Log { store, .. }
            | Self::Audit { store, .. }
            | Self::Repl { store, .. } => Some(store),
            Self::Resume { going, .. } | Self::Retry { going, .. } | Self::Fork { going, .. } => {
                Some(&going.store)
            }
            Self::Approve(answer) | Self::Reject(answer) => Some(&answer.store),
            Self::Check { .. }
            | Self::Templates { .. }
            | Self::New { .. }
            | Self::Completions { .. }
            | Self::Man
            | Self::Graph { .. } => None,
        }
    }
}

/// The run store a command uses when none is named: the nearest `.cairn/`
/// holding a `state.db`, from the current directory up, else `.cairn` here
/// (where `cairn run` creates it).
fn nearest_state_dir() -> PathBuf {
    let here = PathBuf::from(".cairn");
    let Ok(cwd) = std::env::current_dir() else {
        return here;
    };
    cwd.ancestors()
        .map(|dir| dir.join(".cairn"))
        .find(|dir| dir.join("state.db").is_file())
        .filter(|found| *found != cwd.join(".cairn"))
        .unwrap_or(here)
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let state_dir = cli.state_dir();
    style::set(style::Style {
        color: cli.color,
        quiet: cli.quiet,
    });
    init_logs(cli.log_format, cli.quiet, cli.verbose);
    let result = match cli.command {
        Command::Check { files, format } => check::run(&files, format),
        Command::Templates { json } => templates::list(json),
        Command::Repl { file, resume, .. } => {
            return exit(crate::repl::main(crate::repl::Args {
                file,
                resume,
                state_dir: state_dir.clone(),
            }))
        }
        Command::New { template, file } => templates::new(&template, file),
        Command::Graph { file, format } => graph::run(&file, format),
        Command::Man => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(Error::Output)
                .and_then(|()| runs::out(&String::from_utf8_lossy(&page)))
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cairn", &mut script);
            runs::out(&String::from_utf8_lossy(&script))
        }
        Command::Runs {
            action: Some(action),
            ..
        } => return exit(prune::remove(&state_dir, action)),
        Command::Runs {
            action: None,
            limit,
            offset,
            status,
            plan,
            json,
            ..
        } => {
            let filter = cairn_store::RunFilter {
                plan,
                status: status.map(Into::into),
            };
            runs::list(&state_dir, &filter, limit, offset, json)
        }
        Command::Status { run, json, .. } => runs::status(&state_dir, run.as_deref(), json),
        Command::Output { ids, raw, .. } => outputs::output(&state_dir, &ids, raw),
        Command::Artifact { ids, output, .. } => {
            outputs::artifact(&state_dir, &ids, output.as_deref())
        }
        Command::Log {
            run, json, follow, ..
        } => runs::log(&state_dir, run.as_deref(), json, follow),
        Command::Audit { command, .. } => {
            let result = match command {
                AuditCommand::Verify {
                    run,
                    head,
                    all,
                    json,
                } => audit::verify(&state_dir, run.as_deref(), head.as_deref(), all, json),
                AuditCommand::Head { run, json } => audit::head(&state_dir, run.as_deref(), json),
            };
            return match result {
                Ok(code) => code,
                Err(err) => {
                    report::error(&err);
                    err.exit_code()
                }
            };
        }
        Command::Run {
            file,
            set,
            max_parallel,
            seed,
            approve,
            events,
            dry_run,
            durability,
            ..
        } => {
            let args = run::Args {
                dry_run,
                state_dir: state_dir.clone(),
                file,
                set,
                max_parallel: max_parallel.map(|n| n as usize),
                seed,
                approve,
                events,
                durability: durability.into(),
            };
            return exit(run::run(args));
        }
        Command::Resume {
            run,
            allow_changed,
            approve,
            going,
        } => {
            return exit(durable::resume(durable::ResumeArgs {
                run,
                allow_changed,
                approve,
                going: going.with(state_dir),
            }))
        }
        Command::Retry { run, steps, going } => {
            return exit(durable::retry(durable::RetryArgs {
                run,
                steps,
                going: going.with(state_dir),
            }))
        }
        Command::Fork {
            run,
            at,
            set,
            going,
        } => {
            return exit(durable::fork(durable::ForkArgs {
                run,
                at,
                set,
                going: going.with(state_dir),
            }))
        }
        Command::Cancel { run, reason, .. } => {
            return exit(durable::cancel(&state_dir, run.as_deref(), &reason))
        }
        Command::Approve(a) => return exit(durable::answer(&state_dir, a, true)),
        Command::Reject(a) => return exit(durable::answer(&state_dir, a, false)),
        Command::Replay { run, json, .. } => {
            return exit(durable::replay(&state_dir, run.as_deref(), json))
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
