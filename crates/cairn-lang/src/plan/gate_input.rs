//! A gate's typed `input:` fields: how each is declared (`percent: int
//! 1..100 = 10`), what it accepts, and reading an approver's values.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One field an approver fills in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputField {
    /// The field's name (an id).
    pub name: String,
    /// What it holds.
    pub kind: InputKind,
    /// The value taken when the approver gives none, as written (checked
    /// to fit when the plan is).
    pub default: Option<String>,
}

/// The type of a gate's input field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InputKind {
    /// `int` or `int <lo>..<hi>` (bounds inclusive).
    Int {
        /// The smallest value allowed.
        min: Option<i64>,
        /// The largest value allowed.
        max: Option<i64>,
    },
    /// `float`.
    Float,
    /// `bool`: `true` or `false`.
    Bool,
    /// `string`: any text.
    String,
    /// `enum(a, b, …)`: one of these words.
    Enum(Vec<String>),
}

impl InputField {
    /// Reads a declaration: `int 1..100 = 10`, `enum(stable, beta) = stable`,
    /// `string`. The error says what is wrong.
    pub fn declared(name: &str, text: &str) -> Result<Self, String> {
        let (kind, default) = match split_default(text) {
            Some((kind, default)) => (kind.trim(), Some(unquote(default.trim()))),
            None => (text.trim(), None),
        };
        let kind = InputKind::declared(kind)?;
        let field = Self {
            name: name.to_owned(),
            kind,
            default,
        };
        if let Some(default) = &field.default {
            field
                .read(default)
                .map_err(|why| format!("the default of `{name}` does not fit: {why}"))?;
        }
        Ok(field)
    }

    /// What the field accepts, in words: "a whole number from 1 to 100".
    pub fn accepts(&self) -> String {
        match &self.kind {
            InputKind::Int { min, max } => match (min, max) {
                (Some(lo), Some(hi)) => format!("a whole number from {lo} to {hi}"),
                (Some(lo), None) => format!("a whole number of at least {lo}"),
                (None, Some(hi)) => format!("a whole number of at most {hi}"),
                (None, None) => "a whole number".to_owned(),
            },
            InputKind::Float => "a number".to_owned(),
            InputKind::Bool => "`true` or `false`".to_owned(),
            InputKind::String => "any text".to_owned(),
            InputKind::Enum(words) => {
                let words: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
                format!("one of {}", words.join(", "))
            }
        }
    }

    /// An approver's text as the field's value, or why it does not fit.
    pub fn read(&self, text: &str) -> Result<Value, String> {
        let wrong = || format!("`{text}` is not {}", self.accepts());
        match &self.kind {
            InputKind::Int { min, max } => {
                let n: i64 = text.trim().parse().map_err(|_| wrong())?;
                if min.is_some_and(|lo| n < lo) || max.is_some_and(|hi| n > hi) {
                    return Err(wrong());
                }
                Ok(Value::from(n))
            }
            InputKind::Float => {
                let x: f64 = text.trim().parse().map_err(|_| wrong())?;
                serde_json::Number::from_f64(x)
                    .map(Value::Number)
                    .ok_or_else(wrong)
            }
            InputKind::Bool => match text.trim() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(wrong()),
            },
            InputKind::String => Ok(Value::String(text.to_owned())),
            InputKind::Enum(words) => words
                .iter()
                .find(|w| *w == text.trim())
                .map(|w| Value::String(w.clone()))
                .ok_or_else(wrong),
        }
    }

    /// Whether a JSON value (from an embedding application) fits.
    pub fn fits(&self, value: &Value) -> bool {
        match (&self.kind, value) {
            (InputKind::Int { .. }, Value::Number(n)) => n
                .as_i64()
                .is_some_and(|n| self.read(&n.to_string()).is_ok()),
            (InputKind::Float, Value::Number(_)) | (InputKind::Bool, Value::Bool(_)) => true,
            (InputKind::String, Value::String(_)) => true,
            (InputKind::Enum(words), Value::String(s)) => words.contains(s),
            _ => false,
        }
    }
}

impl InputKind {
    fn declared(text: &str) -> Result<Self, String> {
        const SHAPES: &str = "`int [lo..hi]`, `float`, `bool`, `string` or `enum(a, b, …)`";
        if let Some(list) = text
            .strip_prefix("enum")
            .map(str::trim_start)
            .and_then(|t| t.strip_prefix('('))
        {
            let list = list
                .strip_suffix(')')
                .ok_or_else(|| format!("`{text}` has no closing `)`"))?;
            let words: Vec<String> = list.split(',').map(|w| w.trim().to_owned()).collect();
            if words.iter().any(String::is_empty) {
                return Err(format!("`{text}` has an empty choice"));
            }
            return Ok(Self::Enum(words));
        }
        let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
        match (word, rest.trim()) {
            ("int", "") => Ok(Self::Int {
                min: None,
                max: None,
            }),
            ("int", range) => {
                let (lo, hi) = range
                    .split_once("..")
                    .ok_or_else(|| format!("`{range}` is not a range like `1..100`"))?;
                let bound = |b: &str| -> Result<Option<i64>, String> {
                    match b.trim() {
                        "" => Ok(None),
                        b => b
                            .parse()
                            .map(Some)
                            .map_err(|_| format!("`{b}` is not a whole number")),
                    }
                };
                let (min, max) = (bound(lo)?, bound(hi)?);
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        return Err(format!("the range `{range}` is empty"));
                    }
                }
                Ok(Self::Int { min, max })
            }
            ("float", "") => Ok(Self::Float),
            ("bool", "") => Ok(Self::Bool),
            ("string", "") => Ok(Self::String),
            _ => Err(format!("`{text}` is not a field type: write {SHAPES}")),
        }
    }
}

