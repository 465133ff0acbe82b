//! `cairn runs`, `status` and `log`: reading the run store.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::report;
use crate::error::Error;
use cairn_store::{services, RunRow, Store};

/// The store in `dir`, which must exist (reading commands never create
/// one); read-only where it cannot be written (an archive, a read-only mount).
pub fn open(dir: &Path) -> Result<Store, Error> {
    if dir.join("state.db").exists() && !cairn_store::writable(dir) {
        return Ok(Store::open_read_only(dir)?);
    }
    existing(dir, cairn_store::Durability::Normal)
}

/// The store in `dir`, which must exist: going on with a run (`resume`,
/// `approve`, …) never creates one either.
pub fn existing(dir: &Path, durability: cairn_store::Durability) -> Result<Store, Error> {
    if !dir.join("state.db").exists() {
        return Err(Error::Usage(format!(
            "no runs recorded in `{}` yet (`cairn run` records them; `--state-dir` points elsewhere)",
            dir.display()
        )));
    }
    Ok(Store::open(dir, durability)?)
}

pub(super) fn out(text: &str) -> Result<(), Error> {
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(Error::Output)
}

/// `cairn runs`: newest first, with status, progress, when each began
/// and how long it took.
pub fn list(
    dir: &Path,
    filter: &cairn_store::RunFilter,
    limit: usize,
    offset: usize,
    as_json: bool,
) -> Result<(), Error> {
    let runs = open(dir)?.runs_where(filter, limit, offset)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut text = String::new();
    if as_json {
        for run in &runs {
            text.push_str(&serde_json::to_string(run).expect("runs serialize"));
            text.push('\n');
        }
    } else {
        let rows: Vec<[String; 7]> = runs
            .iter()
            .map(|r| {
                [
                    r.id.clone(),
                    r.plan.clone(),
                    r.status.to_string(),
                    format!("{}/{}", r.done.unwrap_or_default(), r.steps),
                    format!("{} ago", report::human_age(now - r.started_at)),
                    r.finished_at
                        .map(|end| report::human_age(end - r.started_at))
                        .unwrap_or_default(),
                    r.file.clone(),
                ]
            })
            .collect();
        text = report::table(
            ["run", "plan", "status", "done", "started", "took", "file"],
            &rows,
        );
        for run in runs.iter().filter(|r| r.unreadable.is_some()) {
            let n = run.unreadable.unwrap_or_default();
            let s = if n == 1 { "" } else { "s" };
            text.push_str(&format!(
                "run {}: {n} event{s} cannot be read (`cairn status {}` says which)\n",
                run.id, run.id
            ));
        }
    }
    out(&text)
}

