//! Scheduler invariants on random DAGs: dependencies first, never more than
//! `max_parallel` at once, and one start order for one plan.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use proptest::prelude::*;

use cairn_engine::run::{Event, Options, RunStatus};
use cairn_lang::source::Source;

/// Task `i` needs a subset of earlier tasks and has a priority.
fn dags() -> impl Strategy<Value = Vec<(Vec<usize>, i64)>> {
    (1usize..25).prop_flat_map(|n| {
        (0..n)
            .map(|i| {
                (
                    proptest::collection::btree_set(0..i.max(1), 0..=i.min(3))
                        .prop_map(move |s| s.into_iter().filter(|&d| d < i).collect::<Vec<_>>()),
                    -2i64..3,
                )
            })
            .collect::<Vec<_>>()
    })
}

fn plan(dag: &[(Vec<usize>, i64)], max_parallel: usize) -> Arc<cairn_lang::plan::Plan> {
    let mut text = format!("plan random \"Random\"\n  max_parallel: {max_parallel}\n");
    for (i, (needs, priority)) in dag.iter().enumerate() {
        text.push_str(&format!(
            "\ntask t{i} \"T\"\n  priority: {priority}\n  run: {i}\n"
        ));
        if !needs.is_empty() {
            let ids: Vec<String> = needs.iter().map(|d| format!("t{d}")).collect();
            text.push_str(&format!("  needs: {}\n", ids.join(", ")));
        }
    }
    let checked = cairn_engine::check(&Source::new("random.plan", text));
    Arc::new(checked.plan.expect("random DAGs check"))
}

fn events(runtime: &tokio::runtime::Runtime, plan: &Arc<cairn_lang::plan::Plan>) -> Vec<Event> {
    let mut events = Vec::new();
    let report = runtime
        .block_on(cairn_engine::run::run(
            Arc::clone(plan),
            Options::default(),
            |e| events.push(e.clone()),
        ))
        .expect("runs");
    assert_eq!(report.status, RunStatus::Succeeded);
    events
}

/// The start order a max_parallel-1 run must have: repeatedly the ready
/// task with the highest priority, then the lowest index.
fn expected_order(dag: &[(Vec<usize>, i64)]) -> Vec<String> {
    let mut done = HashSet::new();
    let mut order = Vec::new();
    while done.len() < dag.len() {
        let next = (0..dag.len())
            .filter(|i| !done.contains(i) && dag[*i].0.iter().all(|d| done.contains(d)))
            .min_by_key(|&i| (-dag[i].1, i))
            .expect("a DAG always has a ready task");
        done.insert(next);
        order.push(format!("t{next}"));
    }
    order
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn dependencies_first_and_never_more_than_max_parallel(dag in dags(), width in 1usize..4) {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        let events = events(&runtime, &plan(&dag, width));
        let mut finished = HashSet::new();
        let mut running = 0usize;
        let mut peak = 0usize;
        let index: HashMap<String, usize> = (0..dag.len()).map(|i| (format!("t{i}"), i)).collect();
        for event in &events {
            match event {
                Event::StepStarted { step, .. } => {
                    let i = index[step];
                    for d in &dag[i].0 {
                        prop_assert!(finished.contains(d), "t{i} started before t{d} finished");
                    }
                    running += 1;
                    peak = peak.max(running);
                }
                Event::StepSucceeded { step, .. } => {
                    running -= 1;
                    finished.insert(index[step]);
                }
                _ => {}
            }
        }
        prop_assert_eq!(finished.len(), dag.len());
        prop_assert!(peak <= width, "{} steps ran at once with max_parallel {}", peak, width);
    }

    #[test]
    fn one_plan_one_start_order(dag in dags()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        let plan = plan(&dag, 1);
        let starts = |events: Vec<Event>| -> Vec<String> {
            events.into_iter().filter_map(|e| match e {
                Event::StepStarted { step, .. } => Some(step),
                _ => None,
            }).collect()
        };
        let first = starts(events(&runtime, &plan));
        prop_assert_eq!(&first, &expected_order(&dag));
        prop_assert_eq!(first, starts(events(&runtime, &plan)));
    }
}
