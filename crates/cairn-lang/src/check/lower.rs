//! Lowering: each item's fields → plan settings or a [`Task`], with value checks.

use std::collections::HashMap;
use std::sync::Arc;

use super::fields::{self, FieldSpec};
use super::scripts::{self, Analysis, Compiler, LeftOut, Refused};
use super::suggest;
use crate::diagnostic::{Code as DiagCode, Diagnostic};
use crate::plan::{
    Awaited, Branch, Budget, Call, Each, EdgeKind, FailurePolicy, Grant, Hypothesis, InputField,
    Metadata, Need, Param, Repeat, Resources, Retry, Script, Step, Task,
};
use crate::script::{Capabilities, CompileMode, SCOPE_VARIABLES};
use crate::source::Source;
use crate::span::{Span, Spanned};
use crate::syntax::ast::{self, Code, FieldValue, Item, ItemKeyword};
use crate::units as values;

/// Where a piece of code sits, for messages and for what it may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Param,
    Functions,
    Each,
    Until,
    /// `retry: … if <condition>`, read over `error`.
    RetryIf,
    Input,
    Body,
    Compensate,
    Expect,
    When,
    Branch,
    /// A `with` value of `plan:`, read in the task's scope like `input:`.
    With,
    /// The plan header's `output:`, read over the plan's outputs.
    Output,
}

/// Code with its compile result.
pub struct CodeUse<'a> {
    pub code: &'a Code,
    pub analysis: Arc<Analysis>,
    pub role: Role,
}

/// The spans behind a lowered step, for the graph and cross-item checks.
#[derive(Default)]
pub struct StepRefs<'a> {
    pub needs: Vec<Spanned<String>>,
    /// The ids of `needs:` entries that name a result or are `any(…)`
    /// (each makes an `after` edge), spanning the id without its qualifier.
    pub after: Vec<Spanned<String>>,
    /// `on failure ->`, `on success ->`, branches and `else`, in that order
    /// (the graph's edges of a step keep it), each with the edge it makes.
    /// One list: most steps have none, and a large plan holds every step's.
    pub routes: Vec<(EdgeKind, Spanned<String>)>,
    pub using: Vec<Spanned<String>>,
    pub resources: Vec<(Spanned<String>, f64)>,
    pub code: Vec<CodeUse<'a>>,
    /// `plan:` as written, for the checks made once the plan it names is.
    pub call: Option<&'a ast::CallSpec>,
}

/// The plan header's settings.
pub struct Header<'a> {
    pub id: String,
    pub title: String,
    pub params: Vec<(Spanned<String>, Param)>,
    pub param_code: Vec<CodeUse<'a>>,
    pub max_parallel: usize,
    pub resources: Resources,
    pub allow: Vec<Grant>,
    pub budget: Budget,
    pub on_failure: FailurePolicy,
    pub seed: Option<u64>,
    pub default_timeout_ms: u64,
    pub metadata: Metadata,
    pub hypotheses: Vec<Hypothesis>,
    /// Each hypothesis's id where it is declared, in order.
    pub hypothesis_ids: Vec<Spanned<String>>,
    pub uses: Vec<Use>,
    /// `functions:`, compiled; every other script of the plan has them.
    pub functions: Option<Script>,
    /// For each function `functions:` defines, every function it reaches.
    pub function_calls: HashMap<String, Vec<String>>,
    /// The `functions:` block's code, for its refusals and references.
    pub function_code: Vec<CodeUse<'a>>,
    /// `output:`, compiled, and its code for the cross-item rules.
    pub output: Option<Script>,
    pub output_code: Vec<CodeUse<'a>>,
}

/// `use "<reference>" as <alias> with …`, lowered.
pub struct Use {
    pub reference: Spanned<String>,
    pub alias: Spanned<String>,
    pub with: Vec<(Spanned<String>, Script)>,
    /// The whole field, for diagnostics about the import as a whole.
    pub span: crate::span::Span,
}

/// The code of diagnostics about code the run-time sandbox refuses.
const REFUSED: DiagCode = DiagCode::Script;

/// When `default_timeout:` is not given: ten minutes.
pub const DEFAULT_TIMEOUT_MS: u64 = 600_000;

/// The most `output_limit:` may keep of each stream (a script's strings
/// hold at most 16 MiB, and a result holds both streams).
pub const MAX_OUTPUT_LIMIT: u64 = 8 << 20;

/// When `max_parallel:` is not given.
pub const DEFAULT_MAX_PARALLEL: usize = 4;

pub struct Lowering<'a> {
    pub source: &'a Arc<Source>,
    pub capabilities: &'a Capabilities,
    pub diagnostics: Vec<Diagnostic>,
    compiler: Compiler,
    /// The plan's `functions:`, merged into every script compiled after it.
    functions: Option<Arc<rhai::AST>>,
    /// Each compiled script with the functions merged in, by the compiled
    /// script's address: a text repeated in many steps is merged once.
    merged: HashMap<usize, Arc<rhai::AST>>,
}

impl<'a> Lowering<'a> {
    pub fn new(source: &'a Arc<Source>, capabilities: &'a Capabilities) -> Self {
        Self {
            source,
            capabilities,
            diagnostics: Vec::new(),
            compiler: Compiler::default(),
            functions: None,
            merged: HashMap::new(),
        }
    }

    fn error(
        &mut self,
        code: DiagCode,
        span: Span,
        message: String,
        label: &str,
        help: Option<String>,
    ) {
        let diagnostic = Diagnostic::error(code, self.source, message)
            .label(span, label)
            .maybe_help(help);
        self.diagnostics.push(diagnostic);
    }

