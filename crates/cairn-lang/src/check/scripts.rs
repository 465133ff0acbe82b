//! Compiling plan code with Rhai once per distinct text, and reading what it uses.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rhai::{ASTNode, Expr, Position, Stmt};

use crate::script::{self, CompileMode};
use crate::source::Source;
use crate::span::Span;
use crate::syntax::ast::Code;

/// What compiling one piece of code found, with positions relative to it.
#[derive(Debug)]
pub struct Analysis {
    /// The code, shared by every script with this text.
    pub text: Arc<str>,
    pub ast: Result<Arc<rhai::AST>, ScriptError>,
    /// Every function called by name.
    pub calls: Vec<(String, Position)>,
    /// `outputs["id"]` and `outputs.id`.
    pub outputs: Vec<(String, Position)>,
    /// `params["name"]` and `params.name`.
    pub params: Vec<(String, Position)>,
    /// What compiles but the run-time sandbox refuses.
    pub refused: Vec<Refusal>,
    /// Reads of `item` and `index` from the scope (not of locals of those
    /// names): only instances of a task with `each:` have them.
    pub instance_reads: Vec<(String, Position)>,
    /// Functions called as `name(…)` (not as methods), which are neither
    /// the code's own `fn`s nor variables it declares (a variable may hold
    /// a function pointer): what the checker looks up by name.
    pub named_calls: Vec<(String, Position)>,
}

/// Code that compiles but that the run-time sandbox would refuse when the
/// step runs, after earlier steps' side effects: check reports it instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub what: Refused,
    pub position: Position,
    /// How many characters from `position` the statement or name covers.
    pub len: usize,
}

/// What the sandbox refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `import "x" as h;`: the sandbox loads no modules (`set_max_modules(0)`).
    Import,
    /// A function of a Rhai package the sandbox leaves out.
    Function(String, LeftOut),
}

/// Why a standard Rhai function is missing from the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeftOut {
    /// Rhai's clock (`BasicTimePackage`): replays would diverge; `now()` is the host's.
    Clock,
    /// Byte blobs (`BasicBlobPackage`).
    Blob,
    /// Bit fields of integers (`BitFieldPackage`).
    Bits,
}

/// The functions of the standard Rhai packages that `script::sandbox`
/// does not register (it has only Core, Logic, BasicMath, BasicArray,
/// BasicMap and MoreString): calling one compiles, then fails at run time.
pub const LEFT_OUT: &[(&str, LeftOut)] = &[
    ("timestamp", LeftOut::Clock),
    ("elapsed", LeftOut::Clock),
    ("blob", LeftOut::Blob),
    ("as_string", LeftOut::Blob),
    ("to_array", LeftOut::Blob),
    ("parse_be_float", LeftOut::Blob),
    ("parse_be_int", LeftOut::Blob),
    ("parse_le_float", LeftOut::Blob),
    ("parse_le_int", LeftOut::Blob),
    ("write_ascii", LeftOut::Blob),
    ("write_be", LeftOut::Blob),
    ("write_le", LeftOut::Blob),
    ("write_utf8", LeftOut::Blob),
    ("get_bit", LeftOut::Bits),
    ("get_bits", LeftOut::Bits),
    ("set_bit", LeftOut::Bits),
    ("set_bits", LeftOut::Bits),
];

/// Why the sandbox lacks a function, if it is one it leaves out.
fn left_out(function: &str) -> Option<LeftOut> {
    LEFT_OUT
        .iter()
        .find(|(name, _)| *name == function)
        .map(|(_, why)| *why)
}

/// A Rhai compile error, relative to the code.
#[derive(Debug)]
pub struct ScriptError {
    pub message: String,
    pub position: Position,
    /// Set when the error is an undeclared variable.
    pub variable: Option<String>,
}

/// Compiles each distinct text once: generated and templated plans repeat
/// the same bodies many times, and compiling is the costliest part of checking.
#[derive(Default)]
pub struct Compiler {
    scripts: HashMap<String, Arc<Analysis>>,
    functions: HashMap<String, Arc<Analysis>>,
    expressions: HashMap<String, Arc<Analysis>>,
}

