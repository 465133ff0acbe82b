//! Evaluating a Rhai line at the prompt, in the plan's scope.

use std::path::Path;
use std::sync::Arc;

use rhai::{Dynamic, Map};

use super::Session;
use cairn_engine::run::{self, Settled};
use cairn_engine::script::context::{self, StepContext};

impl Session {
    /// Evaluates a Rhai expression with `params`, `outputs` and the next
    /// ready step's `input`, and prints its value.
    pub(super) fn eval(&mut self, code: &str) -> Result<(), String> {
        let value = self.value_of(code, None)?;
        println!("{}", shown(&value));
        Ok(())
    }

    /// The value of a Rhai expression (or statements) with `params`,
    /// `outputs` and the `input` of step `step` (the next ready step's when
    /// `None`); `let` variables stay for the session.
    pub(super) fn value_of(&mut self, code: &str, step: Option<&str>) -> Result<Dynamic, String> {
        let history = self
            .store
            .history(&self.run_id)
            .map_err(|e| e.to_string())?;
        let inputs = self.store.source(&self.run_id).map_err(|e| e.to_string())?;
        let params = run::param_values(&self.plan, &inputs.params, &self.engine)
            .map_err(|e| e.to_string())?;
        let mut outputs = Map::new();
        for (id, settled) in history.settled_steps() {
            let value = match settled {
                Settled::Succeeded { output, .. } => output.clone(),
                Settled::Chose { target, .. } => serde_json::Value::String(target.clone()),
                _ => continue,
            };
            outputs.insert(
                id.into(),
                rhai::serde::to_dynamic(&value).unwrap_or(Dynamic::UNIT),
            );
        }
        // The hypotheses with the evidence the run weighed so far, so
        // `confidence(…)` and `best_hypothesis()` answer as in a step.
        let hypotheses = context::Hypotheses::new(
            self.plan
                .hypotheses
                .iter()
                .map(|h| (h.id.clone(), h.statement.clone()))
                .collect(),
        );
        for (id, tally) in history.hypotheses() {
            let verdicts = [
                ("supports", tally.supports),
                ("refutes", tally.refutes),
                ("neutral", tally.neutral),
            ];
            for (verdict, count) in verdicts {
                for _ in 0..count {
                    // (Evidence for a hypothesis the plan no longer has is dropped.)
                    let _ = hypotheses.add(&id, verdict);
                }
            }
        }
        let dir = crate::cli::plan_dir(Path::new(&self.file));
        let ctx = Arc::new(StepContext {
            hypotheses: Arc::new(hypotheses),
            confinement: Arc::new(cairn_engine::script::confine::Confinement::new(
                &dir,
                Some(&self.state_dir),
            )),
            on_note: Some(Arc::new(|_: &str, note: context::Note<'_>| {
                if let context::Note::Log(line) = note {
                    println!("log: {line}");
                }
            })),
            capabilities: Arc::new(cairn_engine::stdlib::registry().capabilities().clone()),
            blobs: Some(Arc::from(self.state_dir.join("blobs"))),
            ..StepContext::outside_a_run("repl", &dir, inputs.seed)
        });
        let mut scope = std::mem::take(&mut self.vars);
        scope.set_or_push("params", params.clone());
        scope.set_or_push("outputs", Dynamic::from_map(outputs.clone()));
        // The next ready step's input, as it would see it.
        let mut input = Map::new();
        let next = match step {
            Some(step) => Some(step.to_owned()),
            None => self.probe().ready.first().cloned(),
        };
        let part = |id: &str| cairn_lang::plan::part_of(id).unwrap_or(id).to_owned();
        if let Some(next) = next.and_then(|id| self.plan.task(&part(&id))) {
            for (key, script) in &next.input {
                if let Ok(value) = context::enter(&ctx, || {
                    let mut s = rhai::Scope::new();
                    s.push_dynamic("params", params.clone());
                    s.push_dynamic("outputs", Dynamic::from_map(outputs.clone()));
                    for name in ["input", "task", "result", "failure"] {
                        s.push_dynamic(name, Dynamic::UNIT);
                    }
                    match &script.ast {
                        // Compiled with the plan's functions in.
                        Some(ast) => self.engine.eval_ast_with_scope::<Dynamic>(&mut s, ast),
                        None => self.engine.eval_with_scope::<Dynamic>(&mut s, &script.text),
                    }
                }) {
                    input.insert(key.as_str().into(), value);
                }
            }
        }
        scope.set_or_push("input", Dynamic::from_map(input));
        for name in ["task", "result", "failure"] {
            scope.set_or_push(name, Dynamic::UNIT);
        }
        let functions = self.plan.functions.as_ref().and_then(|f| f.ast.clone());
        let result = context::enter(&ctx, || {
            // The plan's `functions:` are callable at the prompt too.
            let line = self.engine.compile_with_scope(&scope, code)?;
            let line = match &functions {
                Some(functions) => functions.merge(&line),
                None => line,
            };
            self.engine
                .eval_ast_with_scope::<Dynamic>(&mut scope, &line)
        });
        self.vars = scope;
        // In the context: an error names the capability a function belongs to.
        result.map_err(|e| context::enter(&ctx, || run::describe_error(&e)))
    }
}

/// A value as the prompt prints it: pretty JSON, `()`, or Rhai's text.
pub(super) fn shown(value: &Dynamic) -> String {
    match rhai::serde::from_dynamic::<serde_json::Value>(value) {
        Ok(json) if !value.is_unit() => {
            serde_json::to_string_pretty(&json).unwrap_or_else(|_| value.to_string())
        }
        Ok(_) => "()".to_owned(),
        Err(_) => value.to_string(),
    }
}
