//! A step's serialized shape: one flat object, `step` naming the kind beside `branches`, `else_target` and `checks`.
//!
//! The shape `cairn graph --format json` has always printed, and what a
//! run's stored plan holds. Serializing borrows the step; only reading
//! builds one.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    Branch, Call, Decision, Each, FailurePolicy, Gate, InputField, Metadata, Need, Repeat,
    Resources, Retry, Script, Step, StepKind, Task,
};
use crate::span::Span;

/// The fields of a step as written out, borrowed from a [`Task`].
#[derive(Serialize)]
struct Written<'a> {
    id: &'a str,
    title: &'a str,
    step: StepKind,
    kind: &'a Option<String>,
    using: &'a [String],
    needs: &'a [String],
    qualified: &'a [Vec<Need>],
    finally: bool,
    input: &'a [(String, Script)],
    run: &'a Option<Script>,
    expect: &'a [Script],
    each: &'a Option<Box<Each>>,
    repeat: &'a Option<Box<Repeat>>,
    call: &'a Option<Box<Call>>,
    when: &'a Option<Box<Script>>,
    retry: &'a Retry,
    timeout_ms: Option<u64>,
    output_limit: Option<usize>,
    on_failure: Option<FailurePolicy>,
    fallback: &'a Option<String>,
    on_success: &'a Option<String>,
    compensate: &'a Option<Box<Script>>,
    priority: i64,
    resources: &'a Resources,
    branches: &'a [Branch],
    else_target: &'a Option<String>,
    checks: &'a [String],
    on_reject: &'a Option<String>,
    gate_input: &'a [InputField],
    metadata: &'a Metadata,
    conditional: bool,
    reads: &'a [String],
    import: &'a Option<String>,
    span: Span,
}

/// The same fields as read back.
#[derive(Deserialize)]
struct Read {
    id: String,
    title: String,
    step: StepKind,
    kind: Option<String>,
    using: Vec<String>,
    needs: Vec<String>,
    #[serde(default)]
    qualified: Vec<Vec<Need>>,
    #[serde(default)]
    finally: bool,
    input: Vec<(String, Script)>,
    run: Option<Script>,
    expect: Vec<Script>,
    #[serde(default)]
    each: Option<Box<Each>>,
    #[serde(default)]
    repeat: Option<Box<Repeat>>,
    #[serde(default)]
    call: Option<Box<Call>>,
    when: Option<Box<Script>>,
    retry: Retry,
    timeout_ms: Option<u64>,
    output_limit: Option<usize>,
    on_failure: Option<FailurePolicy>,
    fallback: Option<String>,
    on_success: Option<String>,
    compensate: Option<Box<Script>>,
    priority: i64,
    resources: Resources,
    branches: Vec<Branch>,
    else_target: Option<String>,
    checks: Vec<String>,
    #[serde(default)]
    on_reject: Option<String>,
    #[serde(default)]
    gate_input: Vec<InputField>,
    metadata: Metadata,
    conditional: bool,
    reads: Vec<String>,
    #[serde(default)]
    import: Option<String>,
    span: Span,
}

impl Serialize for Task {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let none = &None;
        let (branches, else_target, checks, on_reject, gate_input): (
            &[Branch],
            _,
            &[String],
            _,
            &[InputField],
        ) = match &self.step {
            Step::Task => (&[], none, &[], none, &[]),
            Step::Decision(decision) => (&decision.branches, &decision.else_target, &[], none, &[]),
            Step::Gate(gate) => (&[], none, &gate.checks, &gate.on_reject, &gate.input),
        };
        Written {
            id: &self.id,
            title: &self.title,
            step: self.step.kind(),
            kind: &self.kind,
            using: &self.using,
            needs: &self.needs,
            qualified: &self.qualified,
            finally: self.finally,
            input: &self.input,
            run: &self.run,
            expect: &self.expect,
            each: &self.each,
            repeat: &self.repeat,
            call: &self.call,
            when: &self.when,
            retry: &self.retry,
            timeout_ms: self.timeout_ms,
            output_limit: self.output_limit,
            on_failure: self.on_failure,
            fallback: &self.fallback,
            on_success: &self.on_success,
            compensate: &self.compensate,
            priority: self.priority,
            resources: &self.resources,
            branches,
            else_target,
            checks,
            on_reject,
            gate_input,
            metadata: &self.metadata,
            conditional: self.conditional,
            reads: &self.reads,
            import: &self.import,
            span: self.span,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Task {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let read = Read::deserialize(deserializer)?;
        let step = match read.step {
            StepKind::Task => Step::Task,
            StepKind::Decision => Step::Decision(Box::new(Decision {
                branches: read.branches,
                else_target: read.else_target,
            })),
            StepKind::Gate => Step::Gate(Box::new(Gate {
                checks: read.checks,
                on_reject: read.on_reject,
                input: read.gate_input,
            })),
        };
        Ok(Task {
            id: read.id,
            title: read.title,
            step,
            kind: read.kind,
            using: read.using,
            needs: read.needs,
            qualified: read.qualified,
            finally: read.finally,
            input: read.input,
            run: read.run,
            expect: read.expect,
            each: read.each,
            repeat: read.repeat,
            call: read.call,
            when: read.when,
            retry: read.retry,
            timeout_ms: read.timeout_ms,
            output_limit: read.output_limit,
            on_failure: read.on_failure,
            fallback: read.fallback,
            on_success: read.on_success,
            compensate: read.compensate,
            priority: read.priority,
            resources: read.resources,
            metadata: read.metadata,
            conditional: read.conditional,
            reads: read.reads,
            import: read.import,
            span: read.span,
        })
    }
}
