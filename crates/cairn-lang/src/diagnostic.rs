//! Diagnostics: what is wrong, where, and how to fix it — rendered by miette.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::source::Source;
use crate::span::Span;

/// How bad a diagnostic is; errors stop a plan from running, warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Reported, but the plan may still run.
    Warning,
    /// The plan cannot run until it is fixed.
    Error,
}

/// One problem found in a plan.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// Whether this is an error or a warning.
    pub severity: Severity,
    /// The stable `cairn::…` code of the problem.
    pub code: Code,
    /// What is wrong, in one sentence.
    pub message: String,
    /// Places in the source to point at; the first is the primary one (may be empty).
    pub labels: Vec<Label>,
    /// How to fix it, when cairn can say.
    pub help: Option<String>,
    /// The plan text the labels' spans point into.
    pub source: Arc<Source>,
}

/// A span in the source with a short note; the first label is the primary one.
#[derive(Clone, Debug)]
pub struct Label {
    /// The bytes the label underlines.
    pub span: Span,
    /// The note shown at the span (empty: none).
    pub text: String,
}

impl Diagnostic {
    /// Starts an error diagnostic.
    pub fn error(code: Code, source: &Arc<Source>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            labels: Vec::new(),
            help: None,
            source: Arc::clone(source),
        }
    }

    /// Starts a warning diagnostic.
    pub fn warning(code: Code, source: &Arc<Source>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, source, message)
        }
    }

    /// Adds a label.
    pub fn label(mut self, span: Span, text: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            text: text.into(),
        });
        self
    }

    /// Sets the help line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sets the help line when there is one.
    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        self.help = help.or(self.help);
        self
    }

    /// Whether this diagnostic stops the plan from running.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The start of the primary label, or the start of the file.
    pub fn offset(&self) -> usize {
        self.labels.first().map_or(0, |l| l.span.start)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Warning => miette::Severity::Warning,
            Severity::Error => miette::Severity::Error,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            return None;
        }
        let shown = self.shown_labels();
        Some(Box::new(self.labels.iter().zip(shown).enumerate().map(
            |(i, (l, span))| {
                let mut text = l.text.clone();
                let line = self.source.line_index(span.start);
                if self.is_long(line) {
                    // The line is cut to a window around the label: say
                    // where in it the label is.
                    let range = self.source.line_range(line);
                    let (_, column) = self.source.line_col(span.start);
                    let columns = self.source.text()[range].chars().count();
                    if !text.is_empty() {
                        text.push_str(" — ");
                    }
                    text.push_str(&format!(
                        "column {column} of {columns}; the line is cut to fit"
                    ));
                }
                let text = (!text.is_empty()).then_some(text);
                let span = miette::SourceSpan::from(span.start..span.end);
                if i == 0 {
                    miette::LabeledSpan::new_primary_with_span(text, span)
                } else {
                    miette::LabeledSpan::new_with_span(text, span)
                }
            },
        )))
    }
}

/// Lines longer than this many bytes are never shown whole: a label on one is
/// shown in a window of the line around it, and one next to a label is left
/// out of its context lines. (miette prints a line whole, and panics when a
/// label sits past column 65,535.)
pub const LONG_LINE: usize = 500;
/// Bytes of a long line shown on each side of a label.
const MARGIN: usize = 40;
/// The most of a long line one label underlines.
const LABEL_WIDTH: usize = 80;
/// The widest window into a long line: labels on one long line that lie
/// further apart than this are shown one window each.
const WINDOW: usize = 400;

impl Diagnostic {
    fn is_long(&self, line: usize) -> bool {
        self.source.line_range(line).len() > LONG_LINE
    }

    /// The labels' spans as they are rendered: inside the text, and a label
    /// that touches a long line cut to its first line (and, on a long line,
    /// to [`LABEL_WIDTH`] bytes), so that it fits in one window.
    fn shown_labels(&self) -> Vec<Span> {
        let text = self.source.text();
        self.labels
            .iter()
            .map(|l| {
                let start = floor_char(text, l.span.start.min(text.len()));
                let end = ceil_char(text, l.span.end.clamp(start, text.len()));
                let first = self.source.line_index(start);
                let last = self.source.line_index(end.saturating_sub(1).max(start));
                if !(first..=last).any(|line| self.is_long(line)) {
                    return Span::new(start, end);
                }
                let mut cut = end.min(self.source.line_range(first).end.max(start));
                if self.is_long(first) {
                    cut = cut.min(start + LABEL_WIDTH);
                }
                Span::new(start, floor_char(text, cut).max(start))
            })
            .collect()
    }

