//! Replaying a run: its plan runs again against the recording (every call
//! that reached outside answered from the log, touching nothing), and each
//! step must settle as recorded, in the recorded order.

use std::path::Path;
use std::sync::Arc;

use cairn_engine::run::{Options, Settled};

use super::plans::{plans, Edited};
use super::ServiceError;
use crate::{History, Store};

/// What a replay found.
pub struct Replayed {
    /// The run replayed.
    pub run: String,
    /// Which files changed since the run, if its plan did: the edited plan
    /// was replayed.
    pub edited: Option<String>,
    /// `None` when every step settled as recorded; else where it diverged.
    pub divergence: Option<String>,
    /// How many steps the recording settled.
    pub steps: usize,
}

/// Replays run `id` (or the newest) of the store in `state_dir`.
pub fn replay(
    store: &Arc<Store>,
    state_dir: &Path,
    id: Option<&str>,
) -> Result<Replayed, ServiceError> {
    let row = store.find(id)?;
    let inputs = store.source(&row.id)?;
    let (recorded, current) = plans(&row, &inputs.source, store.plan(&row.id)?)?;
    let (plan, edited) = match current {
        Some(Edited { files, plan, .. }) => (plan, Some(files)),
        None => (recorded, None),
    };
    let history = store.history(&row.id)?;
    let (gates, replay) = crate::children::recording(&history);
    let options = Options {
        params: inputs.params,
        seed: Some(inputs.seed),
        max_parallel: Some(1),
        dir: row
            .plan_file()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        state_dir: Some(state_dir.to_path_buf()),
        resume: Some(Arc::new(gates)),
        replay: Some(replay.clone()),
        // A `plan:` step's child is replayed from its own recording.
        children: Some(Arc::new(crate::ChildRunsOf::replaying(
            Arc::clone(store),
            row.id.clone(),
            Arc::clone(&replay.divergence),
        ))),
        ..Options::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| cairn_engine::Error::Usage(format!("cannot start the runtime: {e}")))?;
    let mut again = History::default();
    let engine = cairn_engine::stdlib::engine();
    runtime.block_on(engine.run(plan, options, |event| {
        if let Ok(text) = serde_json::to_string(event) {
            again.fold(&text);
        }
    }))?;
    let recorded = history.settled_in_order();
    let found = |divergence: Option<String>| Replayed {
        run: row.id.clone(),
        edited: edited.clone(),
        divergence,
        steps: recorded.len(),
    };
    let divergence = replay
        .divergence
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(divergence) = divergence {
        return Ok(found(Some(divergence.to_string())));
    }
    // Every step must end as recorded, in the recorded order.
    for &(step, before) in &recorded {
        match again.settled(step) {
            Some(now) if now == before => {}
            now => {
                return Ok(found(Some(format!(
                    "step `{step}`: recorded {}, replayed {}",
                    outcome(Some(before)),
                    outcome(now)
                ))));
            }
        }
    }
    if let Some((extra, now)) = again
        .settled_in_order()
        .into_iter()
        .find(|(s, _)| history.settled(s).is_none())
    {
        return Ok(found(Some(format!(
            "step `{extra}`: recorded nothing, replayed {}",
            outcome(Some(now))
        ))));
    }
    Ok(found(None))
}

fn outcome(settled: Option<&Settled>) -> String {
    match settled {
        None => "no outcome".to_owned(),
        Some(Settled::Succeeded {
            output,
            until: Some(held),
            ..
        }) => {
            let until = if *held { "held" } else { "did not hold" };
            format!("succeeded with {output} (`until` {until})")
        }
        Some(Settled::Succeeded { output, .. }) => format!("succeeded with {output}"),
        Some(Settled::Failed { error, .. }) => format!("failed: {error}"),
        Some(Settled::Skipped { reason }) => format!("skipped: {reason}"),
        Some(Settled::Chose { target, .. }) => format!("chose `{target}`"),
        Some(Settled::Answered(a)) if a.approved => format!("approved by {}", a.by),
        Some(Settled::Answered(a)) => format!("rejected by {}", a.by),
        Some(Settled::FannedOut { items }) => format!("{} instances, unfinished", items.len()),
        Some(Settled::Looping) => "looping, unfinished".to_owned(),
    }
}
