//! The DAG: edges from `needs`, routes and branches; unknown targets, cycles, waves.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use super::lower::StepRefs;
use super::suggest;
use crate::diagnostic::{Code, Diagnostic};
use crate::plan::{Awaited, Edge, EdgeKind, Task};
use crate::source::Source;
use crate::span::Spanned;

/// Builds the graph, reporting unknown targets and cycles.
pub fn build(
    source: &Arc<Source>,
    tasks: &[Task],
    refs: &[StepRefs<'_>],
    diagnostics: &mut Vec<Diagnostic>,
) -> DiGraph<usize, Edge> {
    let index = crate::plan::index_by_id(tasks);
    let mut graph = DiGraph::with_capacity(tasks.len(), tasks.len() * 2);
    for i in 0..tasks.len() {
        graph.add_node(i);
    }
    // Edges already added, to say `needs: a, a` once: `edges_connecting`
    // walks every edge out of a node, which for a step many others need
    // made building the graph quadratic.
    let mut added: HashSet<(u32, u32, EdgeKey)> = HashSet::with_capacity(tasks.len() * 2);
    // Targets that name no step: reported after the graph is built, with a
    // "did you mean" from an index of the ids built once.
    let mut missing: Vec<(Spanned<String>, EdgeKind)> = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let mut link =
            |target: &Spanned<String>, kind: EdgeKind, graph: &mut DiGraph<usize, Edge>| {
                match index.get(target.value.as_str()) {
                    Some(&j) => {
                        let (from, to) = if matches!(kind, EdgeKind::Needs | EdgeKind::After) {
                            (j, i)
                        } else {
                            (i, j)
                        };
                        // `needs: a, a`, or `on success -> b` where `b` already
                        // needs this step, say the same thing once.
                        if added.insert((from as u32, to as u32, EdgeKey::of(kind))) {
                            let (from, to) = (NodeIndex::new(from), NodeIndex::new(to));
                            graph.add_edge(
                                from,
                                to,
                                Edge {
                                    kind,
                                    span: target.span,
                                },
                            );
                        }
                    }
                    None => missing.push((target.clone(), kind)),
                }
            };
        for need in &r.needs {
            link(need, EdgeKind::Needs, &mut graph);
        }
        for need in &r.after {
            link(need, EdgeKind::After, &mut graph);
        }
        for (kind, target) in &r.routes {
            link(target, *kind, &mut graph);
        }
    }
    let mut ids = suggest::Ids::new(tasks.iter().map(|t| t.id.as_str()));
    for (target, kind) in missing {
        let (code, what) = match kind {
            EdgeKind::Needs | EdgeKind::After => (Code::UnknownDependency, "`needs:`"),
            EdgeKind::OnFailure => (Code::UnknownTarget, "`on failure ->`"),
            EdgeKind::OnReject => (Code::UnknownTarget, "`on reject ->`"),
            EdgeKind::OnSuccess => (Code::UnknownTarget, "`on success ->`"),
            EdgeKind::Branch { .. } => (Code::UnknownTarget, "this branch"),
            EdgeKind::Else => (Code::UnknownTarget, "`else ->`"),
        };
        let help = qualifier_typo(&index, &target.value)
            .or_else(|| ids.did_you_mean(&target.value, |c| format!("`{c}`")))
            .unwrap_or_else(|| "ids name tasks, decisions and gates in this plan".to_owned());
        diagnostics.push(
            Diagnostic::error(
                code,
                source,
                format!("{what} names `{}`, which is not in this plan", target.value),
            )
            .label(target.span, "no such task, decision or gate")
            .help(help),
        );
    }
    report_cycles(source, tasks, &graph, diagnostics);
    graph
}

/// `build.faild`, where `build` is a step: the qualifier it meant.
fn qualifier_typo(index: &HashMap<&str, usize>, target: &str) -> Option<String> {
    let (id, word) = target.rsplit_once('.')?;
    index.get(id)?;
    let qualifier = suggest::closest(word, Awaited::QUALIFIERS)?;
    Some(format!("did you mean `{id}.{qualifier}`?"))
}

