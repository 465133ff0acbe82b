//! `cairn cancel`: a live run stopped from another terminal, a stopped
//! run marked cancelled at once, and neither going on afterwards.

use std::time::{Duration, Instant};

use crate::durable::{spawn, wait_for};
use crate::{cairn, status_json, Test};

const SLOW: &str = r#"plan slow "Slow"
  allow: sh

task wait "Wait" using:sh
  run: sh("touch started && sleep 3 && touch late").code

task after "After"
  needs: wait
  run: 1
"#;

/// The running process notices the request, cancels its steps (killing
/// their commands) and ends the run `cancelled`; nothing goes on after.
#[test]
fn a_running_run_is_cancelled_from_another_terminal() {
    let test = Test::new().file("slow.plan", SLOW);
    let child = spawn(&test, &["run", "slow.plan"]);
    wait_for(|| test.path().join("started").exists());
    let asked = Instant::now();
    let cancel = cairn(&test, &["cancel", "--reason", "wrong branch"]);
    assert_eq!(cancel.status, 0, "{}{}", cancel.stdout, cancel.stderr);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "cancel waited {:?}",
        asked.elapsed()
    );
    assert!(
        cancel.stdout.starts_with("cancelled run ")
            && cancel.stdout.contains(": its process stopped its steps"),
        "{}",
        cancel.stdout
    );
    let out = child.wait_with_output().expect("run ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("run cancelled: wrong branch ("), "{stdout}");
    // The command was killed with its step: it never finished.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(!test.path().join("late").exists());
    let json = status_json(&test);
    assert_eq!(json["run"]["status"], "cancelled", "{json}");
    let id = json["run"]["id"].as_str().expect("run id");
    let resume = cairn(&test, &["resume", id]);
    assert_eq!(resume.status, 2, "{}", resume.stderr);
    assert!(
        resume.stderr.contains("has ended (cancelled)"),
        "{}",
        resume.stderr
    );
    // The request was carried out: a retry is not cancelled by it again.
    std::fs::remove_file(test.path().join("started")).expect("reset");
    let retry = cairn(&test, &["retry", id]);
    assert_eq!(retry.status, 0, "{}{}", retry.stdout, retry.stderr);
    assert_eq!(crate::step_output(&test, "after"), serde_json::json!(1));
}

/// A paused run (here inside a child run's gate) is marked cancelled at
/// once, its unfinished child runs with it; its gates no longer take
/// answers, and cancelling again, or a child, is refused with the reason.
#[test]
fn a_paused_run_and_its_children_are_cancelled_at_once() {
    let child =
        "plan one \"One\"\n\ngate ok \"OK?\"\n\ntask ship \"Ship\"\n  needs: ok\n  run: 1\n";
    let parent = "plan p \"P\"\n\ntask one \"One\"\n  plan: \"one.plan\"\n";
    let test = Test::new().file("one.plan", child).file("p.plan", parent);
    let run = cairn(&test, &["run", "p.plan", "--events", "-"]);
    assert_eq!(run.status, 3, "{}{}", run.stdout, run.stderr);
    let child_id = crate::first_child_run(&run.stdout);
    let refused = cairn(&test, &["cancel", &child_id]);
    assert_eq!(refused.status, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("cancel the run it belongs to: `cairn cancel "),
        "{}",
        refused.stderr
    );
    let cancel = cairn(&test, &["cancel"]);
    assert_eq!(cancel.status, 0, "{}{}", cancel.stdout, cancel.stderr);
    assert!(
        cancel.stdout.starts_with("cancelled run "),
        "{}",
        cancel.stdout
    );
    assert_eq!(status_json(&test)["run"]["status"], "cancelled");
    let below = cairn(&test, &["status", &child_id, "--json"]);
    let below: serde_json::Value = serde_json::from_str(&below.stdout).expect("json");
    assert_eq!(below["run"]["status"], "cancelled", "{below}");
    let approve = cairn(&test, &["approve", "one.ok", "--reason", "late"]);
    assert_eq!(approve.status, 2, "{}", approve.stderr);
    let again = cairn(&test, &["cancel"]);
    assert_eq!(again.status, 2, "{}", again.stderr);
    assert!(
        again.stderr.contains("no unfinished run to cancel"),
        "{}",
        again.stderr
    );
    let list = cairn(&test, &["runs", "--status", "cancelled"]);
    assert_eq!(list.stdout.lines().count(), 2, "{}", list.stdout);
}
