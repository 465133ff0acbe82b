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
        Some(Box::new(self.labels.iter().enumerate().map(|(i, l)| {
            let span = miette::SourceSpan::from(l.span.start..l.span.end);
            let text = (!l.text.is_empty()).then(|| l.text.clone());
            if i == 0 {
                miette::LabeledSpan::new_primary_with_span(text, span)
            } else {
                miette::LabeledSpan::new_with_span(text, span)
            }
        })))
    }
}

// Diagnostics carry their own source so miette can show the file's name.
impl miette::SourceCode for Diagnostic {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner =
            self.source
                .text()
                .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.source.name().to_owned(),
            inner.data(),
            *inner.span(),
            inner.line(),
            inner.column(),
            inner.line_count(),
        )))
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
    /// A failure policy other than stop, continue or compensate.
    BadPolicy => "cairn::bad_policy",
    /// `needs:` names an id that does not exist.
    UnknownDependency => "cairn::unknown_dependency",
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
    /// A fallback that depends on the step it stands in for, so it can never run.
    UnreachableFallback => "cairn::unreachable_fallback",
    /// A decision has no `else` branch (warning).
    DecisionWithoutElse => "cairn::decision_without_else",
    /// A param no code reads (warning).
    UnusedParam => "cairn::unused_param",
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
