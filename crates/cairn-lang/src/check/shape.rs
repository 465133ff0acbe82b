//! What the checker can tell of a step's output from its code alone: enough
//! to see that an `each:` reads something that is not a list, or that a
//! body ends in an in-place method's `()`.

use rhai::{ASTNode, Expr, Stmt, AST};

use crate::plan::{Script, Step, Task};

/// The step id an expression is exactly `outputs["id"]` (or `outputs.id`) of.
pub fn output_read(script: &Script) -> Option<String> {
    let ast = script.ast.as_deref()?;
    let [Stmt::Expr(expr)] = ast.statements() else {
        return None;
    };
    let (Expr::Index(pair, ..) | Expr::Dot(pair, ..)) = &**expr else {
        return None;
    };
    let Expr::Variable(var, ..) = &pair.lhs else {
        return None;
    };
    if var.1 != "outputs" {
        return None;
    }
    match &pair.rhs {
        Expr::StringConstant(id, _) => Some(id.to_string()),
        Expr::Property(p, _) => Some(p.2.to_string()),
        _ => None,
    }
}

/// What `task`'s output is, in words ("a string"), when its code says
/// outright that it is not an array; `None` when it is one or may be.
pub fn not_an_array(task: &Task) -> Option<&'static str> {
    match task.step {
        // A decision's output is the id of the step it chose.
        Step::Decision(_) => return Some("a string (the id of the step the decision chose)"),
        Step::Gate(_) => return None,
        Step::Task => {}
    }
    if task.each.is_some() {
        return None;
    }
    let Some(run) = &task.run else {
        return Some("`()` (the task has no `run:`)");
    };
    last_value(run.ast.as_deref()?)
}

/// The shape of a body's value when its last statement is a literal.
fn last_value(ast: &AST) -> Option<&'static str> {
    // A body with a `return` of its own may end anywhere.
    let mut returns = false;
    ast.walk(&mut |path: &[ASTNode]| {
        returns |= matches!(path.last(), Some(ASTNode::Stmt(Stmt::Return(..))));
        !returns
    });
    if returns {
        return None;
    }
    let Some(Stmt::Expr(expr)) = ast.statements().last() else {
        return None;
    };
    match &**expr {
        Expr::StringConstant(..) | Expr::InterpolatedString(..) => Some("a string"),
        Expr::IntegerConstant(..) | Expr::FloatConstant(..) => Some("a number"),
        Expr::BoolConstant(..) => Some("true or false"),
        Expr::CharConstant(..) => Some("a character"),
        Expr::Map(..) => Some("a map"),
        Expr::Unit(..) => Some("`()`"),
        _ => None,
    }
}

/// Rhai's string and array methods that change their value in place and
/// return `()`.
const IN_PLACE: &[&str] = &[
    "trim",
    "make_upper",
    "make_lower",
    "clear",
    "truncate",
    "pad",
    "crop",
    "push",
    "append",
    "insert",
    "reverse",
    "sort",
    "dedup",
];

/// `(variable, method)` when a body's value is what an in-place method
/// returns, `()` (`s.trim()` as its last line).
pub fn in_place_ending(script: &Script) -> Option<(String, String)> {
    let ast = script.ast.as_deref()?;
    let Some(Stmt::Expr(expr)) = ast.statements().last() else {
        return None;
    };
    let Expr::Dot(pair, ..) = &**expr else {
        return None;
    };
    let (Expr::Variable(var, ..), Expr::MethodCall(call, _)) = (&pair.lhs, &pair.rhs) else {
        return None;
    };
    IN_PLACE
        .contains(&call.name.as_str())
        .then(|| (var.1.to_string(), call.name.to_string()))
}
