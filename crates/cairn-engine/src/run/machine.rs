//! The scheduler's state machine: which steps start when, and what each
//! outcome means for the rest. It knows no threads, clocks or store: the
//! driver (`driver.rs`) tells it what happened and when, and does what it asks.
//!
//! Ready steps start in a fixed order (higher `priority` first, then file
//! order), at most `max_parallel` at once and within the plan's resources.
//! The node table may grow while the run goes on ([`Machine::add_step`]).
//!
//! (The routing is one piece of logic, so it is one file; gates, the end of a
//! run, the inputs and outputs and the tests are beside it in `machine/`.)

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use petgraph::visit::EdgeRef;
use petgraph::Direction;

mod end;
mod fan;
mod gates;
mod io;
mod repeat;
#[cfg(test)]
mod tests;

pub use end::Halt;
pub use io::{kept_outcome, Action, Finished, Now, Outcome, Part, Policy};

use super::events::{Event, StepStatus};
use crate::failure::{ErrorKind, Failure};
use cairn_lang::plan::{Awaited, EdgeKind, FailurePolicy, Plan, Step, Task};

/// An edge of the node table.
#[derive(Clone, Copy, Debug)]
struct Edge {
    node: usize,
    kind: EdgeKind,
}

/// Per-step bookkeeping.
#[derive(Debug)]
struct Node {
    /// The plan task it runs.
    task: usize,
    status: StepStatus,
    started: bool,
    /// Incoming edges whose source has not settled yet.
    unresolved: usize,
    /// An incoming `on failure ->` or branch edge was taken.
    routed: bool,
    /// Incoming `needs` / `on success` edges, and how many came from skipped steps.
    ordering: usize,
    ordering_skipped: usize,
    /// Under `on failure: finish`: it failed, or was skipped because a step
    /// it needs did, so its dependents are skipped too.
    blocks: bool,
    /// The failed step that first blocked a step it needs, if any.
    blocked_by: Option<usize>,
    attempts: u32,
    started_ms: Option<u64>,
    duration_ms: u64,
    error: Option<Failure>,
    output: Option<serde_json::Value>,
    /// For a decision: the branch taken (`None` inside means `else`).
    chosen: Option<Option<usize>>,
    /// Its outgoing ordering and branch edges are resolved: a step added
    /// after it does not wait for it.
    settled: bool,
    /// In a resumed run, the outcome it keeps from before, taken when it starts.
    kept: Option<Outcome>,
    /// Edges beyond the plan's graph (to and from nodes added while the
    /// run goes on); the plan's own are read from the plan, not copied.
    outgoing: Vec<Edge>,
    incoming: Vec<Edge>,
    /// The steps its code names in `outputs[…]`.
    reads: Vec<usize>,
    /// Part of a task: an instance of `each:` or an iteration of `repeat:`.
    instance: Option<Box<fan::Instance>>,
    /// A task with `each:` that fanned out: its instances as they go.
    fan: Option<Box<fan::Fan>>,
}

impl Node {
    fn new(task: usize) -> Self {
        Self {
            task,
            status: StepStatus::NotRun,
            started: false,
            unresolved: 0,
            routed: false,
            ordering: 0,
            ordering_skipped: 0,
            blocks: false,
            blocked_by: None,
            attempts: 0,
            started_ms: None,
            duration_ms: 0,
            error: None,
            output: None,
            chosen: None,
            settled: false,
            kept: None,
            outgoing: Vec::new(),
            incoming: Vec::new(),
            reads: Vec::new(),
            instance: None,
            fan: None,
        }
    }
}

/// Where the machine's events go.
enum Events {
    /// Kept until taken.
    Kept(Vec<Event>),
    /// Handed on as they happen.
    Reported(Box<dyn FnMut(Event) + Send>),
}

