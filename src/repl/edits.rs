//! What the REPL changes in a run: `:skip`'s event, `:retry`, `:set`,
//! `:approve` / `:reject` and `:reload`.

use std::path::Path;
use std::sync::Arc;

use super::{checked, Session, SKIPPED_BY_HAND};
use cairn_engine::run::{Changes, Event, Settled};
use cairn_lang::plan::Plan;
use cairn_store::services;

impl Session {
    pub(super) fn append(&self, event: Event) -> Result<(), String> {
        self.store
            .append(&self.run_id, &event)
            .map_err(|e| e.to_string())
    }

    /// Drops the outcome of a settled step and of every settled step after it.
    pub(super) fn retry(&self, step: &str) -> Result<(), String> {
        let history = self
            .store
            .history(&self.run_id)
            .map_err(|e| e.to_string())?;
        if history.settled(step).is_none() {
            return Err(format!(
                "`{step}` has not settled; `:step {step}` runs it when it is ready"
            ));
        }
        let changes = Changes {
            edited: vec![step.to_owned()],
            ..Changes::default()
        };
        let reset = stale(&changes, &self.plan, &history);
        for id in &reset {
            self.append(Event::StepReset {
                step: id.clone(),
                reason: format!("`:retry {step}`"),
                keep_parts: false,
            })?;
        }
        println!("will run again: {}", reset.join(", "));
        Ok(())
    }

    pub(super) fn set(&self, param: &str, value: &str) -> Result<(), String> {
        if !self.plan.params.iter().any(|p| p.name == param) {
            let close =
                cairn_lang::check::closest(param, self.plan.params.iter().map(|p| p.name.as_str()));
            return Err(match close {
                Some(c) => format!("no param `{param}`; did you mean `{c}`?"),
                None => format!("no param `{param}`"),
            });
        }
        let mut params = self
            .store
            .source(&self.run_id)
            .map_err(|e| e.to_string())?
            .params;
        params.retain(|(n, _)| n != param);
        params.push((param.to_owned(), value.to_owned()));
        // Read as `--set` reads it, before it is kept: a value of the wrong
        // type would fail every later step that reads params.
        cairn_engine::run::check_params(&self.plan, &params).map_err(|e| e.to_string())?;
        self.store
            .replace_params(&self.run_id, &params)
            .map_err(|e| e.to_string())?;
        println!("params.{param} = {value} for the steps that have not run yet");
        Ok(())
    }

