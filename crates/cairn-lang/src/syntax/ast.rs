//! The syntax tree of a `.plan` file: what was written and where, no meaning yet.

use std::borrow::Cow;

use crate::span::{Span, Spanned};

/// A parsed file: its items in order.
#[derive(Clone, Debug, Default)]
pub struct Document {
    /// The items that parsed, in file order.
    pub items: Vec<Item>,
}

/// Which keyword opened an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKeyword {
    /// `plan`: the header with the plan's settings.
    Plan,
    /// `task`: a unit of work.
    Task,
    /// `decision`: routes to one of several steps.
    Decision,
    /// `gate`: waits for approval.
    Gate,
}

impl ItemKeyword {
    /// The keyword as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plan => "plan",
            Self::Task => "task",
            Self::Decision => "decision",
            Self::Gate => "gate",
        }
    }
}

/// `plan`, `task`, `decision` or `gate`: a header line and its fields.
#[derive(Clone, Debug)]
pub struct Item {
    /// The opening keyword and where it is.
    pub keyword: Spanned<ItemKeyword>,
    /// The id after the keyword.
    pub id: Spanned<String>,
    /// The quoted title, escapes resolved; the span includes the quotes.
    pub title: Spanned<String>,
    /// `kind:<name>` on the header line.
    pub kind: Option<Spanned<String>>,
    /// `using:<cap>,…` on the header line (every occurrence, in order).
    pub using: Vec<Spanned<String>>,
    /// The field lines under the header, in order.
    pub fields: Vec<Field>,
    /// The header line.
    pub header: Span,
}

/// One field line (and the lines nested under it).
#[derive(Clone, Debug)]
pub struct Field {
    /// The field's name (`needs`, `on failure`, `when`, …); known fields
    /// borrow a static name rather than allocate one per line.
    pub name: Spanned<Cow<'static, str>>,
    /// The field's value, by its shape.
    pub value: FieldValue,
    /// The whole field, including nested lines.
    pub span: Span,
}

/// Rhai code as written in the file, with what is needed to map positions back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code {
    /// The code, dedented for blocks, with `\n` line ends.
    pub text: String,
    /// The code's extent in the file.
    pub span: Span,
    /// For each line of `text`, the byte offset in the file where it starts.
    pub line_offsets: Vec<usize>,
}

/// `use "<template or path>" as <alias> [with k = v, …]`.
#[derive(Clone, Debug)]
pub struct UseSpec {
    /// The template name or path, unquoted.
    pub reference: Spanned<String>,
    /// The prefix its steps get (`alias.id`).
    pub alias: Spanned<String>,
    /// `with` values: param name and a Rhai expression.
    pub with: Vec<(Spanned<String>, Code)>,
}

/// `plan: "<template or path>" [with k = v, …]` on a task.
#[derive(Clone, Debug)]
pub struct CallSpec {
    /// The template name or path, unquoted.
    pub reference: Spanned<String>,
    /// `with` values: param name and a Rhai expression.
    pub with: Vec<(Spanned<String>, Code)>,
}

/// `retry: <n> [backoff <dur> [factor <f>] [max <dur>]] [total <dur>] [if <expr>]`.
#[derive(Clone, Debug)]
pub struct RetrySpec {
    /// The number of retries after the first attempt, as written.
    pub count: Spanned<String>,
    /// The first delay, as written (`1s`).
    pub backoff: Option<Spanned<String>>,
    /// The delay multiplier, as written.
    pub factor: Option<Spanned<String>>,
    /// The cap on the delay, as written.
    pub max: Option<Spanned<String>>,
    /// The bound on all attempts together, as written.
    pub total: Option<Spanned<String>>,
    /// The predicate a failure must meet to be retried.
    pub predicate: Option<Code>,
}

/// `repeat: max <n> [until <expr>]`.
#[derive(Clone, Debug)]
pub struct RepeatSpec {
    /// The most iterations, as written; `None` when `max` is missing.
    pub max: Option<Spanned<String>>,
    /// The condition over `result` that ends the loop.
    pub until: Option<Code>,
}

/// `<name> <amount>` in `resources:` and `budget:`.
#[derive(Clone, Debug)]
pub struct Quantity {
    /// The resource name, or `time` / `cost` in `budget:`.
    pub name: Spanned<String>,
    /// The amount as written (`2`, `512M`, `10m`).
    pub amount: Spanned<String>,
}

/// One capability in `allow:`, maybe narrowed: `http(host, …)`.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The capability's name.
    pub capability: Spanned<String>,
    /// The hosts or path globs in the parentheses (empty: no parentheses).
    pub scopes: Vec<Spanned<String>>,
    /// The whole grant, parentheses included.
    pub span: Span,
}

