//! The scheduler's state machine: which steps start when, and what each
//! outcome means for the rest. It knows no threads, clocks or store: the
//! driver (`driver.rs`) tells it what happened and when, and does what it asks.
//!
//! Ready steps start in a fixed order (higher `priority` first, then file
//! order), at most `max_parallel` at once and within the plan's resources.
//! The node table may grow while the run goes on ([`Machine::add_step`]).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use petgraph::visit::EdgeRef;

use super::events::{Event, RunStatus, StepStatus};
use super::{Approval, Settled};
use cairn_lang::plan::{EdgeKind, FailurePolicy, Plan, StepKind, Task};

/// How a step ended, as the driver reports it.
#[derive(Debug)]
pub enum Outcome {
    /// Not run, for this reason (`when:` was false).
    Skipped(String),
    /// Its attempt passed.
    Succeeded {
        /// The `run:` body's value.
        output: serde_json::Value,
        /// Attempts it took.
        attempts: u32,
    },
    /// Its last attempt failed.
    Failed {
        /// Why.
        error: String,
        /// Attempts made (0 when `when:` or `input:` failed).
        attempts: u32,
    },
    /// A decision chose a branch.
    Chose {
        /// The branch's index, or `None` for `else`.
        branch: Option<usize>,
        /// The step the branch routes to.
        target: String,
    },
    /// The run was cancelled while the step ran.
    Cancelled {
        /// Attempts started, the cancelled one included.
        attempts: u32,
    },
    /// A gate's answer (`None`: nobody could answer).
    Gate(Option<Approval>),
    /// A gate whose `when:` held: it may open.
    GateOpen,
}

/// When something happened: what the driver's clock said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds since the run started (its events' `at_ms`).
    pub at_ms: u64,
    /// Milliseconds since 1970 (gate deadlines outlive the process).
    pub unix_ms: u64,
}

/// What the run was asked to do beyond the plan, fixed for the run.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// At most this many steps at once.
    pub max_parallel: usize,
    /// Gates approved up front (`--approve`).
    pub approvals: Vec<String>,
    /// Whether someone can be asked about a gate; if not, it waits.
    pub can_ask: bool,
    /// Start at most this many steps (the REPL steps one at a time).
    pub start_limit: Option<usize>,
    /// Start only these steps (kept outcomes still settle).
    pub only: Option<HashSet<String>>,
    /// In a replay: the steps the recording settled, the only ones started.
    pub replayed: Option<Arc<HashSet<String>>>,
    /// Deadlines of gates that waited before, by id (ms since 1970).
    pub gate_expiry: HashMap<String, u64>,
}

/// What the machine asks the driver to do.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Run the step's code on a worker. `failure` is, for a fallback, the
    /// step that failed and its error.
    Run {
        /// The node to run.
        node: usize,
        /// For a fallback: the step that failed, and its error.
        failure: Option<(String, String)>,
    },
    /// Ask whether gate `node` is approved (someone can be asked).
    Ask {
        /// The gate's node.
        node: usize,
        /// When the gate is rejected if still unanswered (ms since 1970).
        expires_at: Option<u64>,
    },
}

/// What the driver knew when a step finished, beside its outcome.
#[derive(Clone, Copy, Debug, Default)]
pub struct Finished {
    /// What the step reported with `spend`, if anything.
    pub spent: Option<f64>,
    /// Whether the run's cost budget is now exceeded.
    pub over_budget: bool,
}

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
    attempts: u32,
    started_ms: Option<u64>,
    duration_ms: u64,
    error: Option<String>,
    output: Option<serde_json::Value>,
    /// For a decision: the branch taken (`None` inside means `else`).
    chosen: Option<Option<usize>>,
    /// Its outgoing ordering and branch edges are resolved: a step added
    /// after it does not wait for it.
    settled: bool,
    /// In a resumed run, the outcome it keeps from before, taken when it starts.
    kept: Option<Outcome>,
    outgoing: Vec<Edge>,
    incoming: Vec<Edge>,
    /// The steps its code names in `outputs[…]`.
    reads: Vec<usize>,
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
        }
    }
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
    /// Events to report, in order, since the driver last took them.
    events: Vec<Event>,
    now: Now,
    in_use: HashMap<String, f64>,
    /// A failed step waiting for its fallback: fallback → failed steps.
    awaiting: HashMap<usize, Vec<usize>>,
    completed: Vec<usize>,
    stopping: bool,
    failed: bool,
    compensate: bool,
    interrupted: bool,
    over_budget: bool,
    message: Option<String>,
    waiting_gates: Vec<usize>,
    /// When each opened gate with a `timeout:` expires (ms since 1970).
    gate_expiry: HashMap<usize, u64>,
    /// A gate began waiting with a deadline: sleeping workers must learn it.
    new_deadline: bool,
    /// `on failure ->` edges taken as "did not fail" before their source
    /// ran, so a fallback they share could run: (source, fallback).
    unstuck: HashSet<(usize, usize)>,
    /// Steps started in this run (kept outcomes of a resumed run aside).
    started_count: usize,
}

