//! The one Rhai engine used to compile plan code, with the sandbox's limits.

use std::sync::OnceLock;

use rhai::{Engine, OptimizationLevel, Scope, AST};

/// The variables every piece of plan code may read (the brief's "scope").
/// (`item` and `index` are set in the instances of a task with `each:`,
/// `iteration` in the iterations of a task with `repeat:`.)
pub const SCOPE_VARIABLES: &[&str] = &[
    "input",
    "params",
    "outputs",
    "task",
    "result",
    "failure",
    "item",
    "index",
    "iteration",
    "error",
    "run",
];

/// The scope variables only some code has: instances of a task with
/// `each:` (`item`, `index`), iterations of one with `repeat:`
/// (`iteration`), the predicate of `retry: … if` (`error`) and `finally:`
/// steps (`run`).
pub const INSTANCE_VARIABLES: &[&str] = &["item", "index", "iteration", "error", "run"];

/// Bodies are whole scripts; conditions, expectations and inputs are single
/// expressions (no `let`, no statements).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompileMode {
    /// A whole script with statements and `let`, valued by its last expression (`run:`, `compensate:`).
    Script,
    /// A single expression (`when:`, `expect:`, `input:`, branches, param defaults).
    Expression,
    /// `functions:`: `fn` definitions, which see only their arguments (so
    /// the scope variables are not declared for them).
    Functions,
}

/// Limits that bound what the parser accepts, shared with the runtime engine.
const MAX_EXPR_DEPTH: usize = 64;
const MAX_FN_EXPR_DEPTH: usize = 32;
/// The longest string a script may hold: room for a command's kept output
/// (`output_limit:`, at most 8 MiB) and a file read whole.
pub const MAX_STRING_SIZE: usize = 16 << 20;
/// The most elements an array may hold.
pub const MAX_ARRAY_SIZE: usize = 100_000;
const MAX_MAP_SIZE: usize = 10_000;
const MAX_VARIABLES: usize = 1_000;
const MAX_FUNCTIONS: usize = 256;

/// Operations one evaluation may take before it is stopped (an endless loop
/// ends in well under a second).
pub const MAX_OPERATIONS: u64 = 50_000_000;
const MAX_CALL_LEVELS: usize = 64;

/// Applies the sandbox's limits, shared by the compiler and the runtime.
pub fn limit(engine: &mut Engine) {
    engine
        .set_strict_variables(true)
        .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_FN_EXPR_DEPTH)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .set_max_variables(MAX_VARIABLES)
        .set_max_functions(MAX_FUNCTIONS)
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_modules(0);
    // `eval` would run code no check has seen (and could `import`).
    engine.disable_symbol("eval");
}

/// A raw engine (no packages: they only matter when code runs) with the
/// sandbox's limits and strict variables, so a misspelt variable is a check
/// error rather than a run-time surprise.
fn compiler() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut engine = Engine::new_raw();
        engine.set_optimization_level(OptimizationLevel::None);
        limit(&mut engine);
        engine
    })
}

/// Compiles plan code with the scope variables declared.
pub fn compile(text: &str, mode: CompileMode) -> Result<AST, rhai::ParseError> {
    let mut scope = Scope::new();
    for name in SCOPE_VARIABLES {
        scope.push_dynamic(*name, rhai::Dynamic::UNIT);
    }
    match mode {
        CompileMode::Script => compiler().compile_with_scope(&scope, text),
        CompileMode::Functions => compiler().compile(text),
        CompileMode::Expression => compiler().compile_expression_with_scope(&scope, text),
    }
}
