//! `cairn graph`: the checked plan as Mermaid, DOT or JSON.

use std::io::Write;
use std::path::Path;

use super::report;
use super::GraphFormat;
use crate::error::Error;
use cairn_lang::export;

pub fn run(path: &Path, format: GraphFormat) -> Result<(), Error> {
    let (_, plan) = report::load(path)?;
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
