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

#[path = "common/shapes.rs"]
mod shapes;

fn plan(shape: &str, body: &str) -> Arc<Plan> {
    let checked = cairn::check::check(&Source::new("bench.plan", shapes::plan_text(shape, body)));
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

/// Steps with no code, every event committed to the run store (WAL,
/// synchronous=NORMAL): the cost of a checkpointed no-op step.
#[divan::bench(args = ["chain"], sample_count = 5, sample_size = 1)]
fn recorded_no_code(bencher: Bencher, shape: &str) {
    let plan = plan(shape, "");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(cairn::store::Store::open(dir.path()).expect("store"));
    bencher.bench(|| {
        let id = store.begin(&plan, "bench.plan", "", &[], 0).expect("begin");
        let recorder = {
            let store = Arc::clone(&store);
            Arc::new(move |event: &cairn::run::Event| {
                store.record(&id, event).map_err(|e| e.to_string())
            }) as cairn::run::Recorder
        };
        let options = Options {
            dir: std::env::temp_dir(),
            recorder: Some(recorder),
            ..Options::default()
        };
        let report = runtime
            .block_on(run::run(Arc::clone(&plan), options, |_| {}))
            .expect("runs");
        assert_eq!(report.status, run::RunStatus::Succeeded);
    });
}
