//! The machine alone: no threads, no clock, no sandbox. Each test checks
//! a plan, then plays the driver by hand.

use super::*;
use crate::run::events::RunStatus;
use cairn_lang::source::Source;

fn plan(body: &str) -> Arc<Plan> {
    let text = format!("plan p \"P\"\n{body}");
    let checked = crate::check(&Source::new("p.plan", text));
    Arc::new(
        checked
            .plan
            .unwrap_or_else(|| panic!("{:?}", checked.diagnostics)),
    )
}

fn machine(body: &str, policy: Policy) -> Machine {
    let policy = Policy {
        max_parallel: policy.max_parallel.max(1),
        ..policy
    };
    let mut machine = Machine::new(plan(body), policy, Vec::new());
    machine.begin(at(0));
    machine
}

fn at(ms: u64) -> Now {
    Now {
        at_ms: ms,
        unix_ms: 1_000_000 + ms,
    }
}

fn wide(max_parallel: usize) -> Policy {
    Policy {
        max_parallel,
        ..Policy::default()
    }
}

/// Ticks, then takes every action asked for, by step id.
fn started(machine: &mut Machine, ms: u64) -> Vec<String> {
    machine.tick(at(ms), false);
    let actions: Vec<Action> = std::iter::from_fn(|| machine.next_action()).collect();
    actions
        .into_iter()
        .map(|action| match action {
            Action::Run { node, .. } | Action::Ask { node, .. } => machine.id(node).to_owned(),
        })
        .collect()
}

fn node(machine: &Machine, id: &str) -> usize {
    (0..machine.len()).find(|&i| machine.id(i) == id).expect(id)
}

fn succeed(machine: &mut Machine, id: &str, ms: u64) {
    let i = node(machine, id);
    let output = serde_json::json!(id);
    let outcome = Outcome::Succeeded {
        output,
        attempts: 1,
    };
    machine.finished(i, outcome, Finished::default(), at(ms));
}

fn fail(machine: &mut Machine, id: &str, ms: u64) {
    let i = node(machine, id);
    let outcome = Outcome::Failed {
        error: crate::Failure::script("boom"),
        attempts: 1,
    };
    machine.finished(i, outcome, Finished::default(), at(ms));
}

/// The names of the events since the last call, with their steps.
fn events(machine: &mut Machine) -> Vec<String> {
    machine
        .take_events()
        .iter()
        .map(|e| match e.step() {
            Some(step) => format!("{} {step}", e.name()),
            None => e.name().to_owned(),
        })
        .collect()
}

fn statuses(machine: Machine) -> Vec<(String, StepStatus)> {
    machine
        .into_steps()
        .into_iter()
        .map(|s| (s.id, s.status))
        .collect()
}

const CHAIN: &str = "\ntask a \"A\"\n  run: 1\n\ntask b \"B\"\n  needs: a\n  run: 2\n\ntask c \"C\"\n  needs: b\n  run: 3\n";

#[test]
fn a_chain_starts_each_step_once_its_need_succeeded() {
    let mut m = machine(CHAIN, wide(4));
    assert_eq!(started(&mut m, 0), ["a"]);
    assert_eq!(
        started(&mut m, 1),
        Vec::<String>::new(),
        "nothing else is ready"
    );
    succeed(&mut m, "a", 5);
    assert_eq!(started(&mut m, 5), ["b"]);
    succeed(&mut m, "b", 7);
    assert_eq!(started(&mut m, 7), ["c"]);
    succeed(&mut m, "c", 9);
    assert_eq!(m.running(), 0);
    assert_eq!(m.conclude(None, at(9)), RunStatus::Succeeded);
    assert_eq!(
        events(&mut m),
        [
            "step_started a",
            "step_succeeded a",
            "step_started b",
            "step_succeeded b",
            "step_started c",
            "step_succeeded c",
            "run_finished"
        ]
    );
}

#[test]
fn max_parallel_and_priority_order_the_starts() {
    let body = "\ntask low \"L\"\n  run: 1\n\ntask high \"H\"\n  priority: 5\n  run: 1\n\ntask mid \"M\"\n  priority: 2\n  run: 1\n";
    let mut m = machine(body, wide(2));
    assert_eq!(started(&mut m, 0), ["high", "mid"]);
    succeed(&mut m, "mid", 1);
    assert_eq!(started(&mut m, 1), ["low"]);
}

