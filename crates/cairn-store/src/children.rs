//! The child runs of `plan:` steps, kept in the store beside their parents.
//!
//! Each attempt of a `plan:` step has one child run, linked to the parent
//! run, the step and the attempt. A parent that goes on after a crash finds
//! the child its attempt began and goes on with it from its own log, so
//! the child's finished steps never run twice; a replay answers the
//! child's calls from the child's recording.

use std::sync::Arc;

use cairn_engine::run::{ChildRequest, ChildRun, ChildRuns, Divergence, Replay, Resume, Settled};

use crate::services::{stop_left_running, verified};
use crate::{History, RunProcesses, RunRecorder, RunState, Store};
use cairn_engine::run::RunStatus;

/// The child runs of one run's `plan:` steps.
pub struct ChildRunsOf {
    store: Arc<Store>,
    parent: String,
    /// In a replay: where a divergence found in a child is kept (the
    /// parent's, so the replay reports it).
    replaying: Option<Arc<std::sync::Mutex<Option<Divergence>>>>,
    /// In a retry (`cairn retry`): a child that failed or was cancelled is
    /// retried too, its successes kept.
    retrying: bool,
}

impl ChildRunsOf {
    /// The children of run `parent`, recorded as they run.
    pub fn new(store: Arc<Store>, parent: String) -> Self {
        Self {
            store,
            parent,
            replaying: None,
            retrying: false,
        }
    }

    /// The children of run `parent`, which `cairn retry` goes on with: a
    /// child that failed or was cancelled is retried too.
    pub fn retrying(store: Arc<Store>, parent: String) -> Self {
        Self {
            retrying: true,
            ..Self::new(store, parent)
        }
    }

    /// The children of run `parent`, replayed from their recordings.
    pub fn replaying(
        store: Arc<Store>,
        parent: String,
        divergence: Arc<std::sync::Mutex<Option<Divergence>>>,
    ) -> Self {
        Self {
            store,
            parent,
            replaying: Some(divergence),
            retrying: false,
        }
    }
}

/// Held while a child runs: its claim, and the rows of its commands, which
/// go once it ends.
struct Hold {
    _claim: crate::RunClaim,
    processes: Arc<RunProcesses>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.processes.flush();
    }
}

impl ChildRuns for ChildRunsOf {
    fn began_with(&self, step: &str, attempt: u32) -> Result<Option<serde_json::Value>, String> {
        // (A replay too: a resumed parent did not evaluate `with` again, so
        // the recording has the calls of its first evaluation only.)
        let Some(child) = self
            .store
            .child(&self.parent, step, attempt)
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let inputs = self.store.source(&child).map_err(|e| e.to_string())?;
        let mut params = serde_json::Map::new();
        for (name, value) in inputs.params {
            let value = serde_json::from_str(&value).map_err(|e| {
                format!("run {child}'s recorded param `{name}` does not read back: {e}")
            })?;
            params.insert(name, value);
        }
        Ok(Some(serde_json::Value::Object(params)))
    }

    fn abandon(&self, run: &str, reason: &str) {
        let marked = self.store.claim(run).and_then(|_claim| {
            self.store.append(
                run,
                &cairn_engine::run::Event::RunFinished {
                    status: cairn_engine::run::RunStatus::Cancelled,
                    message: Some(reason.to_owned()),
                    at_ms: 0,
                },
            )
        });
        // Left `interrupted` at worst: a resumed parent would go on with it.
        if let Err(error) = marked {
            tracing::warn!(%error, run, "cannot mark an abandoned child run cancelled");
        }
    }

