//! Gates' `on reject ->`: a rejection or timeout routes on and the gate
//! stays failed, so what needs the approval never runs.

use crate::{cairn, status_step, Test};

fn plan(policy: &str) -> String {
    format!(
        "plan p \"P\"\n  on failure: {policy}\n\ntask build \"Build\"\n  run: \"v1\"\n\ngate ship \"Ship it?\"\n  needs: build\n  timeout: 1s\n  on reject -> rollback\n\ntask publish \"Publish\"\n  needs: ship\n  run: \"published\"\n\ntask rollback \"Roll back\"\n  run: `after ${{failure.id}} (${{failure.kind}}): ${{failure.error}}`\n"
    )
}

#[test]
fn a_timed_out_gate_routes_its_rejection_and_its_dependents_are_skipped() {
    let test = Test::new().file("p.plan", plan("stop"));
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 1, "{}{}", resumed.stdout, resumed.stderr);
    assert!(
        resumed
            .stdout
            .contains("skipped   publish: `ship` was rejected"),
        "{}",
        resumed.stdout
    );
    assert_eq!(status_step(&test, "ship")["error_kind"], "rejected");
    assert_eq!(
        status_step(&test, "rollback")["output"],
        "after ship (rejected): rejected by timeout: no answer within 1s"
    );
    assert_eq!(
        status_step(&test, "publish")["reason"],
        "`ship` was rejected"
    );
}

/// Even where failures do not fail the run, a rejected approval never
/// leads to what needed it, though its route succeeded.
#[test]
fn under_continue_a_rejected_gate_still_skips_its_dependents() {
    let test = Test::new().file("p.plan", plan("continue"));
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    let reject = cairn(&test, &["reject", "ship", "--reason", "not today"]);
    assert_eq!(reject.status, 0, "{}", reject.stderr);
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 0, "{}{}", resumed.stdout, resumed.stderr);
    assert_eq!(status_step(&test, "publish")["status"], "skipped");
    assert_eq!(status_step(&test, "rollback")["status"], "succeeded");
}

