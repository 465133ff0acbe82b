//! `use`: checking imported plans and bringing their steps in as `alias.id`.

use std::sync::Arc;

use super::lower::{Header, StepRefs, Use};
use super::resolve::{Found, Resolver};
use crate::diagnostic::{Code, Diagnostic};
use crate::plan::{EdgeKind, Hypothesis, Import, Task};
use crate::script::Capabilities;
use crate::source::Source;
use crate::span::{Span, Spanned};

/// The steps, imports and hypotheses a plan's `use` lines bring in.
#[derive(Default)]
pub struct Imported {
    pub tasks: Vec<Task>,
    /// Targets of the imported steps, pointing at their `use` line.
    pub refs: Vec<StepRefs<'static>>,
    pub imports: Vec<Import>,
    pub hypotheses: Vec<Hypothesis>,
    /// Aliases whose plan could not be imported: references into them are
    /// not reported again.
    pub failed: Vec<String>,
}

/// A plan in a chain of imports: what identifies it, and how to show it.
#[derive(Clone, Debug)]
pub struct Link {
    pub(super) identity: String,
    pub(super) shown: String,
}

/// The plan being checked, as the start of a chain of imports.
pub fn start(source: &Source, resolver: &dyn Resolver) -> Link {
    Link {
        identity: resolver.identity(source),
        shown: source.name().to_owned(),
    }
}

/// Checks every imported plan (reporting its problems in its own file) and
/// renames its steps under the alias.
pub fn bring_in(
    source: &Arc<Source>,
    header: &Header<'_>,
    capabilities: &Capabilities,
    resolver: &dyn Resolver,
    chain: &[Link],
    library: &mut super::calls::Library,
    diagnostics: &mut Vec<Diagnostic>,
) -> Imported {
    let mut imported = Imported::default();
    for import in &header.uses {
        let reference = &import.reference;
        let Found {
            identity,
            source: text,
            file,
        } = match resolver.resolve(source, &reference.value) {
            Ok(found) => found,
            Err(why) => {
                imported.failed.push(import.alias.value.clone());
                diagnostics.push(
                    Diagnostic::error(
                        Code::UnknownImport,
                        source,
                        format!(
                            "`use` names `{}`, which cannot be imported: {why}",
                            reference.value
                        ),
                    )
                    .label(reference.span, "no such template or plan file")
                    .help(super::resolve::not_found_help(resolver, &reference.value)),
                );
                continue;
            }
        };
        if let Some(start) = chain.iter().position(|c| c.identity == identity) {
            imported.failed.push(import.alias.value.clone());
            let mut path: Vec<&str> = chain[start..].iter().map(|c| c.shown.as_str()).collect();
            path.push(text.name());
            diagnostics.push(
                Diagnostic::error(
                    Code::ImportCycle,
                    source,
                    format!("`use` imports plans in a cycle: {}", path.join(" → ")),
                )
                .label(
                    reference.span,
                    "imports a plan that is already being imported",
                )
                .help("a plan cannot import itself, directly or through others; remove one `use`"),
            );
            continue;
        }
        let mut deeper = chain.to_vec();
        deeper.push(Link {
            identity,
            shown: text.name().to_owned(),
        });
        let (mut found, plan) = super::run(&text, capabilities, resolver, &deeper, None, library);
        let failed = found.iter().any(Diagnostic::is_error);
        diagnostics.append(&mut found);
        let Some(plan) = plan.filter(|_| !failed) else {
            imported.failed.push(import.alias.value.clone());
            continue;
        };
        for (name, _) in &import.with {
            if !plan.params.iter().any(|p| p.name == name.value) {
                let known: Vec<String> = plan
                    .params
                    .iter()
                    .map(|p| format!("`{}`", p.name))
                    .collect();
                diagnostics.push(
                    Diagnostic::error(
                        Code::UnknownParam,
                        source,
                        format!("`{}` has no param `{}`", reference.value, name.value),
                    )
                    .label(name.span, "not a param of the imported plan")
                    .help(
                        super::suggest::did_you_mean(
                            &name.value,
                            plan.params.iter().map(|p| p.name.as_str()),
                            |c| format!("`{c}`"),
                        )
                        .unwrap_or_else(|| {
                            if known.is_empty() {
                                "the imported plan has no params".to_owned()
                            } else {
                                format!("its params are {}", known.join(", "))
                            }
                        }),
                    ),
                );
            }
        }
        let sha256 = crate::source::sha256(text.text());
        add(&mut imported, import, plan, file, sha256);
    }
    imported
}

