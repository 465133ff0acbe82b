//! The plan a recorded run goes on with: as it was checked when the run
//! began, and the plan file as it is now if it (or a plan it imports or
//! runs) changed.

use std::sync::Arc;

use cairn_lang::plan::Plan;
use cairn_lang::source::Source;

use super::ServiceError;
use crate::{Encoded, RunRow};

/// A plan that changed since its run began.
pub struct Edited {
    /// Which files changed, for messages (`` `p.plan` ``).
    pub files: String,
    /// The plan file as it is now.
    pub source: Arc<Source>,
    /// Its checked plan.
    pub plan: Plan,
}

/// Checks a plan's text as the run would run it.
fn checked(source: &Arc<Source>) -> Result<Plan, ServiceError> {
    let checked = cairn_engine::stdlib::engine().check(source);
    checked
        .plan
        .ok_or(ServiceError::Invalid(checked.diagnostics))
}

/// The plan the run began with: as it was checked then, or, for a run
/// recorded before plans were kept (or by a build that encodes them
/// differently), its recorded source checked again.
pub fn recorded_plan(
    run: &RunRow,
    text: &str,
    stored: Option<Encoded>,
) -> Result<Plan, ServiceError> {
    match stored.as_ref().and_then(Encoded::decode) {
        Some(plan) => Ok(plan),
        None => checked(&Source::new(
            run.plan_file().display().to_string(),
            text.to_owned(),
        )),
    }
}

/// The plan the run began with, and the plan file as it is now if it, or
/// a plan it imports, changed since.
pub(super) fn plans(
    run: &RunRow,
    text: &str,
    stored: Option<Encoded>,
) -> Result<(Plan, Option<Edited>), ServiceError> {
    let recorded = recorded_plan(run, text, stored)?;
    let path = run.plan_file();
    if !path.exists() {
        return Ok((recorded, None));
    }
    let source = cairn_engine::read::read(&path)?;
    let files = if source.text() != text {
        format!("`{}`", run.file)
    } else {
        // Plans it imports with `use` and plans its `plan:` tasks run, by
        // the file each was read from and the hash of its text then.
        let imported = recorded
            .imports
            .iter()
            .filter_map(|import| Some((import.file.as_ref()?, &import.sha256)));
        let called = recorded
            .library
            .iter()
            .filter_map(|entry| entry.origin.as_ref())
            .filter_map(|origin| Some((origin.file.as_ref()?, &origin.sha256)));
        let unchanged = |(file, checked): &(&String, &String)| {
            // A file that cannot be read now is not compared, like a plan
            // file that is gone.
            !cairn_engine::read::read(&run.resolve(file))
                .is_ok_and(|now| cairn_lang::source::sha256(now.text()) != **checked)
        };
        let named = |(file, _): (&String, &String)| format!("`{file}`");
        let imported: Vec<String> = imported.filter(|f| !unchanged(f)).map(named).collect();
        let called: Vec<String> = called.filter(|f| !unchanged(f)).map(named).collect();
        let how = match (imported.is_empty(), called.is_empty()) {
            (true, true) => return Ok((recorded, None)),
            (false, true) => "imported",
            (true, false) => "run",
            (false, false) => "imported or run",
        };
        let mut edited = imported;
        edited.extend(called);
        format!("{}, {how} by `{}`,", edited.join(", "), run.file)
    };
    let plan = checked(&source)?;
    Ok((
        recorded,
        Some(Edited {
            files,
            source,
            plan,
        }),
    ))
}