/// The scheduler's books.
pub struct Machine {
    plan: Arc<Plan>,
    policy: Policy,
    nodes: Vec<Node>,
    /// Ready steps by (-priority, node).
    ready: BTreeSet<(i64, usize)>,
    /// Steps started and not finished yet (asked for or being worked on).
    running: usize,
    /// Work asked for and not yet taken by the driver, in start order.
    actions: VecDeque<Action>,
    /// Where events go: kept until taken, or reported as they happen.
    events: Events,
    now: Now,
    in_use: HashMap<String, f64>,
    /// A failed step waiting for its fallback: fallback → failed steps.
    awaiting: HashMap<usize, Vec<usize>>,
    completed: Vec<usize>,
    stopping: bool,
    failed: bool,
    /// `on failure: abort` struck: the driver is to interrupt what runs.
    aborting: bool,
    compensate: bool,
    interrupted: bool,
    /// Cancelled for good from outside: ends `cancelled`.
    cancelled: bool,
    over_budget: bool,
    message: Option<String>,
    waiting_gates: Vec<usize>,
    /// Tasks with `plan:` whose child runs wait at gates, with the gates.
    waiting_children: Vec<(usize, Vec<String>)>,
    /// When each opened gate with a `timeout:` expires (ms since 1970).
    gate_expiry: HashMap<usize, u64>,
    /// A gate began waiting with a deadline: sleeping workers must learn it.
    new_deadline: bool,
    /// `on failure ->` edges taken as "did not fail" before their source
    /// ran, so a fallback they share could run: (source, fallback).
    unstuck: HashSet<(usize, usize)>,
    /// Steps started in this run (kept outcomes of a resumed run aside).
    started_count: usize,
    /// In a resumed run, the outcomes instances of `each:` keep, by id
    /// (`task[i]`), taken when their task fans out again.
    kept_instances: HashMap<String, Outcome>,
    /// Stopped from outside or by `abort` (cancel, Ctrl-C, the time
    /// budget): not even a failure's handlers start.
    halted: bool,
    /// The `needs:` entries that name results, by plan node: each entry's
    /// members as (node, result).
    qualified: HashMap<usize, Vec<Vec<(usize, Awaited)>>>,
    /// The `finally:` steps not started yet, in file order.
    finally: VecDeque<usize>,
    /// The finally steps run: only they start now.
    finalizing: bool,
    /// Steps a rejected gate's `on reject ->` routed to, with the gate.
    reject_routed: HashMap<usize, usize>,
}

impl Machine {
    /// A node per plan task, with the plan's edges; `kept` is, in a
    /// resumed run, each task's outcome from before (by task; empty
    /// otherwise).
    pub fn new(plan: Arc<Plan>, policy: Policy, kept: Vec<Option<Outcome>>) -> Self {
        let mut nodes: Vec<Node> = (0..plan.tasks.len())
            .map(|i| {
                let mut node = Node::new(i);
                for edge in plan
                    .graph
                    .edges_directed(Plan::node(i), Direction::Incoming)
                {
                    node.unresolved += 1;
                    node.ordering += usize::from(edge.weight().kind.is_ordering());
                }
                node
            })
            .collect();
        // Only built when some code reads outputs by name.
        if plan.tasks.iter().any(|t| !t.reads.is_empty()) {
            let index = cairn_lang::plan::index_by_id(&plan.tasks);
            for (node, task) in nodes.iter_mut().zip(&plan.tasks) {
                node.reads = task
                    .reads
                    .iter()
                    .filter_map(|id| index.get(id.as_str()).copied())
                    .collect();
            }
        }
        for (node, outcome) in nodes.iter_mut().zip(kept) {
            node.kept = outcome;
        }
        let qualified = qualified_needs(&plan);
        let finally = (0..plan.tasks.len())
            .filter(|&i| plan.tasks[i].finally)
            .collect();
        Self {
            plan,
            policy,
            nodes,
            ready: BTreeSet::new(),
            running: 0,
            actions: VecDeque::new(),
            events: Events::Kept(Vec::new()),
            now: Now::default(),
            in_use: HashMap::new(),
            awaiting: HashMap::new(),
            completed: Vec::new(),
            stopping: false,
            aborting: false,
            failed: false,
            compensate: false,
            interrupted: false,
            cancelled: false,
            over_budget: false,
            message: None,
            waiting_gates: Vec::new(),
            waiting_children: Vec::new(),
            gate_expiry: HashMap::new(),
            new_deadline: false,
            unstuck: HashSet::new(),
            started_count: 0,
            kept_instances: HashMap::new(),
            halted: false,
            qualified,
            finally,
            finalizing: false,
            reject_routed: HashMap::new(),
        }
    }

    /// In a resumed run, the outcomes of instances of `each:` from before,
    /// by id (`task[i]`): they are kept when their task fans out again.
    pub fn keep_instances(&mut self, kept: HashMap<String, Outcome>) {
        self.kept_instances = kept;
    }

    /// Adds a node running plan task `task` after the nodes `needs` (each
    /// an ordering edge), while the run goes on; its number. A node whose
    /// needs have all settled is decided at once.
    pub fn add_step(&mut self, task: usize, needs: &[usize]) -> usize {
        let node = self.nodes.len();
        let mut new = Node::new(task);
        for &from in needs {
            let edge = Edge {
                node: from,
                kind: EdgeKind::Needs,
            };
            new.incoming.push(edge);
            if !self.nodes[from].settled {
                new.unresolved += 1;
                self.nodes[from].outgoing.push(Edge {
                    node,
                    kind: EdgeKind::Needs,
                });
            } else if self.nodes[from].status == StepStatus::Skipped {
                new.ordering_skipped += 1;
            }
            new.ordering += 1;
        }
        let ready = new.unresolved == 0;
        self.nodes.push(new);
        if ready {
            self.decide(node);
        }
        node
    }

