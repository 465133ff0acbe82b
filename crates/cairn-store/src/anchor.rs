//! What `audit verify` checks beyond the chain itself: that the run's row,
//! its stored plan and params, and its artifacts' contents are what the
//! chain recorded.

use serde::Deserialize;

use super::audit::{AuditError, Where};
use super::{ArtifactRow, EventRow, RunState};
use cairn_engine::run::{Event, EventKind};
use cairn_lang::source::sha256;

/// The `run_inputs` event for these inputs, as the store records them.
pub fn inputs(file: &str, source: &str, plan: Option<&[u8]>, params: &str, seed: u64) -> Event {
    let (source_sha256, plan_sha256, params_sha256) = hashes(source, plan, params);
    Event::RunInputs {
        file: file.to_owned(),
        source_sha256,
        plan_sha256,
        params_sha256,
        seed,
    }
}

/// The hashes a `run_inputs` event holds: (source, plan, params).
fn hashes(source: &str, plan: Option<&[u8]>, params: &str) -> (String, String, String) {
    (
        sha256(source),
        plan.map_or_else(String::new, sha256),
        sha256(params),
    )
}

/// What the store holds about a run besides its events.
pub struct Recorded<'a> {
    /// The row's status and message.
    pub status: &'a str,
    pub message: Option<&'a str>,
    /// The row's plan file, params (JSON) and seed.
    pub file: &'a str,
    pub params: &'a str,
    pub seed: u64,
    /// The stored plan: its source and its encoding (if kept).
    pub source: &'a str,
    pub plan: Option<&'a [u8]>,
    /// The `artifacts` rows.
    pub artifacts: &'a [ArtifactRow],
}

/// A verified run's log: how many events, its head, and whether its inputs
/// were covered (runs recorded before cairn recorded `run_inputs` are not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The number of events.
    pub events: usize,
    /// The last event's hash: what `audit head` prints.
    pub head: String,
    /// Whether the chain holds the run's inputs.
    pub inputs_covered: bool,
}

/// The fields of the events this check reads.
#[derive(Deserialize)]
struct Fields {
    event: String,
    file: Option<String>,
    source_sha256: Option<String>,
    plan_sha256: Option<String>,
    params_sha256: Option<String>,
    seed: Option<u64>,
    status: Option<String>,
    message: Option<String>,
    step: Option<String>,
    name: Option<String>,
    sha256: Option<String>,
    bytes: Option<i64>,
    path: Option<String>,
}

/// Whether a logged event is one [`check`] reads (the name leads each
/// body): the run's inputs and status, artifacts, kept file contents.
pub fn wanted(body: &str) -> bool {
    const WANTED: [EventKind; 6] = [
        EventKind::RunInputs,
        EventKind::RunStarted,
        EventKind::RunResumed,
        EventKind::RunFinished,
        EventKind::Artifact,
        EventKind::FileOriginal,
    ];
    let Some(name) = body
        .strip_prefix("{\"event\":\"")
        .and_then(|rest| rest.split('"').next())
    else {
        return false;
    };
    WANTED.iter().any(|kind| kind.name() == name)
}