#[test]
fn an_approved_gate_skips_its_reject_route() {
    let test = Test::new().file("p.plan", plan("stop"));
    let run = cairn(&test, &["run", "p.plan", "--approve", "ship"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(status_step(&test, "publish")["output"], "published");
    assert_eq!(status_step(&test, "rollback")["status"], "skipped");
}

#[test]
fn the_graph_and_the_dry_run_show_the_reject_route() {
    let test = Test::new().file("p.plan", plan("stop"));
    let graph = cairn(&test, &["graph", "p.plan"]);
    assert!(
        graph.stdout.contains("n1 -.->|\"on reject\"| n3"),
        "{}",
        graph.stdout
    );
    let dry = cairn(&test, &["run", "p.plan", "--dry-run"]);
    assert!(
        dry.stdout
            .contains("rollback  task; runs only if `ship` is rejected; skipped otherwise"),
        "{}",
        dry.stdout
    );
}

const ROLLOUT: &str = r#"plan rollout "Rollout with an approved share"

task canary "Canary"
  run: "canary ok"

gate ship "Approve the rollout"
  needs: canary
  checks:
    - "canary error rate is flat"
  input:
    percent: int 1..100 = 10
    channel: enum(stable, beta) = stable
    note: string
  on reject -> rollback

task rollout "Roll out"
  needs: ship
  run: |
    let ship = outputs["ship"];
    `${ship.input.percent}% on ${ship.input.channel} (${ship.input.note}), approved by ${ship.by}`

task rollback "Roll back"
  run: "rolled back"
"#;

#[test]
fn a_gates_input_is_checked_field_by_field_and_read_downstream() {
    let test = Test::new().file("p.plan", ROLLOUT);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    let bad = cairn(
        &test,
        &[
            "approve",
            "ship",
            "--input",
            "percent=250",
            "--input",
            "chanel=beta",
            "--reason",
            "ok",
        ],
    );
    assert_eq!(bad.status, 2, "{}", bad.stdout);
    assert_eq!(
        bad.stderr,
        "error: gate `ship` cannot be approved with this input:\n  input `percent`: `250` is not a whole number from 1 to 100\n  the gate has no input `chanel`: did you mean `channel`?\n  input `note` is missing: it takes any text and has no default\n"
    );
    let rejecting = cairn(
        &test,
        &["reject", "ship", "--input", "percent=5", "--reason", "no"],
    );
    assert_eq!(rejecting.status, 2);
    let good = cairn(
        &test,
        &[
            "approve",
            "ship",
            "--input",
            "percent=25",
            "--input",
            "note=dashboards flat",
            "--reason",
            "ok",
            "--by",
            "ana",
        ],
    );
    assert_eq!(good.status, 0, "{}", good.stderr);
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 0, "{}{}", resumed.stdout, resumed.stderr);
    assert_eq!(
        status_step(&test, "ship")["output"],
        serde_json::json!({"approved": true, "by": "ana", "reason": "ok",
            "input": {"percent": 25, "channel": "stable", "note": "dashboards flat"}})
    );
    assert_eq!(
        status_step(&test, "rollout")["output"],
        "25% on stable (dashboards flat), approved by ana"
    );
}

#[test]
fn approving_up_front_takes_the_defaults_or_is_refused_before_the_run() {
    let test = Test::new().file("p.plan", ROLLOUT);
    let refused = cairn(&test, &["run", "p.plan", "--approve", "ship"]);
    assert_eq!(refused.status, 2);
    assert!(
        refused
            .stderr
            .contains("`--approve ship` cannot give the gate its input: input `note` is missing"),
        "{}",
        refused.stderr
    );
    assert!(!test.path().join(".cairn").exists() || crate::status_ids(&test).is_empty());
    let defaults = Test::new().file(
        "p.plan",
        ROLLOUT.replace("note: string", "note: string = \"none\""),
    );
    let run = cairn(&defaults, &["run", "p.plan", "--approve", "ship"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        status_step(&defaults, "rollout")["output"],
        "10% on stable (none), approved by --approve"
    );
}

/// On a terminal, approving asks for each input field, again when a value
/// does not fit; an empty answer takes the default.
#[test]
fn on_a_terminal_the_approver_is_asked_for_each_field() {
    let test = Test::new().file("p.plan", ROLLOUT);
    let Some((status, screen)) =
        crate::run::run_in_terminal(&test, "run p.plan", "y\nlooks good\n250\n30\n\nall flat\n")
    else {
        return;
    };
    assert_eq!(status, 0, "{screen}");
    assert!(
        screen.contains("percent (a whole number from 1 to 100, default 10): ")
            && screen.contains("  `250` is not a whole number from 1 to 100")
            && screen.contains("channel (one of `stable`, `beta`, default stable): ")
            && screen.contains("note (any text): "),
        "{screen}"
    );
    assert_eq!(
        status_step(&test, "rollout")["output"],
        format!(
            "30% on stable (all flat), approved by {}",
            std::env::var("USER").unwrap_or_else(|_| "terminal".to_owned())
        )
    );
}

#[test]
fn the_gate_input_example_runs_as_its_comment_says() {
    let plan = std::fs::read_to_string(crate::root().join("examples/gate-input-reject.plan"))
        .expect("example");
    let test = Test::new().file("p.plan", &plan);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    let approve = cairn(
        &test,
        &[
            "approve",
            "ship",
            "--input",
            "percent=25",
            "--input",
            "note=dashboards flat",
            "--reason",
            "canary is clean",
            "--by",
            "ana",
        ],
    );
    assert_eq!(approve.status, 0, "{}", approve.stderr);
    assert_eq!(cairn(&test, &["resume"]).status, 0);
    assert_eq!(
        status_step(&test, "rollout")["output"],
        "2.4.0 to 25% on stable: dashboards flat (approved by ana)"
    );
    let rejected = Test::new().file("p.plan", &plan);
    assert_eq!(cairn(&rejected, &["run", "p.plan"]).status, 3);
    assert_eq!(
        cairn(&rejected, &["reject", "ship", "--reason", "spiky"]).status,
        0
    );
    assert_eq!(cairn(&rejected, &["resume"]).status, 1);
    assert_eq!(status_step(&rejected, "rollout")["status"], "skipped");
    assert_eq!(status_step(&rejected, "rollback")["status"], "succeeded");
}