/// An output on one line, at most 40 characters (`cairn output` shows it
/// whole): a string as its text, anything else as compact JSON.
fn preview(output: &serde_json::Value) -> String {
    const WIDTH: usize = 40;
    let text = match output {
        serde_json::Value::Null => return String::new(),
        serde_json::Value::String(text) => text.clone(),
        value => value.to_string(),
    };
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    match line.char_indices().nth(WIDTH - 1) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// A run's artifacts as a table: name, step, size, sha256.
pub(super) fn artifact_table(artifacts: &[cairn_store::ArtifactRow]) -> String {
    let rows: Vec<[String; 4]> = artifacts
        .iter()
        .map(|a| {
            [
                a.name.clone(),
                a.step.clone(),
                format!("{} bytes", a.bytes),
                a.sha256.clone(),
            ]
        })
        .collect();
    report::table(["artifact", "step", "size", "sha256"], &rows)
}

/// The gates waiting in run `run` (and in child runs below it), each with
/// what its approver confirms and when it is rejected unanswered.
fn waiting_json(store: &Store, run: &str) -> Result<Vec<serde_json::Value>, Error> {
    let mut waiting = Vec::new();
    for gate in services::waiting_gates(store, run, "").map_err(Error::from)? {
        let plan = store
            .plan(&gate.run)?
            .as_ref()
            .and_then(cairn_store::Encoded::decode);
        let task = plan.as_ref().and_then(|p| p.task(&gate.gate));
        let expires_at = store.history(&gate.run)?.gate_expiry(&gate.gate);
        waiting.push(json!({
            "gate": gate.name,
            "run": gate.run,
            "title": task.map(|t| t.title.clone()),
            "checks": task.map_or(&[][..], |t| t.checks()),
            "expires_at": expires_at,
        }));
    }
    Ok(waiting)
}

/// `cairn status`: the step table of a run and its waiting gates.
pub fn status(dir: &Path, id: Option<&str>, as_json: bool) -> Result<(), Error> {
    let store = open(dir)?;
    let run = store.run(id)?;
    let (steps, unreadable) = store.steps_and_unreadable(&run.id)?;
    let artifacts = store.artifacts(&run.id)?;
    let hypotheses = store.history(&run.id)?.hypotheses();
    if as_json {
        let hypotheses: Vec<serde_json::Value> = hypotheses
            .iter()
            .map(|(id, t)| json!({ "id": id, "supports": t.supports, "refutes": t.refutes, "neutral": t.neutral, "confidence": t.confidence() }))
            .collect();
        let steps = steps_json(&store, &run.id, &steps, 0)?;
        let forked = store.forked_from(&run.id)?;
        let waiting = waiting_json(&store, &run.id)?;
        let mut value =
            json!({ "run": run, "steps": steps, "artifacts": artifacts, "hypotheses": hypotheses });
        if let Some((from, at)) = forked {
            value["run"]["forked_from"] = json!({ "run": from, "at": at });
        }
        value["waiting"] = json!(waiting);
        if !unreadable.is_empty() {
            value["unreadable"] = json!(unreadable);
        }
        return out(&format!("{value}\n"));
    }
    let mut rows = Vec::new();
    step_rows(&store, &run.id, &steps, "", &mut rows, 0)?;
    let mut text = header(&run, store.forked_from(&run.id)?);
    text.push_str(&report::table(
        [
            "step",
            "status",
            "attempts",
            "time",
            "output",
            "error or reason",
        ],
        &rows,
    ));
    // Gates of child runs too, by the names `approve` takes.
    let waiting: Vec<String> = cairn_store::services::waiting_gates(&store, &run.id, "")
        .map_err(Error::from)?
        .into_iter()
        .map(|w| w.name)
        .collect();
    if !waiting.is_empty() {
        text.push_str(&format!("\nwaiting for approval: {}\n", waiting.join(", ")));
    }
    if !unreadable.is_empty() {
        text.push('\n');
        for problem in &unreadable {
            text.push_str(&format!("{problem}; it is skipped\n"));
        }
    }
    if !hypotheses.is_empty() {
        let rows: Vec<[String; 5]> = hypotheses
            .iter()
            .map(|(id, t)| {
                [
                    id.clone(),
                    format!("{:.2}", t.confidence()),
                    t.supports.to_string(),
                    t.refutes.to_string(),
                    t.neutral.to_string(),
                ]
            })
            .collect();
        text.push('\n');
        text.push_str(&report::table(
            ["hypothesis", "confidence", "supports", "refutes", "neutral"],
            &rows,
        ));
    }
    if !artifacts.is_empty() {
        text.push('\n');
        text.push_str(&artifact_table(&artifacts));
    }
    out(&text)
}

/// The most levels of child runs `status` shows (a plan calling itself
/// nests at most `MAX_DEPTH` deep).
const SHOWN_DEPTH: usize = cairn_engine::run::MAX_DEPTH;

/// One row per step of run `run`, each `plan:` step followed by its child
/// run's steps, named as `approve` names them (`round#2.draft`).
fn step_rows(
    store: &cairn_store::Store,
    run: &str,
    steps: &[cairn_store::StepRow],
    prefix: &str,
    rows: &mut Vec<[String; 6]>,
    depth: usize,
) -> Result<(), Error> {
    let children = store.children(run)?;
    for s in steps {
        let time = match (s.started_ms, s.finished_ms) {
            (Some(a), Some(b)) if b >= a => format!("{:.2}s", (b - a) as f64 / 1000.0),
            _ => String::new(),
        };
        let child = children.iter().find(|(step, _)| *step == s.step);
        let output = match (&s.output, child) {
            (Some(output), _) => preview(output),
            (None, Some((_, id))) => format!("(run {id})"),
            (None, None) => String::new(),
        };
        rows.push([
            format!("{prefix}{}", s.step),
            s.status.to_string(),
            s.attempts.to_string(),
            time,
            output,
            s.error
                .clone()
                .or_else(|| s.unreadable.clone())
                .or_else(|| s.reason.clone())
                .unwrap_or_default(),
        ]);
        if let Some((step, id)) = child.filter(|_| depth < SHOWN_DEPTH) {
            let inner = store.steps(id)?;
            step_rows(
                store,
                id,
                &inner,
                &format!("{prefix}{step}."),
                rows,
                depth + 1,
            )?;
        }
    }
    Ok(())
}

/// The steps as JSON, each `plan:` step with its child run (`child`: its
/// id and steps).
fn steps_json(
    store: &cairn_store::Store,
    run: &str,
    steps: &[cairn_store::StepRow],
    depth: usize,
) -> Result<Vec<serde_json::Value>, Error> {
    let children = store.children(run)?;
    let mut values = Vec::with_capacity(steps.len());
    for s in steps {
        let mut value = json!(s);
        if let Some((_, id)) = children
            .iter()
            .find(|(step, _)| *step == s.step)
            .filter(|_| depth < SHOWN_DEPTH)
        {
            let inner = store.steps(id)?;
            value["child"] =
                json!({ "run": id, "steps": steps_json(store, id, &inner, depth + 1)? });
        }
        values.push(value);
    }
    Ok(values)
}

/// `cairn log`: a run's events in order.
pub fn log(dir: &Path, id: Option<&str>, as_json: bool, follow: bool) -> Result<(), Error> {
    let store = open(dir)?;
    let run = store.find(id)?;
    let mut seen = 0;
    loop {
        // Whether the run was still going before reading, so the events it
        // wrote before it stopped are all printed.
        let going = follow && store.claim(&run.id).is_err();
        let events = store.events_after(&run.id, seen)?;
        seen = events.last().map_or(seen, |e| e.seq);
        out(&log_lines(&events, as_json))?;
        if !going {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn log_lines(events: &[cairn_store::EventRow], as_json: bool) -> String {
    let mut text = String::new();
    for event in events {
        if as_json {
            text.push_str(&event.body);
        } else {
            let value: serde_json::Value = match serde_json::from_str(&event.body) {
                Ok(value) => value,
                Err(error) => {
                    let problem = cairn_store::unreadable(event.seq, &event.body, &error);
                    text.push_str(&format!("{:>4} unreadable: {problem}\n", event.seq));
                    continue;
                }
            };
            let mut fields: Vec<String> = value
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !matches!(k.as_str(), "event" | "at_ms"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            fields.sort();
            let at = value["at_ms"]
                .as_u64()
                .map_or(String::new(), |ms| format!("{:>8.3}s", ms as f64 / 1000.0));
            text.push_str(&format!(
                "{:>4} {at} {} {}",
                event.seq,
                value["event"].as_str().unwrap_or("?"),
                fields.join(" ")
            ));
        }
        text.push('\n');
    }
    text
}

fn header(run: &RunRow, forked: Option<(String, String)>) -> String {
    let message = run
        .message
        .as_ref()
        .map_or(String::new(), |m| format!(": {m}"));
    let under = run
        .parent
        .as_ref()
        .map_or(String::new(), |p| format!(", a sub-plan of run {p}"));
    let under = match forked {
        Some((from, at)) => format!("{under}, forked from run {from} at `{at}`"),
        None => under,
    };
    format!(
        "run {} of `{}` ({}{under}): {}{message}\n\n",
        run.id, run.plan, run.file, run.status
    )
}

#[cfg(test)]
mod tests {
    /// A preview is one line of at most 40 characters; `()` shows nothing.
    #[test]
    fn previews_fit_one_line() {
        use serde_json::json;
        assert_eq!(super::preview(&json!("done\n")), "done");
        assert_eq!(super::preview(&json!({ "n": 3 })), r#"{"n":3}"#);
        assert_eq!(super::preview(&json!(null)), "");
        let long = super::preview(&json!("a\nb".repeat(30)));
        assert_eq!(long.chars().count(), 40);
        assert!(long.ends_with('…') && !long.contains('\n'), "{long}");
    }
}