    /// Compiles code, reporting Rhai errors at their place in the file.
    fn script(
        &mut self,
        code: &'a Code,
        mode: CompileMode,
        role: Role,
        uses: &mut Vec<CodeUse<'a>>,
    ) -> Script {
        if code.text.trim().is_empty() {
            self.error(
                DiagCode::BadValue,
                code.span,
                "empty block".into(),
                "nothing is indented under this",
                Some(
                    "indent the code under `run: |` (or `compensate: |`) deeper than the field"
                        .into(),
                ),
            );
        }
        let analysis = self.compiler.analyse(code, mode);
        let ast = match &analysis.ast {
            Ok(ast) => Some(match &self.functions {
                None => Arc::clone(ast),
                Some(functions) => {
                    let key = Arc::as_ptr(ast) as usize;
                    let merged = self
                        .merged
                        .entry(key)
                        .or_insert_with(|| Arc::new(functions.merge(ast)));
                    Arc::clone(merged)
                }
            }),
            Err(error) => {
                let len = error.variable.as_ref().map_or(1, |v| v.chars().count());
                let span = if error.position.is_none() {
                    code.span
                } else {
                    scripts::span_at(self.source, code, error.position, len)
                };
                let (message, label, help) = self.explain(error, span, role);
                self.error(DiagCode::Script, span, message, label, Some(help));
                None
            }
        };
        self.refused(code, &analysis);
        uses.push(CodeUse {
            code,
            analysis,
            role,
        });
        let first = code
            .line_offsets
            .first()
            .copied()
            .unwrap_or(code.span.start);
        let (line, column) = self.source.line_col(first);
        Script {
            text: Arc::clone(&uses.last().expect("just pushed").analysis.text),
            span: code.span,
            line_offsets: code.line_offsets.clone(),
            line: u32::try_from(line).unwrap_or(0),
            column: u32::try_from(column).unwrap_or(0),
            ast,
        }
    }

    /// Code the run-time sandbox would refuse: it compiles, but the step
    /// would fail when it runs, after earlier steps' side effects.
    fn refused(&mut self, code: &Code, analysis: &Analysis) {
        for refusal in &analysis.refused {
            let (span, message, label, help) = match &refusal.what {
                Refused::Import => (
                    scripts::span_at(self.source, code, refusal.position, refusal.len),
                    "`import` is not available in plan code: plans cannot load Rhai modules".to_owned(),
                    "not available in plan code",
                    "to run another plan's steps, add `use \"file.plan\" as <alias>` to the plan header; to reuse code, define it with `fn` under `functions:` in the plan header".to_owned(),
                ),
                Refused::Function(name, why) => {
                    // An embedding application's capability, or the plan's
                    // `functions:`, may bring it.
                    let planned = self
                        .functions
                        .as_ref()
                        .is_some_and(|f| f.iter_functions().any(|f| f.name == name));
                    if self.capabilities.providing(name).is_some() || planned {
                        continue;
                    }
                    let (why, help) = match why {
                        LeftOut::Clock => (
                            "the sandbox leaves out Rhai's clock, so that a resumed run replays the same",
                            "use `now()`: the time in milliseconds since 1970, recorded for replay",
                        ),
                        LeftOut::Blob => (
                            "the sandbox has no byte blobs",
                            "use strings, or arrays of numbers",
                        ),
                        LeftOut::Bits => (
                            "the sandbox has no bit-field functions",
                            "use the bit operators: `(n >> i) & 1` reads bit `i`; `|`, `&` and `<<` set and clear bits",
                        ),
                    };
                    (
                        scripts::find_after(self.source, code, refusal.position, name),
                        format!("`{name}` is not available in plan code: {why}"),
                        "not available in plan code",
                        help.to_owned(),
                    )
                }
            };
            self.error(REFUSED, span, message, label, Some(help));
        }
    }

    fn duration(&mut self, token: &Spanned<String>) -> Option<u64> {
        match values::duration_ms(&token.value) {
            Ok(ms) => Some(ms),
            Err(message) => {
                self.error(
                    DiagCode::BadDuration,
                    token.span,
                    format!("bad duration: {message}"),
                    "not a duration",
                    Some("write a number and a unit: `250ms`, `30s`, `5m` or `2h`".into()),
                );
                None
            }
        }
    }

    fn output_limit(&mut self, token: &Spanned<String>) -> Option<usize> {
        match values::size_bytes(&token.value) {
            Ok(bytes) if (1024..=MAX_OUTPUT_LIMIT).contains(&bytes) => Some(bytes as usize),
            outcome => {
                let message = match outcome {
                    Err(message) => message,
                    Ok(_) => format!("`{}` is not from 1K to 8M", token.value),
                };
                self.error(
                    DiagCode::BadValue,
                    token.span,
                    format!("bad output_limit: {message}"),
                    "not a size from 1K to 8M",
                    Some("write a size such as `256K` or `4M`: what each command's stdout and stderr keep".into()),
                );
                None
            }
        }
    }

    fn integer(&mut self, t: &Spanned<String>, what: &str, min: i64, max: i64) -> Option<i64> {
        match values::integer(&t.value, min, max) {
            Ok(n) => Some(n),
            Err(message) => {
                self.error(
                    DiagCode::BadValue,
                    t.span,
                    format!("bad {what}: {message}"),
                    "here",
                    Some(format!("{what} must be a whole number from {min} to {max}")),
                );
                None
            }
        }
    }

    /// `resources:` amounts; `mem` is a size, the rest are numbers.
    fn resources(&mut self, quantities: &[ast::Quantity]) -> Vec<(Spanned<String>, f64)> {
        let mut out = Vec::new();
        for q in quantities {
            let amount = if q.name.value == "mem" {
                match values::size_bytes(&q.amount.value) {
                    Ok(bytes) => Some(bytes as f64),
                    Err(message) => {
                        self.error(
                            DiagCode::BadSize,
                            q.amount.span,
                            format!("bad size: {message}"),
                            "not a size",
                            Some("write a number and a unit: `512M`, `2G` (K, M, G, T)".into()),
                        );
                        None
                    }
                }
            } else {
                match values::number(&q.amount.value, 0.0) {
                    Ok(n) => Some(n),
                    Err(message) => {
                        self.error(
                            DiagCode::BadValue,
                            q.amount.span,
                            format!("bad amount of `{}`: {message}", q.name.value),
                            "not a number",
                            Some(format!("write e.g. `{} 2`", q.name.value)),
                        );
                        None
                    }
                }
            };
            if let Some(amount) = amount {
                out.push((q.name.clone(), amount));
            }
        }
        out
    }

    fn policy(&mut self, word: &Spanned<String>) -> Option<FailurePolicy> {
        match word.value.as_str() {
            "stop" => Some(FailurePolicy::Stop),
            "continue" => Some(FailurePolicy::Continue),
            "finish" => Some(FailurePolicy::Finish),
            "compensate" => Some(FailurePolicy::Compensate),
            "abort" => Some(FailurePolicy::Abort),
            other => {
                let help = suggest::did_you_mean(other, ["stop", "continue", "finish", "compensate", "abort"], |c| format!("`{c}`"))
                    .unwrap_or_else(|| "use `stop`, `continue`, `finish`, `compensate` or `abort`; to route to a fallback write `on failure -> <id>`".into());
                self.error(
                    DiagCode::BadPolicy,
                    word.span,
                    format!("unknown failure policy `{other}`"),
                    "not a policy",
                    Some(help),
                );
                None
            }
        }
    }

