//! Cross-item rules: capabilities, upstream outputs, params, resources, decisions.

use std::collections::HashSet;
use std::sync::Arc;

use petgraph::graph::DiGraph;

use super::graph::{self, Reach};
use super::lower::{CodeUse, Header, Role, StepRefs};
use super::scripts;
use super::shape;
use super::suggest;
use crate::diagnostic::{Code, Diagnostic};
use crate::plan::{Edge, EdgeKind, Step, Task};
use crate::script::{Capabilities, Capability};
use crate::source::Source;
use petgraph::visit::EdgeRef;

pub fn check(
    source: &Arc<Source>,
    header: &Header<'_>,
    tasks: &[Task],
    refs: &[StepRefs<'_>],
    graph: &DiGraph<usize, Edge>,
    capabilities: &Capabilities,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut rules = Rules {
        source,
        header,
        tasks,
        diagnostics,
        capabilities,
        used_params: HashSet::new(),
        reach: graph::topo_positions(graph).map(|p| Reach::new(graph, p)),
        index: crate::plan::index_by_id(tasks),
        ids: suggest::Ids::new(tasks.iter().map(|t| t.id.as_str())),
    };
    for code in header.param_code.iter().chain(&header.output_code) {
        rules.code(None, code);
    }
    for (i, (task, r)) in tasks.iter().zip(refs).enumerate() {
        rules.allowed(r);
        for code in &r.code {
            rules.code(Some(i), code);
        }
        rules.resources(task, r);
        rules.decision(task);
        rules.fallback(i, task, graph);
        rules.fan_out_over(task);
        rules.in_place_output(task);
    }
    // Code that did not compile was not analysed, so its reads are unknown.
    let all_compiled = header
        .param_code
        .iter()
        .chain(&header.output_code)
        .chain(refs.iter().flat_map(|r| &r.code))
        .all(|c| c.analysis.ast.is_ok());
    for (name, _) in header.params.iter().filter(|_| all_compiled) {
        if !rules.used_params.contains(name.value.as_str()) {
            rules.diagnostics.push(
                Diagnostic::warning(
                    Code::UnusedParam,
                    source,
                    format!("param `{}` is never used", name.value),
                )
                .label(name.span, "declared here")
                .help(format!(
                    "read it as `params.{}` (or `params[\"{}\"]`), or remove it",
                    name.value, name.value
                )),
            );
        }
    }
}

struct Rules<'a> {
    source: &'a Arc<Source>,
    header: &'a Header<'a>,
    tasks: &'a [Task],
    diagnostics: &'a mut Vec<Diagnostic>,
    capabilities: &'a Capabilities,
    used_params: HashSet<&'a str>,
    /// `None` when the graph has a cycle (already reported).
    reach: Option<Reach<'a>>,
    /// Step id → index.
    index: std::collections::HashMap<&'a str, usize>,
    /// The step ids, for "did you mean" (indexed once, on the first miss).
    ids: suggest::Ids<'a>,
}

