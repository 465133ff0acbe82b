//! `cairn graph`: the checked plan as Mermaid, DOT or JSON.

use std::io::Write;
use std::path::Path;

use super::report;
use super::GraphFormat;
use crate::check;
use crate::error::Error;
use crate::export;
use crate::source::Source;

pub fn run(path: &Path, format: GraphFormat) -> Result<(), Error> {
    let source = Source::read(path)?;
    let checked = check::check(&source);
    report::human(&checked.diagnostics);
    let Some(plan) = checked.plan else {
        let count = checked.diagnostics.iter().filter(|d| d.is_error()).count();
        report::error(&Error::Invalid { count });
        return Err(Error::Invalid { count });
    };
    let text = match format {
        GraphFormat::Mermaid => export::mermaid(&plan),
        GraphFormat::Dot => export::dot(&plan),
        GraphFormat::Json => {
            let mut json = serde_json::to_string_pretty(&plan).expect("plans serialize");
            json.push('\n');
            json
        }
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(Error::Output)
}
