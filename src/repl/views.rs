//! What the REPL shows: `:plan`, `:status` and `:inspect`.

use crate::cli::report;

use super::{compact, Session};

impl Session {
    pub(super) fn show_plan(&self) {
        let history = self.store.history(&self.run_id).unwrap_or_default();
        let steps = self.store.steps(&self.run_id).unwrap_or_default();
        let probe = self.probe();
        let rows: Vec<[String; 3]> = self
            .plan
            .tasks
            .iter()
            .map(|t| {
                let status = steps
                    .iter()
                    .find(|s| s.step == t.id)
                    .map_or("not run", |s| s.status.word())
                    .to_owned();
                let status = if probe.ready.contains(&t.id) && history.settled(&t.id).is_none() {
                    "ready".to_owned()
                } else {
                    status
                };
                let mut note = String::new();
                if self.breaks.contains_key(&t.id) {
                    note.push_str("[break] ");
                }
                let waits = self.waits_for(&t.id, &history);
                if !waits.is_empty() && history.settled(&t.id).is_none() {
                    note.push_str(&format!("waits for {}", waits.join(", ")));
                }
                [t.id.clone(), status, note]
            })
            .collect();
        print!("{}", report::table(["step", "status", ""], &rows));
    }

    pub(super) fn status(&self) -> Result<(), String> {
        let row = self
            .store
            .find(Some(&self.run_id))
            .map_err(|e| e.to_string())?;
        println!(
            "run {} of `{}` ({}): {}/{} steps settled",
            row.id,
            self.plan.id,
            self.file,
            self.done(),
            self.plan.tasks.len()
        );
        let probe = self.probe();
        let waiting = self.waiting_gates();
        let ready: Vec<&String> = probe
            .ready
            .iter()
            .filter(|r| !waiting.contains(r))
            .collect();
        if !ready.is_empty() {
            println!(
                "ready: {}",
                ready
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !waiting.is_empty() {
            println!("waiting for approval: {}", waiting.join(", "));
        }
        let history = self
            .store
            .history(&self.run_id)
            .map_err(|e| e.to_string())?;
        for (id, tally) in history.hypotheses() {
            println!(
                "hypothesis {id}: confidence {:.2} ({} supports, {} refutes)",
                tally.confidence(),
                tally.supports,
                tally.refutes
            );
        }
        if ready.is_empty() && waiting.is_empty() {
            println!("the run has ended");
        }
        Ok(())
    }

    pub(super) fn inspect(&self, step: &str) -> Result<(), String> {
        // An instance or iteration is shown as its task, with its own record.
        let task = self
            .plan
            .task(cairn_lang::plan::part_of(step).unwrap_or(step))
            .ok_or_else(|| format!("no step `{step}`"))?;
        let steps = self.store.steps(&self.run_id).map_err(|e| e.to_string())?;
        let row = steps.iter().find(|s| s.step == step);
        println!("{step} \"{}\" ({:?})", task.title, task.step);
        println!("  status    {}", row.map_or("not run", |r| r.status.word()));
        if let Some(row) = row {
            println!("  attempts  {}", row.attempts);
            if let (Some(a), Some(b)) = (row.started_ms, row.finished_ms) {
                println!("  time      {:.2}s", b.saturating_sub(a) as f64 / 1000.0);
            }
            if let Some(output) = &row.output {
                println!("  output    {output}");
            }
            if let Some(error) = &row.error {
                println!("  error     {error}");
            }
        }
        for (key, script) in &task.input {
            println!("  input     {key}: {}", script.text);
        }
        for event in self.store.events(&self.run_id).map_err(|e| e.to_string())? {
            let value: serde_json::Value = serde_json::from_str(&event.body).unwrap_or_default();
            if value["step"] != step {
                continue;
            }
            match value["event"].as_str() {
                Some("log") => println!("  log       {}", value["line"].as_str().unwrap_or("")),
                Some("attempt_failed") => println!(
                    "  attempt {} failed: {}",
                    value["attempt"],
                    value["error"].as_str().unwrap_or("")
                ),
                Some("call") => println!(
                    "  call      {}({})",
                    value["function"].as_str().unwrap_or(""),
                    value["args"].as_array().map_or(String::new(), |a| a
                        .iter()
                        .map(compact)
                        .collect::<Vec<_>>()
                        .join(", "))
                ),
                _ => {}
            }
        }
        Ok(())
    }
}
