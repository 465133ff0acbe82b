//! Prints cairn's engine time per step for the benchmark shapes, for
//! `bench/compare.py` to set against Dask. `cargo run --release --example engine_timing`.

use std::sync::Arc;
use std::time::Instant;

use cairn::run::{self, Options};
use cairn::source::Source;

fn plan_text(shape: &str, body: &str) -> String {
    let mut text = String::from("plan bench \"Bench\"\n  max_parallel: 2\n");
    let mut task = |id: String, needs: Vec<String>| {
        text.push_str(&format!("\ntask {id} \"Step\"\n"));
        if !needs.is_empty() {
            text.push_str(&format!("  needs: {}\n", needs.join(", ")));
        }
        text.push_str(body);
    };
    match shape {
        "chain" => (0..10_000).for_each(|i| {
            task(
                format!("t{i}"),
                if i == 0 {
                    vec![]
                } else {
                    vec![format!("t{}", i - 1)]
                },
            )
        }),
        "fan" => {
            task("start".into(), vec![]);
            (0..9_998).for_each(|i| task(format!("t{i}"), vec!["start".into()]));
            task("end".into(), (0..9_998).map(|i| format!("t{i}")).collect());
        }
        _ => {
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
    text
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (label, body) in [("no_code", ""), ("trivial_body", "  run: ()\n")] {
        for shape in ["chain", "fan", "lattice"] {
            let checked = cairn::check::check(&Source::new("bench.plan", plan_text(shape, body)));
            let plan = Arc::new(checked.plan.expect("checks"));
            let mut times: Vec<f64> = (0..7)
                .map(|_| {
                    let options = Options {
                        dir: std::env::temp_dir(),
                        ..Options::default()
                    };
                    let start = Instant::now();
                    let report = runtime
                        .block_on(run::run(Arc::clone(&plan), options, |_| {}))
                        .expect("runs");
                    assert_eq!(report.status, run::RunStatus::Succeeded);
                    start.elapsed().as_secs_f64() * 1e6 / plan.tasks.len() as f64
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!("{label} {shape} {:.2}", times[times.len() / 2]);
        }
    }
}
