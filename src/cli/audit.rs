//! `cairn audit verify` and `cairn audit head`: checking a run's record, and
//! the head hash to keep elsewhere so a rewrite of the log is detected.

use serde_json::json;

use super::runs::open;
use crate::error::Error;
use cairn_store::{AuditError, Store, Verified};
use std::path::Path;

/// `cairn audit verify [run] [--head H] [--all]`: exit 0 when every run
/// checked is intact, 1 when one is not.
pub fn verify(
    dir: &Path,
    id: Option<&str>,
    head: Option<&str>,
    all: bool,
    json: bool,
) -> Result<i32, Error> {
    let store = open(dir)?;
    let ids: Vec<String> = if all {
        // Oldest first, as they were recorded; child runs too.
        store.all_run_ids()?
    } else {
        vec![store.find(id)?.id]
    };
    let mut text = String::new();
    let mut broken = 0;
    for id in &ids {
        let (line, ok) = verdict(&store, id, head)?;
        if json {
            let events = store.verify(id)?.ok().map(|v| v.events);
            let value = serde_json::json!({
                "run": id, "intact": ok, "events": events, "verdict": line,
            });
            text.push_str(&value.to_string());
        } else {
            text.push_str(&line);
        }
        text.push('\n');
        broken += usize::from(!ok);
    }
    if all && !json {
        text.push_str(&match broken {
            0 => format!("{} runs verified, all intact\n", ids.len()),
            n => format!("{} runs verified, {n} not intact\n", ids.len()),
        });
    }
    super::runs::out(&text)?;
    Ok(if broken == 0 { 0 } else { 1 })
}

/// One run's line, and whether it is intact.
fn verdict(store: &Store, id: &str, kept: Option<&str>) -> Result<(String, bool), Error> {
    let verified = match store.verify(id)? {
        Ok(verified) => verified,
        Err(problem) => return Ok((tampered(id, &problem), false)),
    };
    let Verified {
        events,
        head,
        inputs_covered,
    } = &verified;
    let mut line = format!("run {id}: ok, {events} events, hash chain intact");
    if !inputs_covered {
        line.push_str(" (recorded by an older cairn: its params and plan are not in the chain)");
    }
    if let Some(kept) = kept {
        if kept == head {
            line.push_str(", ends at the kept head");
        } else {
            match store.events(id)?.iter().position(|e| e.hash == kept) {
                Some(at) => line.push_str(&format!(
                    ", the kept head is event {} ({} recorded since)",
                    at + 1,
                    events - (at + 1)
                )),
                None => {
                    return Ok((
                        format!(
                            "run {id}: the kept head {kept} is not in its audit log: \
                             events were rewritten or removed since it was taken"
                        ),
                        false,
                    ))
                }
            }
        }
    }
    Ok((line, true))
}

fn tampered(id: &str, problem: &AuditError) -> String {
    format!("run {id}: the audit log was tampered with at {problem}")
}

/// `cairn audit head [run] [--json]`: the hash of the last event of an
/// intact log, to keep where the store cannot reach.
pub fn head(dir: &Path, id: Option<&str>, as_json: bool) -> Result<i32, Error> {
    let store = open(dir)?;
    let run = store.find(id)?;
    match store.verify(&run.id)? {
        Ok(Verified { events, head, .. }) => {
            let text = if as_json {
                format!(
                    "{}\n",
                    json!({ "run": run.id, "head": head, "events": events })
                )
            } else {
                format!("{head}\n")
            };
            super::runs::out(&text)?;
            Ok(0)
        }
        Err(problem) => {
            super::runs::out(&format!("{}\n", tampered(&run.id, &problem)))?;
            Ok(1)
        }
    }
}
