//! Embedding cairn: register a host tool as a capability, run a plan that
//! uses it, and watch the events. `cargo run --example embed`.

use std::sync::{Arc, Mutex};

use cairn_engine::run::{Event, Options};
use cairn_engine::Engine;

const PLAN: &str = r#"plan triage "Triage a failing build"
  allow: tickets

task diagnose "Find the failing test"
  run: #{ test: "pool::exhaustion", flaky: false }

task file "File a ticket" using:tickets
  needs: diagnose
  run: |
    let d = outputs["diagnose"];
    ticket_open(`${d.test} fails`, if d.flaky { "low" } else { "high" })
  expect:
    - result.starts_with("TICKET-")
"#;

fn main() {
    // The application's own state, shared with the tool.
    let tickets: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let store = Arc::clone(&tickets);

    let mut engine = Engine::new();
    engine.register_capability("tickets", &["ticket_open"], move |rhai| {
        let store = Arc::clone(&store);
        rhai.register_fn("ticket_open", move |title: &str, priority: &str| {
            let mut tickets = store.lock().expect("not poisoned");
            tickets.push((title.to_owned(), priority.to_owned()));
            format!("TICKET-{}", tickets.len())
        });
    });

    let plan = match engine.load_str("triage.plan", PLAN) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    };
    let report = engine
        .run_blocking(plan, Options::default(), |event| {
            if let Event::StepSucceeded { step, output, .. } = event {
                println!("{step}: {output}");
            }
        })
        .expect("the plan runs");
    println!("status: {:?}", report.status);
    println!("tickets: {:?}", tickets.lock().expect("not poisoned"));
}
