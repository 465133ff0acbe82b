//! The checked plan: tasks, edges and policies, ready to run or export.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use petgraph::graph::DiGraph;
use serde::{Deserialize, Serialize};

mod gate_input;
mod shape;

pub use gate_input::{complete, complete_json, InputField, InputKind};

use crate::script::CompileMode;
use crate::span::Span;

/// A plan that passed every check. Its graph's node weights index `tasks`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// The id after `plan`.
    pub id: String,
    /// The quoted title after the id, escapes resolved.
    pub title: String,
    /// The file the plan was read from, as given.
    pub source: String,
    /// `param` declarations, in file order (defaults may read earlier params).
    pub params: Vec<Param>,
    /// `max_parallel:`: how many steps may run at once (default 4).
    pub max_parallel: usize,
    /// `resources:`: capacity shared by running tasks; unlisted resources are unlimited.
    pub resources: Resources,
    /// `allow:`: the capabilities tasks may declare in `using:`, with their scopes.
    pub allow: Vec<Grant>,
    /// `budget:`: limits on the run's wall-clock time and total `spend()`.
    pub budget: Budget,
    /// `on failure:` in the header: the policy for steps that set none.
    pub on_failure: FailurePolicy,
    /// `seed:` for `rand()` and retry jitter; `None` means 0 unless `--seed` is given.
    pub seed: Option<u64>,
    /// `default_timeout:` in milliseconds: the wall-clock limit of every
    /// script of a step that has no `timeout:` (default 10m).
    pub default_timeout_ms: u64,
    /// `description:`, `owner:` and `labels:` of the plan header.
    pub metadata: Metadata,
    /// `functions:`: Rhai `fn` definitions, compiled into every other
    /// script of the plan (not of the plans it imports: they have their own).
    #[serde(default)]
    pub functions: Option<Script>,
    /// Plans imported with `use`, outermost first: their steps are in
    /// `tasks` as `alias.id`, with [`Task::import`] naming the alias.
    #[serde(default)]
    pub imports: Vec<Import>,
    /// `hypothesis` declarations, in file order: what evidence is weighed for.
    #[serde(default)]
    pub hypotheses: Vec<Hypothesis>,
    /// `output:`: what the plan gives a task that runs it with `plan:`
    /// (`None`: the map of every step's output).
    #[serde(default)]
    pub output: Option<Script>,
    /// Every plan a `plan:` task runs, checked, at the plan being run
    /// (empty in the plans it holds): [`Call::plan`] indexes it from every
    /// level, so a plan that calls itself is one entry.
    #[serde(default)]
    pub library: Vec<Plan>,
    /// Where a [`Plan::library`] entry was read from (`None` for the plan
    /// being run), so `resume` and `replay` see an edited child plan.
    #[serde(default)]
    pub origin: Option<Origin>,
    /// Tasks, decisions and gates, in file order.
    #[serde(deserialize_with = "exactly_as_long")]
    pub tasks: Vec<Task>,
    /// Node `i` is `tasks[i]`; edges point from the earlier step to the later.
    pub graph: DiGraph<usize, Edge>,
}

impl Plan {
    /// The task with this id.
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// The graph node of `tasks[index]`.
    pub fn node(index: usize) -> petgraph::graph::NodeIndex {
        petgraph::graph::NodeIndex::new(index)
    }

    /// The steps right after `tasks[index]` (by any edge), by index.
    pub fn successors(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph
            .neighbors_directed(Self::node(index), petgraph::Direction::Outgoing)
            .map(|n| n.index())
    }

    /// The steps whose results stand on `tasks[index]`'s: those after it
    /// (by any edge), and those it is the fallback of (their recovery was
    /// its doing).
    pub fn dependents(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        use petgraph::visit::EdgeRef;
        let stood_in_for = self
            .graph
            .edges_directed(Self::node(index), petgraph::Direction::Incoming)
            .filter(|e| e.weight().kind == EdgeKind::OnFailure)
            .map(|e| e.source().index());
        self.successors(index).chain(stood_in_for)
    }

    /// `start` and every step whose result stands on theirs, at any
    /// distance ([`Plan::dependents`]): what runs again when they do.
    pub fn standing_on(
        &self,
        start: impl IntoIterator<Item = usize>,
    ) -> std::collections::BTreeSet<usize> {
        let mut reached = std::collections::BTreeSet::new();
        let mut stack: Vec<usize> = start.into_iter().collect();
        while let Some(i) = stack.pop() {
            if reached.insert(i) {
                stack.extend(self.dependents(i));
            }
        }
        reached
    }

