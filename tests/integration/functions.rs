//! `functions:`: Rhai `fn` definitions in the plan header, callable from all
//! of the plan's code and seen by the checker's capability analysis.

use crate::{cairn, step_output as output, Test};

const RELEASE: &str = r#"plan release "Release"
  allow: sh
  param version = "14.1.0"
  functions: |
    fn asset(target, version) { `ripgrep-${version}-${target}.tar.gz` }
    fn build(target) { sh(["echo", target]).stdout }
    fn build_all(targets) { targets.map(|t| build(t)) }

task names "Asset names"
  run: ["linux", "mac"].map(|t| asset(t, params.version))
  expect: result[0] == asset("linux", "14.1.0")

task built "Build every target" using:sh
  needs: names
  when: asset("x", "y") != ""
  run: build_all(["linux", "mac"])

gate ship "Ship it"
  needs: built

task announce "Announce"
  needs: ship
  run: asset("linux", params.version) + " is out"
"#;

/// Every body, expectation and condition calls the plan's functions; one
/// calling `sh` runs in the sandbox of the task that calls it.
#[test]
fn every_piece_of_code_calls_the_plan_s_functions() {
    let test = Test::new().file("p.plan", RELEASE);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 3, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        output(&test, "names"),
        serde_json::json!(["ripgrep-14.1.0-linux.tar.gz", "ripgrep-14.1.0-mac.tar.gz"])
    );
    assert_eq!(
        output(&test, "built"),
        serde_json::json!(["linux\n", "mac\n"])
    );
    // The step after the gate runs in a resumed process, from the plan as
    // stored with the run: its code has the functions too.
    let approve = cairn(&test, &["approve", "ship", "--reason", "ok"]);
    assert_eq!(approve.status, 0, "{}", approve.stderr);
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 0, "{}{}", resumed.stdout, resumed.stderr);
    assert_eq!(
        output(&test, "announce"),
        serde_json::json!("ripgrep-14.1.0-linux.tar.gz is out")
    );
}

/// A task that calls a function reaching `sh` needs `using:sh`, however
/// deep the call: the check says which function and which call.
#[test]
fn a_function_s_capability_calls_count_at_every_call_site() {
    let plan = RELEASE.replace(
        "task built \"Build every target\" using:sh",
        "task built \"Build every target\"",
    );
    let run = Test::new()
        .file("p.plan", plan)
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "`build_all` calls `sh`, which needs the `sh` capability, which task `built` does not declare"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("error: 1 error found"),
        "{}",
        run.stderr
    );
}

/// An imported plan's steps call its own functions, and the importing
/// plan's call its own, even under the same name.
#[test]
fn each_plan_s_steps_call_their_own_plan_s_functions() {
    let test = Test::new()
        .file(
            "lib.plan",
            "plan lib \"Lib\"\n  functions: |\n    fn greet(name) { `hello from lib, ${name}` }\n\ntask hi \"Hi\"\n  run: greet(\"lib\")\n",
        )
        .file(
            "main.plan",
            "plan main \"Main\"\n  use \"lib.plan\" as lib\n  functions: |\n    fn greet(name) { `hello from main, ${name}` }\n\ntask hi \"Hi\"\n  needs: lib.hi\n  run: greet(\"main\")\n",
        );
    let run = cairn(&test, &["run", "main.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        output(&test, "lib.hi"),
        serde_json::json!("hello from lib, lib")
    );
    assert_eq!(
        output(&test, "hi"),
        serde_json::json!("hello from main, main")
    );
}

/// The dry run shows what a task would call through a function.
#[test]
fn the_dry_run_names_calls_made_through_functions() {
    let run = Test::new()
        .file("p.plan", RELEASE)
        .args(["run", "p.plan", "--dry-run"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("would call sh(…) via build_all(…)  [sh]"),
        "{}",
        run.stdout
    );
}

/// Editing `functions:` edits every step of the plan for `resume`: it is
/// refused without `--allow-changed`, and with it the steps run again with
/// the new functions (never old results beside new code).
#[test]
fn an_edited_function_invalidates_the_steps_that_ran_with_it() {
    let plan = "plan p \"P\"\n  functions: |\n    fn f() { \"old\" }\n\ntask a \"A\"\n  run: f()\n\ngate g \"G\"\n  needs: a\n\ntask b \"B\"\n  needs: g\n  run: outputs[\"a\"] + \"/\" + f()\n";
    let test = Test::new().file("p.plan", plan);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    std::fs::write(
        test.path().join("p.plan"),
        plan.replace("\"old\"", "\"new\""),
    )
    .expect("edit");
    let refused = cairn(&test, &["resume", "--approve", "g"]);
    assert_eq!(refused.status, 2, "{}", refused.stdout);
    assert!(
        refused
            .stderr
            .contains("this invalidates the recorded results of `a`"),
        "{}",
        refused.stderr
    );
    let resumed = cairn(&test, &["resume", "--approve", "g", "--allow-changed"]);
    assert_eq!(resumed.status, 0, "{}{}", resumed.stdout, resumed.stderr);
    assert_eq!(output(&test, "b"), serde_json::json!("new/new"));
}

/// The dry run lists calls in closures and a body's own `fn`s, and an
/// imported step's calls through its own plan's functions.
#[test]
fn the_dry_run_finds_calls_in_closures_local_fns_and_imported_functions() {
    let test = Test::new()
        .file(
            "lib.plan",
            "plan lib \"Lib\"\n  allow: sh\n  functions: |\n    fn launch() { sh(\"true\").code }\n\ntask l \"L\" using:sh\n  run: launch()\n",
        )
        .file(
            "p.plan",
            "plan p \"P\"\n  allow: sh\n  use \"lib.plan\" as lib\n  functions: |\n    fn launch() { 1 }\n\ntask t \"T\" using:sh\n  run: |\n    fn local() { sh(\"local\") }\n    [\"x\"].map(|t| sh([\"echo\", t]).code)\n",
        );
    let run = cairn(&test, &["run", "p.plan", "--dry-run"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    for line in [
        "would call sh(…)  [sh]",
        "would call sh(\"local\")  [sh]",
        "would call sh(…) via launch(…)  [sh]",
    ] {
        assert!(run.stdout.contains(line), "no `{line}` in:\n{}", run.stdout);
    }
}

/// A plan function may take the name of a function the sandbox leaves out,
/// and a body's own `fn` of a plan function's name takes its place (its
/// calls are the body's, not the plan function's).
#[test]
fn plan_functions_and_body_functions_shadow_as_they_run() {
    let plan = "plan p \"P\"\n  allow: sh\n  functions: |\n    fn timestamp() { 42 }\n    fn build_all(ts) { ts.map(|t| sh([\"echo\", t]).code) }\n\ntask a \"A\"\n  run: timestamp()\n\ntask b \"B\"\n  run: |\n    fn build_all(ts) { ts.len() }\n    build_all([\"a\"])\n";
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(output(&test, "a"), serde_json::json!(42));
    assert_eq!(output(&test, "b"), serde_json::json!(1));
}