#[test]
fn resources_hold_back_what_would_not_fit() {
    let body = "  resources: gpu 1\n\ntask a \"A\"\n  resources: gpu 1\n  run: 1\n\ntask b \"B\"\n  resources: gpu 1\n  run: 1\n\ntask c \"C\"\n  run: 1\n";
    let mut m = machine(body, wide(8));
    assert_eq!(started(&mut m, 0), ["a", "c"], "b waits for the gpu");
    succeed(&mut m, "a", 1);
    assert_eq!(started(&mut m, 1), ["b"]);
}

#[test]
fn a_fallback_that_succeeds_recovers_the_failed_step() {
    let body = "\ntask a \"A\"\n  run: 1\n  on failure -> fix\n\ntask fix \"Fix\"\n  run: 2\n\ntask after \"After\"\n  needs: a\n  run: 3\n";
    let mut m = machine(body, wide(4));
    assert_eq!(
        started(&mut m, 0),
        ["a"],
        "the fallback waits for a's outcome"
    );
    fail(&mut m, "a", 1);
    assert_eq!(started(&mut m, 1), ["fix"]);
    succeed(&mut m, "fix", 2);
    assert_eq!(started(&mut m, 2), ["after"], "a recovered counts as done");
    succeed(&mut m, "after", 3);
    assert_eq!(m.conclude(None, at(3)), RunStatus::Succeeded);
    assert!(events(&mut m).contains(&"step_recovered a".to_owned()));
}

#[test]
fn a_fallback_not_needed_is_skipped() {
    let body = "\ntask a \"A\"\n  run: 1\n  on failure -> fix\n\ntask fix \"Fix\"\n  run: 2\n";
    let mut m = machine(body, wide(4));
    assert_eq!(started(&mut m, 0), ["a"]);
    succeed(&mut m, "a", 1);
    assert_eq!(started(&mut m, 1), Vec::<String>::new());
    let steps = statuses(m);
    assert_eq!(steps[1], ("fix".to_owned(), StepStatus::Skipped));
}

#[test]
fn a_skip_passes_down_to_steps_whose_every_need_was_skipped() {
    let body = "\ntask a \"A\"\n  when: false\n  run: 1\n\ntask b \"B\"\n  needs: a\n  run: 2\n\ntask c \"C\"\n  run: 3\n\ntask d \"D\"\n  needs: a, c\n  run: 4\n";
    let mut m = machine(body, wide(4));
    assert_eq!(started(&mut m, 0), ["a", "c"]);
    let a = node(&m, "a");
    m.finished(
        a,
        Outcome::Skipped("`when: false` is false".into()),
        Finished::default(),
        at(1),
    );
    assert_eq!(
        started(&mut m, 1),
        Vec::<String>::new(),
        "b is skipped, d waits for c"
    );
    succeed(&mut m, "c", 2);
    assert_eq!(started(&mut m, 2), ["d"], "one need ran: d runs");
    let events = events(&mut m);
    assert!(events.contains(&"step_skipped b".to_owned()), "{events:?}");
}

#[test]
fn a_stopping_failure_starts_nothing_more() {
    let body = "\ntask a \"A\"\n  run: 1\n\ntask b \"B\"\n  needs: a\n  run: 2\n";
    let mut m = machine(body, wide(4));
    assert_eq!(started(&mut m, 0), ["a"]);
    fail(&mut m, "a", 1);
    assert!(m.stopping());
    assert_eq!(started(&mut m, 1), Vec::<String>::new());
    assert_eq!(m.conclude(None, at(1)), RunStatus::Failed);
    assert_eq!(m.message(), Some("`a` failed: boom"));
}

#[test]
fn a_gate_nobody_can_answer_waits_and_the_run_pauses() {
    let body = "\ntask a \"A\"\n  run: 1\n\ngate ok \"OK?\"\n  needs: a\n";
    let mut m = machine(body, wide(4));
    assert_eq!(started(&mut m, 0), ["a"]);
    succeed(&mut m, "a", 1);
    assert_eq!(started(&mut m, 1), Vec::<String>::new());
    assert_eq!(m.conclude(None, at(1)), RunStatus::Paused);
    assert_eq!(m.message(), Some("waiting for approval of `ok`"));
}

/// A gate's timeout is judged on the times the driver gives: an hour
/// passes in one call, and nobody sleeps.
#[test]
fn a_gate_times_out_on_the_clock_the_driver_reads() {
    let body = "\ngate ok \"OK?\"\n  timeout: 1h\n\ntask after \"After\"\n  needs: ok\n  run: 1\n";
    let mut m = machine(body, wide(4));
    assert_eq!(started(&mut m, 0), Vec::<String>::new());
    let deadline = m.next_gate_expiry().expect("a deadline");
    assert_eq!(deadline, at(0).unix_ms + 3_600_000);
    assert_eq!(started(&mut m, 3_599_999), Vec::<String>::new(), "not yet");
    assert_eq!(started(&mut m, 3_600_000), Vec::<String>::new());
    let events = events(&mut m);
    assert!(
        events.contains(&"gate_rejected ok".to_owned()),
        "{events:?}"
    );
    assert_eq!(m.conclude(None, at(3_600_000)), RunStatus::Failed);
}