    /// Compiles the code of a deserialized plan (compiled code is not
    /// serialized), each distinct text once, and shares each text between
    /// the scripts that have it, as the checker does. [`crate::check`]
    /// compiles the plans it returns; a plan read back from JSON or a run's
    /// record needs this before it runs.
    pub fn compile(&mut self) -> Result<(), CompileError> {
        for child in &mut self.library {
            child.compile()?;
        }
        // Each plan's `functions:` first (the plan's own under `None`, an
        // import's under its alias): every other script has its plan's.
        let mut functions: HashMap<Option<String>, Arc<rhai::AST>> = HashMap::new();
        let owners = std::iter::once((None, self.functions.as_mut())).chain(
            self.imports
                .iter_mut()
                .map(|i| (Some(i.alias.clone()), i.functions.as_mut())),
        );
        for (owner, script) in owners {
            if let Some(script) = script {
                let ast = match &script.ast {
                    Some(ast) => Arc::clone(ast),
                    None => Arc::new(compile_one(script, CompileMode::Functions)?),
                };
                script.ast = Some(Arc::clone(&ast));
                functions.insert(owner, ast);
            }
        }
        type Key = (Arc<str>, CompileMode, Option<String>);
        let mut compiled: HashMap<Key, Arc<rhai::AST>> = HashMap::new();
        for (script, mode, owner) in self.scripts_mut() {
            if script.ast.is_some() {
                continue;
            }
            let key = (Arc::clone(&script.text), mode, owner.clone());
            let ast = match compiled.get_key_value(&key) {
                Some(((text, _, _), ast)) => {
                    script.text = Arc::clone(text);
                    Arc::clone(ast)
                }
                None => {
                    let ast = compile_one(script, mode)?;
                    let ast = match functions.get(&owner) {
                        Some(functions) => functions.merge(&ast),
                        None => ast,
                    };
                    let ast = Arc::new(ast);
                    compiled.insert(key, Arc::clone(&ast));
                    ast
                }
            };
            script.ast = Some(ast);
        }
        Ok(())
    }

    /// Every piece of code in the plan but `functions:`, with how it
    /// compiles and whose functions it calls (`None`: the plan's own, else
    /// an import's alias).
    fn scripts_mut(&mut self) -> impl Iterator<Item = (&mut Script, CompileMode, Option<String>)> {
        use CompileMode::{Expression, Script as Body};
        let imports = self.imports.iter_mut().flat_map(|import| {
            let Import {
                alias,
                parent,
                params,
                with,
                ..
            } = import;
            // Defaults are the imported plan's code; `with` values its parent's.
            let defaults = params
                .iter_mut()
                .map(|p| (&mut p.default, Some(alias.clone())));
            defaults.chain(with.iter_mut().map(|(_, value)| (value, parent.clone())))
        });
        let params = self.params.iter_mut().map(|p| (&mut p.default, None));
        let header = params
            .chain(self.output.as_mut().map(|s| (s, None)))
            .chain(imports)
            .map(|(s, owner)| (s, Expression, owner));
        let steps = self.tasks.iter_mut().flat_map(|task| {
            let Task {
                input,
                run,
                expect,
                when,
                compensate,
                step,
                import,
                each,
                repeat,
                call,
                retry,
                ..
            } = task;
            let owner = import.clone();
            let branches: &mut [Branch] = match step {
                Step::Decision(decision) => &mut decision.branches,
                Step::Task | Step::Gate(_) => &mut [],
            };
            let over = each.as_deref_mut().map(|each| &mut each.over);
            let until = repeat.as_deref_mut().and_then(|r| r.until.as_mut());
            let retry_if = retry.predicate.as_deref_mut();
            let with: &mut [(String, Script)] = match call {
                Some(call) => &mut call.with,
                None => &mut [],
            };
            let expressions = input
                .iter_mut()
                .chain(with.iter_mut())
                .map(|(_, value)| value)
                .chain(over)
                .chain(until)
                .chain(retry_if)
                .chain(expect.iter_mut())
                .chain(when.as_deref_mut())
                .chain(branches.iter_mut().map(|b| &mut b.condition))
                .map(|s| (s, Expression));
            let bodies = run.iter_mut().chain(compensate.as_deref_mut());
            expressions
                .chain(bodies.map(|s| (s, Body)))
                .map(move |(s, mode)| (s, mode, owner.clone()))
        });
        header.chain(steps)
    }
}

