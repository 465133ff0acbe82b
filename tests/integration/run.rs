//! `cairn run`: the semantics of each construct, and the sandbox's protections.

use std::time::{Duration, Instant};

use crate::{cairn, Run, Test};

fn run(plan: &str, args: &[&str]) -> Run {
    let mut all = vec!["run", "p.plan"];
    all.extend_from_slice(args);
    Test::new().file("p.plan", plan).args(all).run()
}

/// The summary row of a step (see [`Run::row`]).
fn row(run: &Run, step: &str) -> String {
    run.row(step)
}

/// Events written with `--events -`.
fn events(run: &Run) -> Vec<serde_json::Value> {
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn started(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "step_started")
        .map(|e| e["step"].as_str().expect("step").to_owned())
        .collect()
}

#[test]
fn needs_order_outputs_and_priority() {
    let plan = r#"plan p "P"
  max_parallel: 1

task a "A"
  run: 20

task low "Low"
  needs: a
  run: outputs["a"] + 1

task high "High"
  needs: a
  priority: 5
  run: outputs["a"] * 2

task last "Last"
  needs: low, high
  run: outputs["low"] + outputs["high"]
"#;
    let run = run(plan, &["--events", "-"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let events = events(&run);
    assert_eq!(started(&events), ["a", "high", "low", "last"]);
    let last = events
        .iter()
        .find(|e| e["event"] == "step_succeeded" && e["step"] == "last")
        .expect("last");
    assert_eq!(last["output"], 61);
}

#[test]
fn input_is_evaluated_once_and_visible() {
    let plan = "plan p \"P\"\n  param base = 10\n\ntask a \"A\"\n  input:\n    n: params.base + 1\n  run: input.n * 2\n  expect: result == 22\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
}

#[test]
fn a_false_expectation_fails_and_is_quoted() {
    let plan =
        "plan p \"P\"\n\ntask a \"A\"\n  run: #{ errors: 0 }\n  expect:\n    - result.errors > 0\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 1);
    assert_eq!(
        row(&run, "a"),
        "a failed 1 <t> expectation failed: `result.errors > 0`"
    );
    assert!(run
        .stdout
        .contains("run failed: `a` failed: expectation failed: `result.errors > 0`"));
}

#[test]
fn when_false_skips_and_dependents_of_only_skipped_steps_skip() {
    let plan = "plan p \"P\"\n  param deploy = false\n\ntask a \"A\"\n  when: params.deploy\n  run: 1\n\ntask b \"B\"\n  needs: a\n  run: 2\n\ntask c \"C\"\n  run: 3\n\ntask d \"D\"\n  needs: a, c\n  run: 4\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert_eq!(row(&run, "a"), "a skipped 0");
    assert_eq!(row(&run, "b"), "b skipped 0");
    assert!(row(&run, "d").starts_with("d succeeded"));
    assert!(run
        .stdout
        .contains("skipped   a: `when: params.deploy` is false"));
    let run = crate::Test::new()
        .file("p.plan", plan)
        .args(["run", "p.plan", "--set", "deploy=true"])
        .run();
    assert!(row(&run, "b").starts_with("b succeeded"), "{}", run.stdout);
}

#[test]
fn retries_back_off_and_see_their_attempt() {
    let plan = "plan p \"P\"\n\ntask a \"A\"\n  run: |\n    if task.attempt < 3 { fail(`attempt ${task.attempt}`); }\n    task.attempt\n  retry: 3 backoff 20ms factor 2 max 30ms\n";
    let run = run(plan, &["--events", "-"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let events = events(&run);
    let delays: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "retrying")
        .map(|e| e["delay_ms"].as_u64().expect("delay"))
        .collect();
    assert_eq!(delays.len(), 2);
    // 20ms then 40ms capped at 30ms, each with up to 10% jitter.
    assert!(
        (20..=22).contains(&delays[0]) && (30..=33).contains(&delays[1]),
        "{delays:?}"
    );
    let done = events
        .iter()
        .find(|e| e["event"] == "step_succeeded")
        .expect("succeeded");
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["output"], 3);
}

#[test]
fn retries_run_out() {
    let plan = "plan p \"P\"\n\ntask a \"A\"\n  run: fail(\"always\")\n  retry: 1 backoff 1ms\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 1);
    assert_eq!(row(&run, "a"), "a failed 2 <t> always");
}

#[test]
fn a_timeout_kills_the_command_and_everything_it_started() {
    let test = Test::new()
        .file("p.plan", "plan p \"P\"\n  allow: sh\n\ntask slow \"Slow\" using:sh\n  run: sh(\"(sleep 3; touch child-marker) & sleep 30; touch marker\")\n  timeout: 1s\n")
        .args(["run", "p.plan"]);
    let started = Instant::now();
    let run = test.run();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(run.status, 1);
    assert_eq!(row(&run, "slow").split(' ').nth(1), Some("failed"));
    assert!(
        row(&run, "slow").ends_with("timed out"),
        "{}",
        row(&run, "slow")
    );
    std::thread::sleep(Duration::from_millis(3500));
    assert!(
        !test.path().join("marker").exists(),
        "the command outlived its timeout"
    );
    assert!(
        !test.path().join("child-marker").exists(),
        "a child outlived its timeout"
    );
}

#[test]
fn a_fallback_that_succeeds_recovers_the_step() {
    let plan = "plan p \"P\"\n\ntask deploy \"Deploy\"\n  run: fail(\"boom\")\n  on failure -> rollback\n\ntask rollback \"Roll back\"\n  run: `recovered from ${failure.id}: ${failure.error}`\n\ntask after \"After\"\n  needs: deploy\n  run: 1\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert_eq!(row(&run, "deploy"), "deploy recovered 1 <t> boom");
    assert!(row(&run, "rollback").starts_with("rollback succeeded"));
    assert!(row(&run, "after").starts_with("after succeeded"));
}

#[test]
fn an_unused_fallback_is_skipped() {
    let plan = "plan p \"P\"\n\ntask deploy \"Deploy\"\n  run: 1\n  on failure -> rollback\n\ntask rollback \"Roll back\"\n  run: 2\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 0);
    assert_eq!(row(&run, "rollback"), "rollback skipped 0");
}

#[test]
fn stop_starts_nothing_new_but_lets_running_steps_finish() {
    let plan = "plan p \"P\"\n  allow: sh\n  max_parallel: 2\n\ntask bad \"Bad\"\n  run: fail(\"bad\")\n\ntask slow \"Slow\" using:sh\n  run: sh(\"sleep 0.3\").code\n\ntask later \"Later\"\n  needs: slow\n  run: 1\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 1);
    assert!(
        row(&run, "slow").starts_with("slow succeeded"),
        "{}",
        run.stdout
    );
    assert_eq!(row(&run, "later"), "later not run 0");
}

#[test]
fn continue_records_the_failure_and_dependents_run() {
    let plan = "plan p \"P\"\n\ntask optional \"Optional\"\n  run: fail(\"meh\")\n  on failure: continue\n\ntask next \"Next\"\n  needs: optional\n  run: 1\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert_eq!(row(&run, "optional"), "optional failed 1 <t> meh");
    assert!(row(&run, "next").starts_with("next succeeded"));
}

#[test]
fn compensation_undoes_completed_steps_in_reverse_order() {
    let plan = r#"plan p "P"
  allow: fs.write
  on failure: compensate

task first "First" using:fs.write
  run: |
    edit_file("config.toml", "size = 10", "size = 50");
    "edited"
  compensate: |
    write_file("undo-first.txt", result);

task second "Second" using:fs.write
  needs: first
  run: |
    write_file("new.txt", "created");
    2
  compensate: |
    write_file("undo-second.txt", `${result}`);

task third "Third"
  needs: second
  run: fail("tests failed")
"#;
    let test = Test::new()
        .file("p.plan", plan)
        .file("config.toml", "size = 10\n")
        .args(["run", "p.plan", "--events", "-"]);
    let run = test.run();
    assert_eq!(run.status, 1);
    let events = events(&run);
    let undone: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "compensated")
        .map(|e| e["step"].as_str().expect("step"))
        .collect();
    assert_eq!(undone, ["second", "first"]);
    let dir = test.path();
    assert_eq!(
        std::fs::read_to_string(dir.join("config.toml")).expect("config"),
        "size = 10\n"
    );
    assert!(
        !dir.join("new.txt").exists(),
        "created files are removed again"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("undo-first.txt")).expect("undo"),
        "edited"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("undo-second.txt")).expect("undo"),
        "2"
    );
}

