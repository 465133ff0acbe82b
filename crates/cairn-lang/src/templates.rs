//! The stdlib's template plans, compiled in, and the [`Resolver`] that
//! finds them by name (no file system).

use crate::check::{Found, Resolver};
use crate::source::Source;

/// One template plan.
#[derive(Clone, Copy, Debug)]
pub struct Template {
    /// The name `cairn run <name>` and `use "<name>"` take.
    pub name: &'static str,
    /// The plan's text.
    pub text: &'static str,
}

/// Every template, in the order `cairn templates` lists them.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "debug-500",
        text: include_str!("../templates/debug-500.plan"),
    },
    Template {
        name: "research-then-build",
        text: include_str!("../templates/research-then-build.plan"),
    },
    Template {
        name: "feature-with-approval",
        text: include_str!("../templates/feature-with-approval.plan"),
    },
    Template {
        name: "refactor-with-tests",
        text: include_str!("../templates/refactor-with-tests.plan"),
    },
    Template {
        name: "staged-rollout",
        text: include_str!("../templates/staged-rollout.plan"),
    },
];

/// The template with this name.
pub fn template(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// A param of a template, as `cairn templates` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ParamDoc {
    /// Its name.
    pub name: String,
    /// Its default, as written.
    pub default: String,
    /// The comment line just above it.
    pub doc: String,
}

impl Template {
    /// The first line of the comment above the plan header.
    pub fn purpose(&self) -> String {
        self.text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#').trim())
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// Its params with their defaults and the comment line above each.
    pub fn params(&self) -> Vec<ParamDoc> {
        let mut params = Vec::new();
        let mut comment = String::new();
        for line in self.text.lines() {
            let trimmed = line.trim();
            if let Some(text) = trimmed.strip_prefix('#') {
                comment = text.trim().to_owned();
                continue;
            }
            if let Some((name, default)) = trimmed
                .strip_prefix("param ")
                .and_then(|rest| rest.split_once('='))
            {
                params.push(ParamDoc {
                    name: name.trim().to_owned(),
                    default: default.trim().to_owned(),
                    doc: std::mem::take(&mut comment),
                });
                continue;
            }
            comment.clear();
            if !line.starts_with(' ') && !line.starts_with("plan ") && !trimmed.is_empty() {
                break;
            }
        }
        params
    }
}

/// The stdlib's templates only: no file is read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Templates;

impl Resolver for Templates {
    fn resolve(&self, _from: &Source, reference: &str) -> Result<Found, String> {
        let template =
            template(reference).ok_or_else(|| "it is not a stdlib template".to_owned())?;
        Ok(Found {
            identity: format!("template {}", template.name),
            source: Source::new(template.name, template.text),
            file: None,
        })
    }

    fn identity(&self, source: &Source) -> String {
        match template(source.name()) {
            Some(t) if t.text == source.text() => format!("template {}", t.name),
            _ => source.name().to_owned(),
        }
    }

    fn templates(&self) -> Vec<String> {
        TEMPLATES.iter().map(|t| t.name.to_owned()).collect()
    }
}