/// A `finally:` step is no other step's dependency or route target: it
/// runs after them all. (Its own edges are reported where it is lowered.)
pub fn finally_unnamed(
    source: &Arc<Source>,
    tasks: &[Task],
    graph: &DiGraph<usize, Edge>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    if tasks.iter().all(|t| !t.finally) {
        return;
    }
    let mut reported = HashSet::new();
    for edge in graph.edge_references() {
        // `needs:` is written on the dependent, routes on their source.
        let (writer, named) = match edge.weight().kind {
            EdgeKind::Needs | EdgeKind::After => (edge.target(), edge.source()),
            _ => (edge.source(), edge.target()),
        };
        let (writer, named) = (&tasks[writer.index()], &tasks[named.index()]);
        // A finally step's own edges were reported where it was lowered.
        if !named.finally || writer.finally || !reported.insert(named.id.as_str()) {
            continue;
        }
        diagnostics.push(
            Diagnostic::error(
                Code::FinallyOrder,
                source,
                format!("`{}` names finally step `{}`", writer.id, named.id),
            )
            .label(edge.weight().span, "a finally step runs after every other step")
            .help(format!(
                "`{}` runs once everything else has settled, so nothing can wait for it or route to it",
                named.id
            )),
        );
    }
}

/// What makes two edges between the same steps say the same thing: `needs`
/// and `on success ->` both order the steps; the others must be equal.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum EdgeKey {
    Ordering,
    After,
    OnFailure,
    Branch(usize),
    Else,
}

impl EdgeKey {
    fn of(kind: EdgeKind) -> Self {
        match kind {
            EdgeKind::Needs | EdgeKind::OnSuccess => Self::Ordering,
            EdgeKind::OnFailure | EdgeKind::OnReject => Self::OnFailure,
            EdgeKind::Branch { index } => Self::Branch(index),
            EdgeKind::Else => Self::Else,
            EdgeKind::After => Self::After,
        }
    }
}

/// A cycle longer than this is summarised: its first [`CYCLE_HEAD`] steps
/// and its last, in the message and in the labels.
const CYCLE_SHOWN: usize = 8;
const CYCLE_HEAD: usize = 5;

/// One diagnostic per cycle, listing the path and labelling its edges (a
/// long cycle: the first few and the one that closes it).
fn report_cycles(
    source: &Arc<Source>,
    tasks: &[Task],
    graph: &DiGraph<usize, Edge>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    // Most plans have no cycle. (petgraph's `tarjan_scc` recurses once per
    // step of a path and overflowed the stack on a 20,000-step cycle;
    // `toposort` and `kosaraju_scc` keep their own stacks.)
    if toposort(graph, None).is_ok() {
        return;
    }
    let mut sccs = kosaraju_scc(graph);
    sccs.iter_mut().for_each(|scc| scc.sort());
    sccs.sort();
    let mut in_scc = vec![false; graph.node_count()];
    for scc in sccs {
        let start = scc[0];
        let self_loop = graph.find_edge(start, start).is_some();
        if scc.len() == 1 && !self_loop {
            continue;
        }
        scc.iter().for_each(|n| in_scc[n.index()] = true);
        let path = cycle_through(graph, start, &in_scc);
        scc.iter().for_each(|n| in_scc[n.index()] = false);
        let name = |n: NodeIndex| tasks[n.index()].id.as_str();
        // The edges shown: all of a short cycle; of a long one the first
        // few and the last, which closes it.
        let shown: Vec<usize> = if path.len() <= CYCLE_SHOWN {
            (0..path.len()).collect()
        } else {
            (0..CYCLE_HEAD).chain([path.len() - 1]).collect()
        };
        let message = if path.len() <= CYCLE_SHOWN {
            let names: Vec<&str> = path.iter().map(|&n| name(n)).collect();
            format!("dependency cycle: {} → {}", names.join(" → "), names[0])
        } else {
            let head: Vec<&str> = path[..CYCLE_HEAD].iter().map(|&n| name(n)).collect();
            format!(
                "dependency cycle of {} steps: {} → … ({} more) … → {} → {}",
                path.len(),
                head.join(" → "),
                path.len() - CYCLE_HEAD - 1,
                name(path[path.len() - 1]),
                name(path[0]),
            )
        };
        let mut diagnostic = Diagnostic::error(Code::Cycle, source, message);
        for k in shown {
            let (from, to) = (path[k], path[(k + 1) % path.len()]);
            let edge = graph
                .edges_connecting(from, to)
                .next()
                .expect("the path follows edges")
                .weight();
            let (a, b) = (&tasks[from.index()].id, &tasks[to.index()].id);
            let text = match edge.kind {
                EdgeKind::Needs => format!("`{b}` needs `{a}`"),
                EdgeKind::After => format!("`{b}` waits for `{a}`"),
                EdgeKind::OnFailure => format!("`{b}` runs when `{a}` fails"),
                EdgeKind::OnReject => format!("`{b}` runs when `{a}` is rejected"),
                EdgeKind::OnSuccess => format!("`{b}` runs after `{a}` succeeds"),
                EdgeKind::Branch { .. } | EdgeKind::Else => format!("`{a}` may choose `{b}`"),
            };
            diagnostic = diagnostic.label(edge.span, text);
        }
        diagnostics.push(
            diagnostic.help("a plan is a DAG: remove one of these dependencies to break the cycle"),
        );
    }
}