impl Compiler {
    pub fn analyse(&mut self, code: &Code, mode: CompileMode) -> Arc<Analysis> {
        let cache = match mode {
            CompileMode::Script => &mut self.scripts,
            CompileMode::Functions => &mut self.functions,
            CompileMode::Expression => &mut self.expressions,
        };
        if let Some(found) = cache.get(code.text.as_str()) {
            return Arc::clone(found);
        }
        let analysis = Arc::new(analyse(&code.text, mode));
        cache.insert(code.text.clone(), Arc::clone(&analysis));
        analysis
    }
}

fn analyse(text: &str, mode: CompileMode) -> Analysis {
    let mut analysis = Analysis {
        text: Arc::from(text),
        ast: Err(ScriptError {
            message: String::new(),
            position: Position::NONE,
            variable: None,
        }),
        calls: Vec::new(),
        outputs: Vec::new(),
        params: Vec::new(),
        refused: Vec::new(),
        instance_reads: Vec::new(),
        named_calls: Vec::new(),
    };
    match script::compile(text, mode) {
        Ok(ast) => {
            ast.walk(&mut |path: &[ASTNode]| {
                match path.last() {
                    Some(ASTNode::Expr(expr)) => visit(expr, &mut analysis),
                    Some(ASTNode::Stmt(stmt)) => visit_statement(stmt, &mut analysis),
                    _ => {}
                }
                true
            });
            // A function the code defines itself is not the package's.
            let defined: HashSet<&str> = ast.iter_functions().map(|f| f.name).collect();
            let mut own: HashSet<String> = defined.iter().map(|f| (*f).to_owned()).collect();
            own.extend(declared_names(&ast));
            analysis.named_calls.retain(|(name, _)| !own.contains(name));
            for (name, position) in &analysis.calls {
                if let Some(why) = left_out(name).filter(|_| !defined.contains(name.as_str())) {
                    analysis.refused.push(Refusal {
                        what: Refused::Function(name.clone(), why),
                        position: *position,
                        len: name.chars().count(),
                    });
                }
            }
            analysis.ast = Ok(Arc::new(ast));
        }
        Err(err) => {
            let variable = match err.err_type() {
                rhai::ParseErrorType::VariableUndefined(name) => Some(name.clone()),
                _ => None,
            };
            analysis.ast = Err(ScriptError {
                message: err.err_type().to_string(),
                position: err.position(),
                variable,
            });
        }
    }
    analysis
}

/// Every name the code declares: `let` and `const` variables, `for` loop
/// variables, and the parameters of its functions and closures.
fn declared_names(ast: &rhai::AST) -> HashSet<String> {
    let mut names: HashSet<String> = ast
        .iter_functions()
        .flat_map(|f| f.params.into_iter().map(str::to_owned))
        .collect();
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Stmt(Stmt::Var(var, ..))) => {
                names.insert(var.0.name.to_string());
            }
            Some(ASTNode::Stmt(Stmt::For(for_loop, _))) => {
                names.insert(for_loop.0.name.to_string());
                if let Some(counter) = &for_loop.1 {
                    names.insert(counter.name.to_string());
                }
            }
            _ => {}
        }
        true
    });
    names
}