fn compile_one(script: &Script, mode: CompileMode) -> Result<rhai::AST, CompileError> {
    crate::script::compile(&script.text, mode).map_err(|error| CompileError {
        span: script.span,
        message: error.to_string(),
    })
}

/// A sequence in one allocation of the length the input gives. serde's own
/// `Vec` grows from a cautious guess, and for 100,000 tasks that doubled to
/// nearly twice the memory they need (and as many page faults to fill it).
fn exactly_as_long<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Exact<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Exact<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            // Capped, so a damaged length cannot ask for unbounded memory.
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(items)
        }
    }
    deserializer.deserialize_seq(Exact(std::marker::PhantomData))
}

/// Code in a deserialized plan that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("the code at bytes {}..{} does not compile: {message}", span.start, span.end)]
pub struct CompileError {
    /// Where the code is in the plan's source.
    pub span: Span,
    /// Rhai's message.
    pub message: String,
}

/// The text a library entry was checked from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The file it was read from, as resolved (`None`: a stdlib template,
    /// which only changes with cairn).
    pub file: Option<String>,
    /// sha256 of its text as checked.
    pub sha256: String,
}

/// `plan: "<reference>" [with k = v, …]`: a task that runs another plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Call {
    /// The template name or path as written.
    pub reference: String,
    /// The plan it runs: an index into the [`Plan::library`] of the plan
    /// being run.
    pub plan: usize,
    /// `with` values: param name and expression, evaluated in the task's
    /// scope (`params`, `outputs`, `item`, `iteration`) before each attempt.
    pub with: Vec<(String, Script)>,
}

/// `use "<reference>" as <alias> [with k = v, …]`: another plan's steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Import {
    /// The prefix of its steps' ids (`dbg`, or `outer.inner` when nested).
    pub alias: String,
    /// The template name or path as written.
    pub reference: String,
    /// The import whose plan holds this `use` (`None`: the plan itself);
    /// `with` values are evaluated with its params.
    pub parent: Option<String>,
    /// The imported plan's params with their defaults.
    pub params: Vec<Param>,
    /// `with` overrides: param name and expression.
    pub with: Vec<(String, Script)>,
    /// The imported plan's `allow:`, which scopes its steps' file and HTTP access.
    pub allow: Vec<Grant>,
    /// The imported plan's `functions:`, which its own code calls.
    #[serde(default)]
    pub functions: Option<Script>,
    /// The file the imported plan was read from, as resolved (`None`: a
    /// stdlib template, which only changes with cairn).
    #[serde(default)]
    pub file: Option<String>,
    /// sha256 of the imported plan's text as checked: `resume` compares it
    /// with the file to tell whether the plan changed since the run began.
    #[serde(default)]
    pub sha256: String,
}

/// `hypothesis <id> "statement"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hypothesis {
    /// The id bodies pass to `evidence`, `confidence` and `best_hypothesis`.
    pub id: String,
    /// What it claims.
    pub statement: String,
}

/// `param <name> = <value>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Param {
    /// The name: code reads it as `params.<name>`; `--set <name>=…` overrides it.
    pub name: String,
    /// The default value: an expression evaluated when the run starts.
    pub default: Script,
}

/// Amounts of resources: the plan's capacity, or what a task takes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Resource name to amount; `mem` is in bytes.
    pub amounts: BTreeMap<String, f64>,
}

/// One capability the plan allows, maybe narrowed to hosts or path globs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The capability's name, e.g. `http` or `fs.write`.
    pub capability: String,
    /// Empty means the whole capability.
    pub scopes: Vec<String>,
}

/// `budget: time <dur>, cost <n>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Wall-clock limit for the whole run, in milliseconds; when it ends, running steps are cancelled and the run fails.
    pub time_ms: Option<u64>,
    /// Limit on the sum of `spend()` amounts; crossing it fails the step and stops the plan.
    pub cost: Option<f64>,
}

