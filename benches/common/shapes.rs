//! The engine benchmark's plans, shared by `benches/engine.rs` and
//! `examples/engine_timing.rs` (which `bench/compare.py` runs).

/// 10,000 steps at `max_parallel: 2` in one of three shapes: `chain`, `fan`
/// (1→N→1) or `lattice` (100×100, each step needing its left and upper
/// neighbours); `body` is each step's `run:` line, or empty for no code.
pub fn plan_text(shape: &str, body: &str) -> String {
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
