//! The standard library: template plans embedded in the binary, and the
//! tools their tasks use (a simulated service and a load generator).

mod load;
mod service;

use std::sync::Arc;

use rhai::Map;
use serde_json::json;

pub use service::Service;

use crate::script::context::{outside, runtime};

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
        text: include_str!("../../stdlib/debug-500.plan"),
    },
    Template {
        name: "research-then-build",
        text: include_str!("../../stdlib/research-then-build.plan"),
    },
    Template {
        name: "feature-with-approval",
        text: include_str!("../../stdlib/feature-with-approval.plan"),
    },
    Template {
        name: "refactor-with-tests",
        text: include_str!("../../stdlib/refactor-with-tests.plan"),
    },
    Template {
        name: "staged-rollout",
        text: include_str!("../../stdlib/staged-rollout.plan"),
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

/// An engine with the built-in capabilities plus the stdlib's tools:
/// `simulate` (`simulated_service()`) and `load` (`load_test(url, options)`).
pub fn engine() -> crate::Engine {
    let mut engine = crate::Engine::new();
    engine.register_capability("simulate", &["simulated_service"], |rhai| {
        rhai.register_fn(
            "simulated_service",
            || -> Result<Map, Box<rhai::EvalAltResult>> {
                outside("simulated_service", json!([]), |_| {
                    let service = Service::start()
                        .map_err(|e| runtime(format!("simulated_service(): {e}")))?;
                    let mut map = Map::new();
                    map.insert("url".into(), service.url.into());
                    Ok(map)
                })
            },
        );
    });
    engine.register_capability("load", &["load_test"], load::register);
    engine
}

/// The stdlib tools as run options need them.
pub fn registrars() -> std::collections::HashMap<String, crate::script::Registrar> {
    engine()
        .registrars()
        .iter()
        .map(|(k, v)| (k.clone(), Arc::clone(v)))
        .collect()
}