#[test]
fn on_success_routes_after_success() {
    let plan = "plan p \"P\"\n\ntask a \"A\"\n  run: 1\n  on success -> notify\n\ntask notify \"Notify\"\n  run: outputs[\"a\"] + 1\n";
    let run = run(plan, &["--events", "-"]);
    assert_eq!(run.status, 0);
    let events = events(&run);
    let notify = events
        .iter()
        .find(|e| e["event"] == "step_succeeded" && e["step"] == "notify")
        .expect("notify");
    assert_eq!(notify["output"], 2);
}

#[test]
fn decisions_take_the_first_true_branch_and_skip_the_rest() {
    let plan = r#"plan p "P"

task probe "Probe"
  run: #{ pool: true, race: true }

decision pick "Pick"
  needs: probe
  when outputs["probe"].pool -> fix-pool
  when outputs["probe"].race -> fix-race
  else -> escalate

task fix-pool "Fix pool"
  run: 1

task fix-race "Fix race"
  run: 2

task verify-race "Verify race fix"
  needs: fix-race
  run: 3

task escalate "Escalate"
  run: 4
"#;
    let run = run(plan, &[]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert!(run
        .stdout
        .contains("chose     pick -> fix-pool (when outputs[\"probe\"].pool)"));
    assert!(row(&run, "fix-pool").starts_with("fix-pool succeeded"));
    for skipped in ["fix-race", "verify-race", "escalate"] {
        assert_eq!(row(&run, skipped), format!("{skipped} skipped 0"));
    }
}

#[test]
fn a_decision_with_no_true_branch_and_no_else_fails() {
    let plan =
        "plan p \"P\"\n\ndecision pick \"Pick\"\n  when false -> a\n\ntask a \"A\"\n  run: 1\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 1);
    assert_eq!(
        row(&run, "pick"),
        "pick failed 1 <t> no branch condition held and the decision has no `else`"
    );
}

#[test]
fn gates_pause_without_approval_and_pass_with_it() {
    let plan = "plan p \"P\"\n\ntask build \"Build\"\n  run: 1\n\ngate ship \"Ship it\"\n  needs: build\n  checks:\n    - \"tests green\"\n\ntask release \"Release\"\n  needs: ship\n  run: 2\n";
    let paused = run(plan, &[]);
    assert_eq!(paused.status, 3, "{}", paused.stdout);
    assert_eq!(row(&paused, "ship"), "ship waiting 1 <t>");
    assert_eq!(row(&paused, "release"), "release not run 0");
    assert!(
        paused.stdout.contains("gate `ship` waits: cairn approve ")
            && paused
                .stdout
                .contains(" ship --reason \"…\"  (or reject), then cairn resume "),
        "{}",
        paused.stdout
    );
    let approved = run(plan, &["--approve", "ship"]);
    assert_eq!(approved.status, 0, "{}", approved.stdout);
    assert!(row(&approved, "release").starts_with("release succeeded"));
}

#[test]
fn an_endless_loop_ends_with_the_operations_limit() {
    let started = Instant::now();
    let run = run(
        "plan p \"P\"\n\ntask spin \"Spin\"\n  run: |\n    loop { }\n",
        &[],
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(run.status, 1);
    assert!(
        row(&run, "spin").contains("operations (an endless loop?)"),
        "{}",
        run.stdout
    );
}

#[test]
fn deep_recursion_and_huge_strings_end_cleanly() {
    let recursion = run("plan p \"P\"\n\ntask deep \"Deep\"\n  run: |\n    fn down(n) { down(n + 1) }\n    down(0)\n", &[]);
    assert_eq!(recursion.status, 1);
    assert!(
        row(&recursion, "deep").contains("deep failed"),
        "{}",
        recursion.stdout
    );
    let huge = run(
        "plan p \"P\"\n\ntask big \"Big\"\n  run: |\n    let s = \"x\";\n    loop { s += s; }\n",
        &[],
    );
    assert_eq!(huge.status, 1);
    assert!(row(&huge, "big").contains("big failed"), "{}", huge.stdout);
}

#[test]
fn undeclared_capabilities_do_not_exist_at_run_time() {
    // The name is built at run time, so the checker cannot see the call.
    let plan = "plan p \"P\"\n  allow: sh\n\ntask sneaky \"Sneaky\"\n  run: |\n    let name = \"s\" + \"h\";\n    call(Fn(name), \"touch pwned\")\n";
    let test = Test::new().file("p.plan", plan).args(["run", "p.plan"]);
    let run = test.run();
    assert_eq!(run.status, 1);
    assert!(
        row(&run, "sneaky").contains("`sh` is not available: the task does not declare `using:sh`"),
        "{}",
        run.stdout
    );
    assert!(!test.path().join("pwned").exists());
}

#[test]
fn files_outside_the_plan_directory_are_refused() {
    for (path, why) in [
        ("../../etc/passwd", "outside the plan's directory"),
        ("/etc/passwd", "outside the plan's directory"),
        ("escape/passwd", "through a symbolic link"),
    ] {
        let plan = format!("plan p \"P\"\n  allow: fs.read\n\ntask peek \"Peek\" using:fs.read\n  run: read_file(\"{path}\")\n");
        let test = Test::new().file("p.plan", plan).args(["run", "p.plan"]);
        std::os::unix::fs::symlink("/etc", test.path().join("escape")).expect("symlink");
        let run = test.run();
        assert_eq!(run.status, 1, "{path}: {}", run.stdout);
        assert!(row(&run, "peek").contains(why), "{path}: {}", run.stdout);
    }
}

#[test]
fn a_failed_edit_leaves_the_file_as_it_was() {
    let plan = "plan p \"P\"\n  allow: fs.write\n\ntask edit \"Edit\" using:fs.write\n  run: edit_file(\"conf.txt\", \"not there\", \"new\")\n";
    let test = Test::new()
        .file("p.plan", plan)
        .file("conf.txt", "size = 10\n")
        .args(["run", "p.plan"]);
    let run = test.run();
    assert_eq!(run.status, 1);
    assert!(
        row(&run, "edit").contains("the text to replace is not in the file"),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_to_string(test.path().join("conf.txt")).expect("conf"),
        "size = 10\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(test.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n != ".cairn")
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
}

#[test]
fn edits_are_idempotent() {
    let plan = "plan p \"P\"\n  allow: fs.write\n\ntask edit \"Edit\" using:fs.write\n  run: [edit_file(\"conf.txt\", \"size = 10\", \"size = 50\"), edit_file(\"conf.txt\", \"size = 10\", \"size = 50\")]\n";
    let test = Test::new()
        .file("p.plan", plan)
        .file("conf.txt", "size = 10\n")
        .args(["run", "p.plan", "--events", "-"]);
    let run = test.run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let done = events(&run)
        .into_iter()
        .find(|e| e["event"] == "step_succeeded")
        .expect("done");
    assert_eq!(done["output"], serde_json::json!([true, false]));
    assert_eq!(
        std::fs::read_to_string(test.path().join("conf.txt")).expect("conf"),
        "size = 50\n"
    );
}

#[test]
fn the_time_budget_cancels_running_steps() {
    let plan = "plan p \"P\"\n  budget: time 300ms\n\ntask slow \"Slow\"\n  run: sleep(\"10s\")\n";
    let started = Instant::now();
    let run = run(plan, &[]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(run.status, 1);
    assert!(
        run.stdout
            .contains("run failed: the time budget of 300ms ran out"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_cost_budget_stops_the_plan_at_the_crossing_call() {
    let plan = "plan p \"P\"\n  budget: cost 10\n  max_parallel: 1\n\ntask a \"A\"\n  run: spend(6)\n  on failure: continue\n\ntask b \"B\"\n  needs: a\n  run: spend(6.5)\n  on failure: continue\n\ntask c \"C\"\n  needs: b\n  run: 1\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 1);
    assert_eq!(
        row(&run, "b"),
        "b failed 1 <t> cost budget of 10 exceeded by 2.5 (spent 12.5)"
    );
    assert_eq!(row(&run, "c"), "c not run 0");
}

#[test]
fn unknown_params_are_a_usage_error() {
    let run = run(
        "plan p \"P\"\n  param n = 1\n\ntask a \"A\"\n  run: params.n\n",
        &["--set", "m=2"],
    );
    assert_eq!(run.status, 2);
    assert_eq!(
        run.stderr,
        "error: `--set m=…`: the plan has no param `m` (it has `n`)\n"
    );
}

/// The step `a`'s output, from `--events -`.
fn output(run: &Run) -> serde_json::Value {
    events(run)
        .into_iter()
        .find(|e| e["event"] == "step_succeeded" && e["step"] == "a")
        .unwrap_or_else(|| panic!("`a` did not succeed:\n{}{}", run.stdout, run.stderr))["output"]
        .clone()
}

#[test]
fn set_values_are_literals_of_the_params_type_never_rhai() {
    let plan = "plan p \"P\"\n  param n = 3\n  param name = \"world\"\n\ntask a \"A\"\n  run: #{ n: params.n, name: params.name }\n";
    let test = Test::new().file("p.plan", plan);
    for dry in [false, true] {
        let mut args = vec!["run", "p.plan", "--set", "n=1+1"];
        if dry {
            args.push("--dry-run");
        }
        let refused = crate::cairn(&test, &args);
        assert_eq!(refused.status, 2, "{}", refused.stdout);
        assert_eq!(
            refused.stderr,
            "error: `--set n=1+1`: param `n` takes an integer (its default is 3)\n"
        );
    }
    // Refused before anything is recorded.
    assert!(!test.path().join(".cairn").exists());
    let given = output(&run(plan, &["--events", "-", "--set", "n=5"]));
    assert_eq!(given, serde_json::json!({ "n": 5, "name": "world" }));
    // A string param takes the text as it is, whatever it would mean as code.
    for text in [
        "1+1",
        "true",
        "[1, 2]",
        "\"a\" + \"b\"",
        "params.n",
        "  spaced  ",
    ] {
        let set = format!("name={text}");
        let out = output(&run(plan, &["--events", "-", "--set", &set]));
        assert_eq!(out["name"], text, "--set {set}");
        assert_eq!(out["n"], 3);
    }
    // A JSON string in double quotes is what it spells (the REPL's `:set
    // name = "x"`); text that only starts with a quote stays as it is.
    let out = output(&run(plan, &["--events", "-", "--set", "name=\"a b\""]));
    assert_eq!(out["name"], "a b");
    let out = output(&run(plan, &["--events", "-", "--set", "name=\"a"]));
    assert_eq!(out["name"], "\"a");
}

#[test]
fn set_text_reaches_the_script_exactly_as_given() {
    let plan = "plan p \"P\"\n  param name = \"world\"\n\ntask a \"A\"\n  run: |\n    log(params.name);\n    params.name\n";
    let test = Test::new().file("p.plan", plan);
    for text in ["x; touch pwned", "$(touch pwned)", "`touch pwned`", "1+1"] {
        let set = format!("name={text}");
        let ran = crate::cairn(&test, &["run", "p.plan", "--events", "-", "--set", &set]);
        assert_eq!(ran.status, 0, "{}", ran.stderr);
        let events = events(&ran);
        let logged: Vec<&serde_json::Value> =
            events.iter().filter(|e| e["event"] == "log").collect();
        assert_eq!(logged.len(), 1, "{events:?}");
        assert_eq!(logged[0]["line"], text);
        assert_eq!(output(&ran), text);
    }
    assert!(!test.path().join("pwned").exists());
    // Passed to a program as one argument, with no shell in between.
    let plan = "plan p \"P\"\n  param name = \"world\"\n  allow: sh\n\ntask a \"A\" using:sh\n  run: sh([\"printf\", \"%s\", params.name]).stdout\n";
    let test = Test::new().file("p.plan", plan);
    for text in ["x; touch pwned", "$(touch pwned)", "`touch pwned`", "1+1"] {
        let set = format!("name={text}");
        let ran = crate::cairn(&test, &["run", "p.plan", "--events", "-", "--set", &set]);
        assert_eq!(ran.status, 0, "{}", ran.stderr);
        assert_eq!(output(&ran), text);
    }
    assert!(!test.path().join("pwned").exists());
}

#[test]
fn set_reads_bools_floats_and_json_arrays_and_maps() {
    let plan = "plan p \"P\"\n  param flag = false\n  param ratio = 0.5\n  param hosts = [\"a\"]\n  param limits = #{ cpu: 1 }\n  param nothing = ()\n\ntask a \"A\"\n  run: #{ flag: params.flag, ratio: params.ratio, hosts: params.hosts, limits: params.limits, nothing: params.nothing, types: [type_of(params.flag), type_of(params.ratio), type_of(params.hosts), type_of(params.limits), type_of(params.nothing)] }\n";
    let out = output(&run(
        plan,
        &[
            "--events",
            "-",
            "--set",
            "flag=true",
            "--set",
            "ratio=2",
            "--set",
            "hosts=[\"x\", 1]",
            "--set",
            "limits={\"cpu\": 2.5, \"pool\": {\"size\": 4}}",
            "--set",
            "nothing=1+1",
        ],
    ));
    assert_eq!(out["flag"], true);
    assert!(out["ratio"].is_f64() && out["ratio"] == 2.0, "{out}");
    assert_eq!(out["hosts"], serde_json::json!(["x", 1]));
    assert_eq!(
        out["limits"],
        serde_json::json!({ "cpu": 2.5, "pool": { "size": 4 } })
    );
    // A default of another type (here `()`) takes the text as a string.
    assert_eq!(out["nothing"], "1+1");
    assert_eq!(
        out["types"],
        serde_json::json!(["bool", "f64", "array", "map", "string"])
    );
    for (set, message) in [
        ("flag=yes", "`--set flag=yes`: param `flag` takes `true` or `false` (its default is false)"),
        ("flag=1", "`--set flag=1`: param `flag` takes `true` or `false` (its default is false)"),
        ("ratio=fast", "`--set ratio=fast`: param `ratio` takes a number (its default is 0.5)"),
        ("ratio=1/2", "`--set ratio=1/2`: param `ratio` takes a number (its default is 0.5)"),
        ("hosts=x,y", "`--set hosts=x,y`: param `hosts` takes a JSON array (its default is [\"a\"]): expected value at line 1 column 1"),
        ("hosts={}", "`--set hosts={}`: param `hosts` takes a JSON array (its default is [\"a\"])"),
        ("limits=[1]", "`--set limits=[1]`: param `limits` takes a JSON object (its default is {\"cpu\":1})"),
        ("limits=#{ cpu: 2 }", "`--set limits=#{ cpu: 2 }`: param `limits` takes a JSON object (its default is {\"cpu\":1}): expected value at line 1 column 1"),
    ] {
        let refused = run(plan, &["--set", set]);
        assert_eq!(refused.status, 2, "--set {set}: {}", refused.stdout);
        assert_eq!(refused.stderr, format!("error: {message}\n"));
    }
}

#[test]
fn a_default_read_from_earlier_params_decides_the_type_after_their_overrides() {
    let plan = "plan p \"P\"\n  param base = \"2\"\n  param copy = params.base\n\ntask a \"A\"\n  run: params.copy\n";
    // `base` is text, so `copy`'s default is text: `1+1` stays `1+1`.
    let out = output(&run(plan, &["--events", "-", "--set", "copy=1+1"]));
    assert_eq!(out, "1+1");
    let plan = plan.replace("\"2\"", "2");
    let refused = run(&plan, &["--set", "base=7", "--set", "copy=x"]);
    assert_eq!(refused.status, 2);
    assert_eq!(
        refused.stderr,
        "error: `--set copy=x`: param `copy` takes an integer (its default is 7)\n"
    );
}

#[test]
fn a_resumed_run_reads_its_recorded_set_values_the_same_way() {
    let plan = "plan p \"P\"\n  param name = \"world\"\n  param n = 3\n\ngate ship \"Ship it\"\n\ntask a \"A\"\n  needs: ship\n  run: #{ n: params.n, name: params.name }\n";
    let test = Test::new().file("p.plan", plan);
    let paused = crate::cairn(
        &test,
        &["run", "p.plan", "--set", "name=1+1", "--set", "n=4"],
    );
    assert_eq!(paused.status, 3, "{}{}", paused.stdout, paused.stderr);
    let approved = crate::cairn(&test, &["approve", "ship", "--reason", "ok"]);
    assert_eq!(approved.status, 0, "{}", approved.stderr);
    let resumed = crate::cairn(&test, &["resume", "--events", "-"]);
    assert_eq!(resumed.status, 0, "{}", resumed.stderr);
    assert_eq!(
        output(&resumed),
        serde_json::json!({ "n": 4, "name": "1+1" })
    );
}

#[test]
fn an_unknown_set_name_suggests_the_near_one() {
    let plan = "plan p \"P\"\n  param retries = 3\n  param name = \"x\"\n\ntask a \"A\"\n  run: params.retries + params.name.len()\n";
    let refused = run(plan, &["--set", "retires=5"]);
    assert_eq!(refused.status, 2);
    assert_eq!(
        refused.stderr,
        "error: `--set retires=…`: the plan has no param `retires`; did you mean `retries`?\n"
    );
    let refused = run(plan, &["--set", "retries=many"]);
    assert_eq!(refused.status, 2);
    assert_eq!(
        refused.stderr,
        "error: `--set retries=many`: param `retries` takes an integer (its default is 3)\n"
    );
}

#[test]
fn the_same_seed_gives_the_same_outputs_at_any_width() {
    let mut plan = String::from("plan p \"P\"\n");
    for i in 0..12 {
        plan.push_str(&format!("\ntask t{i} \"T\"\n  run: rand()\n"));
        if i > 2 {
            plan.push_str(&format!("  needs: t{}\n", i % 3));
        }
    }
    let outputs = |width: &str, seed: &str| {
        let run = run(
            &plan,
            &["--events", "-", "--max-parallel", width, "--seed", seed],
        );
        assert_eq!(run.status, 0, "{}", run.stderr);
        let mut out: Vec<(String, String)> = events(&run)
            .into_iter()
            .filter(|e| e["event"] == "step_succeeded")
            .map(|e| (e["step"].to_string(), e["output"].to_string()))
            .collect();
        out.sort();
        (out, started(&events(&run)))
    };
    let (one, order) = outputs("1", "7");
    let (again, order_again) = outputs("1", "7");
    let (wide, _) = outputs("4", "7");
    let (other, _) = outputs("1", "8");
    assert_eq!(one, again);
    assert_eq!(order, order_again);
    assert_eq!(one, wide);
    assert_ne!(one, other);
}

#[test]
fn param_defaults_read_earlier_params_and_set_overrides_them() {
    let plan = "plan p \"P\"\n  param base = 2\n  param double = params.base * 2\n\ntask a \"A\"\n  run: params.double + params.base\n";
    let run = run(plan, &["--events", "-", "--set", "base=5"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let done = events(&run)
        .into_iter()
        .find(|e| e["event"] == "step_succeeded")
        .expect("done");
    assert_eq!(done["output"], 15);
}

#[test]
fn a_dry_run_executes_nothing_and_explains_the_waves() {
    let plan = r#"plan p "P"
  allow: sh, fs.write

task build "Build" using:sh
  run: sh("touch built")

task probe "Probe"
  needs: build
  run: true
  on failure -> fallback

decision pick "Pick"
  needs: probe
  when outputs["probe"] -> fix
  else -> escalate

task fix "Fix" using:fs.write
  run: edit_file("conf.toml", "a", "b")

task escalate "Escalate"
  run: 1

task fallback "Fallback"
  run: 2

gate ship "Ship"
  needs: fix
  checks:
    - "green"
"#;
    let test = Test::new()
        .file("p.plan", plan)
        .args(["run", "p.plan", "--dry-run"]);
    let run = test.run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        !test.path().join("built").exists(),
        "a dry run ran a command"
    );
    insta::assert_snapshot!(run.stdout);
}

/// Runs `cairn` in a pseudo-terminal (util-linux `script`), typing `input`;
/// the terminal's input stays open until cairn exits.
pub(crate) fn run_in_terminal(test: &Test, args: &str, input: &str) -> Option<(i32, String)> {
    use std::io::{Read, Write};
    let exe = assert_cmd::cargo::cargo_bin("cairn");
    // `exec`: no shell stays in the terminal's foreground group to be ended
    // by a Ctrl-C meant for cairn.
    let command = format!("exec '{}' {args}", exe.display());
    let child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(test.path())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(_) if std::env::var_os("CI").is_none() => return None,
        Err(err) => panic!("`script` (util-linux) is needed for terminal tests: {err}"),
    };
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("type");
    let mut screen = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut screen)
        .expect("read");
    let status = child.wait().expect("script runs");
    drop(stdin);
    Some((status.code().unwrap_or(-1), screen.replace('\r', "")))
}

#[test]
fn on_a_terminal_a_gate_asks_and_records_the_answer() {
    let plan = "plan p \"P\"\n\ngate ship \"Ship it\"\n  checks:\n    - \"tests green\"\n\ntask release \"Release\"\n  needs: ship\n  run: 1\n";
    let test = Test::new().file("p.plan", plan);
    let Some((status, screen)) =
        run_in_terminal(&test, "run p.plan --events events.jsonl", "y\nall green\n")
    else {
        return;
    };
    assert_eq!(status, 0, "{screen}");
    assert!(
        screen.contains("gate `ship`: Ship it") && screen.contains("[ ] tests green"),
        "{screen}"
    );
    let events = std::fs::read_to_string(test.path().join("events.jsonl")).expect("events");
    let approved: serde_json::Value = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|e| e["event"] == "gate_approved")
        .expect("approved");
    assert_eq!(approved["reason"], "all green");
    let rejected = run_in_terminal(&test, "run p.plan", "n\nnot yet\n").expect("script exists");
    assert_eq!(rejected.0, 1, "{}", rejected.1);
    assert!(rejected.1.contains("rejected"), "{}", rejected.1);
}

/// A one-shot HTTP server on loopback answering every request with `status`.
fn serve(status: u16, body: &'static str, requests: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.expect("accept");
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    port
}

#[test]
fn http_reaches_allowed_hosts_only() {
    let port = serve(500, "pool exhausted", 2);
    let plan = format!(
        "plan p \"P\"\n  allow: http(127.0.0.1)\n\ntask get \"Get\" using:http\n  run: http_get(\"http://127.0.0.1:{port}/\")\n\ntask post \"Post\" using:http\n  run: http_post(\"http://127.0.0.1:{port}/\", #{{ n: 1 }}).status\n\ntask other \"Other\" using:http\n  run: http_get(\"http://localhost:{port}/\")\n  on failure: continue\n"
    );
    let run = run(&plan, &["--events", "-"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let events = events(&run);
    let got = events
        .iter()
        .find(|e| e["event"] == "step_succeeded" && e["step"] == "get")
        .expect("get");
    assert_eq!(
        got["output"],
        serde_json::json!({"status": 500, "body": "pool exhausted"})
    );
    let refused = events
        .iter()
        .find(|e| e["event"] == "step_failed" && e["step"] == "other")
        .expect("other");
    assert_eq!(
        refused["error"],
        format!("`localhost:{port}` is not in the plan's `allow: http(127.0.0.1)`")
    );
}

/// Starts `cairn run p.plan` on a plan whose step runs `sh(command)`,
/// sends `signal` after 800 ms, and returns the exit status, stdout and how
/// long cairn took to exit after the signal.
fn signalled(test: &Test, signal: libc::c_int) -> (Option<i32>, String, Duration) {
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"))
        .args(["run", "p.plan"])
        .current_dir(test.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cairn starts");
    std::thread::sleep(Duration::from_millis(800));
    let sent = Instant::now();
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
    let out = child.wait_with_output().expect("cairn exits");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        sent.elapsed(),
    )
}

#[test]
fn ctrl_c_cancels_running_steps_and_exits_130() {
    let plan = "plan p \"P\"\n  allow: sh\n\ntask slow \"Slow\" using:sh\n  run: sh(\"sleep 20; touch marker\")\n";
    let test = Test::new().file("p.plan", plan);
    let (status, stdout, took) = signalled(&test, libc::SIGINT);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(status, Some(130));
    assert!(
        stdout.contains("run interrupted: interrupted (Ctrl-C)"),
        "{stdout}"
    );
    assert!(!test.path().join("marker").exists());
}

#[test]
fn inputs_count_against_the_timeout() {
    let started = Instant::now();
    let run = run("plan p \"P\"\n\ntask a \"A\"\n  input:\n    x: sleep(\"5s\")\n  run: 1\n  timeout: 300ms\n", &[]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(run.status, 1);
    assert!(
        row(&run, "a").ends_with("input `x`: timed out"),
        "{}",
        run.stdout
    );
}

#[test]
fn one_fallback_recovers_every_step_it_stands_in_for() {
    let plan = "plan p \"P\"\n  max_parallel: 1\n\ntask a \"A\"\n  run: fail(\"a\")\n  on failure -> fix\n\ntask b \"B\"\n  run: fail(\"b\")\n  on failure -> fix\n\ntask fix \"Fix\"\n  run: 1\n\ntask after-a \"After A\"\n  needs: a\n  run: 2\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert!(row(&run, "a").starts_with("a recovered"), "{}", run.stdout);
    assert!(row(&run, "b").starts_with("b recovered"), "{}", run.stdout);
    assert!(
        row(&run, "after-a").starts_with("after-a succeeded"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_fallback_that_needs_its_failed_step_is_refused_before_running() {
    // `fix` also needs `a`: it could never run, so the plan does not start.
    let plan = "plan p \"P\"\n\ntask a \"A\"\n  run: fail(\"broken\")\n  on failure -> fix\n\ntask fix \"Fix\"\n  needs: a\n  run: 1\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("cairn::unreachable_fallback"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_gate_whose_condition_is_false_is_skipped() {
    let plan = "plan p \"P\"\n  param ship = false\n\ngate g \"Ship?\"\n  when: params.ship\n\ntask after \"After\"\n  needs: g\n  run: 1\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert_eq!(row(&run, "g"), "g skipped 0");
}

#[test]
fn a_crossed_cost_budget_cannot_be_caught() {
    let plan = "plan p \"P\"\n  budget: cost 10\n  max_parallel: 1\n\ntask sneaky \"Sneaky\"\n  run: |\n    try { spend(100); } catch { }\n    \"carried on\"\n\ntask next \"Next\"\n  needs: sneaky\n  run: 1\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(
        row(&run, "sneaky").contains("cost budget of 10 exceeded by 90"),
        "{}",
        run.stdout
    );
    assert_eq!(row(&run, "next"), "next not run 0");
}

#[test]
fn input_and_body_share_the_first_attempts_timeout() {
    let plan = "plan p \"P\"\n\ntask a \"A\"\n  input:\n    x: sleep(700)\n  run: sleep(700)\n  timeout: 1s\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(row(&run, "a").ends_with("timed out"), "{}", run.stdout);
}

#[test]
fn compensation_also_undoes_the_failing_steps_own_edits() {
    let plan = "plan p \"P\"\n  allow: fs.write\n  on failure: compensate\n\ntask half \"Half done\" using:fs.write\n  run: |\n    edit_file(\"conf.txt\", \"a\", \"b\");\n    fail(\"then it broke\")\n";
    let test = Test::new()
        .file("p.plan", plan)
        .file("conf.txt", "a\n")
        .args(["run", "p.plan"]);
    let run = test.run();
    assert_eq!(run.status, 1);
    assert_eq!(
        std::fs::read_to_string(test.path().join("conf.txt")).expect("conf"),
        "a\n"
    );
}

#[test]
fn scopes_are_judged_after_dot_dot_is_resolved() {
    for (grant, call) in [
        (
            "fs.write(config/**)",
            "write_file(\"config/../../pwned.txt\", \"x\")",
        ),
        ("fs.read(data/**)", "read_file(\"data/../../outside.txt\")"),
        ("fs.read(data/**)", "read_file(\"secret.txt\")"),
    ] {
        let capability = grant.split('(').next().expect("name");
        let plan = format!(
            "plan p \"P\"\n  allow: {grant}\n\ntask t \"T\" using:{capability}\n  run: {call}\n"
        );
        let test = Test::new()
            .file("p.plan", plan)
            .file("secret.txt", "s")
            .file("data/ok.txt", "ok")
            .args(["run", "p.plan"]);
        let run = test.run();
        assert_eq!(run.status, 1, "{grant} {call}: {}", run.stdout);
        assert!(!test
            .path()
            .parent()
            .expect("parent")
            .join("pwned.txt")
            .exists());
    }
}

#[test]
fn an_edit_whose_new_text_contains_the_old_is_still_idempotent() {
    let plan = "plan p \"P\"\n  allow: fs.write\n\ntask e \"E\" using:fs.write\n  run: |\n    edit_file(\"c.toml\", \"size = 5\", \"size = 50\");\n    edit_file(\"c.toml\", \"size = 5\", \"size = 50\")\n";
    let test = Test::new()
        .file("p.plan", plan)
        .file("c.toml", "size = 5\n")
        .args(["run", "p.plan"]);
    assert_eq!(test.run().status, 0);
    assert_eq!(
        std::fs::read_to_string(test.path().join("c.toml")).expect("c"),
        "size = 50\n"
    );
}

#[test]
fn urls_are_checked_as_the_client_reads_them_and_redirects_are_not_followed() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Some(Ok(mut stream)) = listener.incoming().next() {
            let mut buffer = [0u8; 2048];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:9/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let plan = format!(
        "plan p \"P\"\n  allow: http(127.0.0.1)\n  on failure: continue\n\ntask sneaky \"Sneaky\" using:http\n  run: http_get(\"http://127.0.0.2:{port}\\\\@127.0.0.1/\")\n\ntask moved \"Moved\" using:http\n  run: http_get(\"http://127.0.0.1:{port}/\").status\n"
    );
    let run = run(&plan, &["--max-parallel", "1"]);
    assert!(
        row(&run, "sneaky").contains("is not in the plan's `allow: http(127.0.0.1)`"),
        "{}",
        run.stdout
    );
    assert!(
        row(&run, "moved").starts_with("moved succeeded"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("ok        moved"), "{}", run.stdout);
}

/// SIGTERM interrupts the run as Ctrl-C does, and cairn exits as a shell
/// reports SIGTERM (143), not 130; the run resumes like any interrupted one.
#[test]
fn sigterm_stops_the_run_and_its_commands() {
    let plan = "plan p \"P\"\n  allow: sh\n\ntask slow \"Slow\" using:sh\n  run: sh(\"sleep 3; touch marker\")\n";
    let test = Test::new().file("p.plan", plan);
    let (status, stdout, _) = signalled(&test, libc::SIGTERM);
    assert_eq!(status, Some(143), "{stdout}");
    assert!(
        stdout.contains("run interrupted: interrupted by SIGTERM"),
        "{stdout}"
    );
    let runs = crate::cairn(&test, &["runs", "--status", "interrupted"]);
    assert_eq!(runs.stdout.lines().count(), 2, "{}", runs.stdout);
    std::thread::sleep(Duration::from_millis(3000));
    assert!(
        !test.path().join("marker").exists(),
        "the command outlived cairn"
    );
}

#[test]
fn a_waiting_prompt_gives_up_when_the_time_budget_runs_out() {
    let plan = "plan p \"P\"\n  budget: time 1s\n\ngate g \"Ship?\"\n";
    let test = Test::new().file("p.plan", plan);
    let started = Instant::now();
    let Some((status, screen)) = run_in_terminal(&test, "run p.plan", "") else {
        return;
    };
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(status, 1, "{screen}");
    assert!(screen.contains("the time budget of 1s ran out"), "{screen}");
}

#[test]
fn steps_running_together_stay_within_the_plans_resources() {
    let mut plan = String::from("plan p \"P\"\n  max_parallel: 4\n  resources: cpu 2\n");
    for i in 0..4 {
        plan.push_str(&format!(
            "\ntask t{i} \"T\"\n  resources: cpu 1\n  run: sleep(100)\n"
        ));
    }
    plan.push_str("\ntask big \"Big\"\n  resources: cpu 2\n  run: sleep(100)\n");
    let run = run(&plan, &["--events", "-"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let mut cpu = 0;
    for event in events(&run) {
        let amount = if event["step"] == "big" { 2 } else { 1 };
        match event["event"].as_str() {
            Some("step_started") => cpu += amount,
            Some("step_succeeded") => cpu -= amount,
            _ => {}
        }
        assert!(cpu <= 2, "more than the plan's cpu 2 in use at once");
    }
}

#[test]
fn a_fallback_shared_by_a_chain_runs_for_the_first_failure() {
    // `b` needs `a`; both route to `rb`. Before `b` ran, its route could not
    // resolve, and `rb` waited for it forever.
    let plan = "plan p \"P\"\n\ntask a \"A\"\n  run: fail(\"boom\")\n  on failure -> rb\n\ntask b \"B\"\n  needs: a\n  run: 2\n  on failure -> rb\n\ntask rb \"Roll back\"\n  run: `rolled back ${failure.id}`\n";
    let first = run(plan, &[]);
    assert_eq!(first.status, 0, "{}", first.stdout);
    assert_eq!(row(&first, "a"), "a recovered 1 <t> boom");
    assert_eq!(row(&first, "b"), "b succeeded 1 <t>");
    assert_eq!(row(&first, "rb"), "rb succeeded 1 <t>");
    // Once the fallback ran for `a`, a later failure of `b` has none left.
    let later = run(&plan.replace("run: 2", "run: fail(\"late\")"), &[]);
    assert_eq!(later.status, 1, "{}", later.stdout);
    assert_eq!(row(&later, "b"), "b failed 1 <t> late");
}

#[test]
fn a_declared_capability_called_with_the_wrong_types_says_so() {
    let plan = "plan p \"P\"\n  param cmd = true\n  allow: sh\n\ntask a \"A\" using:sh\n  run: sh(params.cmd)\n";
    // A boolean param, and there is no `sh(bool)`.
    let run = run(plan, &[]);
    assert_eq!(run.status, 1);
    assert_eq!(
        row(&run, "a"),
        "a failed 1 <t> line 6, column 8: `sh` cannot take (bool): check the arguments' types"
    );
}

/// A long run's summary counts its steps by status and lists only the steps
/// that did not succeed.
#[test]
fn a_long_runs_summary_lists_only_what_did_not_succeed() {
    let mut plan = String::from("plan long \"Long\"\n  on failure: continue\n");
    for i in 0..60 {
        plan.push_str(&format!("\ntask t{i} \"T{i}\"\n  run: {i}\n"));
    }
    plan.push_str("\ntask broken \"Broken\"\n  run: fail(\"boom\")\n");
    let run = run(&plan, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    // (After where `broken` failed, with a caret.)
    let at = run.stdout.find("61 steps:").expect("a summary");
    let summary: Vec<&str> = run.stdout[at..]
        .split("\n\n")
        .next()
        .expect("a summary")
        .lines()
        .collect();
    assert_eq!(summary.len(), 3, "{}", run.stdout);
    assert_eq!(
        summary[0],
        "61 steps: 60 succeeded, 1 failed; `cairn status` shows every step"
    );
    assert!(summary[1].starts_with("step    status  attempts  time"));
    let broken: Vec<&str> = summary[2].split_whitespace().collect();
    assert_eq!(
        [broken[0], broken[1], broken[2], broken[4]],
        ["broken", "failed", "1", "boom"]
    );
}

/// A gate nobody answers within its `timeout:` is rejected while other
/// steps still run, and its failure route is taken.
#[test]
fn an_unanswered_gate_is_rejected_when_its_timeout_passes() {
    let plan = "plan p \"P\"\n\ntask slow \"Slow\"\n  run: sleep(\"1s\")\n\ngate ship \"Ship it\"\n  timeout: 300ms\n  on reject -> notify\n\ntask notify \"Tell someone\"\n  run: \"nobody answered\"\n";
    let run = run(plan, &["--events", "-"]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    let events = events(&run);
    let rejected = events
        .iter()
        .find(|e| e["event"] == "gate_rejected")
        .expect("rejected");
    assert_eq!(rejected["by"], "timeout");
    assert_eq!(rejected["reason"], "no answer within 300ms");
    // Rejected at its deadline, while `slow` still ran.
    let at = |name: &str| {
        events
            .iter()
            .find(|e| e["event"] == name)
            .and_then(|e| e["at_ms"].as_u64())
            .expect("at_ms")
    };
    assert!(at("gate_rejected") < 900, "{events:?}");
    assert!(started(&events).contains(&"notify".to_owned()));
}

#[test]
fn on_a_terminal_an_unanswered_gate_times_out() {
    let plan = "plan p \"P\"\n\ngate ship \"Ship it\"\n  timeout: 500ms\n\ntask release \"Release\"\n  needs: ship\n  run: 1\n";
    let test = Test::new().file("p.plan", plan);
    let Some((status, screen)) = run_in_terminal(&test, "run p.plan", "") else {
        return;
    };
    assert_eq!(status, 1, "{screen}");
    assert!(
        screen.contains("(rejected if not answered within 1s)"),
        "{screen}"
    );
    assert!(screen.contains("no answer within 500ms"), "{screen}");
}

/// The summary calls a step the run cancelled what `cairn status` does:
/// "cancelled", not "failed".
#[test]
fn the_summary_says_cancelled_like_status() {
    let test = Test::new().file(
        "p.plan",
        "plan p \"P\"\n  budget: time 300ms\n\ntask slow \"Slow\"\n  run: sleep(\"10s\")\n",
    );
    let run = crate::cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("slow "))
        .unwrap_or_else(|| panic!("no row for slow:\n{}", run.stdout));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[1], "cancelled", "{}", run.stdout);
    let status = crate::status_step(&test, "slow");
    assert_eq!(status["status"], words[1]);
}

/// An `--events` file that cannot be created stops the run before any step
/// starts, and says which file and why.
#[test]
fn an_events_file_that_cannot_be_created_stops_the_run_first() {
    let test = Test::new()
        .file(
            "p.plan",
            "plan p \"P\"\n  allow: fs.write\n\ntask a \"A\" using:fs.write\n  run: write_file(\"ran.txt\", \"yes\")\n",
        )
        .args(["run", "p.plan", "--events", "missing/events.jsonl"]);
    let run = test.run();
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot create `missing/events.jsonl`: No such file or directory"),
        "{}",
        run.stderr
    );
    assert!(!test.path().join("ran.txt").exists(), "no step ran");
}

/// An error in a step's own code names its line and column in the plan
/// file (not in the block) and the types as a plan author knows them.
#[test]
fn a_script_error_names_its_place_in_the_file_and_plain_types() {
    let plan = "plan p \"P\"\n\ntask a \"A\"\n  run: |\n    let x = 1;\n    x + \"a\" * 2\n\ntask b \"B\"\n  run: [1].foo()\n";
    let run = run(plan, &[]);
    assert_eq!(run.status, 1);
    assert_eq!(
        row(&run, "a"),
        "a failed 1 <t> line 6, column 13: no function `*` takes (string, int)"
    );
    assert_eq!(
        row(&run, "b"),
        "b failed 1 <t> line 9, column 12: no function `foo` takes (array)"
    );
}

/// A command's output shows while it runs, a line at a time, under its
/// step's id (stdout as `out`, stderr as `err`), and is in the run's log.
#[test]
fn command_output_streams_while_the_command_runs() {
    use std::io::BufRead;
    let plan = "plan p \"P\"\n  allow: sh\n\ntask a \"A\" using:sh\n  run: sh(\"echo first; echo oops >&2; sleep 3; echo last\").code\n";
    let test = crate::Test::new().file("p.plan", plan);
    let started = std::time::Instant::now();
    let mut child = crate::durable::spawn(&test, &["run", "p.plan"]);
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines
        .by_ref()
        .map(|l| l.expect("a line"))
        .find(|l| l.contains("first"))
        .expect("the first line");
    assert_eq!(first, "  out       a: first");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "the line came only when the command ended"
    );
    let rest: Vec<String> = lines.map(|l| l.expect("a line")).collect();
    child.wait().expect("ends");
    assert!(rest.contains(&"  err       a: oops".to_owned()), "{rest:?}");
    assert!(rest.contains(&"  out       a: last".to_owned()), "{rest:?}");
    let log = crate::cairn(&test, &["log", "--json"]);
    let streams: Vec<String> = log
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "log")
        .map(|e| {
            format!(
                "{} {}",
                e["stream"].as_str().unwrap_or("-"),
                e["line"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(streams, ["stdout first", "stderr oops", "stdout last"]);
}

/// `--approve` must name a gate the run can reach: a typo is refused with
/// a did-you-mean before anything runs, a child run's gate is let through.
#[test]
fn approving_an_unknown_gate_is_refused_before_the_run() {
    let plan = "plan p \"P\"\n\ntask a \"A\"\n  run: 1\n\ngate ship \"Ship\"\n  needs: a\n";
    let test = Test::new().file("p.plan", plan);
    let typo = cairn(&test, &["run", "p.plan", "--approve", "shipp"]);
    assert_eq!(typo.status, 2, "{}", typo.stderr);
    assert!(
        typo.stderr
            .contains("`--approve shipp`: the plan has no gate `shipp`; did you mean `ship`?"),
        "{}",
        typo.stderr
    );
    let not_a_plan_step = cairn(&test, &["run", "p.plan", "--approve", "a.ship"]);
    assert_eq!(not_a_plan_step.status, 2, "{}", not_a_plan_step.stderr);
    assert!(
        not_a_plan_step.stderr.contains("`a` is not a `plan:` step"),
        "{}",
        not_a_plan_step.stderr
    );
    assert!(!test.path().join(".cairn").exists(), "nothing ran");
    let right = cairn(&test, &["run", "p.plan", "--approve", "ship"]);
    assert_eq!(right.status, 0, "{}", right.stderr);
}
