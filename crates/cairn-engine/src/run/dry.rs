//! `--dry-run`: the waves a plan would run in and why, with nothing executed.

use std::collections::HashMap;
use std::fmt::Write;

use petgraph::visit::EdgeRef;
use petgraph::Direction;
use rhai::{ASTNode, Expr};

use crate::script::Capabilities;
use cairn_lang::plan::{EdgeKind, Plan, Script, Step, Task};

/// Explains a run without running it: waves of steps that could run
/// together, why each would run, be skipped or depend on a decision, and
/// the capability calls its code would make.
pub fn explain(plan: &Plan, max_parallel: usize, capabilities: &Capabilities) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dry run of `{}`: {} {}, at most {max_parallel} at once; nothing is executed",
        plan.id,
        plan.tasks.len(),
        if plan.tasks.len() == 1 {
            "step"
        } else {
            "steps"
        }
    );
    let waves = waves(plan);
    // What each function of each plan's `functions:` reaches, by owner
    // (`None`: the plan's own; else an import's alias). A dry run is rare:
    // the check's own tables are not kept in the plan.
    let reach = |functions: Option<&Script>| {
        functions
            .and_then(|f| f.ast.as_deref())
            .map(cairn_lang::check::reachable_calls)
            .unwrap_or_default()
    };
    let functions: HashMap<Option<&str>, HashMap<String, Vec<String>>> =
        std::iter::once((None, reach(plan.functions.as_ref())))
            .chain(
                plan.imports
                    .iter()
                    .map(|i| (Some(i.alias.as_str()), reach(i.functions.as_ref()))),
            )
            .collect();
    // A step may be skipped if it is conditional, has `when:`, or needs
    // only steps that may be skipped; waves are in dependency order.
    let mut maybe_skipped = vec![false; plan.tasks.len()];
    for &i in waves.iter().flatten() {
        let task = &plan.tasks[i];
        let needs: Vec<usize> = ordering_predecessors(plan, i);
        maybe_skipped[i] = task.conditional
            || task.when.is_some()
            || (!needs.is_empty() && needs.iter().all(|&n| maybe_skipped[n]));
    }
    for (n, wave) in waves.iter().enumerate() {
        let _ = writeln!(out, "\nwave {}", n + 1);
        let width = wave
            .iter()
            .map(|&i| plan.tasks[i].id.len())
            .max()
            .unwrap_or(0);
        for &i in wave {
            let task = &plan.tasks[i];
            let _ = writeln!(
                out,
                "  {:width$}  {}",
                task.id,
                reason(plan, i, &maybe_skipped)
            );
            let reached = functions.get(&task.import.as_deref());
            for call in calls(task, capabilities, reached) {
                let _ = writeln!(out, "  {:width$}    would call {call}", "");
            }
        }
    }
    out
}

/// Steps grouped by their longest chain of predecessors, each group in
/// start order (priority, then file order).
fn waves(plan: &Plan) -> Vec<Vec<usize>> {
    let order = petgraph::algo::toposort(&plan.graph, None).unwrap_or_default();
    let mut level = vec![0usize; plan.tasks.len()];
    for n in order {
        level[n.index()] = plan
            .graph
            .neighbors_directed(n, Direction::Incoming)
            .map(|p| level[p.index()] + 1)
            .max()
            .unwrap_or(0);
    }
    // Finally steps come after every other.
    let last = (0..plan.tasks.len())
        .filter(|&i| !plan.tasks[i].finally)
        .map(|i| level[i])
        .max()
        .map_or(0, |m| m + 1);
    for (i, task) in plan.tasks.iter().enumerate() {
        if task.finally {
            level[i] = last;
        }
    }
    let mut waves: Vec<Vec<usize>> = vec![Vec::new(); level.iter().max().map_or(0, |m| m + 1)];
    for (i, &l) in level.iter().enumerate() {
        waves[l].push(i);
    }
    for wave in &mut waves {
        wave.sort_by_key(|&i| (-plan.tasks[i].priority, i));
    }
    waves
}

