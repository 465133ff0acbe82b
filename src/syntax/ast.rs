//! The syntax tree of a `.plan` file: what was written and where, no meaning yet.

use std::borrow::Cow;

use crate::span::{Span, Spanned};

/// A parsed file: its items in order.
#[derive(Clone, Debug, Default)]
pub struct Document {
    pub items: Vec<Item>,
}

/// Which keyword opened an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKeyword {
    Plan,
    Task,
    Decision,
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
    pub keyword: Spanned<ItemKeyword>,
    pub id: Spanned<String>,
    pub title: Spanned<String>,
    /// `kind:<name>` on the header line.
    pub kind: Option<Spanned<String>>,
    /// `using:<cap>,…` on the header line (every occurrence, in order).
    pub using: Vec<Spanned<String>>,
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

/// `retry: <n> [backoff <dur> [factor <f>] [max <dur>]]`.
#[derive(Clone, Debug)]
pub struct RetrySpec {
    pub count: Spanned<String>,
    pub backoff: Option<Spanned<String>>,
    pub factor: Option<Spanned<String>>,
    pub max: Option<Spanned<String>>,
}

/// `<name> <amount>` in `resources:` and `budget:`.
#[derive(Clone, Debug)]
pub struct Quantity {
    pub name: Spanned<String>,
    pub amount: Spanned<String>,
}

/// One capability in `allow:`, maybe narrowed: `http(host, …)`.
#[derive(Clone, Debug)]
pub struct Grant {
    pub capability: Spanned<String>,
    pub scopes: Vec<Spanned<String>>,
    pub span: Span,
}

/// What a field holds, by the shape the grammar recognised.
#[derive(Clone, Debug)]
pub enum FieldValue {
    Param {
        name: Spanned<String>,
        value: Code,
    },
    /// The value as written; the checker reads it.
    MaxParallel(Spanned<String>),
    /// The value as written; the checker reads it.
    Seed(Spanned<String>),
    Resources(Vec<Quantity>),
    Allow(Vec<Grant>),
    Budget(Vec<Quantity>),
    FailurePolicy(Spanned<String>),
    Needs(Vec<Spanned<String>>),
    Input(Vec<(Spanned<String>, Code)>),
    Run(Code),
    Compensate(Code),
    Expect(Vec<Code>),
    When(Code),
    Retry(Result<RetrySpec, Spanned<String>>),
    /// The value as written; the checker reads it.
    Timeout(Spanned<String>),
    FailureRoute(Spanned<String>),
    SuccessRoute(Spanned<String>),
    /// The value as written; the checker reads it.
    Priority(Spanned<String>),
    Branch {
        condition: Code,
        target: Spanned<String>,
    },
    Else(Spanned<String>),
    Checks(Vec<Spanned<String>>),
    /// `name: value` with nested lines: metadata, or a field cairn does not know.
    Other {
        value: Option<Spanned<String>>,
        lines: Vec<Spanned<String>>,
    },
}
