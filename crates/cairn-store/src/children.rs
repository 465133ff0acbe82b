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
use crate::{History, RunProcesses, RunRecorder, Store};

/// The child runs of one run's `plan:` steps.
pub struct ChildRunsOf {
    store: Arc<Store>,
    parent: String,
    /// In a replay: where a divergence found in a child is kept (the
    /// parent's, so the replay reports it).
    replaying: Option<Arc<std::sync::Mutex<Option<Divergence>>>>,
}

impl ChildRunsOf {
    /// The children of run `parent`, recorded as they run.
    pub fn new(store: Arc<Store>, parent: String) -> Self {
        Self {
            store,
            parent,
            replaying: None,
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
                // Going on with the child this attempt began.
                let claim = store.claim(&id).map_err(|e| e.to_string())?;
                stop_left_running(store, &id).map_err(|e| e.to_string())?;
                let row = store.find(Some(&id)).map_err(|e| e.to_string())?;
                verified(store, &row).map_err(|e| e.to_string())?;
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
            children: Some(Arc::new(ChildRunsOf::new(Arc::clone(store), id.clone()))),
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
