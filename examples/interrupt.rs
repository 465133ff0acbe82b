//! An application that runs plans keeps its own Ctrl-C: cairn installs no
//! signal handler. This one runs two plans one after the other, stops a
//! third from another thread through an `Interrupter`, then waits to be
//! interrupted like any program. `cargo run --example interrupt`.

use std::io::Write;
use std::time::Duration;

use cairn_engine::run::{Interrupter, Options};
use cairn_engine::Engine;

const QUICK: &str = "plan quick \"Quick\"\n\ntask a \"A\"\n  run: 1 + 1\n";

const SLOW: &str = "plan slow \"Slow\"\n  allow: sh\n\ntask wait \"Wait\" using:sh\n  run: sh(\"sleep 30\").code\n";

fn main() {
    let engine = Engine::new();
    for _ in 0..2 {
        let plan = engine.load_str("quick.plan", QUICK).expect("checks");
        let report = engine
            .run_blocking(plan, Options::default(), |_| {})
            .expect("runs");
        println!("quick: {:?}", report.status);
    }
    // The application decides when a run stops: here, after 200 ms.
    let interrupter = Interrupter::new();
    let stop = interrupter.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        stop.interrupt("the application stopped it");
    });
    let plan = engine.load_str("slow.plan", SLOW).expect("checks");
    let options = Options {
        interrupter: Some(interrupter),
        ..Options::default()
    };
    let report = engine.run_blocking(plan, options, |_| {}).expect("runs");
    println!(
        "slow: {:?}: {}",
        report.status,
        report.message.unwrap_or_default()
    );
    println!("ready");
    let _ = std::io::stdout().flush();
    // Ctrl-C (SIGINT) ends the process here, as it would without cairn.
    std::thread::sleep(Duration::from_secs(30));
    println!("not interrupted");
}