#[test]
fn a_gate_approved_up_front_is_not_asked_about() {
    let body = "\ngate ok \"OK?\"\n\ntask after \"After\"\n  needs: ok\n  run: 1\n";
    let policy = Policy {
        approvals: vec!["ok".to_owned()],
        can_ask: true,
        ..wide(4)
    };
    let mut m = machine(body, policy);
    assert_eq!(started(&mut m, 0), ["after"]);
}

#[test]
fn compensation_undoes_the_failed_step_then_completed_ones_newest_first() {
    let body = "  on failure: compensate\n\ntask a \"A\"\n  run: 1\n\ntask b \"B\"\n  needs: a\n  run: 2\n\ngate g \"G\"\n  needs: b\n\ntask c \"C\"\n  needs: g\n  run: 3\n";
    let policy = Policy {
        approvals: vec!["g".to_owned()],
        ..wide(4)
    };
    let mut m = machine(body, policy);
    assert_eq!(started(&mut m, 0), ["a"]);
    succeed(&mut m, "a", 1);
    assert_eq!(started(&mut m, 1), ["b"]);
    succeed(&mut m, "b", 2);
    assert_eq!(
        started(&mut m, 2),
        ["c"],
        "the gate was approved on the way"
    );
    fail(&mut m, "c", 3);
    let order: Vec<(String, bool)> = m
        .wind_down()
        .into_iter()
        .map(|(i, completed)| (m.id(i).to_owned(), completed))
        .collect();
    let expected = [("c", false), ("b", true), ("a", true)];
    assert_eq!(
        order,
        expected.map(|(id, done)| (id.to_owned(), done)),
        "gates are not undone"
    );
}

#[test]
fn a_held_back_run_pauses_with_its_ready_steps() {
    let policy = Policy {
        start_limit: Some(1),
        ..wide(4)
    };
    let mut m = machine(CHAIN, policy);
    assert_eq!(started(&mut m, 0), ["a"]);
    succeed(&mut m, "a", 1);
    assert_eq!(started(&mut m, 1), Vec::<String>::new(), "one start only");
    assert_eq!(m.conclude(None, at(1)), RunStatus::Paused);
    assert_eq!(m.held_back(), ["b"]);
}

#[test]
fn kept_outcomes_settle_without_running() {
    let plan = plan(CHAIN);
    let kept = vec![
        Some(Outcome::Succeeded {
            output: serde_json::json!(1),
            attempts: 1,
        }),
        None,
        None,
    ];
    let mut m = Machine::new(plan, wide(4), kept);
    m.begin(at(0));
    assert_eq!(started(&mut m, 0), ["b"], "a keeps its outcome");
}

#[test]
fn the_node_table_grows_while_the_run_goes_on() {
    let mut m = machine(CHAIN, wide(4));
    assert_eq!(started(&mut m, 0), ["a"]);
    // Two more nodes running task c's definition: one after a (still
    // running), one after nothing (ready at once).
    let c = node(&m, "c");
    let task_c = m.task_index(c);
    let after_a = m.add_step(task_c, &[node(&m, "a")]);
    let free = m.add_step(task_c, &[]);
    assert_eq!(m.len(), 5);
    m.tick(at(1), false);
    assert_eq!(
        m.next_action(),
        Some(Action::Run {
            node: free,
            failure: None
        })
    );
    assert_eq!(m.next_action(), None);
    succeed(&mut m, "a", 2);
    m.tick(at(2), false);
    let actions: Vec<_> = std::iter::from_fn(|| m.next_action()).collect();
    let b = node(&m, "b");
    assert_eq!(
        actions,
        [
            Action::Run {
                node: b,
                failure: None
            },
            Action::Run {
                node: after_a,
                failure: None
            }
        ]
    );
    // A node added after its need settled is ready at once.
    let late = m.add_step(task_c, &[node(&m, "a")]);
    m.tick(at(3), false);
    assert_eq!(
        m.next_action(),
        Some(Action::Run {
            node: late,
            failure: None
        })
    );
}