    fn open(&self, request: ChildRequest<'_>) -> Result<ChildRun, String> {
        let store = &self.store;
        let found = store
            .child(&self.parent, request.step, request.attempt)
            .map_err(|e| e.to_string())?;
        if let Some(divergence) = &self.replaying {
            return self.replayed(found, &request, divergence);
        }
        let (id, claim, resume) = match found {
            Some(id) => {
                // Going on with the child this attempt began, unless the
                // attempt went on without it (then the attempt failed).
                let row = store.find(Some(&id)).map_err(|e| e.to_string())?;
                if row.status == RunState::Stopped(RunStatus::Cancelled) && !self.retrying {
                    return Err(format!(
                        "its run {id} was cancelled: {}",
                        row.message.as_deref().unwrap_or("no reason given")
                    ));
                }
                let claim = store.claim(&id).map_err(|e| e.to_string())?;
                stop_left_running(store, &id).map_err(|e| e.to_string())?;
                let row = store.find(Some(&id)).map_err(|e| e.to_string())?;
                verified(store, &row).map_err(|e| e.to_string())?;
                if self.retrying {
                    crate::services::retry_child(store, &id, request.plan)
                        .map_err(|e| e.to_string())?;
                }
                let history = store.history(&id).map_err(|e| e.to_string())?;
                let invalidated =
                    edited(store, &id, request.plan, &history).map_err(|e| e.to_string())?;
                let originals = store
                    .originals(&history.originals)
                    .map_err(|e| e.to_string())?;
                let mut resume = history.resume(&invalidated);
                resume.originals = originals;
                (id, claim, Some(Arc::new(resume)))
            }
            None => {
                let params: Vec<(String, String)> = match request.params {
                    serde_json::Value::Object(map) => map
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_string()))
                        .collect(),
                    _ => Vec::new(),
                };
                let id = store
                    .begin_child(
                        request.plan,
                        request.reference,
                        &params,
                        request.seed,
                        (&self.parent, request.step, request.attempt),
                    )
                    .map_err(|e| e.to_string())?;
                let claim = store.claim(&id).map_err(|e| e.to_string())?;
                (id, claim, None)
            }
        };
        let processes = Arc::new(RunProcesses::new(Arc::clone(store), id.clone()));
        Ok(ChildRun {
            recorder: Some(Arc::new(RunRecorder {
                store: Arc::clone(store),
                run: id.clone(),
            })),
            processes: Some(Arc::clone(&processes) as _),
            resume,
            replay: None,
            children: Some(Arc::new(ChildRunsOf {
                retrying: self.retrying,
                ..ChildRunsOf::new(Arc::clone(store), id.clone())
            })),
            hold: Some(Box::new(Hold {
                _claim: claim,
                processes,
            })),
            id,
        })
    }
}

/// The child's steps whose recorded results its plan, edited since it
/// began (its parent resumed with `--allow-changed`), no longer stands by:
/// reset in its log, as the parent's are, with the edited plan recorded.
fn edited(
    store: &Store,
    child: &str,
    plan: &cairn_lang::plan::Plan,
    history: &crate::History,
) -> Result<Vec<String>, crate::StoreError> {
    let Some(recorded) = store.plan(child)?.as_ref().and_then(crate::Encoded::decode) else {
        return Ok(Vec::new());
    };
    let changes = cairn_engine::run::Changes::between(&recorded, plan);
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let invalidated = changes.invalidated(plan, |id| history.settled(id).is_some());
    for step in &invalidated {
        store.append(
            child,
            &cairn_engine::run::Event::StepReset {
                step: step.clone(),
                reason: "its plan changed (`--allow-changed`)".to_owned(),
                keep_parts: false,
            },
        )?;
    }
    store.replace_source(child, "", plan)?;
    Ok(invalidated)
}

impl ChildRunsOf {
    fn replayed(
        &self,
        found: Option<String>,
        request: &ChildRequest<'_>,
        divergence: &Arc<std::sync::Mutex<Option<Divergence>>>,
    ) -> Result<ChildRun, String> {
        let Some(id) = found else {
            return Err(format!(
                "the recording has no child run for attempt {} of `{}`",
                request.attempt, request.step
            ));
        };
        let history = self.store.history(&id).map_err(|e| e.to_string())?;
        let (gates, mut replay) = recording(&history);
        replay.divergence = Arc::clone(divergence);
        Ok(ChildRun {
            resume: Some(Arc::new(gates)),
            replay: Some(replay),
            children: Some(Arc::new(ChildRunsOf::replaying(
                Arc::clone(&self.store),
                id.clone(),
                Arc::clone(divergence),
            ))),
            id,
            ..ChildRun::default()
        })
    }
}

/// What a replay of a recorded run answers from: its gates' answers, and
/// every step's calls and outcome.
pub fn recording(history: &History) -> (Resume, Replay) {
    let mut gates = Resume::default();
    for (id, settled) in history.settled_steps() {
        if matches!(settled, Settled::Answered(_)) {
            gates.keep(id, settled.clone());
        }
    }
    let replay = Replay {
        calls: history
            .calls
            .iter()
            .map(|(key, calls)| (key.clone(), Arc::new(calls.clone())))
            .collect(),
        divergence: Default::default(),
        settled: Arc::new(
            history
                .settled_in_order()
                .into_iter()
                .map(|(step, _)| step.to_owned())
                .collect(),
        ),
    };
    (gates, replay)
}
