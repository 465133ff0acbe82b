//! The checked plan: tasks, edges and policies, ready to run or export.

use std::collections::BTreeMap;
use std::sync::Arc;

use petgraph::graph::DiGraph;
use serde::{Deserialize, Serialize};

use crate::span::Span;

/// A plan that passed every check. Its graph's node weights index `tasks`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    pub title: String,
    /// The file the plan was read from, as given.
    pub source: String,
    pub params: Vec<Param>,
    pub max_parallel: usize,
    pub resources: Resources,
    pub allow: Vec<Grant>,
    pub budget: Budget,
    pub on_failure: FailurePolicy,
    pub seed: Option<u64>,
    pub metadata: Metadata,
    /// Tasks, decisions and gates, in file order.
    pub tasks: Vec<Task>,
    /// Node `i` is `tasks[i]`; edges point from the earlier step to the later.
    pub graph: DiGraph<usize, Edge>,
}

impl Plan {
    /// The task with this id.
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// The graph node of `tasks[index]`.
    pub fn node(index: usize) -> petgraph::graph::NodeIndex {
        petgraph::graph::NodeIndex::new(index)
    }
}

/// `param <name> = <value>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub default: Script,
}

/// Amounts of resources: the plan's capacity, or what a task takes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Resource name to amount; `mem` is in bytes.
    pub amounts: BTreeMap<String, f64>,
}

/// One capability the plan allows, maybe narrowed to hosts or path globs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub capability: String,
    /// Empty means the whole capability.
    pub scopes: Vec<String>,
}

/// `budget: time <dur>, cost <n>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub time_ms: Option<u64>,
    pub cost: Option<f64>,
}

/// What a failure does to the rest of the plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Start nothing new; the plan fails.
    #[default]
    Stop,
    /// Record the failure; dependents still run.
    Continue,
    /// Stop, then undo completed tasks in reverse completion order.
    Compensate,
}

/// Free metadata kept in state and graph output.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub description: Option<String>,
    pub owner: Option<String>,
    pub labels: Vec<String>,
}

/// Which keyword declared a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Task,
    Decision,
    Gate,
}

/// A task, decision or gate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub step: StepKind,
    /// `kind:<name>`: what sort of work this is (free-form).
    pub kind: Option<String>,
    pub using: Vec<String>,
    pub needs: Vec<String>,
    pub input: Vec<(String, Script)>,
    pub run: Option<Script>,
    pub expect: Vec<Script>,
    pub when: Option<Script>,
    pub retry: Retry,
    pub timeout_ms: Option<u64>,
    /// `on failure: …` for this task; `None` means the plan's default.
    pub on_failure: Option<FailurePolicy>,
    /// `on failure -> id`.
    pub fallback: Option<String>,
    /// `on success -> id`.
    pub on_success: Option<String>,
    pub compensate: Option<Script>,
    pub priority: i64,
    pub resources: Resources,
    pub branches: Vec<Branch>,
    pub else_target: Option<String>,
    pub checks: Vec<String>,
    pub metadata: Metadata,
    /// Runs only when routed to (by `on failure ->` or a decision branch).
    pub conditional: bool,
    /// Ids this step's code names in `outputs[…]`, sorted.
    pub reads: Vec<String>,
    pub span: Span,
}

/// `retry: <n> backoff <dur> factor <f> max <dur>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    /// Attempts after the first.
    pub count: u32,
    pub backoff_ms: u64,
    pub factor: f64,
    pub max_ms: Option<u64>,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            count: 0,
            backoff_ms: 1000,
            factor: 2.0,
            max_ms: None,
        }
    }
}

/// `when <condition> -> <target>` in a decision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Branch {
    pub condition: Script,
    pub target: String,
}

/// Rhai code from the plan, compiled at check time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Script {
    /// Shared by every script with the same text.
    pub text: Arc<str>,
    pub span: Span,
    /// Where each line of `text` starts in the file, to map Rhai positions back.
    pub line_offsets: Vec<usize>,
    /// The compiled code, shared between every script with the same text.
    #[serde(skip)]
    pub ast: Option<Arc<rhai::AST>>,
}

/// How one step leads to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum EdgeKind {
    /// `needs:` (from the dependency to the dependent).
    Needs,
    /// `on success ->`.
    OnSuccess,
    /// `on failure ->` (from the task to its fallback).
    OnFailure,
    /// The decision's n-th `when` branch.
    Branch { index: usize },
    /// The decision's `else` branch.
    Else,
}

impl EdgeKind {
    /// Whether the target runs only when this edge is taken.
    pub fn is_conditional(self) -> bool {
        matches!(self, Self::OnFailure | Self::Branch { .. } | Self::Else)
    }
}

/// An edge and where it was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    #[serde(flatten)]
    pub kind: EdgeKind,
    pub span: Span,
}