/// `enum(a, b) = a` → (`enum(a, b)`, `a`): the first `=` outside parentheses.
fn split_default(text: &str) -> Option<(&str, &str)> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '=' if depth == 0 => return Some((&text[..i], &text[i + 1..])),
            _ => {}
        }
    }
    None
}

/// A default may be quoted: `note: string = "none given"`.
fn unquote(text: &str) -> String {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .to_owned()
}

/// Reads an approver's `name=value` texts against a gate's fields, with
/// the defaults of those not given: the gate's input, or every problem
/// (an unknown field, a value that does not fit, a field with no default
/// not given), each in words.
pub fn complete(
    fields: &[InputField],
    given: &[(String, String)],
) -> Result<Map<String, Value>, Vec<String>> {
    let mut input = Map::new();
    let mut problems = Vec::new();
    for (name, text) in given {
        match fields.iter().find(|f| &f.name == name) {
            Some(field) => match field.read(text) {
                Ok(value) => {
                    input.insert(name.clone(), value);
                }
                Err(why) => problems.push(format!("input `{name}`: {why}")),
            },
            None => problems.push(unknown(fields, name)),
        }
    }
    let given = |name: &str| given.iter().any(|(n, _)| n == name);
    fill_defaults(fields, given, &mut input, &mut problems);
    problems.is_empty().then_some(input).ok_or(problems)
}

/// Checks input an embedding application gave as JSON, filling defaults.
pub fn complete_json(
    fields: &[InputField],
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<String>> {
    let mut problems = Vec::new();
    let mut input = Map::new();
    for (name, value) in given {
        match fields.iter().find(|f| &f.name == name) {
            Some(field) if field.fits(value) => {
                input.insert(name.clone(), value.clone());
            }
            Some(field) => problems.push(format!(
                "input `{name}`: {value} is not {}",
                field.accepts()
            )),
            None => problems.push(unknown(fields, name)),
        }
    }
    fill_defaults(
        fields,
        |name| given.contains_key(name),
        &mut input,
        &mut problems,
    );
    problems.is_empty().then_some(input).ok_or(problems)
}

/// The defaults of the fields not given; a problem for each with none.
fn fill_defaults(
    fields: &[InputField],
    given: impl Fn(&str) -> bool,
    input: &mut Map<String, Value>,
    problems: &mut Vec<String>,
) {
    for field in fields.iter().filter(|f| !given(&f.name)) {
        match field.default.as_deref().map(|d| field.read(d)) {
            Some(Ok(value)) => {
                input.insert(field.name.clone(), value);
            }
            // Checked when the plan was.
            Some(Err(_)) => {}
            None => problems.push(format!(
                "input `{}` is missing: it takes {} and has no default",
                field.name,
                field.accepts()
            )),
        }
    }
}

fn unknown(fields: &[InputField], name: &str) -> String {
    let names = || fields.iter().map(|f| f.name.as_str());
    match crate::check::closest(name, names()) {
        Some(close) => format!("the gate has no input `{name}`: did you mean `{close}`?"),
        None if fields.is_empty() => format!("the gate has no input `{name}`: it takes none"),
        None => {
            let all: Vec<String> = names().map(|n| format!("`{n}`")).collect();
            format!(
                "the gate has no input `{name}`: it takes {}",
                all.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{complete, InputField};

    fn fields() -> Vec<InputField> {
        vec![
            InputField::declared("percent", "int 1..100 = 10").expect("int"),
            InputField::declared("channel", "enum(stable, beta) = stable").expect("enum"),
            InputField::declared("note", "string").expect("string"),
        ]
    }

    #[test]
    fn declarations_are_read_and_checked() {
        assert_eq!(
            InputField::declared("x", "int 1..3 = 7").unwrap_err(),
            "the default of `x` does not fit: `7` is not a whole number from 1 to 3"
        );
        assert!(InputField::declared("x", "number")
            .unwrap_err()
            .contains("is not a field type"));
        assert_eq!(
            InputField::declared("x", "string = \"a = b\"")
                .expect("string")
                .default
                .as_deref(),
            Some("a = b")
        );
    }

    #[test]
    fn values_are_checked_and_defaults_filled() {
        let given = vec![("note".to_owned(), "looks fine".to_owned())];
        let input = complete(&fields(), &given).expect("complete");
        assert_eq!(
            serde_json::Value::Object(input),
            serde_json::json!({"percent": 10, "channel": "stable", "note": "looks fine"})
        );
        let given = vec![
            ("percent".to_owned(), "250".to_owned()),
            ("chanel".to_owned(), "beta".to_owned()),
        ];
        assert_eq!(
            complete(&fields(), &given).unwrap_err(),
            vec![
                "input `percent`: `250` is not a whole number from 1 to 100".to_owned(),
                "the gate has no input `chanel`: did you mean `channel`?".to_owned(),
                "input `note` is missing: it takes any text and has no default".to_owned(),
            ]
        );
    }
}