/// What a failure does to the rest of the plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Start nothing new; the plan fails.
    #[default]
    Stop,
    /// Record the failure; dependents still run.
    Continue,
    /// Skip the failed task's dependents, run every other branch to its
    /// end, then fail the plan.
    Finish,
    /// Stop, then undo completed tasks in reverse completion order.
    Compensate,
    /// Interrupt the running steps at once, start nothing new, fail.
    Abort,
}

/// The result of a step that a `needs:` entry waits for: `a` (succeeded,
/// or recovered by its fallback), `a.failed`, `a.skipped`, `a.done`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Awaited {
    /// Plain `a`: it succeeded or was recovered.
    Succeeded,
    /// `a.failed`: it failed for good.
    Failed,
    /// `a.skipped`: it did not run.
    Skipped,
    /// `a.done`: it settled, whatever the result.
    Done,
}

impl Awaited {
    /// The qualifiers, as written after the dot.
    pub const QUALIFIERS: [&'static str; 3] = ["failed", "skipped", "done"];

    /// `a.failed` → (`a`, `Failed`); a plain id is `Succeeded`.
    pub fn split(target: &str) -> (&str, Self) {
        let qualified = target.rsplit_once('.').and_then(|(id, word)| {
            let awaited = match word {
                "failed" => Self::Failed,
                "skipped" => Self::Skipped,
                "done" => Self::Done,
                _ => return None,
            };
            Some((id, awaited))
        });
        qualified.unwrap_or((target, Self::Succeeded))
    }

    /// How it reads after the id: `""`, `".failed"`, ….
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Succeeded => "",
            Self::Failed => ".failed",
            Self::Skipped => ".skipped",
            Self::Done => ".done",
        }
    }
}

/// One member of a `needs:` entry that names a result: a step and what
/// it must have come to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    /// The step's id (imported ones qualified, `alias.id`).
    pub id: String,
    /// The result it waits for.
    pub result: Awaited,
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.id, self.result.suffix())
    }
}

/// Free metadata kept in state and graph output.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// `description:` text, nested lines joined with newlines.
    pub description: Option<String>,
    /// `owner:`, unquoted.
    pub owner: Option<String>,
    /// `labels:`, from the comma-separated value and nested `- label` lines.
    pub labels: Vec<String>,
}

/// Which keyword declared a step, as a word (`"task"`, `"decision"`, `"gate"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// `task`: runs code (or nothing) and produces an output.
    Task,
    /// `decision`: evaluates its `when … ->` branches and routes to one target.
    Decision,
    /// `gate`: waits for a person's approval.
    Gate,
}

impl StepKind {
    /// The keyword: `task`, `decision` or `gate`.
    pub fn word(self) -> &'static str {
        match self {
            Self::Task => "task",
            Self::Decision => "decision",
            Self::Gate => "gate",
        }
    }
}

/// What a step is, with what only that kind has: a new kind is found by
/// every `match` that must handle it.
#[derive(Clone, Debug)]
pub enum Step {
    /// `task`: runs code (or nothing) and produces an output.
    Task,
    /// `decision`: routes to one of its targets (boxed: most steps are tasks).
    Decision(Box<Decision>),
    /// `gate`: waits for a person's approval (boxed: most steps are tasks).
    Gate(Box<Gate>),
}

impl Step {
    /// Which keyword declared it.
    pub fn kind(&self) -> StepKind {
        match self {
            Self::Task => StepKind::Task,
            Self::Decision(_) => StepKind::Decision,
            Self::Gate(_) => StepKind::Gate,
        }
    }

    /// The decision's branches and `else`, if this is a decision.
    pub fn decision(&self) -> Option<&Decision> {
        match self {
            Self::Decision(decision) => Some(decision),
            Self::Task | Self::Gate(_) => None,
        }
    }

    /// [`Step::decision`], to change.
    pub fn decision_mut(&mut self) -> Option<&mut Decision> {
        match self {
            Self::Decision(decision) => Some(decision),
            Self::Task | Self::Gate(_) => None,
        }
    }
}

/// `each: <expr>` on a task: one instance of the task per element of the
/// array the expression gives, as `task[0]`, `task[1]`, …, with `item` and
/// `index` in scope; the task's output is the array of theirs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Each {
    /// The expression, evaluated once the task's `needs` are met (and its
    /// `when:` held), before any instance starts.
    pub over: Script,
    /// The task's `max_parallel:`: how many of its instances run at once
    /// (`None`: as many as the plan's limit allows).
    pub max_parallel: Option<usize>,
}

