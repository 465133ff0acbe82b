//! Prints cairn's engine time per step for the benchmark shapes, for
//! `bench/compare.py` to set against Dask. `cargo run --release --example engine_timing`.

use std::sync::Arc;
use std::time::Instant;

use cairn_engine::run::{self, Options};
use cairn_lang::source::Source;

#[path = "../benches/common/shapes.rs"]
mod shapes;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (label, body) in [("no_code", ""), ("trivial_body", "  run: ()\n")] {
        for shape in ["chain", "fan", "lattice"] {
            let checked =
                cairn_engine::check(&Source::new("bench.plan", shapes::plan_text(shape, body)));
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
