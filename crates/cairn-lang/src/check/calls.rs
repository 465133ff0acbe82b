//! `plan:`: checking the plans tasks run as child runs, into one library.
//!
//! Every plan a `plan:` task names, at any depth, is checked once and kept
//! in the root plan's [`Plan::library`]; a task points at its entry by
//! index. A plan that calls itself (directly or through others) finds its
//! own entry while it is still being checked, so recursion is one entry and
//! the run bounds its depth. What needs the called plan checked (its params,
//! its capabilities) is checked once every plan is.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::imports::Link;
use super::resolve::{Found, Resolver};
use crate::diagnostic::{Code, Diagnostic};
use crate::plan::Plan;
use crate::script::Capabilities;
use crate::source::Source;
use crate::span::{Span, Spanned};
use crate::syntax::ast::CallSpec;

/// The plans `plan:` tasks run, checked once each.
pub struct Library {
    /// The identity of the plan being checked: a call back to it checks its
    /// file again as an entry, without reporting its problems twice.
    root: String,
    /// `None` while an entry is checked, or when it has errors.
    plans: Vec<Option<Plan>>,
    by_identity: HashMap<String, usize>,
    calls: Vec<Pending>,
}

/// The task a `plan:` is in.
pub struct Caller<'a> {
    pub task: &'a str,
    pub using: &'a [String],
    /// Its header line.
    pub header: Span,
}

/// A call whose checks wait until the plan it names is checked.
struct Pending {
    source: Arc<Source>,
    plan: usize,
    task: String,
    reference: Spanned<String>,
    with: Vec<Spanned<String>>,
    using: Vec<String>,
    header: Span,
}

impl Library {
    /// An empty library for checking the plan `root` identifies.
    pub fn new(root: &Link) -> Self {
        Self {
            root: root.identity.clone(),
            plans: Vec::new(),
            by_identity: HashMap::new(),
            calls: Vec::new(),
        }
    }

    /// The library index of the plan `spec` names (checking it if it is
    /// new), or `None` when it cannot be found or has errors (reported).
    pub fn call(
        &mut self,
        source: &Arc<Source>,
        caller: Caller<'_>,
        spec: &CallSpec,
        capabilities: &Capabilities,
        resolver: &dyn Resolver,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<usize> {
        let reference = &spec.reference;
        let Found {
            identity,
            source: text,
            file,
        } = match resolver.resolve(source, &reference.value) {
            Ok(found) => found,
            Err(why) => {
                diagnostics.push(
                    Diagnostic::error(
                        Code::UnknownPlan,
                        source,
                        format!(
                            "`plan:` names `{}`, which cannot be run: {why}",
                            reference.value
                        ),
                    )
                    .label(reference.span, "no such template or plan file")
                    .help(super::resolve::not_found_help(resolver, &reference.value)),
                );
                return None;
            }
        };
        let index = match self.by_identity.get(&identity) {
            Some(&index) => index,
            None => {
                let index = self.plans.len();
                self.plans.push(None);
                self.by_identity.insert(identity.clone(), index);
                let chain = [Link {
                    identity: identity.clone(),
                    shown: text.name().to_owned(),
                }];
                let (mut found, plan) =
                    super::run(&text, capabilities, resolver, &chain, None, self);
                let failed = found.iter().any(Diagnostic::is_error);
                // The plan being checked reports its own problems once.
                if identity != self.root {
                    diagnostics.append(&mut found);
                }
                let origin = crate::plan::Origin {
                    file,
                    sha256: crate::source::sha256(text.text()),
                };
                self.plans[index] = plan.filter(|_| !failed).map(|plan| Plan {
                    origin: Some(origin),
                    ..plan
                });
                index
            }
        };
        self.calls.push(Pending {
            source: Arc::clone(source),
            plan: index,
            task: caller.task.to_owned(),
            reference: reference.clone(),
            with: spec.with.iter().map(|(name, _)| name.clone()).collect(),
            using: caller.using.to_vec(),
            header: caller.header,
        });
        Some(index)
    }

    /// Checks every call against the plan it names, and gives the entries
    /// (`None` when one has errors, which were reported).
    pub fn finish(self, diagnostics: &mut Vec<Diagnostic>) -> Option<Vec<Plan>> {
        for call in &self.calls {
            let Some(plan) = &self.plans[call.plan] else {
                continue;
            };
            for name in &call.with {
                if !plan.params.iter().any(|p| p.name == name.value) {
                    diagnostics.push(unknown_param(call, plan, name));
                }
            }
            let used: BTreeSet<&str> = plan
                .tasks
                .iter()
                .flat_map(|t| t.using.iter().map(String::as_str))
                .collect();
            let missing: Vec<&str> = used
                .into_iter()
                .filter(|capability| !call.using.iter().any(|u| u == capability))
                .collect();
            if !missing.is_empty() {
                diagnostics.push(not_granted(call, &missing));
            }
        }
        self.plans.into_iter().collect()
    }
}

/// One diagnostic per call, naming every capability the caller lacks.
fn not_granted(call: &Pending, missing: &[&str]) -> Diagnostic {
    let names: Vec<String> = missing.iter().map(|c| format!("`{c}`")).collect();
    let names = match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    };
    let using = missing.join(",");
    Diagnostic::error(
        Code::CallNotGranted,
        &call.source,
        format!(
            "`{}` has steps that use {names}, which task `{}` does not grant",
            call.reference.value, call.task
        ),
    )
    .label(call.header, format!("no `using:{using}` here"))
    .label(
        call.reference.span,
        "runs with at most the task's capabilities",
    )
    .help(format!(
        "a sub-plan can do no more than the task that runs it: add `using:{using}` to `{}` (and allow {} in this plan)",
        call.task,
        if missing.len() == 1 { "it" } else { "them" }
    ))
}

fn unknown_param(call: &Pending, plan: &Plan, name: &Spanned<String>) -> Diagnostic {
    let known: Vec<String> = plan
        .params
        .iter()
        .map(|p| format!("`{}`", p.name))
        .collect();
    Diagnostic::error(
        Code::UnknownParam,
        &call.source,
        format!("`{}` has no param `{}`", call.reference.value, name.value),
    )
    .label(name.span, "not a param of the plan it runs")
    .help(
        super::suggest::did_you_mean(
            &name.value,
            plan.params.iter().map(|p| p.name.as_str()),
            |c| format!("`{c}`"),
        )
        .unwrap_or_else(|| {
            if known.is_empty() {
                "the plan it runs has no params".to_owned()
            } else {
                format!("its params are {}", known.join(", "))
            }
        }),
    )
}