impl Each {
    /// The id of the task's `index`-th instance: `convert[3]`.
    pub fn instance_id(task: &str, index: usize) -> String {
        format!("{task}[{index}]")
    }

    /// The task and index an instance id names (`convert[3]` → `convert`,
    /// 3); `None` for any other id.
    pub fn parse_instance_id(id: &str) -> Option<(&str, usize)> {
        let (task, index) = id.strip_suffix(']')?.rsplit_once('[')?;
        Some((task, index.parse().ok()?))
    }
}

/// `repeat: max <n> [until <expr>]` on a task: its body runs again and
/// again, each time as a step of its own (`task#1`, `task#2`, …) with
/// `iteration` (`#{ index, previous }`) in scope, until `until` holds over
/// `result` or `max` iterations have run; the task's output is the last
/// iteration's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Repeat {
    /// The most iterations (at least 1).
    pub max: u32,
    /// The condition over `result` that ends the loop; without it the body
    /// runs exactly `max` times.
    pub until: Option<Script>,
}

impl Repeat {
    /// The id of the task's `number`-th iteration, from 1: `improve#2`.
    pub fn iteration_id(task: &str, number: u32) -> String {
        format!("{task}#{number}")
    }

    /// The task and number an iteration id names (`improve#2` → `improve`,
    /// 2); `None` for any other id.
    pub fn parse_iteration_id(id: &str) -> Option<(&str, u32)> {
        let (task, number) = id.rsplit_once('#')?;
        Some((task, number.parse().ok()?))
    }
}

/// The task a step id is part of when it is an instance of `each:` or an
/// iteration of `repeat:` (`convert[3]`, `improve#2`), and the part's
/// position (the index, or the iteration's number); `None` otherwise.
pub fn parse_part(id: &str) -> Option<(&str, usize)> {
    Each::parse_instance_id(id)
        .or_else(|| Repeat::parse_iteration_id(id).map(|(task, n)| (task, n as usize)))
}

/// The task a step id is part of (see [`parse_part`]).
pub fn part_of(id: &str) -> Option<&str> {
    parse_part(id).map(|(task, _)| task)
}

/// Each step's position in `tasks`, by id.
pub fn index_by_id(tasks: &[Task]) -> HashMap<&str, usize> {
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect()
}

/// A decision's routes.
#[derive(Clone, Debug, Default)]
pub struct Decision {
    /// The `when <condition> -> <id>` lines, in order; the first that holds wins.
    pub branches: Vec<Branch>,
    /// The `else -> <id>` target, taken when no branch holds.
    pub else_target: Option<String>,
}

/// What a gate shows whoever approves it.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    /// The `checks:` list.
    pub checks: Vec<String>,
    /// `on reject -> <id>`: where a rejection (or a timeout) goes; the
    /// gate stays failed, so its dependents are skipped.
    pub on_reject: Option<String>,
    /// `input:`: the typed fields its approver fills in.
    pub input: Vec<InputField>,
}

