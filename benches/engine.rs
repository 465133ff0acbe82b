//! Engine overhead per step: 10,000 in-process steps in three shapes at
//! `max_parallel: 2` (target ≤ 5 µs per step). `cargo bench --bench engine`.

use std::sync::Arc;

use cairn_engine::run::{self, Options};
use cairn_lang::plan::Plan;
use cairn_lang::source::Source;
use cairn_store::{Durability, RunRecorder, Store};
use divan::Bencher;

fn main() {
    divan::main();
}

#[path = "common/shapes.rs"]
mod shapes;

fn plan(shape: &str, body: &str) -> Arc<Plan> {
    let checked = cairn_engine::check(&Source::new("bench.plan", shapes::plan_text(shape, body)));
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

/// Steps with no code, recorded in the run store (WAL, synchronous=NORMAL):
/// nothing depends on a no-op step's effects, so their events are committed
/// in batches.
#[divan::bench(args = ["chain"], sample_count = 5, sample_size = 1)]
fn recorded_no_code(bencher: Bencher, shape: &str) {
    recorded(bencher, shape, "", Durability::Normal);
}

/// Checkpointed no-op steps: `run: ()` bodies in a chain, so every step
/// commits its predecessor's events before it starts (one commit per step).
#[divan::bench(args = ["chain"], sample_count = 5, sample_size = 1)]
fn checkpointed(bencher: Bencher, shape: &str) {
    recorded(bencher, shape, "  run: ()\n", Durability::Normal);
}

/// The same with `--durability full` (an fsync per commit).
#[divan::bench(args = ["chain"], sample_count = 3, sample_size = 1)]
fn checkpointed_full(bencher: Bencher, shape: &str) {
    recorded(bencher, shape, "  run: ()\n", Durability::Full);
}

fn recorded(bencher: Bencher, shape: &str, body: &str, durability: Durability) {
    let plan = plan(shape, body);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Next to the target directory, on the same disk as real state dirs
    // (a tmpfs /tmp would hide the cost of full durability).
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("temp dir");
    let store = Arc::new(Store::open(dir.path(), durability).expect("store"));
    bencher.bench(|| {
        let id = store.begin(&plan, "bench.plan", "", &[], 0).expect("begin");
        let options = Options {
            dir: std::env::temp_dir(),
            recorder: Some(Arc::new(RunRecorder {
                store: Arc::clone(&store),
                run: id,
            })),
            ..Options::default()
        };
        let report = runtime
            .block_on(run::run(Arc::clone(&plan), options, |_| {}))
            .expect("runs");
        assert_eq!(report.status, run::RunStatus::Succeeded);
    });
}
