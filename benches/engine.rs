//! Engine overhead per step: 10,000 in-process steps in three shapes at
//! `max_parallel: 2` (target ≤ 5 µs per step). `cargo bench --bench engine`.

use std::sync::Arc;

use cairn::plan::Plan;
use cairn::run::{self, Options};
use cairn::source::Source;
use divan::Bencher;

fn main() {
    divan::main();
}

/// `body` is the step's `run:` line, or nothing for a step with no code.
fn plan(shape: &str, body: &str) -> Arc<Plan> {
    let mut text = String::from("plan bench \"Bench\"\n  max_parallel: 2\n");
    let mut task = |id: String, needs: Vec<String>| {
        text.push_str(&format!("\ntask {id} \"Step\"\n"));
        if !needs.is_empty() {
            text.push_str(&format!("  needs: {}\n", needs.join(", ")));
        }
        text.push_str(body);
    };
    match shape {
        "chain" => {
            for i in 0..10_000 {
                task(
                    format!("t{i}"),
                    if i == 0 {
                        vec![]
                    } else {
                        vec![format!("t{}", i - 1)]
                    },
                );
            }
        }
        "fan" => {
            task("start".into(), vec![]);
            for i in 0..9_998 {
                task(format!("t{i}"), vec!["start".into()]);
            }
            task("end".into(), (0..9_998).map(|i| format!("t{i}")).collect());
        }
        _ => {
            // A 100×100 lattice: each step needs its left and upper neighbours.
            for r in 0..100 {
                for c in 0..100 {
                    let mut needs = Vec::new();
                    if r > 0 {
                        needs.push(format!("n{}-{c}", r - 1));
                    }
                    if c > 0 {
                        needs.push(format!("n{r}-{}", c - 1));
                    }
                    task(format!("n{r}-{c}"), needs);
                }
            }
        }
    }
    let checked = cairn::check::check(&Source::new("bench.plan", text));
    Arc::new(checked.plan.expect("the benchmark plan checks"))
}

fn bench(bencher: Bencher, shape: &str, body: &str) {
    let plan = plan(shape, body);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir();
    bencher.bench(|| {
        let options = Options {
            dir: dir.clone(),
            ..Options::default()
        };
        let report = runtime
            .block_on(run::run(Arc::clone(&plan), options, |_| {}))
            .expect("runs");
        assert_eq!(report.status, run::RunStatus::Succeeded);
    });
}

/// Steps with no code: pure scheduling.
#[divan::bench(args = ["chain", "fan", "lattice"], sample_count = 5, sample_size = 1)]
fn no_code(bencher: Bencher, shape: &str) {
    bench(bencher, shape, "");
}

/// Steps whose body is `run: ()`: scheduling plus one Rhai evaluation on a
/// blocking thread.
#[divan::bench(args = ["chain", "fan", "lattice"], sample_count = 5, sample_size = 1)]
fn trivial_body(bencher: Bencher, shape: &str) {
    bench(bencher, shape, "  run: ()\n");
}