    pub(super) fn answer(&self, gate: &str, approved: bool, reason: &str) -> Result<(), String> {
        let by = std::env::var("USER").unwrap_or_else(|_| "repl".to_owned());
        // Leading `field=value` words are the gate's input; the rest is why.
        let mut given = Vec::new();
        let mut rest = reason.trim_start();
        while let Some((word, after)) = rest
            .split_once(char::is_whitespace)
            .or(Some((rest, "")))
            .filter(|(w, _)| is_input_word(w))
        {
            let (name, value) = word.split_once('=').expect("an input word has `=`");
            given.push((name.to_owned(), value.to_owned()));
            rest = after.trim_start();
        }
        let reason = rest;
        let reason = if reason.is_empty() {
            "answered in the REPL"
        } else {
            reason
        };
        let done = |gate: &str| {
            println!(
                "{} `{gate}`",
                if approved { "approved" } else { "rejected" }
            );
        };
        // A gate of a `plan:` step's child run (`round.ship`) is answered in
        // the child's log; the child goes on from it when the step runs again.
        let waiting =
            services::waiting_gates(&self.store, &self.run_id, "").map_err(|e| e.to_string())?;
        if let Some(found) = waiting
            .iter()
            .find(|w| w.name == gate && w.run != self.run_id)
        {
            services::answer_waiting(
                &self.store,
                &self.run_id,
                found,
                approved,
                reason,
                by,
                &given,
            )
            .map_err(|e| e.to_string())?;
            done(gate);
            return Ok(());
        }
        let gate = self.step_id(gate)?;
        if !self.waiting_gates().contains(&gate) {
            return Err(format!("gate `{gate}` is not waiting for an answer"));
        }
        let history = self
            .store
            .history(&self.run_id)
            .map_err(|e| e.to_string())?;
        if approved && history.gate_expired(&gate) {
            return Err(format!(
                "gate `{gate}` timed out before it was answered; `:run` rejects it"
            ));
        }
        let reason = reason.to_owned();
        let fields = self
            .plan
            .tasks
            .iter()
            .find(|t| t.id == gate)
            .and_then(|t| match &t.step {
                cairn_lang::plan::Step::Gate(g) => Some(g.input.as_slice()),
                _ => None,
            })
            .unwrap_or_default();
        let input = match approved {
            true => cairn_lang::plan::complete(fields, &given).map_err(|problems| {
                format!(
                    "gate `{gate}` cannot be approved with this input:\n  {}\n(`:approve {gate} field=value … [reason]`)",
                    problems.join("\n  ")
                )
            })?,
            false if !given.is_empty() => {
                return Err("input answers an approval; a rejection takes only a reason".into())
            }
            false => serde_json::Map::new(),
        };
        let event = if approved {
            Event::GateApproved {
                step: gate.clone(),
                by,
                reason,
                input,
                at_ms: 0,
            }
        } else {
            Event::GateRejected {
                step: gate.clone(),
                by,
                reason,
                at_ms: 0,
            }
        };
        self.append(event)?;
        done(&gate);
        Ok(())
    }

    /// Re-reads the plan file: changed steps and what depends on them run again.
    pub(super) fn reload(&mut self) -> Result<(), String> {
        let path = Path::new(&self.file);
        if !path.exists() {
            return Err(format!(
                "`{}` is not a file (a template cannot change)",
                self.file
            ));
        }
        let source = cairn_engine::read::read(path).map_err(|e| e.to_string())?;
        let plan = checked(&source)
            .map_err(|_| "the edited plan has errors (above); nothing changed".to_owned())?;
        let changes = Changes::between(&self.plan, &plan);
        if changes.is_empty() {
            println!("no step changed");
        }
        for (what, ids) in [
            ("added", &changes.added),
            ("removed", &changes.removed),
            ("edited", &changes.edited),
        ] {
            if !ids.is_empty() {
                println!("{what}: {}", ids.join(", "));
            }
        }
        let history = self
            .store
            .history(&self.run_id)
            .map_err(|e| e.to_string())?;
        let invalidated = stale(&changes, &plan, &history);
        self.store
            .replace_source(&self.run_id, source.text(), &plan)
            .map_err(|e| e.to_string())?;
        // An edited gate that is still waiting waits afresh (its new
        // `timeout:` counts from now).
        let regated = changes
            .edited
            .iter()
            .filter(|s| history.gate_expiry(s).is_some());
        for id in invalidated.iter().chain(regated) {
            self.append(Event::StepReset {
                step: id.clone(),
                reason: "the plan changed".to_owned(),
                keep_parts: false,
            })?;
        }
        if !invalidated.is_empty() {
            println!("will run again: {}", invalidated.join(", "));
        } else if !changes.is_empty() {
            println!("every recorded result still stands");
        }
        self.plan = Arc::new(plan);
        Ok(())
    }
}

/// The settled steps a change invalidates; steps skipped by hand stay skipped.
fn stale(changes: &Changes, plan: &Plan, history: &cairn_store::History) -> Vec<String> {
    changes.invalidated(plan, |id| match history.settled(id) {
        Some(Settled::Skipped { reason }) => reason != SKIPPED_BY_HAND,
        Some(_) => true,
        None => false,
    })
}

/// `percent=25`: a word naming a gate input field and its value.
fn is_input_word(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    })
}
