//! Where failed steps went wrong: the plan's line with a caret under the
//! code that failed, printed after a run's summary.

use std::sync::Arc;

use cairn_engine::failure::{ErrorKind, Location};
use cairn_engine::run::{Report, StepStatus};
use cairn_lang::plan::Plan;
use cairn_lang::source::Source;

/// At most this many snippets after a run: a fan-out whose thousand
/// instances fail at one line shows it once, and a long list hides nothing
/// `cairn status` does not show.
const MOST: usize = 5;

/// One failed step at its place in the plan.
#[derive(Debug)]
struct StepFailure {
    step: String,
    message: String,
    plan: miette::NamedSource<String>,
    at: miette::SourceSpan,
    /// The label under the caret: the failure's kind (and exit code).
    what: String,
    also: Option<String>,
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` failed: {}", self.step, self.message)
    }
}

impl std::error::Error for StepFailure {}

impl miette::Diagnostic for StepFailure {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new("cairn::step_failed"))
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.plan)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let label = miette::LabeledSpan::new_with_span(Some(self.what.clone()), self.at);
        Some(Box::new(std::iter::once(label)))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.also
            .as_ref()
            .map(|also| Box::new(also) as Box<dyn std::fmt::Display>)
    }
}

/// The snippets for `report`'s failed steps that know where they failed
/// in `source` (not those of imported plans, whose code is in other files),
/// one per place.
pub fn render(source: &Arc<Source>, plan: &Plan, report: &Report) -> String {
    let mut places: Vec<(Location, StepFailure, usize)> = Vec::new();
    for step in &report.steps {
        let (StepStatus::Failed, Some(error)) = (step.status, &step.error) else {
            continue;
        };
        let Some(at) = error.at else { continue };
        if error.kind == ErrorKind::Cancelled {
            continue;
        }
        let task = cairn_lang::plan::part_of(&step.id).unwrap_or(&step.id);
        if plan.task(task).is_none_or(|t| t.import.is_some()) {
            continue;
        }
        if let Some((_, _, more)) = places.iter_mut().find(|(place, ..)| *place == at) {
            *more += 1;
            continue;
        }
        let Some(span) = span_of(source, at) else {
            continue;
        };
        let prefix = format!("line {}, column {}: ", at.line, at.column);
        let message = error
            .message
            .strip_prefix(&prefix)
            .unwrap_or(&error.message);
        let what = match error.code {
            Some(code) => format!("{} {code}", error.kind),
            None => error.kind.to_string(),
        };
        let failure = StepFailure {
            step: step.id.clone(),
            message: message.to_owned(),
            plan: miette::NamedSource::new(source.name(), source.text().to_owned()),
            at: span.into(),
            what,
            also: None,
        };
        places.push((at, failure, 0));
    }
    let mut out = String::new();
    for (_, mut failure, more) in places.into_iter().take(MOST) {
        if more > 0 {
            let s = if more == 1 { "" } else { "s" };
            failure.also = Some(format!("{more} more step{s} failed here"));
        }
        out.push_str(&super::report::render_miette(&failure));
    }
    out
}

/// The bytes from `at` to the end of its line (trailing blanks left out),
/// if `at` is inside the file.
fn span_of(source: &Source, at: Location) -> Option<std::ops::Range<usize>> {
    let index = (at.line as usize).checked_sub(1)?;
    if index >= source.line_count() {
        return None;
    }
    let line = source.line_range(index);
    let text = &source.text()[line.clone()];
    let skip = (at.column as usize).saturating_sub(1);
    let start = line.start + text.char_indices().nth(skip).map(|(i, _)| i)?;
    let end = line.start + text.trim_end().len();
    Some(start..end.max(start + 1))
}