/// For each function `ast` defines, every function it calls, directly or
/// through the others it defines (so a call to it is a call to all of them).
pub fn reachable_calls(ast: &rhai::AST) -> HashMap<String, Vec<String>> {
    let names: HashSet<String> = ast.iter_functions().map(|f| f.name.to_owned()).collect();
    let direct: HashMap<&str, Vec<String>> = names
        .iter()
        .map(|name| {
            // (`clone_functions_only_filtered` keeps every function.)
            let mut body = ast.clone_functions_only();
            body.retain_functions(|_, _, n, _| n == name);
            let mut calls = Analysis {
                text: Arc::from(""),
                ast: Ok(Arc::new(rhai::AST::empty())),
                calls: Vec::new(),
                outputs: Vec::new(),
                params: Vec::new(),
                refused: Vec::new(),
                instance_reads: Vec::new(),
                named_calls: Vec::new(),
            };
            body.walk(&mut |path: &[ASTNode]| {
                if let Some(ASTNode::Expr(expr)) = path.last() {
                    visit(expr, &mut calls);
                }
                true
            });
            let called = calls.calls.into_iter().map(|(name, _)| name).collect();
            (name.as_str(), called)
        })
        .collect();
    names
        .iter()
        .map(|name| {
            let mut seen: HashSet<&str> = HashSet::new();
            let mut stack = vec![name.as_str()];
            while let Some(next) = stack.pop() {
                for called in direct.get(next).into_iter().flatten() {
                    if seen.insert(called) && names.contains(called) {
                        stack.push(called);
                    }
                }
            }
            let mut all: Vec<String> = seen.into_iter().map(str::to_owned).collect();
            all.sort();
            (name.clone(), all)
        })
        .collect()
}

fn visit_statement(stmt: &Stmt, analysis: &mut Analysis) {
    let Stmt::Import(import, position) = stmt else {
        return;
    };
    // Cover `import "x" as h` (or `import "x"`) when it sits on one line,
    // else the keyword.
    let (path, alias) = &**import;
    let end = match path {
        _ if !alias.pos.is_none() => Some((alias.pos, alias.name.chars().count())),
        // A plain literal: its text and quotes (a little short if it has escapes).
        Expr::StringConstant(text, at) => Some((*at, text.chars().count() + 2)),
        _ => None,
    };
    let len = match end {
        Some((at, len)) if at.line() == position.line() => at
            .position()
            .zip(position.position())
            .filter(|(to, from)| to > from)
            .map_or("import".len(), |(to, from)| to - from + len),
        _ => "import".len(),
    };
    analysis.refused.push(Refusal {
        what: Refused::Import,
        position: *position,
        len,
    });
}

fn visit(expr: &Expr, analysis: &mut Analysis) {
    match expr {
        // A scope variable, not a local: compiled without a stack slot.
        Expr::Variable(x, _, pos)
            if x.0.is_none() && script::INSTANCE_VARIABLES.contains(&x.1.as_str()) =>
        {
            analysis.instance_reads.push((x.1.to_string(), *pos));
        }
        Expr::FnCall(call, pos) | Expr::MethodCall(call, pos) if !call.is_operator_call() => {
            analysis.calls.push((call.name.to_string(), *pos));
            if matches!(expr, Expr::FnCall(..)) && call.namespace.is_empty() {
                analysis.named_calls.push((call.name.to_string(), *pos));
            }
            // `Fn("sh")` makes a pointer to `sh`: count it as a call.
            if call.name == "Fn" {
                if let Some(Expr::StringConstant(name, _)) = call.args.first() {
                    analysis.calls.push((name.to_string(), *pos));
                }
            }
        }
        Expr::DynamicConstant(value, pos) => {
            if let Some(pointer) = value.read_lock::<rhai::FnPtr>() {
                analysis.calls.push((pointer.fn_name().to_owned(), *pos));
            }
        }
        Expr::Index(pair, _, pos) | Expr::Dot(pair, _, pos) => {
            let Expr::Variable(var, ..) = &pair.lhs else {
                return;
            };
            // `outputs["x"].field` nests as `outputs[("x").field]`: the key
            // is the head of the right-hand chain.
            let key = match chain_head(&pair.rhs) {
                Expr::StringConstant(s, _) => s.to_string(),
                Expr::Property(p, _) => p.2.to_string(),
                _ => return,
            };
            match var.1.as_str() {
                "outputs" => analysis.outputs.push((key, *pos)),
                "params" => analysis.params.push((key, *pos)),
                _ => {}
            }
        }
        _ => {}
    }
}

