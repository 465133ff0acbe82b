//! The plan a recorded run goes on with: as it was checked when the run
//! began, and the plan file as it is now if it (or a plan it imports) changed.

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
        let imports: Vec<String> = recorded
            .imports
            .iter()
            .filter_map(|import| Some((import.file.as_ref()?, &import.sha256)))
            .filter(|(file, checked)| {
                // A file that cannot be read now is not compared, like a
                // plan file that is gone.
                cairn_engine::read::read(&run.resolve(file))
                    .is_ok_and(|now| cairn_lang::source::sha256(now.text()) != **checked)
            })
            .map(|(file, _)| format!("`{file}`"))
            .collect();
        if imports.is_empty() {
            return Ok((recorded, None));
        }
        format!("{}, imported by `{}`,", imports.join(", "), run.file)
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