#[test]
fn a_cost_budget_crossed_stops_the_run() {
    let body = "  budget: cost 1\n\ntask a \"A\"\n  run: 1\n\ntask b \"B\"\n  needs: a\n  run: 2\n";
    let mut m = machine(body, wide(4));
    assert_eq!(started(&mut m, 0), ["a"]);
    let a = node(&m, "a");
    let outcome = Outcome::Succeeded {
        output: serde_json::json!(1),
        attempts: 1,
    };
    let finished = Finished {
        spent: Some(2.0),
        over_budget: true,
    };
    m.finished(a, outcome, finished, at(1));
    assert_eq!(started(&mut m, 1), Vec::<String>::new());
    assert_eq!(m.conclude(None, at(1)), RunStatus::Failed);
    assert_eq!(m.message(), Some("the cost budget of 1 was exceeded"));
}

fn iterated(machine: &mut Machine, id: &str, output: i64, converged: bool, ms: u64) {
    let i = node(machine, id);
    let outcome = Outcome::Iterated {
        output: serde_json::json!(output),
        attempts: 1,
        converged,
    };
    machine.finished(i, outcome, Finished::default(), at(ms));
}

const LOOP: &str = "\ntask l \"L\"\n  repeat: max 3 until result > 1\n  run: iteration.index\n\ntask after \"After\"\n  needs: l\n  run: 1\n";

/// A loop's iterations start one at a time, each once the one before it
/// passed, with its output as `previous`; `until` holding ends the loop
/// and settles the task with the last output.
#[test]
fn a_loop_runs_one_iteration_after_another_until_it_converges() {
    let mut m = machine(LOOP, wide(4));
    assert_eq!(started(&mut m, 0), ["l"]);
    let l = node(&m, "l");
    m.finished(l, Outcome::Looping, Finished::default(), at(1));
    assert_eq!(started(&mut m, 1), ["l#1"]);
    assert_eq!(
        m.part(node(&m, "l#1")),
        Some(&Part::Iteration {
            number: 1,
            previous: serde_json::Value::Null
        })
    );
    iterated(&mut m, "l#1", 1, false, 2);
    assert_eq!(started(&mut m, 2), ["l#2"]);
    assert_eq!(
        m.part(node(&m, "l#2")),
        Some(&Part::Iteration {
            number: 2,
            previous: serde_json::json!(1)
        })
    );
    iterated(&mut m, "l#2", 2, true, 3);
    assert_eq!(started(&mut m, 3), ["after"]);
    assert_eq!(m.output(l), Some(&serde_json::json!(2)));
    succeed(&mut m, "after", 4);
    assert_eq!(m.conclude(None, at(4)), RunStatus::Succeeded);
    assert_eq!(
        statuses(m),
        [
            ("l".to_owned(), StepStatus::Succeeded),
            ("l#1".to_owned(), StepStatus::Succeeded),
            ("l#2".to_owned(), StepStatus::Succeeded),
            ("after".to_owned(), StepStatus::Succeeded),
        ]
    );
}

/// Reaching `max` without `until` holding fails the task (its dependents
/// do not run); no iteration past `max` starts.
#[test]
fn a_loop_that_reaches_max_fails_its_task() {
    let mut m = machine(LOOP, wide(4));
    started(&mut m, 0);
    let l = node(&m, "l");
    m.finished(l, Outcome::Looping, Finished::default(), at(1));
    for n in 1..=3 {
        assert_eq!(started(&mut m, n), [format!("l#{n}")]);
        iterated(&mut m, &format!("l#{n}"), 0, false, n);
    }
    assert!(started(&mut m, 4).is_empty());
    assert_eq!(m.conclude(None, at(4)), RunStatus::Failed);
    assert_eq!(
        m.message(),
        Some("`l` failed: did not converge after 3 iterations: `until result > 1` is still false")
    );
}

/// A resumed loop settles its kept iterations without a worker and asks
/// only for the first one that had not finished.
#[test]
fn a_resumed_loop_starts_from_the_first_iteration_not_kept() {
    let mut m = Machine::new(plan(LOOP), wide(4), Vec::new());
    let kept = |n: i64| Outcome::Iterated {
        output: serde_json::json!(n),
        attempts: 1,
        converged: false,
    };
    m.keep_instances(HashMap::from([
        ("l#1".to_owned(), kept(0)),
        ("l#2".to_owned(), kept(1)),
    ]));
    m.begin(at(0));
    assert_eq!(started(&mut m, 0), ["l"]);
    let l = node(&m, "l");
    m.finished(l, Outcome::Looping, Finished::default(), at(1));
    assert_eq!(started(&mut m, 1), ["l#3"]);
    assert_eq!(
        m.part(node(&m, "l#3")),
        Some(&Part::Iteration {
            number: 3,
            previous: serde_json::json!(1)
        })
    );
}