    fn metadata(
        &mut self,
        name: &str,
        value: &Option<Spanned<String>>,
        lines: &[Spanned<String>],
        metadata: &mut Metadata,
    ) {
        let text = value.as_ref().map(|v| unquote(&v.value).to_owned());
        match name {
            "description" => {
                let mut all: Vec<String> = text.into_iter().collect();
                all.extend(lines.iter().map(|l| l.value.clone()));
                metadata.description = Some(all.join("\n"));
            }
            "owner" => metadata.owner = text,
            _ => {
                // Split first, then unquote: `labels: "a", "b"`.
                let inline = value
                    .iter()
                    .flat_map(|v| v.value.split(','))
                    .map(|l| unquote(l.trim()).to_owned());
                let nested = lines
                    .iter()
                    .map(|l| unquote(l.value.trim_start_matches('-').trim()).to_owned());
                metadata.labels = inline.chain(nested).filter(|l| !l.is_empty()).collect();
            }
        }
    }

    /// Reports a field that is unknown, misplaced or repeated; true if the
    /// field may be lowered.
    fn admit(
        &mut self,
        item: &Item,
        field: &ast::Field,
        seen: &mut HashMap<&'static str, Span>,
    ) -> Option<&'static FieldSpec> {
        let keyword = item.keyword.value;
        let name: &str = &field.name.value;
        let spec_name = match &field.value {
            FieldValue::Param { .. } => "param",
            FieldValue::Branch { .. } => {
                if keyword != ItemKeyword::Decision {
                    self.error(
                        DiagCode::MisplacedField,
                        field.span,
                        format!("`when … ->` branches belong in decisions, not in {}", fields::article(keyword)),
                        "branch outside a decision",
                        Some("write `when: <condition>` to run this step only if the condition holds".into()),
                    );
                    return None;
                }
                return Some(&BRANCH);
            }
            _ => name,
        };
        let Some(spec) = fields::spec(spec_name) else {
            let help =
                suggest::did_you_mean(name, fields::names_for(keyword), |c| format!("`{c}:`"))
                    .or_else(|| {
                        suggest::did_you_mean(name, fields::FIELDS.iter().map(|f| f.name), |c| {
                            format!("`{c}:`")
                        })
                    })
                    .unwrap_or_else(|| {
                        format!(
                            "{} takes: {}",
                            capitalize(fields::article(keyword)),
                            fields::names_for(keyword)
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    });
            self.error(
                DiagCode::UnknownField,
                field.name.span,
                format!("unknown field `{name}`"),
                &format!("not a field of {}", fields::article(keyword)),
                Some(help),
            );
            return None;
        };
        if !spec.places.contains(&keyword) {
            let help = match (spec.name, keyword) {
                ("run" | "compensate" | "input" | "expect" | "retry", ItemKeyword::Gate) => {
                    "gates wait for approval and run no code; put the work in a task that `needs:` the gate".to_owned()
                }
                ("run" | "compensate" | "input" | "expect" | "retry", ItemKeyword::Decision) => {
                    "decisions only choose a branch; put the work in a task".to_owned()
                }
                _ => format!("`{}` belongs in {}", spec.name, fields::places(spec.places)),
            };
            self.error(
                DiagCode::MisplacedField,
                field.name.span,
                format!(
                    "`{}` is not a field of {}",
                    spec.name,
                    fields::article(keyword)
                ),
                "not allowed here",
                Some(help),
            );
            return None;
        }
        // `on failure: stop` and `on failure -> x` are different fields.
        let key: &'static str = match &field.value {
            FieldValue::FailureRoute(_) => "on failure ->",
            FieldValue::RejectRoute(_) => "on reject ->",
            _ => spec.name,
        };
        if !spec.repeatable {
            if let Some(first) = seen.get(key) {
                let diagnostic = Diagnostic::error(
                    DiagCode::DuplicateField,
                    self.source,
                    format!("`{key}` is given twice in `{}`", item.id.value),
                )
                .label(field.name.span, "given again here")
                .label(*first, "first given here")
                .help("keep one of them");
                self.diagnostics.push(diagnostic);
                return None;
            }
            seen.insert(key, field.name.span);
        }
        // A known field whose value the grammar could not read.
        if let FieldValue::Other { value, lines } = &field.value {
            if !matches!(spec.name, "description" | "owner" | "labels") {
                let span = value
                    .as_ref()
                    .map(|v| v.span)
                    .or_else(|| lines.first().map(|l| l.span))
                    .unwrap_or(Span::new(field.name.span.end, field.name.span.end + 1));
                let shape = if spec.name == "on failure" || spec.name == "on success" {
                    spec.shape.to_owned()
                } else {
                    format!("`{}:` takes {}", spec.name, spec.shape)
                };
                self.error(
                    DiagCode::BadValue,
                    span,
                    format!("cannot read the value of `{}`", spec.name),
                    "not the expected shape",
                    Some(shape),
                );
                return None;
            }
        }
        Some(spec)
    }

    /// A `with` that sets one param twice (`use` or `plan:`): the last
    /// would silently win.
    fn with_twice(&mut self, with: &[(Spanned<String>, ast::Code)]) {
        for (i, (name, _)) in with.iter().enumerate() {
            if let Some((first, _)) = with[..i].iter().find(|(n, _)| n.value == name.value) {
                let diagnostic = Diagnostic::error(
                    DiagCode::DuplicateParam,
                    self.source,
                    format!("`with` sets param `{}` twice", name.value),
                )
                .label(name.span, "set again here")
                .label(first.span, "first set here")
                .help("keep one of them");
                self.diagnostics.push(diagnostic);
            }
        }
    }

    /// Lowers the plan header.
    pub fn header(&mut self, item: &'a Item) -> Header<'a> {
        let mut header = Header {
            id: item.id.value.clone(),
            title: item.title.value.clone(),
            params: Vec::new(),
            param_code: Vec::new(),
            max_parallel: DEFAULT_MAX_PARALLEL,
            resources: Resources::default(),
            allow: Vec::new(),
            budget: Budget::default(),
            on_failure: FailurePolicy::Stop,
            seed: None,
            default_timeout_ms: DEFAULT_TIMEOUT_MS,
            metadata: Metadata::default(),
            hypotheses: Vec::new(),
            hypothesis_ids: Vec::new(),
            uses: Vec::new(),
            functions: None,
            function_calls: HashMap::new(),
            function_code: Vec::new(),
            output: None,
            output_code: Vec::new(),
        };
        self.header_attrs(item);
        // Before any other code, which is compiled with the functions in.
        let functions = item.fields.iter().find_map(|f| match &f.value {
            FieldValue::Functions(code) => Some(code),
            _ => None,
        });
        if let Some(code) = functions {
            self.functions(code, &mut header);
        }
        let mut seen = HashMap::new();
        for field in &item.fields {
            if self.admit(item, field, &mut seen).is_none() {
                continue;
            }
            match &field.value {
                FieldValue::Param { name, value } => {
                    if let Some((first, _)) =
                        header.params.iter().find(|(n, _)| n.value == name.value)
                    {
                        let diagnostic = Diagnostic::error(
                            DiagCode::DuplicateParam,
                            self.source,
                            format!("param `{}` is declared twice", name.value),
                        )
                        .label(name.span, "declared again here")
                        .label(first.span, "first declared here")
                        .help("give each param a different name");
                        self.diagnostics.push(diagnostic);
                        continue;
                    }
                    let default = self.script(
                        value,
                        CompileMode::Expression,
                        Role::Param,
                        &mut header.param_code,
                    );
                    header.params.push((
                        name.clone(),
                        Param {
                            name: name.value.clone(),
                            default,
                        },
                    ));
                }
                FieldValue::Use(spec) => {
                    let ast::UseSpec {
                        reference,
                        alias,
                        with,
                    } = &**spec;
                    if header.uses.iter().any(|u| u.alias.value == alias.value) {
                        let diagnostic = Diagnostic::error(
                            DiagCode::DuplicateId,
                            self.source,
                            format!("`{}` is already the alias of another `use`", alias.value),
                        )
                        .label(alias.span, "used again here")
                        .help("give each import a different alias");
                        self.diagnostics.push(diagnostic);
                        continue;
                    }
                    self.with_twice(with);
                    let with = with
                        .iter()
                        .map(|(name, value)| {
                            let script = self.script(
                                value,
                                CompileMode::Expression,
                                Role::Param,
                                &mut header.param_code,
                            );
                            (name.clone(), script)
                        })
                        .collect();
                    header.uses.push(Use {
                        reference: reference.clone(),
                        alias: alias.clone(),
                        with,
                        span: field.span,
                    });
                }
                FieldValue::Hypothesis { id, statement } => {
                    if header.hypotheses.iter().any(|h| h.id == id.value) {
                        let diagnostic = Diagnostic::error(
                            DiagCode::DuplicateId,
                            self.source,
                            format!("hypothesis `{}` is declared twice", id.value),
                        )
                        .label(id.span, "declared again here")
                        .help("give each hypothesis a different id");
                        self.diagnostics.push(diagnostic);
                        continue;
                    }
                    header.hypotheses.push(Hypothesis {
                        id: id.value.clone(),
                        statement: statement.value.clone(),
                    });
                    header.hypothesis_ids.push(id.clone());
                }
                FieldValue::MaxParallel(token) => {
                    if let Some(n) = self.integer(token, "max_parallel", 1, 10_000) {
                        header.max_parallel = n as usize;
                    }
                }
                FieldValue::Seed(token) => {
                    if let Some(n) = self.integer(token, "seed", 0, i64::MAX) {
                        header.seed = Some(n as u64);
                    }
                }
                FieldValue::DefaultTimeout(token) => {
                    if let Some(ms) = self.duration(token) {
                        header.default_timeout_ms = ms.max(1);
                    }
                }
                FieldValue::Resources(quantities) => {
                    for (name, amount) in self.resources(quantities) {
                        header.resources.amounts.insert(name.value, amount);
                    }
                }
                FieldValue::Allow(grants) => {
                    for grant in grants {
                        if let Some(grant) = self.grant(grant) {
                            header.allow.push(grant);
                        }
                    }
                }
                FieldValue::Budget(quantities) => {
                    for q in quantities {
                        if q.name.value == "time" {
                            header.budget.time_ms = self.duration(&q.amount);
                        } else {
                            header.budget.cost = match values::number(&q.amount.value, 0.0) {
                                Ok(n) => Some(n),
                                Err(message) => {
                                    self.error(
                                        DiagCode::BadValue,
                                        q.amount.span,
                                        format!("bad cost budget: {message}"),
                                        "not a number",
                                        Some("write e.g. `budget: cost 10`".into()),
                                    );
                                    None
                                }
                            };
                        }
                    }
                }
                FieldValue::FailurePolicy(word) => {
                    if let Some(policy) = self.policy(word) {
                        header.on_failure = policy;
                    }
                }
                FieldValue::FailureRoute(target) => {
                    self.error(
                        DiagCode::MisplacedField,
                        field.span,
                        "`on failure -> <id>` routes one task's failure; the plan header takes a policy".into(),
                        "not allowed here",
                        Some(format!("write `on failure: stop|continue|compensate` here, or put `on failure -> {}` under a task", target.value)),
                    );
                }
                FieldValue::Other { value, lines } => {
                    let name = field.name.value.to_string();
                    self.metadata(&name, value, lines, &mut header.metadata);
                }
                FieldValue::Output(code) => {
                    let script = self.script(
                        code,
                        CompileMode::Expression,
                        Role::Output,
                        &mut header.output_code,
                    );
                    header.output = Some(script);
                }
                // Compiled before everything else, above.
                FieldValue::Functions(_) => {}
                _ => unreachable!("admit() rejects step fields in the plan header"),
            }
        }
        header
    }

    /// Compiles `functions:`: only `fn` definitions, merged into every
    /// script compiled after it.
    fn functions(&mut self, code: &'a Code, header: &mut Header<'a>) {
        let script = self.script(
            code,
            CompileMode::Functions,
            Role::Functions,
            &mut header.function_code,
        );
        let Some(ast) = script.ast.clone() else {
            return;
        };
        if let Some(statement) = ast.statements().first() {
            let span = scripts::span_at(self.source, code, statement.position(), 1);
            self.error(
                DiagCode::Script,
                span,
                "`functions:` holds only `fn` definitions".into(),
                "not a function definition",
                Some("define functions as `fn name(a, b) { … }`; code that runs belongs in a task's `run:`".into()),
            );
            return;
        }
        // A plan function named like a capability's would stand in for it.
        for function in ast.iter_functions() {
            if let Some(capability) = self.capabilities.providing(function.name) {
                let name = function.name.to_owned();
                let written = &self.source.text()[code.span.start..code.span.end];
                let position = written.find(&format!("fn {name}")).map_or(code.span, |at| {
                    let start = code.span.start + at + "fn ".len();
                    Span::new(start, start + name.len())
                });
                self.error(
                    DiagCode::Script,
                    position,
                    format!("`functions:` cannot define `{name}`: it is a function of the `{}` capability", capability.name),
                    "already a capability's",
                    Some("give the function another name".into()),
                );
                return;
            }
        }
        header.function_calls = scripts::reachable_calls(&ast);
        header.functions = Some(script);
        self.functions = Some(ast);
    }

    fn header_attrs(&mut self, item: &Item) {
        if let Some(kind) = &item.kind {
            self.error(
                DiagCode::MisplacedField,
                kind.span,
                "`kind:` is for tasks, not the plan header".into(),
                "not allowed here",
                Some("put `kind:` on task lines; describe the plan with `description:`".into()),
            );
        }
        if let Some(using) = item.using.first() {
            self.error(
                DiagCode::MisplacedField,
                using.span,
                "`using:` is for tasks; the plan header says what tasks may use with `allow:`"
                    .into(),
                "not allowed here",
                Some(format!(
                    "write `allow: {}` under the plan header",
                    using.value
                )),
            );
        }
    }

    fn grant(&mut self, grant: &ast::Grant) -> Option<Grant> {
        let name = &grant.capability;
        let Some(capability) = self.capabilities.get(&name.value) else {
            self.unknown_capability(name);
            return None;
        };
        if !grant.scopes.is_empty() && capability.scope.is_none() {
            let scoped: Vec<String> = self
                .capabilities
                .iter()
                .filter_map(|c| Some(format!("`{}({}, …)`", c.name, c.scope.as_ref()?)))
                .collect();
            let help = match scoped.split_last() {
                None => "no capability takes scopes".to_owned(),
                Some((last, [])) => format!("only {last} takes scopes"),
                Some((last, rest)) => format!("only {} and {last} take scopes", rest.join(", ")),
            };
            self.error(
                DiagCode::BadValue,
                grant.span,
                format!("`{}` cannot be narrowed", name.value),
                "no scopes for this capability",
                Some(help),
            );
            // Still a grant, so the steps using it are not reported too.
            return Some(Grant {
                capability: name.value.clone(),
                scopes: Vec::new(),
            });
        }
        Some(Grant {
            capability: name.value.clone(),
            scopes: grant.scopes.iter().map(|s| s.value.clone()).collect(),
        })
    }

    pub fn unknown_capability(&mut self, name: &Spanned<String>) {
        let help =
            suggest::did_you_mean(&name.value, self.capabilities.names(), |c| format!("`{c}`"))
                .unwrap_or_else(|| {
                    format!(
                        "capabilities are: {}",
                        self.capabilities
                            .names()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
        self.error(
            DiagCode::UnknownCapability,
            name.span,
            format!("unknown capability `{}`", name.value),
            "no such capability",
            Some(help),
        );
    }

    /// Lowers a task, decision or gate.
    pub fn step(&mut self, item: &'a Item) -> (Task, StepRefs<'a>) {
        let keyword = item.keyword.value;
        let mut refs = StepRefs::default();
        let mut task = Task {
            id: item.id.value.clone(),
            title: item.title.value.clone(),
            step: match keyword {
                ItemKeyword::Decision => Step::Decision(Box::default()),
                ItemKeyword::Gate => Step::Gate(Box::default()),
                ItemKeyword::Task | ItemKeyword::Plan => Step::Task,
            },
            kind: item.kind.as_ref().map(|k| k.value.clone()),
            using: Vec::new(),
            needs: Vec::new(),
            qualified: Vec::new(),
            finally: false,
            input: Vec::new(),
            run: None,
            expect: Vec::new(),
            each: None,
            repeat: None,
            call: None,
            when: None,
            retry: Retry::default(),
            timeout_ms: None,
            output_limit: None,
            on_failure: None,
            fallback: None,
            on_success: None,
            compensate: None,
            priority: 0,
            resources: Resources::default(),
            metadata: Metadata::default(),
            conditional: false,
            reads: Vec::new(),
            import: None,
            span: item.header,
        };
        if keyword != ItemKeyword::Task {
            if let Some(using) = item.using.first() {
                self.error(
                    DiagCode::MisplacedField,
                    using.span,
                    format!("`using:` is not allowed on {}", fields::article(keyword)),
                    "not allowed here",
                    Some("only tasks run code that calls capabilities".into()),
                );
            }
        }
        for using in item.using.iter().filter(|_| keyword == ItemKeyword::Task) {
            if self.capabilities.get(&using.value).is_none() {
                self.unknown_capability(using);
            } else if !task.using.contains(&using.value) {
                task.using.push(using.value.clone());
                refs.using.push(using.clone());
            }
        }
        let mut seen = HashMap::new();
        // The single `needs:` entries with their spans, to find two that
        // cannot both hold.
        let mut written: Vec<(Span, Need)> = Vec::new();
        let mut instance_limit = None;
        // The spans of `each:` and `repeat:`: a task has one or the other.
        let mut fan_and_loop = Vec::new();
        for field in &item.fields {
            if self.admit(item, field, &mut seen).is_none() {
                continue;
            }
            let code = &mut refs.code;
            match &field.value {
                FieldValue::Needs(entries) => {
                    // Exactly: a vector's first growth makes room for four,
                    // and a large plan holds every step's at once.
                    task.needs.reserve_exact(entries.len());
                    refs.needs.reserve_exact(entries.len());
                    for entry in entries {
                        self.need(entry, &mut task, &mut refs, &mut written);
                    }
                }
                FieldValue::Finally(word) => match word.value.as_str() {
                    "true" => task.finally = true,
                    "false" => task.finally = false,
                    _ => self.error(
                        DiagCode::BadValue,
                        word.span,
                        format!("`finally:` is `true` or `false`, not `{}`", word.value),
                        "not a boolean",
                        Some(
                            "write `finally: true` for a step that runs after all the others"
                                .into(),
                        ),
                    ),
                },
                FieldValue::Input(entries) => {
                    self.not_empty(field, entries.is_empty(), "`key: <expression>`");
                    for (k, (key, value)) in entries.iter().enumerate() {
                        if let Some((first, _)) =
                            entries[..k].iter().find(|(f, _)| f.value == key.value)
                        {
                            self.diagnostics.push(
                                Diagnostic::error(
                                    DiagCode::DuplicateField,
                                    self.source,
                                    format!(
                                        "input `{}` is given twice in `{}`",
                                        key.value, item.id.value
                                    ),
                                )
                                .label(key.span, "given again here")
                                .label(first.span, "first given here")
                                .help("keep one of them"),
                            );
                            continue;
                        }
                        // A gate's input is what its approver fills in.
                        if let Step::Gate(gate) = &mut task.step {
                            match InputField::declared(&key.value, &value.text) {
                                Ok(input) => gate.input.push(input),
                                Err(why) => self.error(
                                    DiagCode::BadValue,
                                    value.span,
                                    format!("gate input `{}`: {why}", key.value),
                                    "this declaration",
                                    Some("a gate's input fields are `int [lo..hi]`, `float`, `bool`, `string` or `enum(a, b, …)`, each maybe with `= <default>`, e.g. `percent: int 1..100 = 10`".into()),
                                ),
                            }
                            continue;
                        }
                        let script = self.script(value, CompileMode::Expression, Role::Input, code);
                        task.input.push((key.value.clone(), script));
                    }
                }
                FieldValue::Run(body) => {
                    task.run = Some(self.script(body, CompileMode::Script, Role::Body, code))
                }
                FieldValue::Compensate(body) => {
                    let script = self.script(body, CompileMode::Script, Role::Compensate, code);
                    task.compensate = Some(Box::new(script));
                }
                FieldValue::Expect(list) => {
                    self.not_empty(field, list.is_empty(), "`- <expression>`");
                    for e in list {
                        let script = self.script(e, CompileMode::Expression, Role::Expect, code);
                        task.expect.push(script);
                    }
                }
                FieldValue::When(condition) => {
                    let script = self.script(condition, CompileMode::Expression, Role::When, code);
                    task.when = Some(Box::new(script));
                }
                FieldValue::Each(list) => {
                    fan_and_loop.push(field.span);
                    let over = self.script(list, CompileMode::Expression, Role::Each, code);
                    task.each = Some(Box::new(Each {
                        over,
                        max_parallel: None,
                    }));
                }
                FieldValue::Repeat(spec) => {
                    fan_and_loop.push(field.span);
                    task.repeat = self.repeat(spec, code).map(Box::new);
                }
                FieldValue::Call(spec) => {
                    self.with_twice(&spec.with);
                    let with = spec
                        .with
                        .iter()
                        .map(|(name, value)| {
                            let script =
                                self.script(value, CompileMode::Expression, Role::With, code);
                            (name.value.clone(), script)
                        })
                        .collect();
                    // `plan` is set once the plan it names is checked.
                    task.call = Some(Box::new(Call {
                        reference: spec.reference.value.clone(),
                        plan: usize::MAX,
                        with,
                    }));
                    refs.call = Some(spec);
                }
                FieldValue::MaxParallel(token) => {
                    instance_limit = Some((token, field.span));
                }
                FieldValue::Retry(spec) => self.retry(spec, &mut task.retry, code),
                FieldValue::Timeout(token) => task.timeout_ms = self.duration(token),
                FieldValue::OutputLimit(token) => task.output_limit = self.output_limit(token),
                FieldValue::FailurePolicy(word) => task.on_failure = self.policy(word),
                // A fallback that succeeds recovers the step it stands in
                // for: a rejected gate must not be recovered into letting
                // its dependents run.
                FieldValue::FailureRoute(target) if keyword == ItemKeyword::Gate => self.error(
                    DiagCode::MisplacedField,
                    field.span,
                    format!("`on failure ->` is not allowed on gate `{}`: a fallback that succeeds would let the gate's dependents run", item.id.value),
                    "a rejection would count as recovered",
                    Some(format!("write `on reject -> {}`: it routes a rejection or timeout there and the gate stays failed, so what needs it is skipped", target.value)),
                ),
                FieldValue::FailureRoute(target) => {
                    task.fallback = Some(target.value.clone());
                    refs.routes.push((EdgeKind::OnFailure, target.clone()));
                }
                FieldValue::RejectRoute(target) => {
                    if let Step::Gate(gate) = &mut task.step {
                        gate.on_reject = Some(target.value.clone());
                    }
                    refs.routes.push((EdgeKind::OnReject, target.clone()));
                }
                FieldValue::SuccessRoute(target) => {
                    task.on_success = Some(target.value.clone());
                    refs.routes.push((EdgeKind::OnSuccess, target.clone()));
                }
                FieldValue::Priority(token) => {
                    if let Some(p) = self.integer(token, "priority", -1_000_000, 1_000_000) {
                        task.priority = p;
                    }
                }
                FieldValue::Resources(quantities) => {
                    let amounts = self.resources(quantities);
                    for (name, amount) in &amounts {
                        task.resources.amounts.insert(name.value.clone(), *amount);
                    }
                    refs.resources.extend(amounts);
                }
                FieldValue::Branch { condition, target } => {
                    let script =
                        self.script(condition, CompileMode::Expression, Role::Branch, code);
                    // `admit` took branches, `else` and `checks` only
                    // where their kind has them.
                    if let Some(decision) = task.step.decision_mut() {
                        decision.branches.push(Branch {
                            condition: script,
                            target: target.value.clone(),
                        });
                    }
                    let index = refs
                        .routes
                        .iter()
                        .filter(|(kind, _)| matches!(kind, EdgeKind::Branch { .. }))
                        .count();
                    refs.routes
                        .push((EdgeKind::Branch { index }, target.clone()));
                }
                FieldValue::Else(target) => {
                    if let Some(decision) = task.step.decision_mut() {
                        decision.else_target = Some(target.value.clone());
                    }
                    refs.routes.push((EdgeKind::Else, target.clone()));
                }
                FieldValue::Checks(list) => {
                    self.not_empty(field, list.is_empty(), "`- \"what to check\"`");
                    if let Step::Gate(gate) = &mut task.step {
                        gate.checks = list.iter().map(|c| c.value.clone()).collect();
                    }
                }
                FieldValue::Other { value, lines } => {
                    let name = field.name.value.to_string();
                    self.metadata(&name, value, lines, &mut task.metadata);
                }
                _ => unreachable!("admit() rejects plan settings in steps"),
            }
        }
        if let (Some(call), Some(_)) = (refs.call, &task.run) {
            self.error(
                DiagCode::MisplacedField,
                call.reference.span,
                "a task runs either its `run:` body or another plan with `plan:`, not both".into(),
                "runs this plan as the task's body",
                Some("keep one: a task with `plan:` gives the plan's output as its own (use a following task to work on it)".into()),
            );
        }
        if let [_, second, ..] = fan_and_loop[..] {
            self.error(
                DiagCode::MisplacedField,
                second,
                "a task has either `each:` or `repeat:`, not both".into(),
                "second of the two",
                Some("keep one of them; to repeat work for each element, loop in the instances' body (Rhai's `while` or `for`)".into()),
            );
        }
        if let Some((token, span)) = instance_limit {
            let limit = self.integer(token, "max_parallel", 1, 10_000);
            match task.each.as_deref_mut() {
                Some(each) => each.max_parallel = limit.map(|n| n as usize),
                None => self.error(
                    DiagCode::MisplacedField,
                    span,
                    "a task's `max_parallel:` limits the instances of its `each:`, and this task has none".into(),
                    "no `each:` here",
                    Some("add `each: <array>` to run the task once per element, or set `max_parallel:` in the plan header".into()),
                ),
            }
        }
        self.impossible_needs(&written);
        if task.finally {
            self.finally_alone(item, &refs);
        }
        refs.routes.sort_by_key(|(kind, _)| match kind {
            EdgeKind::Needs | EdgeKind::OnFailure | EdgeKind::OnReject | EdgeKind::After => 0,
            EdgeKind::OnSuccess => 1,
            EdgeKind::Branch { .. } => 2,
            EdgeKind::Else => 3,
        });
        (task, refs)
    }

    /// One `needs:` entry: a plain id is an ordering edge; a qualified one
    /// (`a.failed`) or `any(…)` is an entry of `task.qualified` with an
    /// `after` edge per member. `written` collects single entries.
    fn need(
        &mut self,
        entry: &ast::NeedEntry,
        task: &mut Task,
        refs: &mut StepRefs<'a>,
        written: &mut Vec<(Span, Need)>,
    ) {
        let member = |target: &Spanned<String>, refs: &mut StepRefs<'a>| {
            let (id, result) = Awaited::split(&target.value);
            let span = Span::new(target.span.start, target.span.start + id.len());
            refs.after.push(Spanned::new(id.to_owned(), span));
            Need {
                id: id.to_owned(),
                result,
            }
        };
        match entry {
            ast::NeedEntry::One(target) => {
                let (id, result) = Awaited::split(&target.value);
                if result == Awaited::Succeeded {
                    task.needs.push(target.value.clone());
                    refs.needs.push(target.clone());
                    written.push((
                        target.span,
                        Need {
                            id: id.to_owned(),
                            result,
                        },
                    ));
                } else {
                    let need = member(target, refs);
                    written.push((target.span, need.clone()));
                    task.qualified.push(vec![need]);
                }
            }
            ast::NeedEntry::Any(group) => {
                let members = group.value.iter().map(|t| member(t, refs)).collect();
                task.qualified.push(members);
            }
        }
    }

    /// Two single `needs:` entries on one id that cannot both hold: `a`
    /// and `a.failed`, `a.failed` and `a.skipped` (`.done` goes with any).
    fn impossible_needs(&mut self, written: &[(Span, Need)]) {
        if written.len() < 2 || written.iter().all(|(_, n)| n.result == Awaited::Succeeded) {
            return;
        }
        for (k, (span, need)) in written.iter().enumerate() {
            let clash = written[..k].iter().find(|(_, earlier)| {
                earlier.id == need.id
                    && earlier.result != need.result
                    && earlier.result != Awaited::Done
                    && need.result != Awaited::Done
            });
            if let Some((first, earlier)) = clash {
                let diagnostic = Diagnostic::error(
                    DiagCode::ImpossibleNeeds,
                    self.source,
                    format!("`{earlier}` and `{need}` cannot both hold: `{}` has one result", need.id),
                )
                .label(*first, "needs this result")
                .label(*span, "and this one")
                .help(format!(
                    "to run after either, write `any({earlier}, {need})`; to run whatever happened, `{}.done`",
                    need.id
                ));
                self.diagnostics.push(diagnostic);
            }
        }
    }

    /// A `finally:` step runs after all the others: it has no `needs:`
    /// and no routes of its own.
    fn finally_alone(&mut self, item: &ast::Item, refs: &StepRefs<'_>) {
        let edges = refs
            .needs
            .iter()
            .chain(&refs.after)
            .chain(refs.routes.iter().map(|(_, t)| t));
        if let Some(first) = edges.min_by_key(|t| t.span.start) {
            let header = item.id.span;
            self.diagnostics.push(
                Diagnostic::error(
                    DiagCode::FinallyOrder,
                    self.source,
                    format!("finally step `{}` cannot name other steps", item.id.value),
                )
                .label(header, "runs after every other step")
                .label(first.span, "so it does not wait for this one")
                .help("a `finally:` step runs once everything else has settled, and reads every step's output and the run's result as `run`: remove this"),
            );
        }
    }

    /// A compile error in words: what is wrong, the label, and the help.
    fn explain(
        &self,
        error: &scripts::ScriptError,
        span: Span,
        role: Role,
    ) -> (String, &'static str, String) {
        let text = self.source.text();
        // `outputs.check-db` reads as `outputs.check - db`.
        let dashed = error.variable.as_ref().and_then(|rest| {
            let head = text[..span.start].strip_suffix('-')?;
            let word =
                head.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            let object = ["outputs.", "params."]
                .into_iter()
                .find(|o| word.ends_with(o))?;
            Some((object.trim_end_matches('.'), &head[word.len()..], rest))
        });
        if let Some((object, first, rest)) = dashed {
            return (
                format!("`{object}.{first}-{rest}` reads as `{object}.{first} - {rest}`: an id with `-` needs brackets"),
                "read as a subtraction",
                format!("write `{object}[\"{first}-{rest}\"]`"),
            );
        }
        if error.message.contains("'->' is not a valid symbol") {
            return (
                "`->` is not Rhai: it belongs to routes and branches, on lines of their own".into(),
                "`->` inside code",
                "a decision's branch is `when <condition> -> <id>` (no colon after `when`); routes are `on failure -> <id>` and `on success -> <id>`".into(),
            );
        }
        let (label, help) = match &error.variable {
            Some(name) if role == Role::Functions && SCOPE_VARIABLES.contains(&name.as_str()) => (
                "not visible in a function",
                format!("a function sees only its arguments: pass `{name}` in from the step that calls it"),
            ),
            Some(name) => (
                "not declared",
                suggest::did_you_mean(name, SCOPE_VARIABLES.iter().copied(), |c| format!("`{c}`"))
                    .unwrap_or_else(|| format!("declare it with `let {name} = …;` first, or read one of: {}", SCOPE_VARIABLES.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", "))),
            ),
            None => ("here", "step bodies and expressions are Rhai; see https://rhai.rs/book/ for the syntax".to_owned()),
        };
        (
            format!("Rhai: {}", lowercase_first(&error.message)),
            label,
            help,
        )
    }

    fn retry(
        &mut self,
        spec: &'a Result<Box<ast::RetrySpec>, Spanned<String>>,
        retry: &mut Retry,
        code: &mut Vec<CodeUse<'a>>,
    ) {
        const SHAPE: &str = "write `retry: <n> [backoff <duration> [factor <number>] [max <duration>]] [total <duration>] [if <condition>]`, e.g. `retry: 3 backoff 1s factor 2 max 30s if error.kind == \"timeout\"`";
        let spec = match spec {
            Ok(spec) => spec,
            Err(bad) => {
                self.error(
                    DiagCode::BadRetry,
                    bad.span,
                    format!("cannot read `retry: {}`", bad.value),
                    "not a retry spec",
                    Some(SHAPE.into()),
                );
                return;
            }
        };
        match values::integer(&spec.count.value, 0, 100) {
            Ok(n) => retry.count = n as u32,
            Err(message) => self.error(
                DiagCode::BadRetry,
                spec.count.span,
                format!("bad retry count: {message}"),
                "retry count",
                Some("the count is how many attempts follow the first one: a whole number from 0 to 100".into()),
            ),
        }
        if let Some(backoff) = &spec.backoff {
            if let Some(ms) = self.duration(backoff) {
                retry.backoff_ms = ms;
            }
        }
        if let Some(factor) = &spec.factor {
            match values::number(&factor.value, 1.0) {
                Ok(f) if f <= 100.0 => retry.factor = f,
                _ => self.error(
                    DiagCode::BadRetry,
                    factor.span,
                    format!("bad backoff factor `{}`", factor.value),
                    "factor",
                    Some("the factor multiplies the delay after each attempt: a number from 1 to 100".into()),
                ),
            }
        }
        if let Some(max) = &spec.max {
            retry.max_ms = self.duration(max);
            if retry.max_ms.is_some_and(|m| m < retry.backoff_ms) {
                self.error(
                    DiagCode::BadRetry,
                    max.span,
                    format!(
                        "the backoff cap `{}` is shorter than the first delay",
                        max.value
                    ),
                    "cap below the first delay",
                    Some(
                        "`max` caps the growing delay; make it at least the `backoff` duration"
                            .into(),
                    ),
                );
            }
        }
        if let Some(total) = &spec.total {
            retry.total_ms = self.duration(total);
        }
        retry.predicate = spec
            .predicate
            .as_ref()
            .map(|c| Box::new(self.script(c, CompileMode::Expression, Role::RetryIf, code)));
    }

    /// `repeat: max <n> [until <expr>]`: the loop, if it has its bound.
    fn repeat(
        &mut self,
        spec: &'a Result<Box<ast::RepeatSpec>, Spanned<String>>,
        code: &mut Vec<CodeUse<'a>>,
    ) -> Option<Repeat> {
        const SHAPE: &str = "write `repeat: max <n>` or `repeat: max <n> until <condition over result>`, e.g. `repeat: max 5 until result.score >= 8`";
        let spec = match spec {
            Ok(spec) => spec,
            Err(bad) => {
                self.error(
                    DiagCode::BadRepeat,
                    bad.span,
                    format!("cannot read `repeat: {}`", bad.value),
                    "not a loop",
                    Some(SHAPE.into()),
                );
                return None;
            }
        };
        let until = spec
            .until
            .as_ref()
            .map(|c| self.script(c, CompileMode::Expression, Role::Until, code));
        let Some(max) = &spec.max else {
            let span = spec.until.as_ref().map_or(Span::new(0, 0), |c| c.span);
            self.error(
                DiagCode::BadRepeat,
                span,
                "a loop needs a bound: `repeat:` has no `max`".into(),
                "loops until this holds, with no limit",
                Some("write `repeat: max <n> until …`: the body runs at most n times, and the task fails if the condition still does not hold".into()),
            );
            return None;
        };
        match values::integer(&max.value, 1, 10_000) {
            Ok(n) => Some(Repeat {
                max: n as u32,
                until,
            }),
            Err(message) => {
                self.error(
                    DiagCode::BadRepeat,
                    max.span,
                    format!("bad `repeat:` bound: {message}"),
                    "the most iterations",
                    Some(
                        "`max` is how many times the body may run: a whole number from 1 to 10000"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    /// A list field (`input:`, `expect:`, `checks:`) with nothing under it.
    fn not_empty(&mut self, field: &ast::Field, empty: bool, entry: &str) {
        if empty {
            self.error(
                DiagCode::BadValue,
                field.name.span,
                format!("`{}:` has no entries", field.name.value),
                "nothing indented under this",
                Some(format!(
                    "add indented {entry} lines under it, or remove the field"
                )),
            );
        }
    }
}

/// Stands for every `when … ->` line, which is repeatable and decision-only.
static BRANCH: FieldSpec = FieldSpec {
    name: "when ->",
    places: &[ItemKeyword::Decision],
    shape: "`when <condition> -> <id>`",
    repeatable: true,
};

fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) if !text.starts_with("Rhai") => c.to_lowercase().chain(chars).collect(),
        _ => text.to_owned(),
    }
}
