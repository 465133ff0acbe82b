//! Param values: defaults, and `--set` text read as a literal of each param's type.
//!
//! A param's default decides how `--set name=text` reads: an integer default
//! takes an integer, a float default a number, a bool `true` or `false`, an
//! array or map JSON; a string default — or one of any other type — takes
//! the text as it is. The text is never evaluated as Rhai, so `--set n=1+1`
//! is refused for an integer param and is the string `"1+1"` for a string one.

use rhai::{Dynamic, Map};

use super::step;
use crate::error::Error;
use cairn_lang::plan::{Param, Plan, Script};

/// Every `--set` name must be a param of the plan, and every value a literal
/// of that param's type. Cheap when nothing is set: no default is evaluated.
pub fn check_params(plan: &Plan, params: &[(String, String)]) -> Result<(), Error> {
    check_names(plan, params)?;
    if params.is_empty() {
        return Ok(());
    }
    // The engine the run evaluates defaults with: no capabilities.
    let sandbox = crate::script::Sandbox::new([&[][..]], &crate::Registry::empty());
    param_values(plan, params, &sandbox.engine(&[])).map(|_| ())
}

/// The plan's params as code sees them: defaults, overridden by `--set`
/// values (name and text, as given on the command line, stored with a
/// recorded run, or set with the REPL's `:set`), each read as a literal of
/// the type of its param's default.
pub fn param_values(
    plan: &Plan,
    params: &[(String, String)],
    engine: &rhai::Engine,
) -> Result<Dynamic, Error> {
    check_names(plan, params)?;
    let given = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, text)| Given::Text(text))
    };
    let limit = std::time::Duration::from_millis(plan.default_timeout_ms);
    crate::script::context::within(limit, || resolve(engine, &plan.params, given, ""))
}

/// Params in order: an override if given, else the default, which may read
/// the params before it. Overrides here are values already (an import's
/// `with` values), used as they are.
pub(super) fn param_map(
    engine: &rhai::Engine,
    params: &[Param],
    overrides: &[(String, Dynamic)],
    prefix: &str,
) -> Result<Dynamic, Error> {
    let given = |name: &str| {
        overrides
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, value)| Given::Value(value.clone()))
    };
    resolve(engine, params, given, prefix)
}

/// Evaluates an expression with only `params` in scope.
pub(super) fn eval_with_params(
    engine: &rhai::Engine,
    script: &Script,
    params: Dynamic,
) -> Result<Dynamic, String> {
    let ast = script
        .ast
        .as_ref()
        .ok_or_else(|| "the plan was not compiled".to_owned())?;
    let mut scope = rhai::Scope::new();
    scope.push_dynamic("params", params);
    for name in ["input", "outputs", "task", "result", "failure"] {
        scope.push_dynamic(name, Dynamic::UNIT);
    }
    crate::script::context::within(PARAM_TIME_LIMIT, || {
        engine.eval_ast_with_scope::<Dynamic>(&mut scope, ast)
    })
    .map_err(|e| step::describe(&e))
}

/// The wall-clock limit of one param default or `with` value: code outside
/// any step is bounded by time too, not only by its operations.
const PARAM_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What overrides a param's default.
enum Given<'a> {
    /// A value, used as it is.
    Value(Dynamic),
    /// `--set` text, read by the type of the default.
    Text(&'a str),
}

fn resolve<'a>(
    engine: &rhai::Engine,
    params: &[Param],
    given: impl Fn(&str) -> Option<Given<'a>>,
    prefix: &str,
) -> Result<Dynamic, Error> {
    let mut map = Map::new();
    for param in params {
        let name = &param.name;
        let default = |map: &Map| {
            eval_with_params(engine, &param.default, Dynamic::from_map(map.clone()))
                .map_err(|e| Error::Usage(format!("{prefix}param `{name}`: {e}")))
        };
        let value = match given(name) {
            Some(Given::Value(value)) => value,
            // The default is evaluated only to learn the type it takes.
            Some(Given::Text(text)) => literal(name, text, &default(&map)?)?,
            None => default(&map)?,
        };
        map.insert(name.as_str().into(), value);
    }
    Ok(Dynamic::from_map(map))
}

