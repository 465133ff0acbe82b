//! Property tests: random DAGs lower with exactly their edges; random bytes never panic.

use std::collections::BTreeSet;
use std::sync::Arc;

use petgraph::visit::EdgeRef;
use proptest::prelude::*;

use cairn_lang::plan::EdgeKind;
use cairn_lang::source::Source;

/// A random DAG: task `i` needs a subset of the tasks before it.
fn dags() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..40).prop_flat_map(|n| {
        (0..n)
            .map(|i| {
                proptest::collection::btree_set(0..i.max(1), 0..=i.min(4))
                    .prop_map(move |s| s.into_iter().filter(|&d| d < i).collect())
            })
            .collect::<Vec<_>>()
    })
}

fn render(needs: &[Vec<usize>], separator: &str) -> String {
    let mut text = String::from("plan random \"Random\"\n");
    for (i, deps) in needs.iter().enumerate() {
        text.push_str(&format!("\ntask t{i} \"Task {i}\"\n"));
        if !deps.is_empty() {
            let ids: Vec<String> = deps.iter().map(|d| format!("t{d}")).collect();
            text.push_str(&format!("  needs: {}\n", ids.join(separator)));
        }
        text.push_str(&format!("  run: {i}\n"));
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_dags_lower_with_their_edges(needs in dags(), commas in any::<bool>()) {
        let text = render(&needs, if commas { ", " } else { " " });
        let checked = cairn_engine::check(&Source::new("random.plan", text));
        prop_assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
        let plan = checked.plan.expect("a plan");
        let expected: BTreeSet<(usize, usize)> = needs
            .iter()
            .enumerate()
            .flat_map(|(i, deps)| deps.iter().map(move |&d| (d, i)))
            .collect();
        let actual: BTreeSet<(usize, usize)> = plan
            .graph
            .edge_references()
            .inspect(|e| assert_eq!(e.weight().kind, EdgeKind::Needs))
            .map(|e| (e.source().index(), e.target().index()))
            .collect();
        prop_assert_eq!(actual, expected);
        prop_assert!(plan.tasks.iter().all(|t| !t.conditional));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let _ = cairn_engine::check(&Source::new("random.plan", text));
    }

    #[test]
    fn random_plan_shaped_text_never_panics(parts in proptest::collection::vec(prop_oneof![
        Just("plan p \"P\"\n"), Just("task a \"A\"\n"), Just("decision d \"D\"\n"), Just("gate g \"G\"\n"),
        Just("  needs: a\n"), Just("  run: |\n"), Just("    let x = 1;\n"), Just("  when x -> a\n"),
        Just("  expect:\n"), Just("    - result\n"), Just("  input:\n"), Just("    k: 1\n"),
        Just("\t"), Just("\r\n"), Just("  "), Just("#"), Just("\""), Just(":"), Just("->"),
        Just("  on failure -> a\n"), Just("  retry: 3 backoff 1s\n"), Just("  timeout: 1x\n"),
        Just("outputs[\"a\"]"), Just("é"), Just("\n"), Just("\u{a0}"), Just("\u{feff}"),
        // Complete fields without a newline, for files that end on them.
        Just("  owner: x"), Just("  needs: a"), Just("  resources: cpu 1"), Just("  allow: sh"),
        Just("  budget: time 1m"), Just("  labels: a, b"), Just("  on failure ->"), Just("  expect: #{a: 1}"),
    ], 0..40)) {
        let text: String = parts.concat();
        let _ = cairn_engine::check(&Source::new("random.plan", text));
    }
}

#[test]
fn shared_sources_are_cheap_to_clone() {
    let source = Source::new("x.plan", "plan p \"P\"\n");
    let copy = Arc::clone(&source);
    assert_eq!(copy.name(), "x.plan");
}