impl<'a> Rules<'a> {
    /// Capability calls, `outputs[…]` and `params.…` in one piece of code;
    /// `owner` is the step it belongs to (`None` for params).
    fn code(&mut self, owner: Option<usize>, code: &CodeUse<'_>) {
        let analysis = &code.analysis;
        let task = owner.map(|i| &self.tasks[i]);
        for (function, position) in &analysis.calls {
            // A capability's own function, or one of `functions:` that
            // reaches capability functions (each capability named once).
            let mut needed: Vec<(&Capability, Option<&str>)> = Vec::new();
            if let Some(capability) = self.capabilities.providing(function) {
                needed.push((capability, None));
            } else if let Some(reached) = self
                .header
                .function_calls
                .get(function)
                // A body's own `fn` of that name takes the plan's place.
                .filter(|_| {
                    analysis
                        .ast
                        .as_ref()
                        .is_ok_and(|ast| !ast.iter_functions().any(|f| f.name == function))
                })
            {
                for called in reached {
                    if let Some(capability) = self.capabilities.providing(called) {
                        if !needed.iter().any(|(c, _)| c.name == capability.name) {
                            needed.push((capability, Some(called)));
                        }
                    }
                }
            }
            for (capability, via) in needed {
                // A retry condition makes no outside calls: it reads the
                // failure, and replays as it ran.
                let retry_if = code.role == Role::RetryIf;
                if !retry_if && task.is_some_and(|t| t.using.contains(&capability.name)) {
                    continue;
                }
                let span =
                    scripts::span_at(self.source, code.code, *position, function.chars().count());
                let what = match via {
                    None => format!("`{function}`"),
                    Some(called) => format!("`{function}` calls `{called}`, which"),
                };
                let (message, help) = match task {
                    Some(_) if retry_if => (
                        format!("{what} needs the `{}` capability, but a `retry: … if` condition cannot use capabilities", capability.name),
                        "decide from `error` (`error.kind`, `error.message`, `error.code`), `params`, `input` and `outputs`".to_owned(),
                    ),
                    Some(t) if matches!(t.step, Step::Task) => (
                        format!("{what} needs the `{}` capability, which task `{}` does not declare", capability.name, t.id),
                        format!("add `using:{}` to the task's header line", capability.name),
                    ),
                    Some(t) => (
                        format!("{what} needs the `{}` capability, but {} `{}` cannot use capabilities", capability.name, t.kind().word(), t.id),
                        "move the call into a task with `using:` and read its result through `outputs`".to_owned(),
                    ),
                    None if code.role == Role::Output => (
                        format!("{what} needs the `{}` capability, but the plan's `output:` cannot use capabilities", capability.name),
                        "compute the value in a task and read it through `outputs`".to_owned(),
                    ),
                    None => (
                        format!("{what} needs the `{}` capability, but param defaults cannot use capabilities", capability.name),
                        "compute the value in a task and read it through `outputs`".to_owned(),
                    ),
                };
                self.diagnostics.push(
                    Diagnostic::error(Code::UndeclaredCapability, self.source, message)
                        .label(span, "capability call")
                        .help(help),
                );
            }
        }
        self.unknown_functions(task, code);
        for (name, position) in &analysis.instance_reads {
            // Variables only one kind of code has: whether this code does,
            // and what to say if not.
            let only_in = match name.as_str() {
                "error" => Some((
                    code.role == Role::RetryIf,
                    "`error` is not set here: it is set only in the condition of `retry: … if`",
                    "a fallback reads the failure it handles as `failure` (`failure.kind`, `failure.error`); a body catches an error with `try { … } catch (e) { … }`",
                )),
                "run" => Some((
                    task.is_some_and(|t| t.finally),
                    "`run` is not set here: it is set only in `finally:` steps",
                    "`run` (`#{ status, failed, skipped, cancelled }`) is how the run ended, known once every other step has settled: read it in a task with `finally: true`",
                )),
                _ => None,
            };
            if let Some((set, message, help)) = only_in {
                if !set {
                    let span =
                        scripts::span_at(self.source, code.code, *position, name.chars().count());
                    self.diagnostics.push(
                        Diagnostic::error(Code::Script, self.source, message)
                            .label(span, "not set here")
                            .help(help),
                    );
                }
                continue;
            }
            let looping = name == "iteration";
            let has_parts = task.is_some_and(|t| match looping {
                true => t.repeat.is_some(),
                false => t.each.is_some(),
            });
            let (why, help) = match code.role {
                Role::Each => (
                    "the list of `each:` is read before any instance exists",
                    "build the list from `outputs`, `params` or literals; `item` and `index` are set in the instances' `input:`, `run:` and `expect:`",
                ),
                Role::When if has_parts => (
                    "`when:` is read once for the whole task, before any of its parts runs",
                    "test it in the body instead, or move the test to a decision before the task",
                ),
                _ if has_parts => continue,
                _ if looping => (
                    "it is set only in the iterations of a task with `repeat:`",
                    "add `repeat: max <n> [until <condition>]` to the task to run its body as a loop, with `iteration` (`#{ index, previous }`) in scope",
                ),
                _ => (
                    "it is set only in the instances of a task with `each:`",
                    "add `each: <array>` to the task to run it once per element, with `item` and `index` in scope",
                ),
            };
            let span = scripts::span_at(self.source, code.code, *position, name.chars().count());
            self.diagnostics.push(
                Diagnostic::error(
                    Code::Script,
                    self.source,
                    format!("`{name}` is not set here: {why}"),
                )
                .label(span, "not set here")
                .help(help),
            );
        }
        for (id, position) in &analysis.outputs {
            self.output(owner, code, id, *position);
        }
        for (name, position) in &analysis.params {
            match self.header.params.iter().find(|(n, _)| n.value == *name) {
                Some((n, _)) => {
                    self.used_params.insert(n.value.as_str());
                }
                None => {
                    let span = scripts::find_after(self.source, code.code, *position, name);
                    let help = suggest::did_you_mean(
                        name,
                        self.header.params.iter().map(|(n, _)| n.value.as_str()),
                        |c| format!("`params.{c}`"),
                    )
                    .unwrap_or_else(|| {
                        format!("declare it in the plan header: `param {name} = <value>`")
                    });
                    self.diagnostics.push(
                        Diagnostic::error(
                            Code::UnknownParam,
                            self.source,
                            format!("no param named `{name}`"),
                        )
                        .label(span, "not declared")
                        .help(help),
                    );
                }
            }
        }
    }