/// Checks a run whose chain is intact (`events` rows, ending at `head`)
/// against what else the store holds; `logged` are its [`wanted`] events.
/// `digest` hashes a blob's content (`None`: the blob is gone).
pub fn check(
    logged: &[EventRow],
    events: usize,
    head: String,
    recorded: &Recorded<'_>,
    digest: impl Fn(&str) -> Option<String>,
) -> Result<Verified, AuditError> {
    let mut inputs: Option<(i64, Fields)> = None;
    // The status the log says, as the row would hold it (a word this
    // build does not know is kept as written, so it still compares).
    let running = || (RunState::Running.word().to_owned(), None);
    let mut status: (String, Option<String>) = running();
    let mut artifacts = Vec::new();
    let mut originals = Vec::new();
    for event in logged {
        let Ok(fields) = serde_json::from_str::<Fields>(&event.body) else {
            continue;
        };
        let Some(kind) = EventKind::from_name(&fields.event) else {
            continue;
        };
        match kind {
            EventKind::RunInputs => inputs = Some((event.seq, fields)),
            EventKind::RunStarted | EventKind::RunResumed => status = running(),
            EventKind::RunFinished => {
                status = (
                    fields.status.clone().unwrap_or_default(),
                    fields.message.clone(),
                )
            }
            EventKind::Artifact => artifacts.push((event.seq, fields)),
            EventKind::FileOriginal => originals.push((event.seq, fields)),
            _ => {}
        }
    }
    let at_run = |problem: String| AuditError {
        at: Where::Run,
        problem,
    };
    let inputs_covered = inputs.is_some();
    if let Some((seq, fields)) = &inputs {
        let now = hashes(recorded.source, recorded.plan, recorded.params);
        let differs = |what: &str, logged: &Option<String>, now: &str| {
            (logged.as_deref() != Some(now)).then(|| what.to_owned())
        };
        let changed: Vec<String> = [
            differs("plan file", &fields.file, recorded.file),
            differs("plan source", &fields.source_sha256, &now.0),
            differs("checked plan", &fields.plan_sha256, &now.1),
            differs("params", &fields.params_sha256, &now.2),
            (fields.seed != Some(recorded.seed)).then(|| "seed".to_owned()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !changed.is_empty() {
            return Err(AuditError {
                at: Where::Event(*seq),
                problem: format!(
                    "the run's stored {} {} from what its log recorded (edited in the store)",
                    changed.join(", "),
                    if changed.len() == 1 {
                        "differs"
                    } else {
                        "differ"
                    }
                ),
            });
        }
    }
    if (recorded.status, recorded.message) != (status.0.as_str(), status.1.as_deref()) {
        let shown = |status: &str, message: Option<&str>| match message {
            Some(m) => format!("`{status}` ({m})"),
            None => format!("`{status}`"),
        };
        return Err(at_run(format!(
            "its status is {} but its log says {} (edited in the store)",
            shown(recorded.status, recorded.message),
            shown(&status.0, status.1.as_deref())
        )));
    }
    // Every artifact event has its row, every row its event, and every
    // blob still holds the content the event hashed.
    let rows: std::collections::HashMap<i64, &ArtifactRow> = recorded
        .artifacts
        .iter()
        .map(|row| (row.seq, row))
        .collect();
    for (seq, fields) in &artifacts {
        let (step, name, sha, bytes) = (
            fields.step.as_deref().unwrap_or_default(),
            fields.name.as_deref().unwrap_or_default(),
            fields.sha256.as_deref().unwrap_or_default(),
            fields.bytes.unwrap_or_default(),
        );
        let at = Where::Artifact {
            step: step.to_owned(),
            name: name.to_owned(),
        };
        match rows.get(seq) {
            Some(row)
                if (
                    row.step.as_str(),
                    row.name.as_str(),
                    row.sha256.as_str(),
                    row.bytes,
                ) == (step, name, sha, bytes) => {}
            Some(_) => {
                return Err(AuditError {
                    at,
                    problem: format!("its row differs from event {seq} (edited in the store)"),
                })
            }
            None => {
                return Err(AuditError {
                    at,
                    problem: format!("event {seq} saved it, but its row is gone"),
                })
            }
        }
        match digest(sha) {
            Some(actual) if actual == sha => {}
            Some(_) => {
                return Err(AuditError {
                    at,
                    problem: format!(
                        "its content does not match the hash event {seq} recorded (edited)"
                    ),
                })
            }
            None => {
                return Err(AuditError {
                    at,
                    problem: format!("its content (sha256 {sha}) is gone"),
                })
            }
        }
    }
    if let Some(extra) = recorded
        .artifacts
        .iter()
        .find(|row| !artifacts.iter().any(|(seq, _)| *seq == row.seq))
    {
        return Err(AuditError {
            at: Where::Artifact {
                step: extra.step.clone(),
                name: extra.name.clone(),
            },
            problem: "no event of the log saved it (added in the store)".to_owned(),
        });
    }
    // What compensation would put back is what was there.
    for (seq, fields) in &originals {
        let Some(sha) = fields.sha256.as_deref() else {
            continue;
        };
        if digest(sha).as_deref() != Some(sha) {
            return Err(AuditError {
                at: Where::Event(*seq),
                problem: format!(
                    "the kept contents of `{}` are gone or do not match its hash (edited in the store)",
                    fields.path.as_deref().unwrap_or_default()
                ),
            });
        }
    }
    Ok(Verified {
        events,
        head,
        inputs_covered,
    })
}