    /// The part of long line `line` shown for `start..end`: a margin either
    /// side, widened to take in whole any label it would cut.
    fn window(&self, line: usize, start: usize, end: usize) -> std::ops::Range<usize> {
        let text = self.source.text();
        let range = self.source.line_range(line);
        let mut from = start.saturating_sub(MARGIN).max(range.start);
        let mut to = (end + MARGIN).min(range.end).max(end);
        let shown: Vec<Span> = self
            .shown_labels()
            .into_iter()
            .filter(|s| s.start >= range.start && s.start <= range.end)
            .collect();
        loop {
            let mut grown = false;
            for s in &shown {
                let s_end = s.end.max(s.start + 1);
                let overlaps = s.start < to && s_end > from;
                if overlaps && (s.start < from || s.end > to) {
                    from = from.min(s.start);
                    to = to.max(s.end);
                    grown = true;
                }
            }
            if !grown {
                break;
            }
        }
        floor_char(text, from)..ceil_char(text, to)
    }
}

fn floor_char(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

// Diagnostics carry their own source so miette can show the file's name.
//
// Spans are read through the source's line index rather than miette's
// `str` reader, which scans from the start of the file on every call (so
// rendering many diagnostics, or one with many labels, took time
// quadratic in the file's size); a long line is shown as a window around
// the label (see [`LONG_LINE`]).
impl miette::SourceCode for Diagnostic {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let source = &self.source;
        let text = source.text();
        let start = floor_char(text, span.offset().min(text.len()));
        let end = (start + span.len()).min(text.len());
        let first = source.line_index(start);
        let last = source.line_index(end.saturating_sub(1).max(start));
        let named = |data: &'a [u8], offset: usize, line: usize, column: usize, lines: usize| {
            Box::new(miette::MietteSpanContents::new_named(
                source.name().to_owned(),
                data,
                (offset, data.len()).into(),
                line,
                column,
                lines,
            )) as Box<dyn miette::SpanContents<'a> + 'a>
        };
        if (first..=last).any(|line| self.is_long(line)) {
            // Shown labels touch one long line only; anything wider is two
            // labels miette tries to show together: it shows them apart.
            if first != last || end - start > WINDOW {
                return Err(miette::MietteError::OutOfBounds);
            }
            let window = self.window(first, start, end);
            let (_, column) = source.line_col(start);
            return Ok(named(
                &text.as_bytes()[window.clone()],
                window.start,
                first,
                column - 1,
                first + 1,
            ));
        }
        // Start reading at the first context line, after any long line.
        let mut before = 0;
        while before < context_lines_before && before < first && !self.is_long(first - before - 1) {
            before += 1;
        }
        let base_line = first - before;
        let base = source.line_range(base_line).start;
        let inner_span = miette::SourceSpan::from((start - base, end - start));
        for after in (0..=context_lines_after).rev() {
            let inner = text[base..].read_span(&inner_span, context_lines_before, after)?;
            let from = base + inner.span().offset();
            let to = from + inner.span().len();
            let long = (source.line_index(from)
                ..=source.line_index(to.saturating_sub(1).max(from)))
                .any(|line| self.is_long(line));
            if !long || after == 0 {
                return Ok(named(
                    &text.as_bytes()[from..to],
                    from,
                    inner.line() + base_line,
                    inner.column(),
                    inner.line_count() + base_line,
                ));
            }
        }
        unreachable!("the loop returns when `after` is 0")
    }
}

