//! Syntax errors in plain words: the broken line is explained, never pest's rule names.

use std::sync::Arc;

use pest::error::InputLocation;
use pest::Parser;

use super::grammar::{PlanParser, Rule};
use crate::diagnostic::{Code, Diagnostic};
use crate::source::Source;
use crate::span::Span;

/// Builds the diagnostic for an item chunk that did not parse.
pub fn syntax(source: &Arc<Source>, chunk: Span, err: pest::error::Error<Rule>) -> Diagnostic {
    let text = &source.text()[chunk.start..chunk.end];
    let (pos, tokens) = detailed(text).unwrap_or_else(|| {
        let pos = match err.location {
            InputLocation::Pos(p) | InputLocation::Span((p, _)) => p,
        };
        (pos, Vec::new())
    });
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[pos..]
        .find(['\n', '\r'])
        .map_or(text.len(), |i| pos + i);
    let line = &text[line_start..line_end];
    let problem = if line_start == 0 || !line.starts_with(' ') {
        header(line, pos - line_start)
    } else {
        field(text, line_start, line, pos - line_start)
    }
    .unwrap_or_else(|| generic(text, pos, &tokens));
    let at = chunk.start + line_start;
    Diagnostic::error(Code::Syntax, source, problem.message)
        .label(
            Span::new(at + problem.start, at + problem.end),
            problem.label,
        )
        .help(problem.help)
}

struct Problem {
    message: String,
    /// Byte range within the line.
    start: usize,
    end: usize,
    label: &'static str,
    help: String,
}

const HEADER_HELP: &str =
    "items start at column 0: `task <id> \"Title\" [kind:<kind>] [using:<cap>,…]`, or `plan`, `decision`, `gate`";
const ID_RULE: &str =
    "ids start with a lowercase letter and use lowercase letters, digits, `-` and `_`";

/// Re-parses with pest's detailed tracking (slower, so only on failure) for
/// the furthest position reached and the literal tokens expected there.
fn detailed(text: &str) -> Option<(usize, Vec<String>)> {
    // pest's switch is global and read when a parse starts: hold it on for
    // the whole of this parse even if other threads report errors too.
    static DETAIL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let result = {
        let _guard = DETAIL.lock().unwrap_or_else(|e| e.into_inner());
        pest::set_error_detail(true);
        let result = PlanParser::parse(Rule::item_only, text);
        pest::set_error_detail(false);
        result
    };
    let attempts = result.err()?.parse_attempts()?;
    let tokens = attempts
        .expected_tokens()
        .into_iter()
        .map(|t| t.to_string())
        // Ranges and identifier characters only say "more of the same word".
        .filter(|t| !(t.contains("..") || matches!(t.as_str(), " " | "_" | "-" | "BUILTIN_RULE")))
        .map(|t| match t.as_str() {
            "\n" | "\r\n" => "end of line".to_owned(),
            _ => format!("`{t}`"),
        })
        .collect();
    Some((attempts.max_position, tokens))
}