    fn output(
        &mut self,
        owner: Option<usize>,
        code: &CodeUse<'_>,
        id: &str,
        position: rhai::Position,
    ) {
        let span = scripts::find_after(self.source, code.code, position, id);
        let target = self.index.get(id).copied();
        let (message, label, help) = match (owner, target) {
            (_, None) => (
                format!("`outputs` has no `{id}`: there is no such task"),
                "no such task".to_owned(),
                self.ids
                    .did_you_mean(id, |c| format!("`{c}`"))
                    .unwrap_or_else(|| {
                        "`outputs` holds the results of tasks this one needs".to_owned()
                    }),
            ),
            // `output:` is read once every step has settled.
            (None, Some(_)) if code.role == Role::Output => return,
            (None, Some(_)) => (
                format!("param defaults cannot read `outputs[\"{id}\"]`"),
                "no task runs before params are set".to_owned(),
                "params are fixed before any task runs".to_owned(),
            ),
            (Some(me), Some(_)) if self.tasks[me].id == id => {
                if matches!(code.role, Role::Expect | Role::Until | Role::Compensate) {
                    return self.own_output_hint(span, id);
                }
                (
                    format!("`{id}` reads its own output"),
                    "this step's own output".to_owned(),
                    "a step's output exists only after its body ran; in `expect:` and `compensate:` it is `result`".to_owned(),
                )
            }
            // A finally step runs after every other (and after the finally
            // steps before it in the file).
            (Some(me), Some(t)) if self.tasks[me].finally && (!self.tasks[t].finally || t < me) => {
                return
            }
            (Some(me), Some(t)) => {
                let upstream = self
                    .reach
                    .as_mut()
                    .is_none_or(|reach| reach.is_upstream(t, me));
                if upstream {
                    return;
                }
                let me = &self.tasks[me].id;
                (
                    format!(
                        "`{me}` reads `outputs[\"{id}\"]`, but `{id}` does not run before `{me}`"
                    ),
                    "not upstream".to_owned(),
                    format!("add `needs: {id}` to `{me}`"),
                )
            }
        };
        self.diagnostics.push(
            Diagnostic::error(Code::NotUpstream, self.source, message)
                .label(span, label)
                .help(help),
        );
    }

    fn own_output_hint(&mut self, span: crate::span::Span, id: &str) {
        self.diagnostics.push(
            Diagnostic::error(
                Code::NotUpstream,
                self.source,
                format!("`{id}` reads its own output through `outputs`"),
            )
            .label(span, "this step's own output")
            .help("in `expect:` and `compensate:` the step's own output is `result`"),
        );
    }