macro_rules! codes {
    ($($(#[doc = $doc:literal])* $variant:ident => $text:literal,)*) => {
        /// Every diagnostic code cairn reports; the text is stable for tools.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Code {
            /// All codes, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable `cairn::…` name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }
        }
    };
}

codes! {
    /// The text does not follow the grammar.
    Syntax => "cairn::syntax",
    /// A tab in a line's indentation.
    TabIndent => "cairn::tab_indent",
    /// The file has no items at all.
    EmptyPlan => "cairn::empty_plan",
    /// The file does not start with a `plan` header.
    MissingPlanHeader => "cairn::missing_plan_header",
    /// A second `plan` header.
    DuplicatePlanHeader => "cairn::duplicate_plan_header",
    /// Two items share an id.
    DuplicateId => "cairn::duplicate_id",
    /// A field that cairn does not know.
    UnknownField => "cairn::unknown_field",
    /// A known field in an item that does not take it.
    MisplacedField => "cairn::misplaced_field",
    /// A field given twice where only one is allowed.
    DuplicateField => "cairn::duplicate_field",
    /// A field whose value has the wrong shape.
    BadValue => "cairn::bad_value",
    /// A duration that cannot be read.
    BadDuration => "cairn::bad_duration",
    /// A size that cannot be read.
    BadSize => "cairn::bad_size",
    /// A retry count out of range.
    BadRetry => "cairn::bad_retry",
    /// A `repeat:` without its bound, or not of the loop's shape.
    BadRepeat => "cairn::bad_repeat",
    /// A failure policy other than stop, continue or compensate.
    BadPolicy => "cairn::bad_policy",
    /// `needs:` names an id that does not exist.
    UnknownDependency => "cairn::unknown_dependency",
    /// Two `needs:` entries on one step that cannot both hold (`a`, `a.failed`).
    ImpossibleNeeds => "cairn::impossible_needs",
    /// A `finally:` step with dependencies or routes, or one that others
    /// depend on or route to.
    FinallyOrder => "cairn::finally_order",
    /// A route or branch points at an id that does not exist.
    UnknownTarget => "cairn::unknown_target",
    /// The dependencies form a cycle.
    Cycle => "cairn::cycle",
    /// A decision with no `when` branches.
    EmptyDecision => "cairn::empty_decision",
    /// Rhai code that does not compile.
    Script => "cairn::script",
    /// Code calls a capability its task does not declare in `using:`.
    UndeclaredCapability => "cairn::undeclared_capability",
    /// `using:` names a capability the plan does not `allow:`.
    CapabilityNotAllowed => "cairn::capability_not_allowed",
    /// `using:` or `allow:` names a capability that does not exist.
    UnknownCapability => "cairn::unknown_capability",
    /// `outputs["x"]` where `x` does not run before this code.
    NotUpstream => "cairn::not_upstream",
    /// `params.x` where no param `x` is declared.
    UnknownParam => "cairn::unknown_param",
    /// Two params share a name.
    DuplicateParam => "cairn::duplicate_param",
    /// A task needs more of a resource than the plan has.
    ResourcesExceedCapacity => "cairn::resources_exceed_capacity",
    /// `use` names neither a stdlib template nor a readable plan file.
    UnknownImport => "cairn::unknown_import",
    /// Plans that import each other, directly or not.
    ImportCycle => "cairn::import_cycle",
    /// `plan:` names neither a stdlib template nor a readable plan file.
    UnknownPlan => "cairn::unknown_plan",
    /// A sub-plan's steps use a capability the task running it does not
    /// grant in `using:`.
    CallNotGranted => "cairn::call_not_granted",
    /// A fallback that depends on the step it stands in for, so it can never run.
    UnreachableFallback => "cairn::unreachable_fallback",
    /// A decision has no `else` branch (warning).
    DecisionWithoutElse => "cairn::decision_without_else",
    /// A param no code reads (warning).
    UnusedParam => "cairn::unused_param",
    /// A call to a function nothing provides (not Rhai's, cairn's, a
    /// capability's or the plan's).
    UnknownFunction => "cairn::unknown_function",
    /// `each:` reads an output whose code says it is not an array (warning).
    EachNotArray => "cairn::each_not_array",
    /// A task's value is the `()` an in-place method returns (`s.trim()`) (warning).
    UnitOutput => "cairn::unit_output",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
