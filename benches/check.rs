//! Parse and check throughput on generated plans of 1,000 / 10,000 / 100,000 tasks,
//! and the cost of reporting broken plans (a long cycle, many unknown `needs:`).
//!
//! Run with `cargo bench --bench check`; figures go in docs/performance.md.

use std::fmt::Write;
use std::sync::Arc;

use cairn_lang::source::Source;
use divan::counter::BytesCount;
use divan::Bencher;

fn main() {
    divan::main();
}

/// A plan shaped like real ones: a few wide layers, each task needing one or
/// two earlier tasks, with bodies, expectations and retries drawn from a
/// handful of templates (as generated and templated plans are).
fn generate(tasks: usize) -> Arc<Source> {
    let mut text = String::with_capacity(tasks * 400);
    text.push_str("plan generated \"Generated plan\"\n  param scale = 3\n  max_parallel: 8\n  allow: sh\n  budget: time 2h\n\n");
    // Bodies the size of the examples' (see examples/): real plans carry a
    // few lines of code, expectations and inputs per task.
    let bodies = [
        concat!(
            "  input:\n    rounds: 3\n    label: \"load test\"\n",
            "  run: |\n    let total = 0;\n    for i in 0..input.rounds * params.scale {\n",
            "      total += i;\n      if total > 1000 { break; }\n    }\n",
            "    log(`finished ${input.label} with ${total}`);\n    #{ total: total, rounds: input.rounds }\n",
            "  expect:\n    - result.total >= 0\n    - result.rounds == 3\n",
        ),
        concat!(
            "  run: |\n    let out = sh(\"cargo test --workspace --quiet\");\n",
            "    let failed = out.stdout.contains(\"FAILED\");\n    #{ failed: failed, log: out.stdout }\n",
            "  expect: !result.failed\n",
        ),
        concat!(
            "  input:\n    level: 2\n  run: input.level * 2\n  expect: result > 0\n",
            "  description: Doubles the level so the next stage has headroom.\n",
        ),
        concat!(
            "  run: |\n    // Record which attempt this is, for the summary.\n",
            "    log(\"step \" + task.id + \" attempt \" + task.attempt);\n    task.attempt\n",
            "  owner: platform-team\n",
        ),
    ];
    for i in 0..tasks {
        let using = if i % 4 == 1 { " using:sh" } else { "" };
        let _ = writeln!(text, "task t{i} \"Step number {i}\" kind:build{using}");
        if i > 0 {
            let a = i - 1 - (i * 7919) % i.min(50);
            let b = i - 1;
            if a == b {
                let _ = writeln!(text, "  needs: t{a}");
            } else {
                let _ = writeln!(text, "  needs: t{a}, t{b}");
            }
        }
        text.push_str(bodies[i % 4]);
        if i % 3 == 0 {
            text.push_str("  retry: 2 backoff 1s factor 2 max 10s\n  timeout: 30s\n");
        }
        text.push('\n');
    }
    Source::new("generated.plan", text)
}

#[divan::bench(args = [1_000, 10_000, 100_000], sample_count = 10, sample_size = 1)]
fn parse(bencher: Bencher, tasks: usize) {
    let source = generate(tasks);
    bencher
        .counter(BytesCount::new(source.text().len()))
        .bench(|| cairn_lang::syntax::parse(&source));
}

#[divan::bench(args = [1_000, 10_000, 100_000], sample_count = 10, sample_size = 1)]
fn check(bencher: Bencher, tasks: usize) {
    let source = generate(tasks);
    bencher
        .counter(BytesCount::new(source.text().len()))
        .bench(|| {
            let checked = cairn_engine::check(&source);
            assert!(!checked.has_errors(), "{:?}", checked.diagnostics.first());
            checked
        });
}

#[divan::bench(args = [100_000], sample_count = 5, sample_size = 1)]
fn pest_only(bencher: Bencher, tasks: usize) {
    use pest::Parser;
    let source = generate(tasks);
    bencher
        .counter(BytesCount::new(source.text().len()))
        .bench(|| {
            cairn_lang::syntax::grammar::PlanParser::parse(
                cairn_lang::syntax::grammar::Rule::file,
                source.text(),
            )
            .map(|p| p.count())
            .ok()
        });
}

/// `steps` steps in one cycle: each needs the one before, the first needs the last.
fn cycle(steps: usize) -> Arc<Source> {
    let mut text = String::from("plan cycle \"Cycle\"\n");
    for i in 0..steps {
        let before = (i + steps - 1) % steps;
        let _ = write!(
            text,
            "\ntask t{i} \"Step {i}\"\n  needs: t{before}\n  run: 1\n"
        );
    }
    Source::new("cycle.plan", text)
}

/// `steps` steps, each needing a step that does not exist (a near miss of
/// another step's id, so every one asks for a "did you mean").
fn unknown_needs(steps: usize) -> Arc<Source> {
    let mut text = String::from("plan unknown \"Unknown\"\n");
    for i in 0..steps {
        let _ = write!(
            text,
            "\ntask step-{i} \"Step {i}\"\n  needs: stpe-{}\n  run: 1\n",
            (i + 1) % steps
        );
    }
    Source::new("unknown.plan", text)
}

/// Checks a broken plan and renders every diagnostic as `cairn check` does
/// (miette, no colour, 100 columns): the whole cost of reporting it.
fn check_and_render(source: &Arc<Source>) -> usize {
    let checked = cairn_engine::check(source);
    assert!(checked.has_errors());
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_links(false);
    let mut out = String::new();
    for d in &checked.diagnostics {
        handler.render_report(&mut out, d).expect("renders");
    }
    out.len()
}

#[divan::bench(args = [8_000], sample_count = 5, sample_size = 1)]
fn report_cycle(bencher: Bencher, steps: usize) {
    let source = cycle(steps);
    bencher
        .counter(BytesCount::new(source.text().len()))
        .bench(|| check_and_render(&source));
}

#[divan::bench(args = [8_000], sample_count = 5, sample_size = 1)]
fn report_unknown_needs(bencher: Bencher, steps: usize) {
    let source = unknown_needs(steps);
    bencher
        .counter(BytesCount::new(source.text().len()))
        .bench(|| check_and_render(&source));
}
