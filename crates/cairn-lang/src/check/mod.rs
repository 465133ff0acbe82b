//! Stage 2, check: AST → checked [`Plan`], reporting every problem in one pass.

mod calls;
mod fields;
mod graph;
mod imports;
mod index;
mod lower;
mod resolve;
mod rules;
mod scripts;
mod shape;
mod suggest;

use std::collections::HashMap;
use std::sync::Arc;

use crate::diagnostic::{Code, Diagnostic};
use crate::plan::Plan;
use crate::script::Capabilities;
use crate::source::Source;
use crate::syntax::{self, ast::ItemKeyword};

pub use graph::width;
pub use index::{Index, NameKind, Site};
pub use lower::DEFAULT_MAX_PARALLEL;
pub use resolve::{Found, Resolver};
pub use scripts::{reachable_calls, LeftOut, LEFT_OUT};
pub use suggest::closest;

/// The result of checking: the plan when there are no errors, and every
/// diagnostic (warnings too) in file order.
#[derive(Debug)]
pub struct Checked {
    /// The checked plan; `None` when any diagnostic is an error.
    pub plan: Option<Plan>,
    /// Every error and warning: the checked file's first, then each other
    /// file's, each sorted by position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Checks plan text, finding what `use` imports through `resolver`: the
/// check itself reads no file.
pub fn check_using(
    source: &Arc<Source>,
    capabilities: &Capabilities,
    resolver: &dyn Resolver,
) -> Checked {
    checked(source, capabilities, resolver, None)
}

/// [`check_using`], and where each name of the file is defined and used
/// (for an editor: go to definition, references, rename). The index is
/// built only here: checking alone keeps no spans it does not need.
pub fn check_indexed(
    source: &Arc<Source>,
    capabilities: &Capabilities,
    resolver: &dyn Resolver,
) -> (Checked, Index) {
    let mut index = Index::default();
    let checked = checked(source, capabilities, resolver, Some(&mut index));
    index.finish();
    (checked, index)
}

fn checked(
    source: &Arc<Source>,
    capabilities: &Capabilities,
    resolver: &dyn Resolver,
    index: Option<&mut Index>,
) -> Checked {
    let chain = [imports::start(source, resolver)];
    let mut library = calls::Library::new(&chain[0]);
    let (mut diagnostics, plan) = run(source, capabilities, resolver, &chain, index, &mut library);
    let called = library.finish(&mut diagnostics);
    // The checked file's problems first, then each imported or called
    // file's together, each in the order of its text.
    diagnostics.sort_by(|a, b| {
        let (fa, fb) = (a.source.name(), b.source.name());
        ((fa != source.name(), fa), a.offset(), a.severity).cmp(&(
            (fb != source.name(), fb),
            b.offset(),
            b.severity,
        ))
    });
    let plan = plan
        .zip(called)
        .map(|(plan, library)| Plan { library, ..plan });
    Checked {
        plan: plan.filter(|_| !diagnostics.iter().any(Diagnostic::is_error)),
        diagnostics,
    }
}

/// Checks one file; `chain` holds the plans importing it (itself last), to
/// find import cycles; the plans its `plan:` tasks run go into `library`.
fn run(
    source: &Arc<Source>,
    capabilities: &Capabilities,
    resolver: &dyn Resolver,
    chain: &[imports::Link],
    index: Option<&mut Index>,
    library: &mut calls::Library,
) -> (Vec<Diagnostic>, Option<Plan>) {
    let (document, mut diagnostics) = syntax::parse(source);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return (diagnostics, None);
    }
    let items = &document.items;
    let Some(first) = items.first() else {
        diagnostics.push(
            Diagnostic::error(Code::EmptyPlan, source, "the file has no plan in it")
                .help("start with `plan <id> \"Title\"`, then add `task <id> \"Title\"` items"),
        );
        return (diagnostics, None);
    };
    let headers: Vec<_> = items
        .iter()
        .filter(|i| i.keyword.value == ItemKeyword::Plan)
        .collect();
    if first.keyword.value != ItemKeyword::Plan {
        let mut d = Diagnostic::error(
            Code::MissingPlanHeader,
            source,
            "the file does not start with a `plan` header",
        )
        .label(first.keyword.span, "first item");
        if let Some(late) = headers.first() {
            d = d.label(
                late.keyword.span,
                "the plan header must come before every task",
            );
        }
        diagnostics.push(d.help("start the file with `plan <id> \"Title\"` and its settings"));
    }
    for extra in headers.iter().skip(1) {
        diagnostics.push(
            Diagnostic::error(
                Code::DuplicatePlanHeader,
                source,
                "a file holds one plan, but this is a second `plan` header",
            )
            .label(extra.keyword.span, "second header")
            .label(headers[0].keyword.span, "first header")
            .help("split the plans into separate files"),
        );
    }
    let mut lowering = lower::Lowering::new(source, capabilities);
    let header = headers.first().map(|h| lowering.header(h));
    // Imported steps come first, as if their plans' text came before ours.
    let imported = match &header {
        Some(header) => imports::bring_in(
            source,
            header,
            capabilities,
            resolver,
            chain,
            library,
            &mut lowering.diagnostics,
        ),
        None => imports::Imported::default(),
    };
    let mut first_seen: HashMap<&str, &crate::span::Spanned<String>> =
        HashMap::with_capacity(items.len());
    let mut tasks = imported.tasks;
    let mut refs = imported.refs;
    let local_refs = refs.len();
    // Tasks are large; growing the vectors step by step copied them over
    // and over (a fifth of checking a 100,000-task plan).
    tasks.reserve(items.len());
    refs.reserve(items.len());
    for item in items
        .iter()
        .filter(|i| i.keyword.value != ItemKeyword::Plan)
    {
        if let Some(first) = first_seen.get(item.id.value.as_str()) {
            lowering.diagnostics.push(
                Diagnostic::error(
                    Code::DuplicateId,
                    source,
                    format!("`{}` is defined twice", item.id.value),
                )
                .label(item.id.span, "defined again here")
                .label(first.span, "first defined here")
                .help("ids must be unique across the plan; rename one of them"),
            );
            continue;
        }
        first_seen.insert(&item.id.value, &item.id);
        let (mut task, r) = lowering.step(item);
        if let Some(spec) = r.call {
            // Its child's steps are named under it (`s.ship`), as an
            // import's are under its alias: the two must not share a name.
            let alias = header
                .as_ref()
                .and_then(|h| h.uses.iter().find(|u| u.alias.value == task.id));
            if let Some(alias) = alias {
                lowering.diagnostics.push(
                    Diagnostic::error(
                        Code::DuplicateId,
                        source,
                        format!(
                            "`{}` is both the alias of a `use` and a task that runs a plan: their steps would share names (`{}.…`)",
                            task.id, task.id
                        ),
                    )
                    .label(item.id.span, "the task's id")
                    .label(alias.alias.span, "the alias")
                    .help("rename the task or the alias"),
                );
            }
            let caller = calls::Caller {
                task: &task.id,
                using: &task.using,
                header: task.span,
            };
            let diagnostics = &mut lowering.diagnostics;
            let found = library.call(source, caller, spec, capabilities, resolver, diagnostics);
            if let (Some(plan), Some(call)) = (found, task.call.as_deref_mut()) {
                call.plan = plan;
            }
        }
        let reads: std::collections::BTreeSet<&String> = r
            .code
            .iter()
            .flat_map(|c| c.analysis.outputs.iter().map(|(id, _)| id))
            .collect();
        task.reads = reads.into_iter().cloned().collect();
        tasks.push(task);
        refs.push(r);
    }
    diagnostics.append(&mut lowering.diagnostics);
    // A plan that could not be imported was reported; steps naming its
    // steps are not reported again for it.
    // (One pass over the references, looking each one's aliases up: a pass
    // per failed import was quadratic in plans with many `use` lines.)
    if !imported.failed.is_empty() {
        let failed: std::collections::HashSet<&str> =
            imported.failed.iter().map(String::as_str).collect();
        let inside_failed = |id: &str| {
            id.match_indices('.')
                .any(|(dot, _)| failed.contains(&id[..dot]))
        };
        for r in &mut refs {
            r.needs.retain(|n| !inside_failed(&n.value));
            r.after.retain(|n| !inside_failed(&n.value));
            r.routes.retain(|(_, t)| !inside_failed(&t.value));
        }
    }
    let mut graph = graph::build(source, &tasks, &refs, &mut diagnostics);
    graph::finally_unnamed(source, &tasks, &graph, &mut diagnostics);
    graph::mark_conditional(&mut tasks, &graph);
    let Some(header) = header else {
        return (diagnostics, None);
    };
    if let Some(index) = index {
        indexed(index, source, items, &header, &refs[local_refs..]);
    }
    rules::check(
        source,
        &header,
        &tasks,
        &refs,
        &graph,
        capabilities,
        &mut diagnostics,
    );
    let plan = Plan {
        id: header.id,
        title: header.title,
        source: source.name().to_owned(),
        params: header.params.into_iter().map(|(_, p)| p).collect(),
        max_parallel: header.max_parallel,
        resources: header.resources,
        allow: header.allow,
        budget: header.budget,
        on_failure: header.on_failure,
        seed: header.seed,
        default_timeout_ms: header.default_timeout_ms,
        metadata: header.metadata,
        functions: header.functions,
        output: header.output,
        library: Vec::new(),
        origin: None,
        imports: imported.imports,
        hypotheses: {
            let mut all = header.hypotheses;
            for h in imported.hypotheses {
                if !all.iter().any(|k| k.id == h.id) {
                    all.push(h);
                }
            }
            all
        },
        tasks,
        graph: std::mem::take(&mut graph),
    };
    (diagnostics, Some(plan))
}