fn ordering_predecessors(plan: &Plan, i: usize) -> Vec<usize> {
    let mut needs: Vec<usize> = plan
        .graph
        .edges_directed(Plan::node(i), Direction::Incoming)
        .filter(|e| e.weight().kind.is_ordering())
        .map(|e| e.source().index())
        .collect();
    needs.sort_unstable();
    needs
}

fn reason(plan: &Plan, i: usize, maybe_skipped: &[bool]) -> String {
    let task = &plan.tasks[i];
    let node = Plan::node(i);
    let mut needs = Vec::new();
    let mut routes = Vec::new();
    let mut edges: Vec<_> = plan
        .graph
        .edges_directed(node, Direction::Incoming)
        .collect();
    edges.sort_by_key(|e| e.source().index());
    for edge in edges {
        let from = &plan.tasks[edge.source().index()];
        match edge.weight().kind {
            EdgeKind::Needs | EdgeKind::OnSuccess | EdgeKind::After => {
                let id = format!("`{}`", from.id);
                if !needs.contains(&id) {
                    needs.push(id);
                }
            }
            EdgeKind::OnFailure => routes.push(format!("if `{}` fails", from.id)),
            EdgeKind::OnReject => routes.push(format!("if `{}` is rejected", from.id)),
            EdgeKind::Branch { index } => routes.push(format!(
                "if `{}` chooses it (when {})",
                from.id,
                from.branch(index).condition.text
            )),
            EdgeKind::Else => routes.push(format!("if `{}` takes its `else`", from.id)),
        }
    }
    let mut parts = Vec::new();
    parts.push(task.kind().word().to_owned());
    if task.finally {
        parts.push("finally: after every other step, whatever happened".to_owned());
    } else if !needs.is_empty() {
        parts.push(format!("after {}", needs.join(", ")));
    } else if routes.is_empty() {
        parts.push("ready at the start".to_owned());
    }
    if !routes.is_empty() {
        parts.push(format!(
            "runs only {}; skipped otherwise",
            routes.join(" or ")
        ));
    }
    for entry in &task.qualified {
        let names: Vec<String> = entry.iter().map(|n| format!("`{n}`")).collect();
        parts.push(match names.as_slice() {
            [one] => format!("runs only if {one}; skipped otherwise"),
            _ => format!(
                "runs only if any of {} holds; skipped otherwise",
                names.join(", ")
            ),
        });
    }
    let preds = ordering_predecessors(plan, i);
    if !preds.is_empty() && preds.iter().all(|&p| maybe_skipped[p]) {
        let ids: Vec<String> = preds
            .iter()
            .map(|&p| format!("`{}`", plan.tasks[p].id))
            .collect();
        parts.push(format!(
            "skipped if {} {} skipped",
            ids.join(" and "),
            if ids.len() == 1 { "is" } else { "are" }
        ));
    }
    if let Some(when) = &task.when {
        parts.push(format!("skipped unless `{}`", when.text));
    }
    match &task.step {
        Step::Decision(decision) => {
            let mut choices: Vec<String> = decision
                .branches
                .iter()
                .map(|b| format!("`{}` when {}", b.target, b.condition.text))
                .collect();
            match &decision.else_target {
                Some(e) => choices.push(format!("else `{e}`")),
                None => choices.push("fails if none holds".to_owned()),
            }
            parts.push(format!("chooses {}", choices.join(", ")));
        }
        Step::Gate(gate) => {
            let checks = if gate.checks.is_empty() {
                String::new()
            } else {
                format!(" (checks: {})", gate.checks.join("; "))
            };
            parts.push(format!("waits for approval{checks}"));
        }
        Step::Task => {
            if let Some(each) = &task.each {
                let limit = each
                    .max_parallel
                    .map(|n| format!(", at most {n} at once"))
                    .unwrap_or_default();
                parts.push(match static_count(&each.over) {
                    Some(1) => format!("1 instance (`each: {}`){limit}", each.over.text),
                    Some(n) => format!("{n} instances (`each: {}`){limit}", each.over.text),
                    None => format!("one instance per element of `{}`{limit}", each.over.text),
                });
            }
            if let Some(repeat) = &task.repeat {
                let max = repeat.max;
                let times = if max == 1 { "time" } else { "times" };
                parts.push(match &repeat.until {
                    Some(until) => format!(
                        "runs up to {max} {times} until `{}` (fails if it never holds)",
                        until.text
                    ),
                    None => format!("runs {max} {times}"),
                });
            }
            if let Some(call) = &task.call {
                let steps = plan.library.get(call.plan).map_or(0, |p| p.tasks.len());
                let noun = if steps == 1 { "step" } else { "steps" };
                parts.push(format!(
                    "runs `{}` ({steps} {noun}) as a child run",
                    call.reference
                ));
            }
            if task.retry.count > 0 {
                parts.push(format!("up to {} attempts", task.retry.count + 1));
            }
            if let Some(fallback) = &task.fallback {
                parts.push(format!("on failure -> `{fallback}`"));
            }
        }
    }
    parts.join("; ")
}