    /// `using:` capabilities must be in the plan's `allow:`.
    fn allowed(&mut self, r: &StepRefs<'_>) {
        for using in &r.using {
            if self
                .header
                .allow
                .iter()
                .any(|g| g.capability == using.value)
            {
                continue;
            }
            let help = if self.header.allow.is_empty() {
                format!("add `allow: {}` to the plan header", using.value)
            } else {
                format!("add `{}` to the plan's `allow:` line", using.value)
            };
            self.diagnostics.push(
                Diagnostic::error(
                    Code::CapabilityNotAllowed,
                    self.source,
                    format!("the plan does not allow `{}`", using.value),
                )
                .label(using.span, "not in the plan's `allow:`")
                .help(help),
            );
        }
    }

    fn resources(&mut self, task: &Task, r: &StepRefs<'_>) {
        for (name, amount) in &r.resources {
            let Some(capacity) = self.header.resources.amounts.get(&name.value) else {
                continue;
            };
            if amount > capacity {
                let show = |v: f64| {
                    if name.value == "mem" {
                        human_size(v)
                    } else {
                        trim_float(v)
                    }
                };
                self.diagnostics.push(
                    Diagnostic::error(
                        Code::ResourcesExceedCapacity,
                        self.source,
                        format!(
                            "`{}` needs {} {} but the plan has only {}",
                            task.id,
                            name.value,
                            show(*amount),
                            show(*capacity)
                        ),
                    )
                    .label(name.span, "more than the plan's capacity")
                    .help(format!(
                        "lower it, or raise `resources: {} …` in the plan header",
                        name.value
                    )),
                );
            }
        }
    }

    /// A fallback runs when its step failed; if it also needs that step
    /// (directly or through other steps), it can never run.
    fn fallback(&mut self, i: usize, task: &Task, graph: &DiGraph<usize, Edge>) {
        let Some(fallback) = &task.fallback else {
            return;
        };
        let Some(&f) = self.index.get(fallback.as_str()) else {
            return;
        };
        let mut stack = vec![petgraph::graph::NodeIndex::new(i)];
        // Only steps between the two in topological order can lie on a path.
        let before_f = |n: usize| {
            self.reach
                .as_ref()
                .is_none_or(|r| r.position(n) <= r.position(f))
        };
        let mut seen = HashSet::new();
        while let Some(n) = stack.pop() {
            for edge in graph.edges_directed(n, petgraph::Direction::Outgoing) {
                let next = edge.target();
                if matches!(edge.weight().kind, EdgeKind::Needs | EdgeKind::OnSuccess)
                    && before_f(next.index())
                    && !seen.contains(&next.index())
                {
                    if next.index() == f {
                        let span = edge.weight().span;
                        self.diagnostics.push(
                            Diagnostic::error(
                                Code::UnreachableFallback,
                                self.source,
                                format!("`{fallback}` is the fallback of `{}` but runs only after `{}` succeeds, so it can never run", task.id, task.id),
                            )
                            .label(span, "so the fallback waits for a success")
                            .help(format!("a fallback runs when `{}` fails; remove that dependency", task.id)),
                        );
                        return;
                    }
                    seen.insert(next.index());
                    stack.push(next);
                }
            }
        }
    }