/// Explains a broken item header line word by word.
fn header(line: &str, pos: usize) -> Option<Problem> {
    let words = words(line);
    let problem = |message: String, (start, end): (usize, usize), label| {
        Some(Problem {
            message,
            start,
            end,
            label,
            help: HEADER_HELP.to_owned(),
        })
    };
    let &(kw_start, kw_end) = words.first()?;
    let keyword = &line[kw_start..kw_end];
    if !matches!(keyword, "plan" | "task" | "decision" | "gate") {
        let suggestion = crate::check::closest(keyword, ["plan", "task", "decision", "gate"]);
        return Some(Problem {
            message: format!("expected `plan`, `task`, `decision` or `gate`, found `{keyword}`"),
            start: kw_start,
            end: kw_end,
            label: "not an item keyword",
            help: suggestion.map_or_else(
                || HEADER_HELP.to_owned(),
                |s| format!("did you mean `{s}`?"),
            ),
        });
    }
    let Some(&(id_start, id_end)) = words.get(1) else {
        return problem(
            format!("expected an id after `{keyword}`"),
            (kw_end, kw_end),
            "id missing",
        );
    };
    let id = &line[id_start..id_end];
    let valid_id = id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid_id {
        return problem(
            format!("`{id}` is not a valid id: {ID_RULE}"),
            (id_start, id_end),
            "invalid id",
        );
    }
    let rest = &line[id_end..];
    let after = id_end + (rest.len() - rest.trim_start().len());
    if !rest.trim_start().starts_with('"') {
        let end = words.get(2).map_or(after, |w| w.1);
        return problem(
            format!("expected a title in double quotes after `{id}`"),
            (after, end),
            "title missing",
        );
    }
    if !has_closing_quote(&line[after + 1..]) {
        return problem(
            "the title has no closing `\"`".into(),
            (after, line.len()),
            "unclosed title",
        );
    }
    let found = word_at(line, pos);
    let found_text = &line[found.0..found.1];
    let before = line[..pos.min(line.len())].trim_end();
    let attr = ["kind", "using"]
        .into_iter()
        .find(|a| found_text.starts_with(a) || before.ends_with(a));
    if let Some(bare) = ["kind:", "using:"]
        .into_iter()
        .find(|a| found_text == *a || before.ends_with(a))
    {
        let what = if bare == "kind:" {
            "a kind name"
        } else {
            "a capability"
        };
        let at = if found_text == bare {
            found
        } else {
            (before.len() - bare.len(), before.len())
        };
        return problem(
            format!("expected {what} right after `{bare}`"),
            at,
            "value missing",
        );
    }
    if let Some(name) = attr {
        let found = if before.ends_with(name) {
            (before.len() - name.len(), before.len())
        } else {
            found
        };
        return problem(
            format!("expected `{name}:` followed by a value, with no space after the name"),
            found,
            "here",
        );
    }
    problem(
        format!(
            "expected `kind:<name>`, `using:<capability>` or the end of the line, found {}",
            describe(found_text)
        ),
        found,
        "unexpected",
    )
}

/// Explains a broken field line.
fn field(text: &str, line_start: usize, line: &str, pos: usize) -> Option<Problem> {
    let content = line.trim_start();
    let indent = line.len() - content.len();
    let previous = text[..line_start.saturating_sub(1)]
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let previous_indent = previous.len() - previous.trim_start().len();
    if previous.trim_end().ends_with('|') && indent <= previous_indent {
        return Some(Problem {
            message: "the block under this `|` is empty, so this line was read as a field".into(),
            start: indent,
            end: line.len(),
            label: "not indented deeper than the field",
            help: "indent a block's lines deeper than the field that opens it".into(),
        });
    }
    // A YAML-style list: `- …` lines at the indentation of their field.
    let list_field = previous
        .trim()
        .strip_suffix(':')
        .filter(|name| matches!(*name, "expect" | "checks" | "input"));
    if let Some(name) = list_field.filter(|_| indent == previous_indent) {
        return Some(Problem {
            message: format!("the entries under `{name}:` are at its own indentation"),
            start: 0,
            end: line.len(),
            label: "not indented under the field",
            help: format!("indent the list under `{name}:`: its lines go deeper than the field, e.g. two more spaces"),
        });
    }
    let first_word = content.split(' ').next().unwrap_or("");
    if matches!(first_word, "plan" | "task" | "decision" | "gate")
        && content.len() > first_word.len()
    {
        return Some(Problem {
            message: format!("`{first_word}` items start at column 0, but this line is indented"),
            start: 0,
            end: indent,
            label: "indentation",
            help: "remove the indentation; only fields are indented under an item".into(),
        });
    }
    if first_word == "param" {
        let name = content[5..]
            .trim_start()
            .split([' ', '='])
            .next()
            .unwrap_or("");
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        let at = indent + content.find(name).unwrap_or(0);
        let (message, label) = if name.is_empty() || !valid {
            (
                format!("`{name}` is not a valid param name: {ID_RULE}"),
                "invalid name",
            )
        } else {
            (
                format!("expected `= <value>` after `param {name}`"),
                "value missing",
            )
        };
        return Some(Problem {
            message,
            start: at,
            end: at + name.len().max(1),
            label,
            help: "params look like `param <name> = <value>`".into(),
        });
    }
    let previous_field = previous.trim();
    if indent > previous_indent
        && matches!(previous_field, "expect:" | "checks:")
        && !content.starts_with("- ")
    {
        return Some(Problem {
            message: format!("entries under `{previous_field}` start with `- `"),
            start: indent,
            end: line.len(),
            label: "entry without `- `",
            help: format!("write `- {content}`"),
        });
    }
    if let Some(before) = content.trim_end().strip_suffix("->") {
        let end = indent + before.len() + 2;
        return Some(Problem {
            message: "expected an id after `->`".into(),
            start: end,
            end,
            label: "target missing",
            help: "routes and branches name the step they lead to: `-> <id>`".into(),
        });
    }
    let name_end = content
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ' '))
        .unwrap_or(content.len());
    let name = content[..name_end].trim_end();
    let next = content[name_end..].chars().next();
    if !name.is_empty()
        && !matches!(next, Some(':' | '-' | '='))
        && !content.starts_with("when ")
        && !content.starts_with("param ")
    {
        let first = name.split(' ').next().unwrap_or(name);
        return Some(Problem {
            message: format!("expected `:` after the field name `{first}`"),
            start: indent,
            end: indent + first.len(),
            label: "field without `:`",
            help: format!("write `{first}: <value>`"),
        });
    }
    if content.starts_with("when ") && !content.contains("->") {
        return Some(Problem {
            message: "expected `-> <id>` after the branch condition".into(),
            start: indent,
            end: line.len(),
            label: "branch without a target",
            help: "branches look like `when <condition> -> <id>`; a step's own condition is `when: <condition>`".into(),
        });
    }
    let _ = pos;
    None
}