fn add(
    imported: &mut Imported,
    import: &Use,
    plan: crate::plan::Plan,
    file: Option<String>,
    sha256: String,
) {
    let alias = &import.alias.value;
    let prefix = |id: &str| format!("{alias}.{id}");
    imported.imports.push(Import {
        alias: alias.clone(),
        reference: import.reference.value.clone(),
        parent: None,
        params: plan.params,
        with: import
            .with
            .iter()
            .map(|(n, s)| (n.value.clone(), s.clone()))
            .collect(),
        allow: plan.allow,
        functions: plan.functions,
        file,
        sha256,
    });
    for mut inner in plan.imports {
        inner.parent = Some(inner.parent.map_or_else(|| alias.clone(), |p| prefix(&p)));
        inner.alias = prefix(&inner.alias);
        imported.imports.push(inner);
    }
    for h in plan.hypotheses {
        if !imported.hypotheses.iter().any(|k| k.id == h.id) {
            imported.hypotheses.push(h);
        }
    }
    let at = |id: &str| Spanned::new(id.to_owned(), import.alias.span);
    for mut task in plan.tasks {
        task.id = prefix(&task.id);
        task.needs = task.needs.iter().map(|n| prefix(n)).collect();
        for need in task.qualified.iter_mut().flatten() {
            need.id = prefix(&need.id);
        }
        task.fallback = task.fallback.as_deref().map(prefix);
        task.on_success = task.on_success.as_deref().map(prefix);
        if let crate::plan::Step::Gate(gate) = &mut task.step {
            gate.on_reject = gate.on_reject.as_deref().map(prefix);
        }
        if let Some(decision) = task.step.decision_mut() {
            decision.else_target = decision.else_target.as_deref().map(prefix);
            for branch in &mut decision.branches {
                branch.target = prefix(&branch.target);
            }
        }
        task.reads = task.reads.iter().map(|r| prefix(r)).collect();
        task.import = Some(
            task.import
                .map_or_else(|| alias.clone(), |inner| prefix(&inner)),
        );
        // Spans inside the imported file mean nothing here.
        task.span = Span::new(import.span.start, import.span.start);
        let fallback = task.fallback.iter().map(|t| (EdgeKind::OnFailure, at(t)));
        let on_success = task.on_success.iter().map(|t| (EdgeKind::OnSuccess, at(t)));
        let on_reject = match &task.step {
            crate::plan::Step::Gate(gate) => gate.on_reject.as_deref(),
            _ => None,
        };
        let on_reject = on_reject.map(|t| (EdgeKind::OnReject, at(t)));
        let decision = task.step.decision();
        let branches = decision
            .into_iter()
            .flat_map(|d| d.branches.iter().enumerate());
        let branches = branches.map(|(index, b)| (EdgeKind::Branch { index }, at(&b.target)));
        let otherwise = decision.and_then(|d| d.else_target.as_ref());
        let otherwise = otherwise.map(|t| (EdgeKind::Else, at(t)));
        let routes = fallback
            .chain(on_reject)
            .chain(on_success)
            .chain(branches)
            .chain(otherwise);
        imported.refs.push(StepRefs {
            needs: task.needs.iter().map(|n| at(n)).collect(),
            after: task.qualified.iter().flatten().map(|n| at(&n.id)).collect(),
            routes: routes.collect(),
            using: Vec::new(),
            resources: Vec::new(),
            code: Vec::new(),
            call: None,
        });
        imported.tasks.push(task);
    }
}
