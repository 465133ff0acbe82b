//! Which fields exist, where each may appear, and what its value looks like.

use crate::syntax::ast::ItemKeyword;

/// A field cairn knows: its name, the items that take it, and the shape of
/// its value for "expected …" messages.
pub struct FieldSpec {
    pub name: &'static str,
    pub places: &'static [ItemKeyword],
    pub shape: &'static str,
    /// May appear more than once in one item.
    pub repeatable: bool,
}

use ItemKeyword::{Decision as D, Gate as G, Plan as P, Task as T};

const STEPS: &[ItemKeyword] = &[T, D, G];
const ALL: &[ItemKeyword] = &[P, T, D, G];

macro_rules! spec {
    ($name:literal, $places:expr, $shape:literal) => {
        spec!($name, $places, $shape, false)
    };
    ($name:literal, $places:expr, $shape:literal, $repeatable:literal) => {
        FieldSpec {
            name: $name,
            places: $places,
            shape: $shape,
            repeatable: $repeatable,
        }
    };
}

/// Every field, plan settings first.
pub const FIELDS: &[FieldSpec] = &[
    spec!("param", &[P], "`param <name> = <value>`", true),
    spec!(
        "use",
        &[P],
        "`use \"<template or path>\" as <alias> [with name = value, …]`",
        true
    ),
    spec!("hypothesis", &[P], "`hypothesis <id> \"statement\"`", true),
    spec!(
        "max_parallel",
        &[P, T],
        "a whole number, e.g. `max_parallel: 4`"
    ),
    spec!(
        "each",
        &[T],
        "an expression giving an array, e.g. `each: outputs[\"files\"]`"
    ),
    spec!(
        "repeat",
        &[T],
        "`max <n>`, optionally followed by `until <condition over result>`, e.g. `repeat: max 5 until result.score >= 8`"
    ),
    spec!(
        "plan",
        &[T],
        "`plan: \"<template or path>\" [with name = value, …]`"
    ),
    spec!(
        "output",
        &[P],
        "an expression over `outputs`, e.g. `output: outputs[\"score\"]`"
    ),
    spec!(
        "allow",
        &[P],
        "capabilities separated by commas, e.g. `allow: sh, fs.read, http(example.com)`"
    ),
    spec!(
        "budget",
        &[P],
        "`time <duration>` and/or `cost <number>`, e.g. `budget: time 10m, cost 5`"
    ),
    spec!("seed", &[P], "a whole number, e.g. `seed: 42`"),
    spec!(
        "functions",
        &[P],
        "`|` and an indented block of Rhai `fn` definitions"
    ),
    spec!(
        "default_timeout",
        &[P],
        "a duration, e.g. `default_timeout: 30m`"
    ),
    spec!(
        "resources",
        &[P, T],
        "`cpu <n>` and/or `mem <size>`, e.g. `resources: cpu 2, mem 512M`"
    ),
    spec!(
        "on failure",
        ALL,
        "`on failure: stop|continue|finish|compensate|abort` or `on failure -> <id>`"
    ),
    spec!("on success", STEPS, "`on success -> <id>`"),
    spec!("on reject", &[G], "`on reject -> <id>`"),
    spec!(
        "needs",
        STEPS,
        "ids separated by commas or spaces, each maybe `.failed`, `.skipped` or `.done`, or `any(…)` of them, e.g. `needs: build, test.failed`",
        true
    ),
    spec!(
        "finally",
        &[T],
        "`true` or `false`, e.g. `finally: true`"
    ),
    spec!("when", STEPS, "an expression, e.g. `when: params.deploy`"),
    spec!("priority", STEPS, "a whole number, e.g. `priority: 10`"),
    spec!(
        "input",
        &[T, G],
        "indented `key: <expression>` lines under `input:` (on a gate, `key: <type> [= <default>]`)"
    ),
    spec!("run", &[T], "an expression, or `|` and an indented block"),
    spec!(
        "compensate",
        &[T],
        "an expression, or `|` and an indented block"
    ),
    spec!(
        "expect",
        &[T],
        "indented `- <expression>` lines under `expect:`"
    ),
    spec!(
        "retry",
        &[T],
        "`<n> [backoff <duration> [factor <number>] [max <duration>]] [total <duration>] [if <condition>]`, e.g. `retry: 3 backoff 1s`"
    ),
    spec!("timeout", &[T, G], "a duration, e.g. `timeout: 30s`"),
    spec!(
        "output_limit",
        &[T],
        "a size from 1K to 8M, e.g. `output_limit: 4M`"
    ),
    spec!(
        "checks",
        &[G],
        "indented `- \"what to check\"` lines under `checks:`"
    ),
    spec!("else", &[D], "`else -> <id>`"),
    spec!("description", ALL, "free text"),
    spec!("owner", ALL, "free text"),
    spec!(
        "labels",
        ALL,
        "labels separated by commas, or indented `- label` lines"
    ),
];

/// The spec of a field by name.
pub fn spec(name: &str) -> Option<&'static FieldSpec> {
    FIELDS.iter().find(|f| f.name == name)
}

/// Names of the fields an item of this keyword takes.
pub fn names_for(keyword: ItemKeyword) -> impl Iterator<Item = &'static str> {
    FIELDS
        .iter()
        .filter(move |f| f.places.contains(&keyword))
        .map(|f| f.name)
}

/// "a task", "a decision", …
pub fn article(keyword: ItemKeyword) -> &'static str {
    match keyword {
        P => "the plan header",
        T => "a task",
        D => "a decision",
        G => "a gate",
    }
}

/// "tasks", "the plan header and tasks", … for "`x` belongs in …".
pub fn places(places: &[ItemKeyword]) -> String {
    let words: Vec<&str> = places
        .iter()
        .map(|p| match p {
            P => "the plan header",
            T => "tasks",
            D => "decisions",
            G => "gates",
        })
        .collect();
    match words.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