/// How many elements an `each:` has when the plan says it outright: a
/// literal array, or `range(a, b)` of two whole numbers.
fn static_count(over: &Script) -> Option<usize> {
    let ast = over.ast.as_ref()?;
    let [rhai::Stmt::Expr(expr)] = ast.statements() else {
        return None;
    };
    match &**expr {
        Expr::Array(items, _) => Some(items.len()),
        Expr::FnCall(call, _) if call.name == "range" && call.args.len() == 2 => {
            match (&call.args[0], &call.args[1]) {
                (Expr::IntegerConstant(from, _), Expr::IntegerConstant(to, _)) => {
                    Some(usize::try_from(to.saturating_sub(*from)).unwrap_or(0))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The capability calls in a task's code, as `name("literal")` or `name(…)`,
/// and those it makes through the plan's `functions:` (`name(…) via f(…)`).
fn calls(
    task: &Task,
    capabilities: &Capabilities,
    functions: Option<&HashMap<String, Vec<String>>>,
) -> Vec<String> {
    use cairn_lang::script::CompileMode::{Expression, Script as Body};
    let scripts: Vec<(&Script, _)> = task
        .run
        .iter()
        .map(|s| (s, Body))
        .chain(task.input.iter().map(|(_, s)| (s, Expression)))
        .chain(task.expect.iter().map(|s| (s, Expression)))
        .chain(task.when.as_deref().map(|s| (s, Expression)))
        .chain(task.each.as_deref().map(|e| (&e.over, Expression)))
        .collect();
    let mut out = Vec::new();
    for (script, mode) in scripts {
        // The script's own code, its closures and `fn`s with it: its
        // compiled form also holds every function of the plan, called or not.
        let Ok(own) = cairn_lang::script::compile(&script.text, mode) else {
            continue;
        };
        own.walk(&mut |path: &[ASTNode]| {
            if let Some(ASTNode::Expr(Expr::FnCall(call, _) | Expr::MethodCall(call, _))) =
                path.last()
            {
                if let Some(capability) = capabilities.providing(&call.name) {
                    let first = match call.args.first() {
                        Some(Expr::StringConstant(s, _)) => format!("{s:?}"),
                        Some(_) => "…".to_owned(),
                        None => String::new(),
                    };
                    let more = if call.args.len() > 1 { ", …" } else { "" };
                    out.push(format!(
                        "{}({first}{more})  [{}]",
                        call.name, capability.name
                    ));
                } else if let Some(reached) = functions.and_then(|f| f.get(call.name.as_str())) {
                    for called in reached {
                        if let Some(capability) = capabilities.providing(called) {
                            out.push(format!(
                                "{called}(…) via {}(…)  [{}]",
                                call.name, capability.name
                            ));
                        }
                    }
                }
            }
            true
        });
    }
    out
}