/// `--set name=text` as a value of the type of the param's default.
fn literal(name: &str, text: &str, default: &Dynamic) -> Result<Dynamic, Error> {
    let refuse = |takes: &str, why: Option<String>| {
        let why = why.map(|w| format!(": {w}")).unwrap_or_default();
        Error::Usage(format!(
            "`--set {name}={}`: param `{name}` takes {takes} (its default is {}){why}",
            abbreviate(text),
            abbreviate(&shown(default)),
        ))
    };
    // Numbers, bools and JSON may have spaces around them; text keeps its own.
    let trimmed = text.trim();
    if default.is_int() {
        trimmed
            .parse::<rhai::INT>()
            .map(Dynamic::from_int)
            .map_err(|_| refuse("an integer", None))
    } else if default.is_float() {
        match trimmed.parse::<rhai::FLOAT>() {
            Ok(x) if x.is_finite() => Ok(Dynamic::from_float(x)),
            _ => Err(refuse("a number", None)),
        }
    } else if default.is_bool() {
        match trimmed {
            "true" => Ok(Dynamic::TRUE),
            "false" => Ok(Dynamic::FALSE),
            _ => Err(refuse("`true` or `false`", None)),
        }
    } else if default.is_array() || default.is_map() {
        let (takes, fits): (&str, fn(&serde_json::Value) -> bool) = if default.is_array() {
            ("a JSON array", serde_json::Value::is_array)
        } else {
            ("a JSON object", serde_json::Value::is_object)
        };
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| refuse(takes, Some(e.to_string())))?;
        if !fits(&value) {
            return Err(refuse(takes, None));
        }
        rhai::serde::to_dynamic(&value).map_err(|e| refuse(takes, Some(e.to_string())))
    } else {
        // A string default, or one of another type (`()`, a char): text.
        Ok(Dynamic::from(unquoted(text)))
    }
}

/// The text, or what it spells if it is a JSON string in double quotes, so
/// `name="x"` (the REPL's `:set name = "x"`, a run recorded before `--set`
/// took literals) and `name=x` give the same string. Nothing is evaluated.
fn unquoted(text: &str) -> String {
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        if let Ok(inner) = serde_json::from_str::<String>(text) {
            return inner;
        }
    }
    text.to_owned()
}

/// A default as one would write it after `--set`: JSON if it has a JSON form.
fn shown(value: &Dynamic) -> String {
    rhai::serde::from_dynamic::<serde_json::Value>(value)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| value.to_string())
}

/// At most 60 characters of `text`, for a one-line message.
fn abbreviate(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Every `--set` name must be a param of the plan.
fn check_names(plan: &Plan, params: &[(String, String)]) -> Result<(), Error> {
    let Some((name, _)) = params
        .iter()
        .find(|(name, _)| !plan.params.iter().any(|p| &p.name == name))
    else {
        return Ok(());
    };
    let names = plan.params.iter().map(|p| p.name.as_str());
    Err(Error::Usage(if plan.params.is_empty() {
        format!("`--set {name}=…`: the plan has no params")
    } else if let Some(close) = cairn_lang::check::closest(name, names.clone()) {
        format!("`--set {name}=…`: the plan has no param `{name}`; did you mean `{close}`?")
    } else {
        let known: Vec<String> = names.map(|n| format!("`{n}`")).collect();
        format!(
            "`--set {name}=…`: the plan has no param `{name}` (it has {})",
            known.join(", ")
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, default: Dynamic) -> Result<Dynamic, String> {
        literal("p", text, &default).map_err(|e| e.to_string())
    }

    #[test]
    fn set_text_reads_by_the_defaults_type_and_is_never_evaluated() {
        assert_eq!(read("42", Dynamic::from_int(3)).unwrap().as_int(), Ok(42));
        assert_eq!(
            read("1+1", Dynamic::from_int(3)).unwrap_err(),
            "`--set p=1+1`: param `p` takes an integer (its default is 3)"
        );
        assert_eq!(
            read("1+1", Dynamic::from("x")).unwrap().into_string(),
            Ok("1+1".to_owned())
        );
        assert_eq!(
            read("true", Dynamic::from("x")).unwrap().into_string(),
            Ok("true".to_owned())
        );
        assert_eq!(
            read("\"a b\"", Dynamic::from("x")).unwrap().into_string(),
            Ok("a b".to_owned())
        );
        assert_eq!(
            read("\"a", Dynamic::from("x")).unwrap().into_string(),
            Ok("\"a".to_owned())
        );
        assert_eq!(
            read("2", Dynamic::from_float(0.5)).unwrap().as_float(),
            Ok(2.0)
        );
        assert!(read("inf", Dynamic::from_float(0.5)).is_err());
        assert!(read("yes", Dynamic::FALSE)
            .unwrap_err()
            .contains("takes `true` or `false` (its default is false)"));
        assert_eq!(
            read("x", Dynamic::UNIT).unwrap().into_string(),
            Ok("x".to_owned())
        );
        assert!(read("{}", Dynamic::from_array(vec![]))
            .unwrap_err()
            .contains("takes a JSON array (its default is [])"));
        assert!(read("[1]", Dynamic::from_map(Map::new()))
            .unwrap_err()
            .contains("takes a JSON object (its default is {})"));
    }
}
