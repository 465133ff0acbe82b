//! Compiling plan code with Rhai once per distinct text, and reading what it uses.

use std::collections::HashMap;
use std::sync::Arc;

use rhai::{ASTNode, Expr, Position};

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
    expressions: HashMap<String, Arc<Analysis>>,
}

impl Compiler {
    pub fn analyse(&mut self, code: &Code, mode: CompileMode) -> Arc<Analysis> {
        let cache = match mode {
            CompileMode::Script => &mut self.scripts,
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
    };
    match script::compile(text, mode) {
        Ok(ast) => {
            ast.walk(&mut |path: &[ASTNode]| {
                if let Some(ASTNode::Expr(expr)) = path.last() {
                    visit(expr, &mut analysis);
                }
                true
            });
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

fn visit(expr: &Expr, analysis: &mut Analysis) {
    match expr {
        Expr::FnCall(call, pos) | Expr::MethodCall(call, pos) if !call.is_operator_call() => {
            analysis.calls.push((call.name.to_string(), *pos));
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