/// One entry of `needs:`: an id (maybe qualified, `a.failed`), or
/// `any(…)` of them.
#[derive(Clone, Debug)]
pub enum NeedEntry {
    /// `a`, `a.failed`, `alias.a.done`.
    One(Spanned<String>),
    /// `any(a.failed, b)`: its members, and the whole entry's span.
    Any(Spanned<Vec<Spanned<String>>>),
}

/// What a field holds, by the shape the grammar recognised.
#[derive(Clone, Debug)]
///
/// Variants larger than a [`Code`] keep their bulk in a box: a large plan
/// holds every field at once, and each is as large as the largest variant.
pub enum FieldValue {
    /// `param <name> = <value>`.
    Param {
        /// The param's name.
        name: Spanned<String>,
        /// The default-value expression.
        value: Box<Code>,
    },
    /// `hypothesis <id> "statement"`.
    Hypothesis {
        /// The hypothesis's id.
        id: Spanned<String>,
        /// What it claims, escapes resolved.
        statement: Box<Spanned<String>>,
    },
    /// `use "<template or path>" as <alias> [with k = v, …]`.
    Use(Box<UseSpec>),
    /// The value as written; the checker reads it.
    MaxParallel(Spanned<String>),
    /// The value as written; the checker reads it.
    Seed(Spanned<String>),
    /// `resources: <name> <amount>, …`.
    Resources(Vec<Quantity>),
    /// `allow: <capability>[(scope, …)], …`.
    Allow(Vec<Grant>),
    /// `budget: time <duration>, cost <number>`.
    Budget(Vec<Quantity>),
    /// `on failure: <policy>`: the policy word as written.
    FailurePolicy(Spanned<String>),
    /// `needs:` entries, in order.
    Needs(Vec<NeedEntry>),
    /// `finally:` as written (`true`, `false`, or anything else to explain).
    Finally(Spanned<String>),
    /// `input:` lines: each key and its expression.
    Input(Vec<(Spanned<String>, Code)>),
    /// `run:` code, inline or a `|` block.
    Run(Code),
    /// `functions:` in the plan header: Rhai `fn` definitions.
    Functions(Code),
    /// `compensate:` code, inline or a `|` block.
    Compensate(Code),
    /// `expect:` expressions, inline or one per `- ` line.
    Expect(Vec<Code>),
    /// `when:` condition.
    When(Code),
    /// `each:` list: the task runs once per element.
    Each(Code),
    /// `plan:` on a task: the plan it runs as a child run.
    Call(Box<CallSpec>),
    /// `output:` in the plan header: what the plan gives a task that runs it.
    Output(Code),
    /// `repeat:`; `Err` holds the value when it does not have the loop's shape.
    Repeat(Result<Box<RepeatSpec>, Spanned<String>>),
    /// `retry:`; `Err` holds the value when it does not have the retry shape.
    Retry(Result<Box<RetrySpec>, Spanned<String>>),
    /// The value as written; the checker reads it.
    Timeout(Spanned<String>),
    /// `default_timeout:` as written; the checker reads it.
    DefaultTimeout(Spanned<String>),
    /// `output_limit:` as written; the checker reads it.
    OutputLimit(Spanned<String>),
    /// `on failure -> <id>`: the fallback's id.
    FailureRoute(Spanned<String>),
    /// `on reject -> <id>` on a gate: where a rejection goes.
    RejectRoute(Spanned<String>),
    /// `on success -> <id>`: the target's id.
    SuccessRoute(Spanned<String>),
    /// The value as written; the checker reads it.
    Priority(Spanned<String>),
    /// A decision's `when <condition> -> <id>` line.
    Branch {
        /// The expression between `when` and `->`.
        condition: Box<Code>,
        /// The id after `->`.
        target: Spanned<String>,
    },
    /// `else -> <id>`: the target's id.
    Else(Spanned<String>),
    /// `checks:` items; quoted ones are unquoted with escapes resolved.
    Checks(Vec<Spanned<String>>),
    /// `name: value` with nested lines: metadata, or a field cairn does not know.
    Other {
        /// The text after the colon, as written (quotes kept), if any.
        value: Option<Spanned<String>>,
        /// Each line nested under the field, without indentation or trailing spaces.
        lines: Vec<Spanned<String>>,
    },
}

#[cfg(test)]
mod tests {
    /// A plan's every item and field are held at once while it is checked:
    /// a field growing past this (a large variant not boxed) costs every
    /// step of a large plan.
    #[test]
    fn fields_stay_small() {
        let field = std::mem::size_of::<super::Field>();
        assert!(field <= 136, "Field is {field} bytes");
    }
}