/// Falls back on pest's expected tokens at the furthest position.
fn generic(text: &str, pos: usize, tokens: &[String]) -> Problem {
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[pos..]
        .find(['\n', '\r'])
        .map_or(text.len(), |i| pos + i);
    let found = word_at(&text[line_start..line_end], pos - line_start);
    let found_text = &text[line_start + found.0..line_start + found.1];
    let found_desc = if pos >= text.len() {
        "end of file".to_owned()
    } else {
        describe(found_text)
    };
    let mut tokens = tokens.to_vec();
    tokens.sort();
    tokens.dedup();
    let message = match tokens.as_slice() {
        [] => format!("unexpected {found_desc}"),
        [one] => format!("expected {one}, found {found_desc}"),
        [init @ .., last] => format!("expected {} or {last}, found {found_desc}", init.join(", ")),
    };
    Problem {
        message,
        start: found.0,
        end: found.1,
        label: "here",
        help:
            "fields are indented under their item and look like `name: value`; see docs/language.md"
                .into(),
    }
}

/// Whether `rest` (after an opening quote) holds an unescaped closing quote.
fn has_closing_quote(rest: &str) -> bool {
    let mut escaped = false;
    for c in rest.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return true,
            _ => escaped = false,
        }
    }
    false
}

/// Byte ranges of the space-separated words of a line, a quoted title being one word.
fn words(line: &str) -> Vec<(usize, usize)> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b' ' {
            i += 1;
            continue;
        }
        if bytes[i] == b'#' {
            break;
        }
        let start = i;
        if bytes[i] == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(bytes.len());
        } else {
            while i < bytes.len() && bytes[i] != b' ' {
                i += 1;
            }
        }
        out.push((start, i));
    }
    out
}

/// The word at (or right after) `pos`, as a byte range of `line`.
fn word_at(line: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(line.len());
    let rest = &line[pos..];
    let skip = rest.len() - rest.trim_start_matches(' ').len();
    let start = pos + skip;
    let len = line[start..]
        .char_indices()
        .find(|&(i, c)| c == ' ' || (i > 0 && !(c.is_alphanumeric() || c == '_' || c == '-')))
        .map_or(line.len() - start, |(i, _)| {
            i.max(line[start..].chars().next().map_or(0, char::len_utf8))
        });
    (start, start + len)
}

fn describe(word: &str) -> String {
    if word.is_empty() {
        "the end of the line".to_owned()
    } else {
        format!("`{word}`")
    }
}