fn chain_head(expr: &Expr) -> &Expr {
    match expr {
        Expr::Index(pair, ..) | Expr::Dot(pair, ..) => chain_head(&pair.lhs),
        other => other,
    }
}

/// The file span of a Rhai position inside `code`: `len` characters from it,
/// clipped to the line.
pub fn span_at(source: &Source, code: &Code, position: Position, len: usize) -> Span {
    let (Some(line), Some(column)) = (position.line(), position.position()) else {
        return code.span;
    };
    let Some(&line_start) = code.line_offsets.get(line - 1) else {
        return code.span;
    };
    let text = source.text();
    let line_end = text[line_start..]
        .find(['\n', '\r'])
        .map_or(text.len(), |i| line_start + i);
    let line_text = &text[line_start..line_end];
    let byte_at = |chars: usize| {
        line_text
            .char_indices()
            .nth(chars)
            .map_or(line_text.len(), |(i, _)| i)
    };
    let start = byte_at(column - 1);
    let end = byte_at(column - 1 + len).max(start);
    Span::new(line_start + start, line_start + end)
}

/// The span of `needle` at or after a position in the code's line, so a
/// label can cover `"check-db"` in `outputs["check-db"]`.
pub fn find_after(source: &Source, code: &Code, position: Position, needle: &str) -> Span {
    let at = span_at(source, code, position, 0);
    let text = source.text();
    let line_end = text[at.start..]
        .find('\n')
        .map_or(text.len(), |i| at.start + i);
    match text[at.start..line_end].find(needle) {
        Some(i) => Span::new(at.start + i, at.start + i + needle.len()),
        None => span_at(source, code, position, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{Capabilities, Capability};

    #[test]
    fn a_capability_may_bring_a_left_out_function() {
        let source = Source::new(
            "p.plan",
            "plan p \"P\"\n  allow: clock\n\ntask a \"A\" using:clock\n  run: timestamp()\n",
        );
        let mut capabilities = Capabilities::new();
        capabilities.add(Capability::new("clock", &["timestamp"]));
        let checked =
            crate::check::check_using(&source, &capabilities, &crate::templates::Templates);
        assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    }

    #[test]
    fn import_spans_cover_the_statement_on_its_line() {
        let analysis = analyse(
            "let x = 1;\nimport \"a\" as h;\nimport \"b\";\nimport\n  \"c\" as c;\nx",
            CompileMode::Script,
        );
        let spans: Vec<_> = analysis
            .refused
            .iter()
            .map(|r| {
                (
                    r.what.clone(),
                    r.position.line(),
                    r.position.position(),
                    r.len,
                )
            })
            .collect();
        assert_eq!(
            spans,
            [
                (Refused::Import, Some(2), Some(1), "import \"a\" as h".len()),
                (Refused::Import, Some(3), Some(1), "import \"b\"".len()),
                (Refused::Import, Some(4), Some(1), "import".len()),
            ]
        );
    }
}

#[cfg(test)]
mod reach_tests {
    use crate::script::{compile, CompileMode};

    /// A function reaches what it calls and what those call, and no more:
    /// a sibling's calls are not its own.
    #[test]
    fn a_function_reaches_what_its_callees_call() {
        let ast = compile(
            "fn leaf() { sh(\"x\") }\nfn middle() { leaf() }\nfn top(xs) { xs.map(|x| middle()) }\nfn pure(a) { a + 1 }\nfn looped() { looped() }\n",
            CompileMode::Functions,
        )
        .expect("compiles");
        let reached = super::reachable_calls(&ast);
        assert_eq!(reached["leaf"], ["sh"]);
        assert_eq!(reached["middle"], ["leaf", "sh"]);
        assert!(
            reached["top"].contains(&"sh".to_owned()),
            "{:?}",
            reached["top"]
        );
        assert!(reached["pure"].is_empty(), "{:?}", reached["pure"]);
        assert_eq!(reached["looped"], ["looped"]);
    }
}