/// A task, decision or gate. In JSON (and a run's stored plan) it is one
/// flat object, with `step` naming the kind beside `branches`,
/// `else_target` and `checks` (see `plan/shape.rs`).
#[derive(Clone, Debug)]
pub struct Task {
    /// The step's id, unique in the plan.
    pub id: String,
    /// The quoted title on the header line, escapes resolved.
    pub title: String,
    /// Whether this is a task, decision or gate, with what only that kind has.
    pub step: Step,
    /// `kind:<name>`: what sort of work this is (free-form).
    pub kind: Option<String>,
    /// `using:` capabilities the step's code may call, deduplicated, in written order.
    pub using: Vec<String>,
    /// Plain `needs:` ids, as written (the graph holds the resulting edges).
    pub needs: Vec<String>,
    /// The `needs:` entries that name a result (`a.failed`) or are
    /// `any(…)`: each holds when any of its members does, and every one
    /// must for the step to run (an `after` edge per member).
    pub qualified: Vec<Vec<Need>>,
    /// `finally: true`: runs after every other step has settled, whatever
    /// happened, with `run` in scope.
    pub finally: bool,
    /// `input:` entries: key and expression, evaluated once before the first attempt.
    pub input: Vec<(String, Script)>,
    /// `run:` body; its value becomes the step's output (must convert to JSON).
    pub run: Option<Script>,
    /// `expect:` conditions over `result`; a false one fails the attempt.
    pub expect: Vec<Script>,
    /// `each:` and the task's `max_parallel:`: the task runs once per element.
    pub each: Option<Box<Each>>,
    /// `repeat:`: the task's body runs as a bounded loop of iterations.
    pub repeat: Option<Box<Repeat>>,
    /// `plan:`: the task's body is another plan, run as a child run.
    pub call: Option<Box<Call>>,
    /// `when:` condition, evaluated once before the first attempt; false
    /// skips the step. Boxed, as `compensate:` is: most steps have neither,
    /// and a large plan holds every step at once.
    pub when: Option<Box<Script>>,
    /// `retry:` settings (default: no retries).
    pub retry: Retry,
    /// `timeout:` in milliseconds, per attempt of `run:` and `expect:`, and for `compensate:`; `when:`, `input:` and gates are not timed.
    pub timeout_ms: Option<u64>,
    /// `output_limit:` in bytes: how much of each command's stdout and stderr
    /// the step keeps (`None`: 1 MiB).
    pub output_limit: Option<usize>,
    /// `on failure: …` for this task; `None` means the plan's default.
    pub on_failure: Option<FailurePolicy>,
    /// `on failure -> id`.
    pub fallback: Option<String>,
    /// `on success -> id`.
    pub on_success: Option<String>,
    /// `compensate:` body, run with `result` in scope when the plan compensates.
    pub compensate: Option<Box<Script>>,
    /// `priority:` (default 0); among ready steps, higher starts first.
    pub priority: i64,
    /// `resources:` the task holds while it runs.
    pub resources: Resources,
    /// The step's `description:`, `owner:` and `labels:`.
    pub metadata: Metadata,
    /// Runs only when routed to (by `on failure ->` or a decision branch).
    pub conditional: bool,
    /// Ids this step's code names in `outputs[…]`, sorted.
    pub reads: Vec<String>,
    /// The alias of the `use` that brought this step in (`None`: the plan's own).
    pub import: Option<String>,
    /// The header line, from the keyword to the end of the title or attributes.
    pub span: Span,
}

impl Task {
    /// Whether this is a task, decision or gate.
    pub fn kind(&self) -> StepKind {
        self.step.kind()
    }

    /// A gate's `checks:` (empty for other steps).
    pub fn checks(&self) -> &[String] {
        match &self.step {
            Step::Gate(gate) => &gate.checks,
            Step::Task | Step::Decision(_) => &[],
        }
    }

    /// The decision's `index`-th `when` branch, which an
    /// [`EdgeKind::Branch`] edge from this step names.
    ///
    /// # Panics
    /// If this is not a decision with that many branches: the checker
    /// makes branch edges only from decisions' branches.
    pub fn branch(&self, index: usize) -> &Branch {
        let decision = self.step.decision().expect("branch edges leave decisions");
        &decision.branches[index]
    }
}

/// `retry: <n> backoff <dur> factor <f> max <dur> total <dur> if <expr>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Retry {
    /// Attempts after the first.
    pub count: u32,
    /// Delay before the first retry, in milliseconds (default 1000).
    pub backoff_ms: u64,
    /// What each further delay is multiplied by (default 2).
    pub factor: f64,
    /// Cap on the delay, in milliseconds, before jitter.
    pub max_ms: Option<u64>,
    /// `total`: how long all attempts together may take, in milliseconds.
    pub total_ms: Option<u64>,
    /// `if`: a failure is retried only when this holds over `error`.
    pub predicate: Option<Box<Script>>,
}

/// Two retries are the same when they read the same (a predicate by its text).
impl PartialEq for Retry {
    fn eq(&self, other: &Self) -> bool {
        let text = |r: &Self| r.predicate.as_ref().map(|p| Arc::clone(&p.text));
        self.count == other.count
            && self.backoff_ms == other.backoff_ms
            && self.factor == other.factor
            && self.max_ms == other.max_ms
            && self.total_ms == other.total_ms
            && text(self) == text(other)
    }
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            count: 0,
            backoff_ms: 1000,
            factor: 2.0,
            max_ms: None,
            total_ms: None,
            predicate: None,
        }
    }
}

/// `when <condition> -> <target>` in a decision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Branch {
    /// The expression that selects this branch.
    pub condition: Script,
    /// The id of the step this branch routes to.
    pub target: String,
}