/// The outcome a resumed run keeps for `task`, as the machine takes it.
pub fn kept_outcome(task: &Task, settled: &Settled) -> Outcome {
    match settled.clone() {
        Settled::Succeeded { output, attempts } => Outcome::Succeeded { output, attempts },
        Settled::Failed { error, attempts } => Outcome::Failed { error, attempts },
        Settled::Skipped { reason } => Outcome::Skipped(reason),
        Settled::Chose { branch, target } => Outcome::Chose {
            branch: task
                .branches
                .iter()
                .position(|b| format!("when {}", b.condition.text) == branch),
            target,
        },
        Settled::Answered(approval) => Outcome::Gate(Some(approval)),
    }
}

impl Machine {
    /// A node per plan task, with the plan's edges; `kept` is, in a
    /// resumed run, each task's outcome from before (by task; empty
    /// otherwise).
    pub fn new(plan: Arc<Plan>, policy: Policy, kept: Vec<Option<Outcome>>) -> Self {
        let mut nodes: Vec<Node> = (0..plan.tasks.len()).map(Node::new).collect();
        for edge in plan.graph.edge_references() {
            let (from, to) = (edge.source().index(), edge.target().index());
            let kind = edge.weight().kind;
            nodes[from].outgoing.push(Edge { node: to, kind });
            nodes[to].incoming.push(Edge { node: from, kind });
        }
        // petgraph lists a node's edges newest first; the machine resolves
        // them in that order, as the plan's graph gives them.
        for node in &mut nodes {
            node.outgoing.reverse();
            node.incoming.reverse();
            node.unresolved = node.incoming.len();
            node.ordering = node
                .incoming
                .iter()
                .filter(|e| !e.kind.is_conditional())
                .count();
        }
        // Only built when some code reads outputs by name.
        if plan.tasks.iter().any(|t| !t.reads.is_empty()) {
            let index: HashMap<&str, usize> = plan
                .tasks
                .iter()
                .enumerate()
                .map(|(i, t)| (t.id.as_str(), i))
                .collect();
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
        Self {
            plan,
            policy,
            nodes,
            ready: BTreeSet::new(),
            running: 0,
            actions: VecDeque::new(),
            events: Vec::new(),
            now: Now::default(),
            in_use: HashMap::new(),
            awaiting: HashMap::new(),
            completed: Vec::new(),
            stopping: false,
            failed: false,
            compensate: false,
            interrupted: false,
            over_budget: false,
            message: None,
            waiting_gates: Vec::new(),
            gate_expiry: HashMap::new(),
            new_deadline: false,
            unstuck: HashSet::new(),
            started_count: 0,
        }
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

    /// Node `i`'s step id.
    pub fn id(&self, i: usize) -> &str {
        &self.task(i).id
    }

    /// Decides every step with nothing to wait for: the run begins.
    pub fn begin(&mut self, now: Now) {
        self.now = now;
        for i in 0..self.nodes.len() {
            if self.nodes[i].unresolved == 0 {
                self.decide(i);
            }
        }
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

    /// The events since the last call, in order.
    pub fn take_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
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

    fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    /// All incoming edges are resolved: run the step, or skip it.
    fn decide(&mut self, i: usize) {
        let task = self.task(i);
        let node = &self.nodes[i];
        if task.conditional && !node.routed {
            let reason = "not routed to: no `on failure ->` or decision branch led here".to_owned();
            return self.skip(i, reason);
        }
        if node.ordering > 0 && node.ordering_skipped == node.ordering {
            return self.skip(i, "every step it needs was skipped".to_owned());
        }
        let priority = task.priority;
        self.ready.insert((-priority, i));
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

    /// Resolves this step's `on failure ->` edges: taken only if it failed.
    fn resolve_failure_routes(&mut self, i: usize, failed: bool) {
        let targets: Vec<usize> = self.nodes[i]
            .outgoing
            .iter()
            .filter(|e| e.kind == EdgeKind::OnFailure)
            .map(|e| e.node)
            .filter(|&t| !self.unstuck.contains(&(i, t)))
            .collect();
        for t in targets {
            if failed {
                self.nodes[t].routed = true;
                self.awaiting.entry(t).or_default().push(i);
            }
            self.resolve(t);
        }
    }

    /// The step's outcome is final: resolve its remaining outgoing edges.
    fn settle(&mut self, i: usize) {
        self.nodes[i].settled = true;
        let status = self.nodes[i].status;
        let chosen = self.nodes[i].chosen;
        let edges: Vec<Edge> = self.nodes[i]
            .outgoing
            .iter()
            .copied()
            .filter(|e| e.kind != EdgeKind::OnFailure)
            .collect();
        for Edge { node: t, kind } in edges {
            match kind {
                EdgeKind::Branch { index } => self.nodes[t].routed |= chosen == Some(Some(index)),
                EdgeKind::Else => self.nodes[t].routed |= chosen == Some(None),
                _ => {
                    if status == StepStatus::Skipped {
                        self.nodes[t].ordering_skipped += 1;
                    }
                }
            }
            self.resolve(t);
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
        let policy = task.on_failure.unwrap_or(self.plan.on_failure);
        match policy {
            FailurePolicy::Continue if !self.over_budget => self.settle(i),
            _ => {
                self.stopping = true;
                self.failed = true;
                self.compensate |= policy == FailurePolicy::Compensate;
                if self.message.is_none() {
                    let error = self.nodes[i].error.clone().unwrap_or_default();
                    self.message = Some(format!("`{}` failed: {error}", self.id(i)));
                }
            }
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
            for edge in &self.nodes[fallback].incoming {
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
        while (!self.stopping || replayed.is_some()) && self.running < self.policy.max_parallel {
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
                self.keeps(i)
                    || (self
                        .policy
                        .only
                        .as_ref()
                        .is_none_or(|only| only.contains(id))
                        && replayed.as_ref().is_none_or(|settled| settled.contains(id)))
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
            self.take_resources(i);
            self.nodes[i].started = true;
            if self.task(i).step == StepKind::Gate {
                self.nodes[i].attempts = 1;
            }
            self.record(i, outcome, Finished::default());
            return None;
        }
        let task = self.task(i);
        if task.step == StepKind::Gate && task.when.is_none() {
            return self.open_gate(i);
        }
        // A step with no code has nothing to block on: it completes here.
        let no_code = task.run.is_none()
            && task.when.is_none()
            && task.input.is_empty()
            && task.expect.is_empty()
            && task.step == StepKind::Task;
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
            .map(|&f| {
                (
                    self.id(f).to_owned(),
                    self.nodes[f].error.clone().unwrap_or_default(),
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
        let node = &self.nodes[i];
        // An imported step's code names its plan's steps without the alias.
        let local = self
            .task(i)
            .import
            .as_ref()
            .map(|alias| format!("{alias}."));
        let predecessors = node.incoming.iter().map(|e| e.node);
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

    /// Approved up front, asked by a worker, or left waiting; rejected if
    /// its `timeout:` has passed since it first waited.
    fn open_gate(&mut self, i: usize) -> Option<Action> {
        self.nodes[i].started = true;
        self.nodes[i].attempts = 1;
        let plan = Arc::clone(&self.plan);
        let task = &plan.tasks[self.nodes[i].task];
        if let Some(timeout) = task.timeout_ms {
            let recorded = self.policy.gate_expiry.get(&task.id).copied();
            let now = self.now.unix_ms;
            let expires_at = recorded.unwrap_or_else(|| now.saturating_add(timeout));
            if now >= expires_at {
                self.answer(i, Some(Approval::timed_out(timeout)));
                return None;
            }
            self.gate_expiry.insert(i, expires_at);
        }
        if self.policy.approvals.contains(&task.id) {
            let approval = Approval {
                approved: true,
                by: "--approve".to_owned(),
                reason: "approved on the command line".to_owned(),
            };
            self.answer(i, Some(approval));
            return None;
        }
        if !self.policy.can_ask {
            self.answer(i, None);
            return None;
        }
        if self.gate_expiry.contains_key(&i) {
            // Logged before the question, so a crash while it is asked
            // keeps the deadline.
            let waiting = self.gate_waiting(i);
            self.emit(waiting);
        }
        Some(Action::Ask {
            node: i,
            expires_at: self.gate_expiry.get(&i).copied(),
        })
    }

    fn answer(&mut self, i: usize, approval: Option<Approval>) {
        match approval {
            Some(a) if a.approved => {
                self.emit(Event::GateApproved {
                    step: self.id(i).to_owned(),
                    by: a.by,
                    reason: a.reason,
                    at_ms: self.now.at_ms,
                });
                self.nodes[i].status = StepStatus::Succeeded;
                self.completed.push(i);
                self.resolve_failure_routes(i, false);
                self.settle(i);
            }
            Some(a) => {
                self.emit(Event::GateRejected {
                    step: self.id(i).to_owned(),
                    by: a.by.clone(),
                    reason: a.reason.clone(),
                    at_ms: self.now.at_ms,
                });
                self.nodes[i].status = StepStatus::Failed;
                self.nodes[i].error = Some(format!("rejected by {}: {}", a.by, a.reason));
                self.after_failure(i);
            }
            None => {
                self.nodes[i].status = StepStatus::Waiting;
                self.waiting_gates.push(i);
                self.new_deadline |= self.gate_expiry.contains_key(&i);
                let waiting = self.gate_waiting(i);
                self.emit(waiting);
            }
        }
    }

    /// The event of gate `i` waiting for an answer, with its deadline.
    fn gate_waiting(&self, i: usize) -> Event {
        let task = self.task(i);
        Event::GateWaiting {
            step: task.id.clone(),
            title: task.title.clone(),
            checks: task.checks.clone(),
            expires_at: self.gate_expiry.get(&i).copied(),
            at_ms: self.now.at_ms,
        }
    }

    /// Rejects every waiting gate whose `timeout:` has passed.
    fn expire_gates(&mut self) {
        if self.waiting_gates.is_empty() || self.stopping {
            return;
        }
        let now = self.now.unix_ms;
        let expired: Vec<usize> = self
            .waiting_gates
            .iter()
            .copied()
            .filter(|g| self.gate_expiry.get(g).is_some_and(|&at| now >= at))
            .collect();
        for &gate in &expired {
            self.waiting_gates.retain(|&g| g != gate);
            let timeout = self.task(gate).timeout_ms.unwrap_or_default();
            self.answer(gate, Some(Approval::timed_out(timeout)));
        }
    }

    /// When the next waiting gate expires (ms since 1970), if one has a
    /// timeout and the run still answers gates.
    pub fn next_gate_expiry(&self) -> Option<u64> {
        if self.stopping {
            // Nothing is answered any more; waking for it would spin.
            return None;
        }
        self.waiting_gates
            .iter()
            .filter_map(|g| self.gate_expiry.get(g))
            .min()
            .copied()
    }

    fn after_failure(&mut self, i: usize) {
        // A fallback that already ran for an earlier step is not this one's.
        let has_fallback = self.nodes[i]
            .outgoing
            .iter()
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
        tracing::debug!(step = %task.id, ?outcome, "step finished");
        for (name, amount) in &task.resources.amounts {
            *self.in_use.entry(name.clone()).or_default() -= amount;
        }
        let at_ms = self.now.at_ms;
        let node = &mut self.nodes[i];
        node.duration_ms = node.started_ms.map_or(0, |s| at_ms.saturating_sub(s));
        match outcome {
            Outcome::Skipped(reason) => self.skip(i, reason),
            Outcome::Succeeded { output, attempts } => {
                node.status = StepStatus::Succeeded;
                node.attempts = attempts;
                node.output = Some(output.clone());
                self.completed.push(i);
                self.emit(Event::StepSucceeded {
                    step: task.id.clone(),
                    attempts,
                    output,
                    spent,
                    at_ms,
                });
                self.resolve_failure_routes(i, false);
                self.settle(i);
            }
            Outcome::Chose { branch, target } => {
                node.status = StepStatus::Succeeded;
                node.attempts = 1;
                node.chosen = Some(branch);
                node.output = Some(serde_json::Value::String(target.clone()));
                self.completed.push(i);
                let label = branch.map_or_else(
                    || "else".to_owned(),
                    |b| format!("when {}", task.branches[b].condition.text),
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
                node.status = StepStatus::Failed;
                node.attempts = attempts;
                node.error = Some(error.clone());
                self.emit(Event::StepFailed {
                    step: task.id.clone(),
                    attempts,
                    error,
                    spent,
                    at_ms,
                });
                self.after_failure(i);
            }
            Outcome::Gate(approval) => self.answer(i, approval),
            Outcome::Cancelled { attempts } => {
                node.status = StepStatus::Failed;
                node.attempts = attempts;
                node.error = Some("cancelled".to_owned());
                self.emit(Event::StepCancelled {
                    step: task.id.clone(),
                    attempts,
                    at_ms,
                });
            }
            Outcome::GateOpen if self.stopping => {}
            Outcome::GateOpen => {
                // The gate's `when:` held: open it now.
                if let Some(action) = self.open_gate(i) {
                    self.running += 1;
                    self.actions.push_back(action);
                }
            }
        }
    }

    /// Stops the run: nothing more starts (`interrupted`: by the caller,
    /// not a failure).
    pub fn cancel(&mut self, message: String, interrupted: bool) {
        tracing::info!(%message, "cancelling the run");
        self.stopping = true;
        self.failed |= !interrupted;
        self.interrupted |= interrupted;
        self.message.get_or_insert(message);
    }

    /// The run's steps are done: a fallback that never ran (say it also
    /// needs the step it stands in for) leaves that step failed for good.
    /// Then, under `compensate`, what to undo: (node, whether it completed),
    /// failed steps first (only their file edits are undone), then completed
    /// ones, newest first.
    pub fn wind_down(&mut self) -> Vec<(usize, bool)> {
        // (A fallback that is ready but held back by a stepping caller will
        // still run when the run goes on.)
        let held: HashSet<usize> = self.ready.iter().map(|&(_, i)| i).collect();
        let orphaned: Vec<usize> = self
            .awaiting
            .drain()
            .filter(|(fallback, _)| !held.contains(fallback))
            .flat_map(|(_, failed)| failed)
            .collect();
        for failed in orphaned {
            self.fail_for_good(failed);
        }
        if !self.compensate {
            return Vec::new();
        }
        let failed = (0..self.nodes.len()).filter(|&i| self.nodes[i].status == StepStatus::Failed);
        let completed = self
            .completed
            .iter()
            .rev()
            .copied()
            .filter(|&i| self.nodes[i].status == StepStatus::Succeeded);
        failed
            .map(|i| (i, false))
            .chain(completed.map(|i| (i, true)))
            .filter(|&(i, _)| self.task(i).step == StepKind::Task)
            .collect()
    }

    /// Node `i`'s output, if it has one.
    pub fn output(&self, i: usize) -> Option<&serde_json::Value> {
        self.nodes[i].output.as_ref()
    }

    /// Node `i`'s compensation succeeded (`completed`: it had completed).
    pub fn compensated(&mut self, i: usize, completed: bool) {
        if completed {
            self.nodes[i].status = StepStatus::Compensated;
        }
    }

    /// Adds to why the run failed.
    pub fn note(&mut self, note: &str) {
        self.message.get_or_insert_with(String::new).push_str(note);
    }

    /// Ends the run: its status (recording failed with `record_error`, if
    /// it did), with the `run_finished` event.
    pub fn conclude(&mut self, record_error: Option<String>, now: Now) -> RunStatus {
        self.now = now;
        if let Some(error) = record_error {
            self.failed = true;
            self.interrupted = false;
            self.message = Some(format!(
                "the run could not be recorded ({error}), so it was stopped"
            ));
        }
        let status = if self.interrupted {
            RunStatus::Interrupted
        } else if self.failed {
            RunStatus::Failed
        } else if !self.waiting_gates.is_empty() {
            let ids: Vec<String> = self
                .waiting_gates
                .iter()
                .map(|&g| format!("`{}`", self.id(g)))
                .collect();
            self.message = Some(format!("waiting for approval of {}", ids.join(", ")));
            RunStatus::Paused
        } else if !self.ready.is_empty() {
            // Held back by `start_limit` or `only`: the run goes on later.
            self.message = Some(format!("{} steps ready, held back", self.ready.len()));
            RunStatus::Paused
        } else {
            RunStatus::Succeeded
        };
        self.emit(Event::RunFinished {
            status,
            message: self.message.clone(),
            at_ms: self.now.at_ms,
        });
        status
    }

    /// Why the run failed, paused or was interrupted.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The ids of steps ready and held back.
    pub fn held_back(&self) -> Vec<String> {
        self.ready
            .iter()
            .map(|&(_, i)| self.id(i).to_owned())
            .collect()
    }

    /// Each node's report, in node order.
    pub fn into_steps(self) -> Vec<super::StepReport> {
        let plan = self.plan;
        self.nodes
            .into_iter()
            .map(|node| super::StepReport {
                id: plan.tasks[node.task].id.clone(),
                status: node.status,
                attempts: node.attempts,
                duration_ms: node.duration_ms,
                error: node.error,
                output: node.output,
            })
            .collect()
    }
}
