//! The interactive stepper: `cairn repl` steps through a plan as a recorded
//! run, one segment at a time, on the same engine and store as `cairn run`.

mod commands;
mod edits;
mod eval;
mod input;
mod views;

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::cli::report;
use crate::error::Error;
use cairn_engine::run::{self, Event, Options, Report, RunStatus};
use cairn_lang::plan::{Plan, Step};

use cairn_engine::script::Sandbox;
use cairn_lang::source::Source;
use cairn_store::{services, Durability, RunProcesses, RunRecorder, Store};

use input::{Input, Known, Line};

/// How `cairn repl` was started.
pub struct Args {
    /// A plan file or template to start a new run of.
    pub file: Option<PathBuf>,
    /// Continue this run (`Some(None)`: the newest unfinished one).
    pub resume: Option<Option<String>>,
    /// Where runs are recorded (and the REPL's history file kept).
    pub state_dir: PathBuf,
}

/// Runs the REPL until `:quit` or the end of input.
pub fn main(args: Args) -> Result<i32, Error> {
    let store = Arc::new(Store::open(&args.state_dir, Durability::Normal)?);
    let mut session = match (&args.file, &args.resume) {
        (_, Some(id)) => Session::resume(store, &args.state_dir, id.as_deref())?,
        (Some(file), None) => Session::start(store, &args.state_dir, file)?,
        (None, None) => {
            return Err(Error::Usage(
                "give a plan file (`cairn repl plan.plan`) or `--resume [run]`".to_owned(),
            ))
        }
    };
    let known = Arc::new(Mutex::new(Known::default()));
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let mut input = Input::new(
        terminal,
        args.state_dir.join("repl_history"),
        Arc::clone(&known),
    );
    println!(
        "run {} of `{}` ({} steps); `:help` lists the commands",
        session.run_id,
        session.plan.id,
        session.plan.tasks.len()
    );
    loop {
        let probe = session.probe();
        *known.lock().unwrap_or_else(|e| e.into_inner()) = session.known(&probe);
        let prompt = format!(
            "{} {}/{}> ",
            session.plan.id,
            session.done(),
            session.plan.tasks.len()
        );
        let line = match input.read(&prompt) {
            Line::Text(line) => line,
            Line::Cleared => continue,
            Line::End => break,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        session.history.push(line.to_owned());
        match session.command(line) {
            Ok(Flow::Go) => {}
            Ok(Flow::Quit) => break,
            // On stdout, in line with the rest of the session.
            Err(message) => println!("error: {message}"),
        }
        let _ = std::io::stdout().flush();
    }
    println!(
        "run {} is saved; `cairn repl --resume {}` (or `cairn resume {}`) goes on",
        session.run_id, session.run_id, session.run_id
    );
    Ok(0)
}

/// The reason `:skip` records.
const SKIPPED_BY_HAND: &str = "skipped from the REPL";

enum Flow {
    Go,
    Quit,
}

struct Session {
    store: Arc<Store>,
    state_dir: PathBuf,
    run_id: String,
    /// The plan file as given (a template name for templates).
    file: String,
    plan: Arc<Plan>,
    /// Breakpoints, each with its condition (`:break <step> if <expr>`).
    breaks: std::collections::BTreeMap<String, Option<String>>,
    /// Expressions shown after every command that runs steps (`:watch`).
    watches: Vec<String>,
    /// The breakpoint the last `:run` stopped at: the next `:run` passes it.
    at_break: Option<String>,
    history: Vec<String>,
    /// For evaluating expressions: the sandbox engine with no capabilities.
    engine: Arc<rhai::Engine>,
    /// What runs the plan's steps: the library's engine with the stdlib's tools.
    runner: cairn_engine::Engine,
    /// Variables `let` at the prompt, kept from one line to the next.
    vars: rhai::Scope<'static>,
    runtime: tokio::runtime::Runtime,
    /// Held for the whole session: no other process runs, approves or
    /// resumes the run meanwhile.
    _claim: cairn_store::RunClaim,
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the runtime: {e}")))
}

fn checked(source: &Arc<Source>) -> Result<Plan, Error> {
    let checked = report::check(source);
    report::human(&checked.diagnostics);
    checked.plan.ok_or_else(|| {
        let count = checked.diagnostics.iter().filter(|d| d.is_error()).count();
        Error::Invalid { count }
    })
}

impl Session {
    fn new(
        store: Arc<Store>,
        state_dir: &Path,
        run_id: String,
        file: String,
        plan: Plan,
    ) -> Result<Self, Error> {
        let claim = store.claim(&run_id)?;
        crate::cli::stop_left_running(&store, &run_id)?;
        let sandbox = Sandbox::new([&[][..]], &cairn_engine::Registry::empty());
        Ok(Self {
            store,
            state_dir: state_dir.to_path_buf(),
            run_id,
            file,
            plan: Arc::new(plan),
            breaks: Default::default(),
            watches: Vec::new(),
            at_break: None,
            history: Vec::new(),
            engine: sandbox.engine(&[]),
            runner: cairn_engine::stdlib::engine(),
            vars: rhai::Scope::new(),
            runtime: runtime()?,
            _claim: claim,
        })
    }

    fn start(store: Arc<Store>, state_dir: &Path, file: &Path) -> Result<Self, Error> {
        let source = report::read_plan(file)?;
        let plan = checked(&source)?;
        let seed = plan.seed.unwrap_or(0);
        let run_id = store.begin(&plan, source.name(), source.text(), &[], seed)?;
        Self::new(store, state_dir, run_id, source.name().to_owned(), plan)
    }

    fn resume(store: Arc<Store>, state_dir: &Path, id: Option<&str>) -> Result<Self, Error> {
        let row = match id {
            Some(id) => store.find(Some(id))?,
            None => store.newest_unfinished()?.ok_or_else(|| {
                Error::Usage("no unfinished run to resume (`cairn runs` lists them)".to_owned())
            })?,
        };
        crate::cli::verified(&store, &row)?;
        let text = store.source(&row.id)?.source;
        let plan = crate::cli::recorded_plan(&row, &text, store.plan(&row.id)?)?;
        let file = row.plan_file().display().to_string();
        Self::new(store, state_dir, row.id, file, plan)
    }

    /// The plan's steps settled so far (a task with `each:` or `repeat:`
    /// once all of its parts have).
    fn done(&self) -> usize {
        let Ok(history) = self.store.history(&self.run_id) else {
            return 0;
        };
        self.plan
            .tasks
            .iter()
            .filter(|t| history.settled(&t.id).is_some_and(run::Settled::is_outcome))
            .count()
    }

    /// The run's options for one segment: every settled step keeps its outcome.
    fn options(&self) -> Result<Options, String> {
        let history = self
            .store
            .history(&self.run_id)
            .map_err(|e| e.to_string())?;
        let inputs = self.store.source(&self.run_id).map_err(|e| e.to_string())?;
        Ok(Options {
            params: inputs.params,
            seed: Some(inputs.seed),
            dir: crate::cli::plan_dir(Path::new(&self.file)),
            state_dir: Some(self.state_dir.clone()),
            resume: Some(Arc::new(history.resume(&[]))),
            ..Options::default()
        })
    }

    /// Where the run would go next, computed without running or recording
    /// anything: which steps are ready, in start order.
    fn probe(&self) -> Report {
        let Ok(mut options) = self.options() else {
            return Report {
                status: RunStatus::Paused,
                message: None,
                steps: Vec::new(),
                ready: Vec::new(),
                hypotheses: Vec::new(),
                unrecorded: None,
            };
        };
        options.start_limit = Some(0);
        options.replay = Some(run::Replay::default());
        self.runtime
            .block_on(self.runner.run(Arc::clone(&self.plan), options, |_| {}))
            .unwrap_or_else(|_| Report {
                status: RunStatus::Paused,
                message: None,
                steps: Vec::new(),
                ready: Vec::new(),
                hypotheses: Vec::new(),
                unrecorded: None,
            })
    }

    fn known(&self, probe: &Report) -> Known {
        Known {
            steps: self.plan.tasks.iter().map(|t| t.id.clone()).collect(),
            gates: self
                .plan
                .tasks
                .iter()
                .filter(|t| matches!(t.step, Step::Gate(_)))
                .map(|t| t.id.clone())
                .collect(),
            params: self.plan.params.iter().map(|p| p.name.clone()).collect(),
            ready: probe.ready.clone(),
        }
    }

    /// Runs one segment of the run, recorded, showing its progress and the
    /// outputs of the steps it ran.
    fn segment(
        &self,
        limit: Option<usize>,
        only: Option<HashSet<String>>,
    ) -> Result<Report, String> {
        let mut options = self.options()?;
        options.start_limit = limit;
        options.only = only;
        options.recorder = Some(Arc::new(RunRecorder {
            store: Arc::clone(&self.store),
            run: self.run_id.clone(),
        }));
        let processes = Arc::new(RunProcesses::new(
            Arc::clone(&self.store),
            self.run_id.clone(),
        ));
        options.processes = Some(Arc::clone(&processes) as Arc<dyn run::ProcessLog>);
        options.children = Some(Arc::new(cairn_store::ChildRunsOf::new(
            Arc::clone(&self.store),
            self.run_id.clone(),
        )));
        // Ctrl-C while steps run cancels them (at the prompt, the line
        // editor reads it as a key).
        let (interrupter, _listening) = crate::cli::interrupter(&self.runtime, false);
        options.interrupter = Some(interrupter);
        let report =
            self.runtime
                .block_on(self.runner.run(Arc::clone(&self.plan), options, |event| {
                    if matches!(event, Event::RunStarted { .. } | Event::RunResumed { .. }) {
                        return;
                    }
                    if let Some(line) = crate::cli::describe(event) {
                        println!("{line}");
                    }
                    if let Event::StepSucceeded { output, .. } = event {
                        if !output.is_null() {
                            println!("            = {}", compact(output));
                        }
                    }
                }));
        processes.flush();
        let report = report.map_err(|e| e.to_string())?;
        match report.status {
            RunStatus::Succeeded => println!("run succeeded"),
            RunStatus::Failed => println!(
                "run failed: {}",
                report.message.as_deref().unwrap_or("a step failed")
            ),
            RunStatus::Interrupted => println!(
                "interrupted: the running steps were cancelled and run again when next ready"
            ),
            RunStatus::Cancelled => println!(
                "run cancelled: {}",
                report.message.as_deref().unwrap_or("from outside")
            ),
            RunStatus::Paused => {
                let waiting = self.waiting_gates();
                if !waiting.is_empty() {
                    println!(
                        "waiting at {}: `:approve <gate> [reason]` or `:reject`",
                        waiting.join(", ")
                    );
                }
            }
        }
        Ok(report)
    }

    fn command(&mut self, line: &str) -> Result<Flow, String> {
        let Some(command) = line.strip_prefix(':') else {
            self.eval(line)?;
            return Ok(Flow::Go);
        };
        let (name, rest) = command
            .split_once(char::is_whitespace)
            .unwrap_or((command, ""));
        let rest = rest.trim();
        let arg = || {
            if rest.is_empty() {
                let usage = commands::find(name).map_or("", |c| c.args);
                Err(format!("usage: :{name} {usage}"))
            } else {
                Ok(rest)
            }
        };
        match name {
            "quit" | "q" | "exit" => return Ok(Flow::Quit),
            "help" | "h" => print!("{}", commands::help((!rest.is_empty()).then_some(rest))?),
            "history" => {
                for (i, entry) in self.history.iter().enumerate() {
                    println!("{:>4}  {entry}", i + 1);
                }
            }
            "next" | "n" => {
                let probe = self.probe();
                if probe.ready.is_empty() {
                    return Err(self.nothing_ready());
                }
                self.segment(Some(1), None)?;
                self.show_watches();
            }
            "step" => {
                let step = self.step_id(arg()?)?;
                let probe = self.probe();
                if !probe.ready.contains(&step) {
                    return Err(self.not_ready(&step, &probe));
                }
                self.segment(Some(1), Some(HashSet::from([step])))?;
                self.show_watches();
            }
            "run" | "r" => {
                self.run_to_break()?;
                self.show_watches();
            }
            "break" | "b" => {
                let text = arg()?;
                let (step, condition) = match text.split_once(" if ") {
                    Some((step, condition)) => (step.trim(), Some(condition.trim().to_owned())),
                    None => (text.trim(), None),
                };
                let step = self.step_id(step)?;
                match &condition {
                    Some(condition) => println!("breakpoint at `{step}` if {condition}"),
                    None => println!("breakpoint at `{step}`"),
                }
                self.breaks.insert(step, condition);
            }
            "unbreak" => {
                let step = self.step_id(arg()?)?;
                if self.breaks.remove(&step).is_none() {
                    return Err(format!("no breakpoint at `{step}`"));
                }
                println!("removed the breakpoint at `{step}`");
            }
            "breaks" => {
                if self.breaks.is_empty() {
                    println!("no breakpoints");
                }
                for (step, condition) in &self.breaks {
                    match condition {
                        Some(condition) => println!("  {step} if {condition}"),
                        None => println!("  {step}"),
                    }
                }
            }
            "watch" | "w" => {
                let expression = arg()?.trim().to_owned();
                let value = self.value_of(&expression, None);
                println!("watching {expression} = {}", watched(value));
                self.watches.push(expression);
            }
            "unwatch" => {
                let expression = arg()?.trim().to_owned();
                let before = self.watches.len();
                self.watches.retain(|w| *w != expression);
                if self.watches.len() == before {
                    return Err(format!("`{expression}` is not watched (`:watch` adds it)"));
                }
                println!("no longer watching {expression}");
            }
            "plan" => self.show_plan(),
            "graph" => print!("{}", cairn_lang::export::mermaid(&self.plan)),
            "status" => self.status()?,
            "inspect" | "i" => {
                let step = self.step_id(arg()?)?;
                self.inspect(&step)?;
            }
            "skip" => {
                let step = self.step_id(arg()?)?;
                if self
                    .store
                    .history(&self.run_id)
                    .map_err(|e| e.to_string())?
                    .settled(&step)
                    .is_some()
                {
                    return Err(format!(
                        "`{step}` has already settled; `:retry {step}` runs it again"
                    ));
                }
                self.append(Event::StepSkipped {
                    step: step.clone(),
                    reason: SKIPPED_BY_HAND.to_owned(),
                    at_ms: 0,
                })?;
                println!("`{step}` will be skipped");
            }
            "retry" => {
                let step = self.step_id(arg()?)?;
                self.retry(&step)?;
            }
            "set" => {
                let (param, value) = arg()?
                    .split_once('=')
                    .ok_or_else(|| "usage: :set <param> = <value>".to_owned())?;
                self.set(param.trim(), value.trim())?;
            }
            "approve" | "reject" => {
                let (gate, reason) = arg()?.split_once(char::is_whitespace).unwrap_or((rest, ""));
                self.answer(gate, name == "approve", reason.trim())?;
            }
            "reload" => self.reload()?,
            "load" => {
                let file = PathBuf::from(arg()?);
                let next = Session::start(Arc::clone(&self.store), &self.state_dir, &file)
                    .map_err(|e| e.to_string())?;
                println!(
                    "run {} is saved; now run {} of `{}` ({} steps)",
                    self.run_id,
                    next.run_id,
                    next.plan.id,
                    next.plan.tasks.len()
                );
                let history = std::mem::take(&mut self.history);
                *self = next;
                self.history = history;
            }
            other => return Err(commands::unknown(other)),
        }
        Ok(Flow::Go)
    }

    fn step_id(&self, word: &str) -> Result<String, String> {
        // A plan's step, or an instance or iteration of one (`t[2]`, `t#3`).
        let task = cairn_lang::plan::part_of(word).unwrap_or(word);
        if self.plan.task(task).is_some() {
            return Ok(word.to_owned());
        }
        let close = cairn_lang::check::closest(word, self.plan.tasks.iter().map(|t| t.id.as_str()));
        Err(match close {
            Some(c) => format!("no step `{word}`; did you mean `{c}`?"),
            None => format!("no step `{word}`; `:plan` lists them"),
        })
    }

    fn nothing_ready(&self) -> String {
        let waiting = self.waiting_gates();
        if waiting.is_empty() {
            "nothing is ready to run: the run has ended (`:status`)".to_owned()
        } else {
            format!(
                "nothing is ready: waiting at {} (`:approve <gate> [reason]`)",
                waiting.join(", ")
            )
        }
    }

    fn not_ready(&self, step: &str, probe: &Report) -> String {
        let history = self.store.history(&self.run_id).unwrap_or_default();
        match history.settled(step) {
            Some(settled) if settled.is_outcome() => {
                return format!("`{step}` has already settled; `:retry {step}` runs it again")
            }
            Some(_) => {
                return format!(
                    "`{step}` has begun; its instances or iterations run next (ready: {})",
                    probe.ready.join(", ")
                )
            }
            None => {}
        }
        let waits = self.waits_for(step, &history);
        if waits.is_empty() {
            format!("`{step}` is not ready (ready: {})", probe.ready.join(", "))
        } else {
            format!("`{step}` is not ready: it waits for {}", waits.join(", "))
        }
    }

    /// The steps this one waits for: predecessors that have not settled.
    fn waits_for(&self, step: &str, history: &cairn_store::History) -> Vec<String> {
        let Some(i) = self.plan.tasks.iter().position(|t| t.id == step) else {
            return Vec::new();
        };
        let mut waits: Vec<String> = self
            .plan
            .graph
            .edges_directed(Plan::node(i), Direction::Incoming)
            .map(|e| self.plan.tasks[e.source().index()].id.clone())
            .filter(|id| history.settled(id).is_none())
            .collect();
        waits.dedup();
        waits
    }

    /// `:run`: runs until the end, a gate, or a breakpoint whose condition
    /// holds when its step is next (a breakpoint whose condition does not
    /// hold lets its step run, and the run goes on).
    fn run_to_break(&mut self) -> Result<(), String> {
        // The breakpoint the last `:run` stopped at is passed.
        let mut passing = self.at_break.take();
        let task_of = |r: &str| cairn_lang::plan::part_of(r).unwrap_or(r).to_owned();
        loop {
            let only: HashSet<String> = self
                .plan
                .tasks
                .iter()
                .map(|t| t.id.clone())
                .filter(|id| !self.breaks.contains_key(id) || passing.as_ref() == Some(id))
                .collect();
            self.segment(None, Some(only))?;
            let after = self.probe();
            // A breakpoint at a task holds its instances and iterations too.
            let Some(stop) = after
                .ready
                .iter()
                .find(|r| self.breaks.contains_key(&task_of(r)))
                .cloned()
            else {
                return Ok(());
            };
            let task = task_of(&stop);
            let condition = self.breaks.get(&task).cloned().flatten();
            if let Some(condition) = &condition {
                let holds = self.value_of(condition, Some(&stop))?;
                let holds = holds.as_bool().map_err(|kind| {
                    format!("`:break {task} if {condition}`: the condition gave {kind}, not true or false")
                })?;
                if !holds {
                    // Not this time: it runs, and so does what follows.
                    self.segment(Some(1), Some(HashSet::from([stop.clone()])))?;
                    if self.probe().ready.contains(&stop) {
                        return Ok(());
                    }
                    passing = None;
                    continue;
                }
            }
            match &condition {
                Some(condition) => println!(
                    "breakpoint: `{stop}` is next and {condition} (`:run` goes on, `:inspect {stop}` looks first)"
                ),
                None => println!(
                    "breakpoint: `{stop}` is next (`:run` goes on, `:inspect {stop}` looks first)"
                ),
            }
            self.at_break = Some(task);
            return Ok(());
        }
    }

    /// Each `:watch` expression's value now.
    fn show_watches(&mut self) {
        for expression in self.watches.clone() {
            let value = self.value_of(&expression, None);
            println!("watch {expression} = {}", watched(value));
        }
    }

    /// The gates waiting for an answer, those of child runs named under
    /// their steps (`round.ship`).
    fn waiting_gates(&self) -> Vec<String> {
        services::waiting_gates(&self.store, &self.run_id, "")
            .unwrap_or_default()
            .into_iter()
            .map(|w| w.name)
            .collect()
    }
}

/// A watched value on one line, or why it has none.
fn watched(value: Result<rhai::Dynamic, String>) -> String {
    match value {
        Ok(value) => match rhai::serde::from_dynamic::<serde_json::Value>(&value) {
            Ok(json) if !value.is_unit() => compact(&json),
            Ok(_) => "()".to_owned(),
            Err(_) => value.to_string(),
        },
        Err(error) => format!("(error: {error})"),
    }
}

/// JSON on one line, strings without escapes for newlines shortened.
fn compact(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text
    }
}