/// The shortest cycle from `start` back to itself inside one strongly
/// connected component (`in_scc` marks its nodes), by breadth-first search.
fn cycle_through(
    graph: &DiGraph<usize, Edge>,
    start: NodeIndex,
    in_scc: &[bool],
) -> Vec<NodeIndex> {
    if graph.find_edge(start, start).is_some() {
        return vec![start];
    }
    let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    let mut next = Vec::new();
    while let Some(node) = queue.pop_front() {
        next.clear();
        next.extend(graph.neighbors_directed(node, Direction::Outgoing));
        next.sort();
        for &n in &next {
            if n == start {
                let mut path = vec![node];
                let mut at = node;
                while at != start {
                    at = parent[&at];
                    path.push(at);
                }
                path.reverse();
                return path;
            }
            if in_scc[n.index()] && !parent.contains_key(&n) {
                parent.insert(n, node);
                queue.push_back(n);
            }
        }
    }
    vec![start]
}

/// Marks steps reached only through `on failure ->` or a decision branch.
pub fn mark_conditional(tasks: &mut [Task], graph: &DiGraph<usize, Edge>) {
    for edge in graph.edge_references() {
        if edge.weight().kind.is_conditional() {
            tasks[edge.target().index()].conditional = true;
        }
    }
}

/// Topological position of each node (the graph must be acyclic).
pub fn topo_positions(graph: &DiGraph<usize, Edge>) -> Option<Vec<usize>> {
    let order = toposort(graph, None).ok()?;
    let mut position = vec![0; graph.node_count()];
    for (k, n) in order.iter().enumerate() {
        position[n.index()] = k;
    }
    Some(position)
}

/// Whether `ancestor` runs before `node` along some path of edges.
pub struct Reach<'g> {
    graph: &'g DiGraph<usize, Edge>,
    position: Vec<usize>,
    seen: Vec<u32>,
    generation: u32,
    stack: Vec<NodeIndex>,
}

impl<'g> Reach<'g> {
    pub fn new(graph: &'g DiGraph<usize, Edge>, position: Vec<usize>) -> Self {
        Self {
            graph,
            seen: vec![0; graph.node_count()],
            position,
            generation: 0,
            stack: Vec::new(),
        }
    }

    /// The node's place in topological order.
    pub fn position(&self, node: usize) -> usize {
        self.position[node]
    }

    /// Depth-first search backwards from `node`, pruned by topological order.
    pub fn is_upstream(&mut self, ancestor: usize, node: usize) -> bool {
        if self.position[ancestor] >= self.position[node] {
            return false;
        }
        self.generation += 1;
        self.stack.clear();
        self.stack.push(NodeIndex::new(node));
        while let Some(n) = self.stack.pop() {
            for p in self.graph.neighbors_directed(n, Direction::Incoming) {
                if p.index() == ancestor {
                    return true;
                }
                if self.seen[p.index()] != self.generation
                    && self.position[p.index()] > self.position[ancestor]
                {
                    self.seen[p.index()] = self.generation;
                    self.stack.push(p);
                }
            }
        }
        false
    }
}

/// The number of steps in the widest wave: steps grouped by their longest
/// chain of predecessors, which is how many could run at once with no limit.
pub fn width(graph: &DiGraph<usize, Edge>) -> usize {
    let Ok(order) = toposort(graph, None) else {
        return 0;
    };
    let mut level = vec![0usize; graph.node_count()];
    let mut count: Vec<usize> = Vec::new();
    for n in order {
        let l = graph
            .neighbors_directed(n, Direction::Incoming)
            .map(|p| level[p.index()] + 1)
            .max()
            .unwrap_or(0);
        level[n.index()] = l;
        if count.len() <= l {
            count.resize(l + 1, 0);
        }
        count[l] += 1;
    }
    count.into_iter().max().unwrap_or(0)
}