    /// Calls to functions nothing provides: not Rhai's or the host's (when
    /// the engine said which those are), no capability's, not the plan's
    /// `functions:` nor the code's own (`sh_tyr(…)` for `sh_try(…)`).
    fn unknown_functions(&mut self, task: Option<&Task>, code: &CodeUse<'_>) {
        let Some(always) = self.capabilities.always() else {
            return;
        };
        let analysis = &code.analysis;
        let known = |name: &str| {
            always.contains(name)
                || self.capabilities.providing(name).is_some()
                || self.header.function_calls.contains_key(name)
                || scripts::LEFT_OUT.iter().any(|(left, _)| *left == name)
        };
        for (name, position) in &analysis.named_calls {
            if known(name) {
                continue;
            }
            // What this code could have meant: what it may call.
            let granted = task.map(|t| t.using.as_slice()).unwrap_or_default();
            let candidates = always
                .iter()
                .map(String::as_str)
                .filter(|f| f.chars().all(|c| c.is_alphanumeric() || c == '_'))
                .chain(self.header.function_calls.keys().map(String::as_str))
                .chain(
                    granted
                        .iter()
                        .filter_map(|c| self.capabilities.get(c))
                        .flat_map(|c| c.functions.iter().map(String::as_str)),
                );
            let help = suggest::did_you_mean(name, candidates, |c| format!("`{c}`")).unwrap_or_else(|| {
                "a task may call Rhai's functions, cairn's (`log`, `fail`, `sleep`, …), those of the capabilities it declares, and the plan's `functions:`".to_owned()
            });
            let span = scripts::span_at(self.source, code.code, *position, name.chars().count());
            self.diagnostics.push(
                Diagnostic::error(
                    Code::UnknownFunction,
                    self.source,
                    format!("there is no function `{name}`"),
                )
                .label(span, "no such function")
                .help(help),
            );
        }
    }

    /// A body whose value is an in-place method's `()`: Rhai's `s.trim()`
    /// changes `s` and returns nothing, so the task's output is `()`.
    fn in_place_output(&mut self, task: &Task) {
        let Some(run) = &task.run else {
            return;
        };
        let Some((variable, method)) = shape::in_place_ending(run) else {
            return;
        };
        self.diagnostics.push(
            Diagnostic::warning(
                Code::UnitOutput,
                self.source,
                format!(
                    "`{variable}.{method}()` changes `{variable}` in place and gives `()`: the output of `{}` is `()`",
                    task.id
                ),
            )
            .label(run.span, "its value is `()`")
            .help(format!(
                "end with the value itself: `{variable}.{method}(); {variable}`"
            )),
        );
    }

    /// An `each:` that reads an output its step's code says is not a list.
    fn fan_out_over(&mut self, task: &Task) {
        let Some(each) = &task.each else {
            return;
        };
        let Some(id) = shape::output_read(&each.over) else {
            return;
        };
        let Some(upstream) = self.index.get(id.as_str()).map(|&i| &self.tasks[i]) else {
            return;
        };
        let Some(shape) = shape::not_an_array(upstream) else {
            return;
        };
        let mut warning = Diagnostic::warning(
            Code::EachNotArray,
            self.source,
            format!("`each:` reads the output of `{id}`, which is {shape}, not an array"),
        )
        .label(each.over.span, "not a list");
        if let Some(run) = &upstream.run {
            warning = warning.label(run.span, "its value");
        }
        self.diagnostics.push(warning.help(format!(
            "make `{id}` give an array (`[…]`, `list_dir(…)`, `range(0, n)`); an `each:` over anything else fails its task when it runs"
        )));
    }

    fn decision(&mut self, task: &Task) {
        let Some(decision) = task.step.decision() else {
            return;
        };
        if decision.branches.is_empty() {
            self.diagnostics.push(
                Diagnostic::error(
                    Code::EmptyDecision,
                    self.source,
                    format!("decision `{}` has no `when … ->` branches", task.id),
                )
                .label(task.span, "no branches")
                .help("add lines like `when outputs[\"check\"] -> fix` under it"),
            );
        } else if decision.else_target.is_none() {
            self.diagnostics.push(
                Diagnostic::warning(Code::DecisionWithoutElse, self.source, format!("decision `{}` has no `else` branch", task.id))
                    .label(task.span, "no `else`")
                    .help("if no condition holds the decision fails; add `else -> <id>` to choose a default"),
            );
        }
    }
}

fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn human_size(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 && (value / 1024.0).fract() == 0.0 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{}{}", trim_float(value), UNITS[unit])
}