/// Rhai code from the plan, compiled at check time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Script {
    /// Shared by every script with the same text.
    pub text: Arc<str>,
    /// Where the code is in the file.
    pub span: Span,
    /// Where each line of `text` starts in the file, to map Rhai positions back.
    pub line_offsets: Vec<usize>,
    /// The file line (from 1) of the first line of `text`, and the column
    /// (in characters, from 1) each of its lines starts at: where a run-time
    /// error is, in the file (0: not known).
    #[serde(default)]
    pub line: u32,
    /// (See `line`.)
    #[serde(default)]
    pub column: u32,
    /// The compiled code, shared between every script with the same text.
    #[serde(skip)]
    pub ast: Option<Arc<rhai::AST>>,
}

/// How one step leads to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum EdgeKind {
    /// `needs:` (from the dependency to the dependent).
    Needs,
    /// `on success ->`.
    OnSuccess,
    /// `on failure ->` (from the task to its fallback).
    OnFailure,
    /// The decision's n-th `when` branch.
    Branch {
        /// The branch's position among the decision's `when` lines, from 0.
        index: usize,
    },
    /// The decision's `else` branch.
    Else,
    /// `on reject ->` (from the gate to where its rejection goes).
    OnReject,
    /// A `needs:` entry that names a result (`a.failed`, `any(…)`): the
    /// dependent waits for the source to settle, then checks the result.
    After,
}

impl EdgeKind {
    /// Whether the target runs only when this edge is taken.
    pub fn is_conditional(self) -> bool {
        matches!(
            self,
            Self::OnFailure | Self::OnReject | Self::Branch { .. } | Self::Else
        )
    }

    /// Whether the target needs the source to have succeeded (`needs:`
    /// on a plain id, `on success ->`).
    pub fn is_ordering(self) -> bool {
        matches!(self, Self::Needs | Self::OnSuccess)
    }
}

/// An edge and where it was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// What sort of link this is.
    pub kind: EdgeKind,
    /// The id reference (in `needs:`, a route or a branch) that created the edge.
    pub span: Span,
}

/// `{"kind": "branch", "index": 0, "span": …}` in JSON.
#[derive(Serialize, Deserialize)]
struct NamedEdge {
    #[serde(flatten)]
    kind: EdgeKind,
    span: Span,
}

/// In formats without field names (a run's stored plan), which cannot
/// express `flatten`: the kind's number, the branch index, the span.
type CompactEdge = (u8, usize, Span);

impl Serialize for Edge {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return NamedEdge {
                kind: self.kind,
                span: self.span,
            }
            .serialize(serializer);
        }
        let (number, index): (u8, usize) = match self.kind {
            EdgeKind::Needs => (0, 0),
            EdgeKind::OnSuccess => (1, 0),
            EdgeKind::OnFailure => (2, 0),
            EdgeKind::Branch { index } => (3, index),
            EdgeKind::Else => (4, 0),
            EdgeKind::After => (5, 0),
            EdgeKind::OnReject => (6, 0),
        };
        let compact: CompactEdge = (number, index, self.span);
        compact.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Edge {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let NamedEdge { kind, span } = NamedEdge::deserialize(deserializer)?;
            return Ok(Self { kind, span });
        }
        let (number, index, span) = CompactEdge::deserialize(deserializer)?;
        let kind = match number {
            0 => EdgeKind::Needs,
            1 => EdgeKind::OnSuccess,
            2 => EdgeKind::OnFailure,
            3 => EdgeKind::Branch { index },
            4 => EdgeKind::Else,
            5 => EdgeKind::After,
            6 => EdgeKind::OnReject,
            _ => return Err(serde::de::Error::custom(format!("no edge kind {number}"))),
        };
        Ok(Self { kind, span })
    }
}

#[cfg(test)]
mod tests {
    /// Checking a large plan holds every step at once (2 KB per step at
    /// most, with everything else checking keeps): a step growing past
    /// this (a rare field not boxed) costs every step of such a plan.
    /// (Each rare field boxed costs a pointer: `plan:` took it to 592, a
    /// script's line and column for run-time errors to 600, `retry: …
    /// total … if` to 624, qualified `needs:` and `finally:` to 648.)
    #[test]
    fn steps_stay_small() {
        let task = std::mem::size_of::<super::Task>();
        assert!(task <= 648, "Task is {task} bytes");
    }
}