/// Fills `index` with the file's own definitions and references (imported
/// steps' are in their own files).
fn indexed(
    index: &mut Index,
    source: &Source,
    items: &[syntax::ast::Item],
    header: &lower::Header<'_>,
    refs: &[lower::StepRefs<'_>],
) {
    let mut seen = std::collections::HashSet::new();
    for item in items
        .iter()
        .filter(|i| i.keyword.value != ItemKeyword::Plan)
    {
        if seen.insert(item.id.value.as_str()) {
            index.define(NameKind::Step, &item.id.value, item.id.span);
        }
    }
    for (name, _) in &header.params {
        index.define(NameKind::Param, &name.value, name.span);
    }
    for id in &header.hypothesis_ids {
        index.define(NameKind::Hypothesis, &id.value, id.span);
    }
    for import in &header.uses {
        index.define(NameKind::Alias, &import.alias.value, import.alias.span);
    }
    let code_refs = |index: &mut Index, uses: &[lower::CodeUse<'_>]| {
        for code in uses {
            for (id, position) in &code.analysis.outputs {
                let span = scripts::find_after(source, code.code, *position, id);
                index.refer(NameKind::Step, id, span);
            }
            for (name, position) in &code.analysis.params {
                let span = scripts::find_after(source, code.code, *position, name);
                index.refer(NameKind::Param, name, span);
            }
        }
    };
    code_refs(index, &header.param_code);
    for r in refs {
        let routes = r.routes.iter().map(|(_, t)| t);
        for target in r.needs.iter().chain(&r.after).chain(routes) {
            index.refer(NameKind::Step, &target.value, target.span);
            // `alias.id` names the alias too.
            if let Some((alias, _)) = target.value.split_once('.') {
                let span =
                    crate::span::Span::new(target.span.start, target.span.start + alias.len());
                index.refer(NameKind::Alias, alias, span);
            }
        }
        for capability in &r.using {
            index.refer(NameKind::Capability, &capability.value, capability.span);
        }
        code_refs(index, &r.code);
    }
}