    /// Node `i`'s outgoing edges: the plan's (newest first, as its graph
    /// lists them), then any added since.
    fn outgoing(&self, i: usize) -> impl Iterator<Item = Edge> + '_ {
        self.plan_edges(i, Direction::Outgoing)
            .chain(self.nodes[i].outgoing.iter().copied())
    }

    /// Node `i`'s incoming edges, the plan's first.
    fn incoming(&self, i: usize) -> impl Iterator<Item = Edge> + '_ {
        self.plan_edges(i, Direction::Incoming)
            .chain(self.nodes[i].incoming.iter().copied())
    }

    fn plan_edges(&self, i: usize, direction: Direction) -> impl Iterator<Item = Edge> + '_ {
        let in_plan = i < self.plan.graph.node_count();
        in_plan
            .then(|| self.plan.graph.edges_directed(Plan::node(i), direction))
            .into_iter()
            .flatten()
            .map(move |e| Edge {
                node: match direction {
                    Direction::Outgoing => e.target().index(),
                    Direction::Incoming => e.source().index(),
                },
                kind: e.weight().kind,
            })
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The plan task node `i` runs.
    pub fn task(&self, i: usize) -> &Task {
        &self.plan.tasks[self.nodes[i].task]
    }

    /// The index in the plan of the task node `i` runs.
    pub fn task_index(&self, i: usize) -> usize {
        self.nodes[i].task
    }

    /// Node `i`'s step id (`task[3]` for an instance of `each:`, `task#2`
    /// for an iteration of `repeat:`).
    pub fn id(&self, i: usize) -> &str {
        match &self.nodes[i].instance {
            Some(instance) => &instance.id,
            None => &self.task(i).id,
        }
    }

    /// Decides every step with nothing to wait for: the run begins.
    pub fn begin(&mut self, now: Now) {
        self.now = now;
        for i in 0..self.nodes.len() {
            // Finally steps wait for [`Machine::begin_finally`].
            if self.nodes[i].unresolved == 0 && !self.task(i).finally {
                self.decide(i);
            }
        }
    }

    /// Whether the run ends when nothing more runs now, rather than
    /// pausing (at a gate, or with steps held back) to go on later.
    pub fn ends(&self) -> bool {
        self.cancelled
            || self.interrupted
            || self.failed
            || (self.waiting_gates.is_empty()
                && self.waiting_children.is_empty()
                && self.ready.is_empty())
    }

    /// Every other step has settled: the `finally:` steps run now, one
    /// after another in file order, whatever happened. Whether there are any.
    pub fn begin_finally(&mut self, now: Now) -> bool {
        self.now = now;
        if self.finally.is_empty() {
            return false;
        }
        self.finalizing = true;
        // What stopped the other steps does not stop these.
        self.halted = false;
        self.next_finally();
        true
    }

    fn next_finally(&mut self) {
        if let Some(i) = self.finally.pop_front() {
            self.decide(i);
        }
    }

    /// How the run went, as a finally step reads it in `run`.
    pub fn summary(&self) -> serde_json::Value {
        let status = if self.cancelled || self.interrupted {
            "cancelled"
        } else if self.failed {
            "failed"
        } else {
            "succeeded"
        };
        let plan_steps = (0..self.plan.tasks.len()).filter(|&i| !self.task(i).finally);
        let (mut failed, mut skipped, mut cancelled) = (Vec::new(), Vec::new(), Vec::new());
        for i in plan_steps {
            let node = &self.nodes[i];
            let id = serde_json::Value::String(self.id(i).to_owned());
            match node.status {
                StepStatus::Failed
                    if node.error.as_ref().map(|e| e.kind) == Some(ErrorKind::Cancelled) =>
                {
                    cancelled.push(id);
                }
                StepStatus::Failed => failed.push(id),
                StepStatus::Skipped => skipped.push(id),
                _ => {}
            }
        }
        serde_json::json!({
            "status": status,
            "failed": failed,
            "skipped": skipped,
            "cancelled": cancelled,
        })
    }

    /// Time passed: rejects gates whose timeout ran out, and starts every
    /// step that may start now.
    pub fn tick(&mut self, now: Now, over_budget: bool) {
        self.now = now;
        self.over_budget |= over_budget;
        self.expire_gates();
        self.dispatch();
    }

    /// The next piece of work asked for, if any.
    pub fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether work is asked for and not yet taken.
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// Hands every event from now on to `report` as it happens, instead of
    /// keeping it for [`Machine::take_events`]: a long run of steps that
    /// settle without a thread (no code, kept outcomes) is reported while
    /// it goes on, not all at once at its end.
    pub fn report_to(&mut self, report: Box<dyn FnMut(Event) + Send>) {
        self.events = Events::Reported(report);
    }

    /// The events kept since the last call, in order (none once they are
    /// reported as they happen).
    pub fn take_events(&mut self) -> Vec<Event> {
        match &mut self.events {
            Events::Kept(events) => std::mem::take(events),
            Events::Reported(_) => Vec::new(),
        }
    }

    /// Whether a gate began waiting with a deadline since the last call.
    pub fn take_new_deadline(&mut self) -> bool {
        std::mem::take(&mut self.new_deadline)
    }

    /// Steps started and not finished.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Whether no step is ready to start.
    pub fn nothing_ready(&self) -> bool {
        self.ready.is_empty()
    }

    /// Whether the run is stopping (a failure, the budget, a cancel).
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// Whether a failure under `on failure: abort` asks the driver to
    /// interrupt the running steps now (asked once).
    pub fn take_abort(&mut self) -> bool {
        std::mem::take(&mut self.aborting)
    }

    fn emit(&mut self, event: Event) {
        match &mut self.events {
            Events::Kept(events) => events.push(event),
            Events::Reported(report) => report(event),
        }
    }

    /// All incoming edges are resolved: run the step, or skip it.
    fn decide(&mut self, i: usize) {
        let task = self.task(i);
        let node = &self.nodes[i];
        if task.conditional && !node.routed {
            let reason =
                "not routed to: no `on failure ->`, `on reject ->` or decision branch led here"
                    .to_owned();
            return self.skip(i, reason);
        }
        if let Some(origin) = node.blocked_by {
            let rejected = self.nodes[origin].error.as_ref().map(|e| e.kind);
            let reason = match rejected {
                Some(ErrorKind::Rejected) => format!("`{}` was rejected", self.id(origin)),
                _ => format!("`{}` failed (`on failure: finish`)", self.id(origin)),
            };
            self.nodes[i].blocks = true;
            return self.skip(i, reason);
        }
        if let Some(reason) = self.unmet_needs(i) {
            return self.skip(i, reason);
        }
        if node.ordering > 0 && node.ordering_skipped == node.ordering {
            return self.skip(i, "every step it needs was skipped".to_owned());
        }
        let priority = task.priority;
        self.ready.insert((-priority, i));
    }

    /// Why node `i`'s `needs:` entries that name results cannot hold, if
    /// one cannot (every step they name has settled).
    fn unmet_needs(&self, i: usize) -> Option<String> {
        let entries = self.qualified.get(&i)?;
        let (k, entry) = entries
            .iter()
            .enumerate()
            .find(|(_, entry)| !entry.iter().any(|&(n, want)| self.holds(n, want)))?;
        let written = &self.task(i).qualified[k];
        let came_to = |n: usize| {
            let node = &self.nodes[n];
            let word = node.status.word(node.error.as_ref().map(|e| e.kind));
            format!("`{}` {word}", self.id(n))
        };
        Some(match written.as_slice() {
            [one] => format!("it needs `{one}`, but {}", came_to(entry[0].0)),
            _ => {
                let names: Vec<String> = written.iter().map(|n| format!("`{n}`")).collect();
                let results: Vec<String> = entry.iter().map(|&(n, _)| came_to(n)).collect();
                format!(
                    "it needs any of {}, and none held: {}",
                    names.join(", "),
                    results.join(", ")
                )
            }
        })
    }

    /// Whether settled node `n` came to `want`.
    fn holds(&self, n: usize, want: Awaited) -> bool {
        let status = self.nodes[n].status;
        match want {
            Awaited::Succeeded => matches!(
                status,
                StepStatus::Succeeded | StepStatus::Recovered | StepStatus::Compensated
            ),
            Awaited::Failed => status == StepStatus::Failed,
            Awaited::Skipped => status == StepStatus::Skipped,
            Awaited::Done => true,
        }
    }

    /// Whether ready node `i` handles a failure: a fallback routed to, or a
    /// step whose `needs:` name a failure that happened (`a.failed`,
    /// `a.done`). These start even while the run stops for a failure, so
    /// whether they run never depends on which failure came first.
    fn handles_failure(&self, i: usize) -> bool {
        let i = self.reader(i);
        self.awaiting.contains_key(&i)
            || self.reject_routed.contains_key(&i)
            || self.qualified.get(&i).is_some_and(|entries| {
                entries.iter().flatten().any(|&(n, want)| {
                    matches!(want, Awaited::Failed | Awaited::Done)
                        && self.nodes[n].status == StepStatus::Failed
                })
            })
    }

    /// Resolves node `i`'s `after` edges (of `needs:` entries naming
    /// results) only: it failed and the run stops, so nothing that needs
    /// it to succeed will run, but what handles its failure may.
    fn resolve_after_edges(&mut self, i: usize) {
        let targets: Vec<usize> = self
            .outgoing(i)
            .filter(|e| e.kind == EdgeKind::After)
            .map(|e| e.node)
            .collect();
        for t in targets {
            self.resolve(t);
        }
    }

    fn skip(&mut self, i: usize, reason: String) {
        self.nodes[i].status = StepStatus::Skipped;
        self.emit(Event::StepSkipped {
            step: self.id(i).to_owned(),
            reason,
            at_ms: self.now.at_ms,
        });
        self.resolve_failure_routes(i, false);
        self.settle(i);
    }

    /// Resolves this step's `on failure ->` and `on reject ->` edges:
    /// taken only if it failed (a gate: was rejected).
    fn resolve_failure_routes(&mut self, i: usize, failed: bool) {
        let targets: Vec<Edge> = self
            .outgoing(i)
            .filter(|e| matches!(e.kind, EdgeKind::OnFailure | EdgeKind::OnReject))
            .filter(|e| !self.unstuck.contains(&(i, e.node)))
            .collect();
        for Edge { node: t, kind } in targets {
            if failed {
                self.nodes[t].routed = true;
                // A fallback may recover the step; a rejection stays one.
                if kind == EdgeKind::OnFailure {
                    self.awaiting.entry(t).or_default().push(i);
                } else {
                    self.reject_routed.entry(t).or_insert(i);
                }
            }
            self.resolve(t);
        }
    }

    /// The step's outcome is final: resolve its remaining outgoing edges.
    fn settle(&mut self, i: usize) {
        self.nodes[i].settled = true;
        let status = self.nodes[i].status;
        let chosen = self.nodes[i].chosen;
        let edges: Vec<Edge> = self
            .outgoing(i)
            .filter(|e| !matches!(e.kind, EdgeKind::OnFailure | EdgeKind::OnReject))
            .collect();
        let blocking = self.nodes[i]
            .blocks
            .then(|| self.nodes[i].blocked_by.unwrap_or(i));
        for Edge { node: t, kind } in edges {
            match kind {
                EdgeKind::Branch { index } => self.nodes[t].routed |= chosen == Some(Some(index)),
                EdgeKind::Else => self.nodes[t].routed |= chosen == Some(None),
                EdgeKind::After | EdgeKind::OnFailure | EdgeKind::OnReject => {}
                EdgeKind::Needs | EdgeKind::OnSuccess => {
                    if status == StepStatus::Skipped {
                        self.nodes[t].ordering_skipped += 1;
                    }
                    if let Some(origin) = blocking {
                        self.nodes[t].blocked_by.get_or_insert(origin);
                    }
                }
            }
            self.resolve(t);
        }
        if self.finalizing && self.task(i).finally && self.nodes[i].instance.is_none() {
            self.next_finally();
        }
        // A fallback settled: the step it stands in for is recovered or failed.
        for failed in self.awaiting.remove(&i).unwrap_or_default() {
            if status == StepStatus::Succeeded {
                self.nodes[failed].status = StepStatus::Recovered;
                self.emit(Event::StepRecovered {
                    step: self.id(failed).to_owned(),
                    by: self.id(i).to_owned(),
                    at_ms: self.now.at_ms,
                });
                self.settle(failed);
            } else {
                self.fail_for_good(failed);
            }
        }
    }

    fn resolve(&mut self, t: usize) {
        let node = &mut self.nodes[t];
        node.unresolved -= 1;
        if node.unresolved == 0 {
            self.decide(t);
        }
    }

    /// A failure with no fallback left: apply the step's failure policy.
    fn fail_for_good(&mut self, i: usize) {
        let task = self.task(i);
        // A finally step's failure fails the run and the next one runs.
        if task.finally {
            self.fails_the_run(i);
            return self.settle(i);
        }
        let policy = task.on_failure.unwrap_or(self.plan.on_failure);
        // A gate rejected with `on reject ->` stays failed: its dependents
        // are skipped, whatever the policy says of the run.
        let rejected = matches!(&task.step, Step::Gate(gate) if gate.on_reject.is_some());
        if rejected {
            self.nodes[i].blocks = true;
        }
        match policy {
            FailurePolicy::Continue if !self.over_budget => self.settle(i),
            // The failure stands in its dependents' way only: they are
            // skipped (settling it marks them), the rest runs on.
            FailurePolicy::Finish if !self.over_budget => {
                self.fails_the_run(i);
                self.nodes[i].blocks = true;
                self.settle(i);
            }
            _ => {
                self.stopping = true;
                self.compensate |= policy == FailurePolicy::Compensate;
                self.aborting |= policy == FailurePolicy::Abort && self.running > 0;
                self.halted |= policy == FailurePolicy::Abort;
                self.fails_the_run(i);
                if rejected {
                    self.settle(i);
                } else {
                    self.resolve_after_edges(i);
                }
            }
        }
    }

    /// Node `i`'s failure fails the run; the first such names the run's failure.
    fn fails_the_run(&mut self, i: usize) {
        self.failed = true;
        if self.message.is_none() {
            let error = self.nodes[i].error.as_ref().map(|e| e.message.as_str());
            let error = error.unwrap_or_default();
            self.message = Some(format!("`{}` failed: {error}", self.id(i)));
        }
    }

    fn fits(&self, i: usize) -> bool {
        let task = self.task(i);
        task.resources.amounts.iter().all(|(name, amount)| {
            self.plan
                .resources
                .amounts
                .get(name)
                .is_none_or(|capacity| {
                    self.in_use.get(name).copied().unwrap_or(0.0) + amount <= capacity + 1e-9
                })
        })
    }

    /// Starts every ready step that may start now.
    fn dispatch(&mut self) {
        while let Some(action) = self.take_work() {
            self.actions.push_back(action);
        }
    }

    /// Nothing runs and nothing is ready, yet a failed step waits for its
    /// fallback. That happens when steps that depend on each other share the
    /// fallback (`a`, and `b` needing `a`, both `on failure -> rollback`):
    /// the fallback waits for `b`'s route, and `b` for `a`. A step that has
    /// not started has not failed, so its route to a routed fallback is
    /// taken as not failing now; if it fails later, it has no fallback left.
    /// Whether anything became ready.
    pub fn unstick(&mut self) -> bool {
        if self.stopping {
            return false;
        }
        let mut freed = Vec::new();
        for &fallback in self.awaiting.keys() {
            if self.nodes[fallback].started || self.nodes[fallback].unresolved == 0 {
                continue;
            }
            for edge in self.incoming(fallback) {
                let source = edge.node;
                if edge.kind == EdgeKind::OnFailure
                    && !self.nodes[source].started
                    && self.nodes[source].status == StepStatus::NotRun
                    && !self.unstuck.contains(&(source, fallback))
                {
                    freed.push((source, fallback));
                }
            }
        }
        for &(source, fallback) in &freed {
            self.unstuck.insert((source, fallback));
            self.resolve(fallback);
        }
        !freed.is_empty()
    }

    /// The next piece of work, if a ready step may start now. Steps that
    /// need no thread (no code, kept outcomes, gates approved up front) are
    /// completed here on the way.
    fn take_work(&mut self) -> Option<Action> {
        let replayed = self.policy.replayed.clone();
        while self.running < self.policy.max_parallel {
            // A stopping run starts only what handles a failure (a replay
            // starts what the recording did); the finally steps start last.
            // (Read each time round: a kept outcome settled on the way may
            // stop the run.)
            let stopped = self.stopping && replayed.is_none() && !self.finalizing;
            if (stopped || self.finalizing) && (self.halted || self.over_budget && stopped) {
                return None;
            }
            // A stepping caller (the REPL) may hold steps back.
            if self
                .policy
                .start_limit
                .is_some_and(|limit| self.started_count >= limit)
            {
                // Steps already settled still settle: they are not "started".
                let &(key, i) = self.ready.iter().find(|&&(_, i)| self.keeps(i))?;
                self.ready.remove(&(key, i));
                self.start(i);
                continue;
            }
            let allowed = |i: usize| {
                let id = self.id(i);
                // An instance of `each:` may start where its task may.
                let task = &self.task(i).id;
                let now = if self.finalizing {
                    self.task(i).finally
                } else {
                    !stopped || self.handles_failure(i)
                };
                now && (self.keeps(i)
                    || (self
                        .policy
                        .only
                        .as_ref()
                        .is_none_or(|only| only.contains(id) || only.contains(task))
                        && replayed.as_ref().is_none_or(|settled| settled.contains(id))))
            };
            let &(key, i) = self
                .ready
                .iter()
                .find(|&&(_, i)| self.fits(i) && allowed(i))?;
            self.ready.remove(&(key, i));
            if !self.keeps(i) {
                self.started_count += 1;
            }
            if let Some(action) = self.start(i) {
                self.running += 1;
                return Some(action);
            }
        }
        None
    }

    fn take_resources(&mut self, i: usize) {
        let plan = Arc::clone(&self.plan);
        for (name, amount) in &plan.tasks[self.nodes[i].task].resources.amounts {
            *self.in_use.entry(name.clone()).or_default() += amount;
        }
    }

    fn start(&mut self, i: usize) -> Option<Action> {
        if let Some(outcome) = self.nodes[i].kept.take() {
            if !matches!(outcome, Outcome::FannedOut(_) | Outcome::Looping) {
                self.restore_parts(i);
            }
            self.take_resources(i);
            self.nodes[i].started = true;
            if matches!(self.task(i).step, Step::Gate(_)) {
                self.nodes[i].attempts = 1;
            }
            self.record(i, outcome, Finished::default());
            return None;
        }
        let task = self.task(i);
        if matches!(task.step, Step::Gate(_)) && task.when.is_none() {
            return self.open_gate(i);
        }
        // A step with no code has nothing to block on: it completes here.
        let no_code = task.run.is_none()
            && task.when.is_none()
            && task.input.is_empty()
            && task.expect.is_empty()
            && task.each.is_none()
            && task.repeat.is_none()
            && task.call.is_none()
            && matches!(task.step, Step::Task);
        self.take_resources(i);
        let node = &mut self.nodes[i];
        node.started = true;
        node.started_ms = Some(self.now.at_ms);
        tracing::debug!(step = %self.id(i), "step started");
        self.emit(Event::StepStarted {
            step: self.id(i).to_owned(),
            at_ms: self.now.at_ms,
        });
        if no_code {
            let outcome = Outcome::Succeeded {
                output: serde_json::Value::Null,
                attempts: 1,
            };
            self.record(i, outcome, Finished::default());
            return None;
        }
        let failure = self
            .awaiting
            .get(&i)
            .and_then(|failed| failed.first())
            .or_else(|| self.reject_routed.get(&i))
            .map(|&f| {
                (
                    self.id(f).to_owned(),
                    self.nodes[f]
                        .error
                        .clone()
                        .unwrap_or_else(|| Failure::script("")),
                )
            });
        Some(Action::Run { node: i, failure })
    }

    /// Whether the step keeps an outcome from an earlier part of a resumed run.
    fn keeps(&self, i: usize) -> bool {
        self.nodes[i].kept.is_some()
    }

    /// The outputs node `i`'s code may read: of its direct predecessors and
    /// of every step its code names, so what a script sees never depends on
    /// timing. Each with the id the code uses for it.
    pub fn visible_outputs(&self, i: usize, mut visit: impl FnMut(&str, &serde_json::Value)) {
        // An instance reads what its task reads.
        let i = self.reader(i);
        let node = &self.nodes[i];
        // An imported step's code names its plan's steps without the alias.
        let local = self
            .task(i)
            .import
            .as_ref()
            .map(|alias| format!("{alias}."));
        let predecessors = self.incoming(i).map(|e| e.node);
        for j in predecessors.chain(node.reads.iter().copied()) {
            if let Some(output) = &self.nodes[j].output {
                let id = self.id(j);
                if let Some(short) = local.as_deref().and_then(|l| id.strip_prefix(l)) {
                    visit(short, output);
                }
                visit(id, output);
            }
        }
    }

    fn after_failure(&mut self, i: usize) {
        // A fallback that already ran for an earlier step is not this one's.
        let has_fallback = self
            .outgoing(i)
            .any(|e| e.kind == EdgeKind::OnFailure && !self.unstuck.contains(&(i, e.node)));
        self.resolve_failure_routes(i, true);
        if !has_fallback {
            self.fail_for_good(i);
        }
    }

    /// Node `i`, started by an [`Action`], ended with `outcome`.
    pub fn finished(&mut self, i: usize, outcome: Outcome, finished: Finished, now: Now) {
        self.now = now;
        self.running -= 1;
        self.record(i, outcome, finished);
    }

    fn record(&mut self, i: usize, outcome: Outcome, finished: Finished) {
        self.over_budget |= finished.over_budget;
        self.outcome(i, outcome, finished.spent);
        // A crossed cost budget stops the run even if a script caught the error.
        if self.over_budget && !self.stopping {
            self.stopping = true;
            self.failed = true;
            self.message.get_or_insert_with(|| {
                format!(
                    "the cost budget of {} was exceeded",
                    self.plan.budget.cost.unwrap_or_default()
                )
            });
        }
    }

    fn outcome(&mut self, i: usize, outcome: Outcome, spent: Option<f64>) {
        let plan = Arc::clone(&self.plan);
        let task = &plan.tasks[self.nodes[i].task];
        tracing::debug!(step = %self.id(i), ?outcome, "step finished");
        for (name, amount) in &task.resources.amounts {
            *self.in_use.entry(name.clone()).or_default() -= amount;
        }
        if let Outcome::Waiting(on) = outcome {
            return self.wait_on(i, on);
        }
        match self.nodes[i].instance.as_deref().map(|x| &x.part) {
            Some(Part::Element { .. }) => return self.instance_outcome(i, outcome, spent),
            Some(Part::Iteration { .. }) => return self.iteration_outcome(i, outcome, spent),
            None => {}
        }
        let at_ms = self.now.at_ms;
        let node = &mut self.nodes[i];
        node.duration_ms = node.started_ms.map_or(0, |s| at_ms.saturating_sub(s));
        self.settle_outcome(i, outcome, spent);
    }

    /// A task's outcome: its status, its events, and what follows from it.
    fn settle_outcome(&mut self, i: usize, outcome: Outcome, spent: Option<f64>) {
        let plan = Arc::clone(&self.plan);
        let task = &plan.tasks[self.nodes[i].task];
        let at_ms = self.now.at_ms;
        match outcome {
            Outcome::Skipped(reason) => self.skip(i, reason),
            Outcome::Succeeded { output, attempts } => {
                self.succeeded(i, output, attempts, spent, None);
                self.resolve_failure_routes(i, false);
                self.settle(i);
            }
            Outcome::Chose { branch, target } => {
                let node = &mut self.nodes[i];
                node.status = StepStatus::Succeeded;
                node.attempts = 1;
                node.chosen = Some(branch);
                node.output = Some(serde_json::Value::String(target.clone()));
                self.completed.push(i);
                let label = branch.map_or_else(
                    || "else".to_owned(),
                    |b| format!("when {}", task.branch(b).condition.text),
                );
                self.emit(Event::DecisionMade {
                    step: task.id.clone(),
                    branch: label,
                    target,
                    at_ms,
                });
                self.resolve_failure_routes(i, false);
                self.settle(i);
            }
            Outcome::Failed { error, attempts } => {
                self.failed(i, error, attempts, spent);
                self.after_failure(i);
            }
            Outcome::Gate(approval) => self.answer(i, approval),
            Outcome::Cancelled { attempts } => self.cancelled(i, attempts),
            Outcome::GateOpen if self.stopping => {}
            Outcome::GateOpen => {
                // The gate's `when:` held: open it now.
                if let Some(action) = self.open_gate(i) {
                    self.running += 1;
                    self.actions.push_back(action);
                }
            }
            Outcome::FannedOut(items) => self.fan_out(i, items),
            Outcome::Looping => self.loop_begin(i),
            // Taken before it gets here (see `outcome`).
            Outcome::Waiting(_) => {}
            // Only an iteration's own work gives this (see `iteration_outcome`).
            Outcome::Iterated {
                output, attempts, ..
            } => {
                self.succeeded(i, output, attempts, spent, None);
                self.resolve_failure_routes(i, false);
                self.settle(i);
            }
        }
    }

    /// Node `i`'s work succeeded: its status, output and event (what
    /// follows is the caller's). `until`: for an iteration of `repeat:`
    /// with `until`, whether it held.
    fn succeeded(
        &mut self,
        i: usize,
        output: serde_json::Value,
        attempts: u32,
        spent: Option<f64>,
        until: Option<bool>,
    ) {
        let node = &mut self.nodes[i];
        node.status = StepStatus::Succeeded;
        node.attempts = attempts;
        node.output = Some(output.clone());
        self.completed.push(i);
        self.emit(Event::StepSucceeded {
            step: self.id(i).to_owned(),
            attempts,
            output,
            spent,
            until,
            at_ms: self.now.at_ms,
        });
    }

    /// Node `i`'s work failed: its status, error and event.
    fn failed(&mut self, i: usize, error: Failure, attempts: u32, spent: Option<f64>) {
        let node = &mut self.nodes[i];
        node.status = StepStatus::Failed;
        node.attempts = attempts;
        let (kind, code, at) = (error.kind, error.code, error.at);
        let message = error.message.clone();
        node.error = Some(error);
        self.emit(Event::StepFailed {
            step: self.id(i).to_owned(),
            attempts,
            error: message,
            kind,
            code,
            at,
            spent,
            at_ms: self.now.at_ms,
        });
    }

    /// Node `i`'s child run waits at gates: so does the node, unsettled (an
    /// instance frees its slot for its siblings).
    fn wait_on(&mut self, i: usize, on: Vec<String>) {
        self.nodes[i].status = StepStatus::Waiting;
        self.nodes[i].attempts = self.nodes[i].attempts.max(1);
        self.emit(Event::StepWaiting {
            step: self.id(i).to_owned(),
            on: on.clone(),
            at_ms: self.now.at_ms,
        });
        self.waiting_children.push((i, on));
        if let Some(parent) = self.nodes[i].instance.as_ref().map(|x| x.parent) {
            self.instance_left(parent);
        }
    }

    /// The run cancelled node `i`'s work: its status and event.
    fn cancelled(&mut self, i: usize, attempts: u32) {
        let node = &mut self.nodes[i];
        node.status = StepStatus::Failed;
        node.attempts = attempts;
        node.error = Some(Failure::new(ErrorKind::Cancelled, "cancelled"));
        self.emit(Event::StepCancelled {
            step: self.id(i).to_owned(),
            attempts,
            at_ms: self.now.at_ms,
        });
    }
}

/// Each plan node's `needs:` entries that name results, members resolved
/// to nodes (a plan's node `i` runs its task `i`).
fn qualified_needs(plan: &Plan) -> HashMap<usize, Vec<Vec<(usize, Awaited)>>> {
    if plan.tasks.iter().all(|t| t.qualified.is_empty()) {
        return HashMap::new();
    }
    let index = cairn_lang::plan::index_by_id(&plan.tasks);
    plan.tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.qualified.is_empty())
        .map(|(i, t)| {
            let entries = t
                .qualified
                .iter()
                .map(|entry| {
                    entry
                        .iter()
                        .filter_map(|need| Some((*index.get(need.id.as_str())?, need.result)))
                        .collect()
                })
                .collect();
            (i, entries)
        })
        .collect()
}
