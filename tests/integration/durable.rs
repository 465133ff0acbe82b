//! Durable runs: resume after a crash or a gate, approve / reject across
//! processes, changed plans, replay, artifacts, and two processes on one store.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{cairn, db, status_step, Run, Test};

pub(crate) fn spawn(test: &Test, args: &[&str]) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("cairn"))
        .args(args)
        .current_dir(test.path())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cairn starts")
}

/// The names of a run's events, per step, from the store.
fn settles(test: &Test, event: &str) -> HashMap<String, usize> {
    let conn = db(test);
    let mut stmt = conn.prepare("SELECT body FROM events").expect("query");
    let mut counts = HashMap::new();
    for body in stmt.query_map([], |r| r.get::<_, String>(0)).expect("rows") {
        let value: serde_json::Value = serde_json::from_str(&body.expect("row")).expect("json");
        if value["event"] == event {
            *counts
                .entry(value["step"].as_str().expect("step").to_owned())
                .or_default() += 1;
        }
    }
    counts
}

fn run_id(run: &Run) -> String {
    run.stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("run ")?
                .split_once(" is recorded")?
                .0
                .to_owned()
                .into()
        })
        .unwrap_or_else(|| panic!("no run id in:\n{}", run.stdout))
}

const GATED: &str = "plan p \"P\"\n  allow: fs.write\n\ntask build \"Build\" using:fs.write\n  run: write_file(\"built\", \"yes\")\n\ngate ship \"Ship it\"\n  needs: build\n  on reject -> rollback\n\ntask release \"Release\"\n  needs: ship\n  run: \"released\"\n\ntask rollback \"Roll back\"\n  run: \"rolled back\"\n";

#[test]
fn a_gate_is_approved_in_another_process_and_resume_finishes() {
    let test = Test::new().file("p.plan", GATED);
    let paused = cairn(&test, &["run", "p.plan"]);
    assert_eq!(paused.status, 3, "{}", paused.stdout);
    let id = run_id(&paused);
    assert!(
        paused.stdout.contains(&format!(
            "gate `ship` waits: cairn approve {id} ship --reason \"…\"  (or reject), then cairn resume {id}"
        )),
        "{}",
        paused.stdout
    );
    std::fs::remove_file(test.path().join("built")).expect("remove");
    let approve = cairn(
        &test,
        &[
            "approve",
            &id,
            "ship",
            "--reason",
            "looks good",
            "--by",
            "ana",
        ],
    );
    assert_eq!(approve.status, 0, "{}", approve.stderr);
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert!(
        resumed.stdout.contains("  ok        release"),
        "{}",
        resumed.stdout
    );
    // `build` completed before the gate: it did not run again.
    assert!(!test.path().join("built").exists());
    assert_eq!(settles(&test, "step_succeeded").get("build"), Some(&1));
    let log = cairn(&test, &["log", &id]);
    assert!(
        log.stdout
            .contains("gate_approved by=\"ana\" reason=\"looks good\""),
        "{}",
        log.stdout
    );
    let verify = cairn(&test, &["audit", "verify", &id]);
    assert_eq!(verify.status, 0, "{}", verify.stdout);
    let again = cairn(&test, &["resume", &id]);
    assert_eq!(again.status, 2);
    assert!(
        again.stderr.contains("has ended (succeeded); only paused"),
        "{}",
        again.stderr
    );
}

#[test]
fn a_rejected_gate_fails_and_routes_to_its_reject_route() {
    let test = Test::new().file("p.plan", GATED);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    let wrong = cairn(&test, &["reject", "build", "--reason", "no"]);
    assert_eq!(wrong.status, 2);
    assert!(
        wrong.stderr.contains("gate `build` of run ")
            && wrong
                .stderr
                .contains("is not waiting for an answer (waiting: `ship`)"),
        "{}",
        wrong.stderr
    );
    let reject = cairn(
        &test,
        &["reject", "ship", "--reason", "not today", "--by", "ana"],
    );
    assert_eq!(reject.status, 0, "{}", reject.stderr);
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 1, "{}", resumed.stdout);
    let squeeze = |step: &str| Some(resumed.row(step));
    assert_eq!(
        squeeze("ship").as_deref(),
        Some("ship failed 1 <t> rejected by ana: not today")
    );
    assert_eq!(
        squeeze("rollback")
            .as_deref()
            .map(|r| r.starts_with("rollback succeeded 1")),
        Some(true)
    );
    // Rejected, the gate stays failed: what needs it never runs.
    assert_eq!(
        squeeze("release")
            .as_deref()
            .map(|r| r.starts_with("release skipped")),
        Some(true)
    );
}

/// A gate's `timeout:` counts from when it first waited, across processes:
/// it can be approved in time; once it has passed, `approve` refuses and
/// `resume` rejects the gate.
#[test]
fn a_gate_times_out_across_processes() {
    let plan = "plan p \"P\"\n\ngate ship \"Ship it\"\n  timeout: 3s\n\ntask release \"Release\"\n  needs: ship\n  run: 1\n";
    let test = Test::new().file("p.plan", plan);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    let waiting: serde_json::Value = serde_json::from_str(
        cairn(&test, &["log", "--json"])
            .stdout
            .lines()
            .find(|l| l.contains("gate_waiting"))
            .expect("gate_waiting"),
    )
    .expect("json");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let expires_at = waiting["expires_at"].as_u64().expect("expires_at");
    assert!(
        expires_at > now_ms && expires_at <= now_ms + 3000,
        "{waiting}"
    );
    // In time: approved, and the run goes on.
    assert_eq!(
        cairn(&test, &["approve", "ship", "--reason", "ok"]).status,
        0
    );
    assert_eq!(cairn(&test, &["resume"]).status, 0);

    let test = Test::new().file("p.plan", plan);
    let paused = cairn(&test, &["run", "p.plan"]);
    assert_eq!(paused.status, 3);
    let id = run_id(&paused);
    // A resume before the deadline waits again with the same deadline.
    assert_eq!(cairn(&test, &["resume"]).status, 3);
    std::thread::sleep(Duration::from_millis(3200));
    let late = cairn(&test, &["approve", "ship", "--reason", "late"]);
    assert_eq!(late.status, 2);
    assert_eq!(
        late.stderr,
        format!("error: gate `ship` of run {id} timed out before it was answered; `cairn resume {id}` rejects it\n")
    );
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 1, "{}", resumed.stdout);
    assert!(
        resumed
            .stdout
            .contains("run failed: `ship` failed: rejected by timeout: no answer within 3s"),
        "{}",
        resumed.stdout
    );
}

/// Editing a waiting gate's `timeout:` makes it wait afresh: with the
/// timeout removed, a deadline that passed no longer counts.
#[test]
fn an_edited_gate_waits_afresh() {
    let plan = "plan p \"P\"\n\ngate ship \"Ship it\"\n  timeout: 1s\n\ntask release \"Release\"\n  needs: ship\n  run: 1\n";
    let test = Test::new().file("p.plan", plan);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    std::fs::write(
        test.path().join("p.plan"),
        plan.replace("  timeout: 1s\n", ""),
    )
    .expect("edit");
    std::thread::sleep(Duration::from_millis(1200));
    let resumed = cairn(&test, &["resume", "--allow-changed"]);
    assert_eq!(resumed.status, 3, "{}", resumed.stdout);
    let approve = cairn(&test, &["approve", "ship", "--reason", "ok"]);
    assert_eq!(approve.status, 0, "{}", approve.stderr);
    assert_eq!(cairn(&test, &["resume"]).status, 0);
}

#[test]
fn an_interrupted_run_resumes_without_rerunning_finished_steps() {
    let plan = "plan p \"P\"\n  allow: sh\n  max_parallel: 1\n\ntask first \"First\" using:sh\n  run: sh(\"echo first >> done.txt\")\n\ntask slow \"Slow\" using:sh\n  needs: first\n  run: sh(\"echo slow >> done.txt; sleep 30\")\n\ntask last \"Last\" using:sh\n  needs: slow\n  run: sh(\"echo last >> done.txt\")\n";
    let test = Test::new().file("p.plan", plan);
    let child = spawn(&test, &["run", "p.plan"]);
    wait_for(|| {
        std::fs::read_to_string(test.path().join("done.txt")).is_ok_and(|t| t.contains("slow"))
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().expect("exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("to continue: cairn resume "), "{stdout}");
    // The slow step is quick now, so the resumed run finishes.
    std::fs::write(test.path().join("p.plan"), plan.replace("; sleep 30", "")).expect("edit");
    let refused = cairn(&test, &["resume"]);
    assert_eq!(refused.status, 2, "{}", refused.stdout);
    // `slow` was cancelled, not completed: no recorded result is lost.
    assert!(
        refused
            .stderr
            .contains("  edited: `slow`\nno completed result depends on the changes"),
        "{}",
        refused.stderr
    );
    let resumed = cairn(&test, &["resume", "--allow-changed"]);
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    let done = std::fs::read_to_string(test.path().join("done.txt")).expect("read");
    assert_eq!(done, "first\nslow\nslow\nlast\n");
}

#[test]
fn a_changed_plan_names_what_it_invalidates() {
    let test = Test::new().file("p.plan", GATED);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    std::fs::write(
        test.path().join("p.plan"),
        GATED.replace("\"built\", \"yes\"", "\"built\", \"twice\"")
            + "\ntask extra \"Extra\"\n  run: 3\n",
    )
    .expect("edit");
    let refused = cairn(&test, &["resume", "--approve", "ship"]);
    assert_eq!(refused.status, 2);
    let expected = "  added: `extra`\n  edited: `build`\nthis invalidates the recorded results of `build`\nto run those again with the edited plan: cairn resume ";
    assert!(refused.stderr.contains(expected), "{}", refused.stderr);
    let resumed = cairn(&test, &["resume", "--approve", "ship", "--allow-changed"]);
    assert_eq!(resumed.status, 0, "{}", resumed.stdout);
    assert_eq!(
        std::fs::read_to_string(test.path().join("built")).expect("read"),
        "twice"
    );
    assert_eq!(settles(&test, "step_succeeded").get("build"), Some(&2));
}

const IMPORTING: &str = "plan p \"P\"\n  use \"lib.plan\" as lib\n\ngate ship \"Ship\"\n  needs: lib.build\n\ntask release \"Release\"\n  needs: ship, lib.build\n  run: `released ${outputs[\"lib.build\"]}`\n";

#[test]
fn a_run_resumes_with_the_plan_it_began_with_even_without_its_files() {
    let lib = "plan lib \"Lib\"\n\ntask build \"Build\"\n  run: \"v2\"\n";
    let test = Test::new().file("p.plan", IMPORTING).file("lib.plan", lib);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    for file in ["p.plan", "lib.plan"] {
        std::fs::remove_file(test.path().join(file)).expect("remove");
    }
    // A plan kept in a format this build does not read (an older cairn's)
    // is checked again from its recorded source, which needs the import.
    let format: String = db(&test)
        .query_row("SELECT format FROM plans", [], |r| r.get(0))
        .expect("a kept plan");
    db(&test)
        .execute("UPDATE plans SET format = 'postcard/0.0.0/0'", [])
        .expect("update");
    let rechecked = cairn(&test, &["resume", "--approve", "ship"]);
    assert_eq!(rechecked.status, 2, "{}", rechecked.stdout);
    assert!(
        rechecked.stderr.contains("cairn::unknown_import"),
        "{}",
        rechecked.stderr
    );
    // The plan as checked when the run began needs neither file.
    db(&test)
        .execute("UPDATE plans SET format = ?1", [&format])
        .expect("update");
    let resumed = cairn(&test, &["resume", "--approve", "ship"]);
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(status_step(&test, "release")["output"], "released v2");
}

/// What compensation undoes is in the store: a run that paused at a gate
/// (another process changed the files) and fails after it is resumed still
/// puts every file back, by `restore_file` and automatically.
#[test]
fn compensation_after_a_resume_restores_what_the_first_process_changed() {
    let plan = r#"plan p "P"
  allow: fs.write
  on failure: compensate

task edit "Edit" using:fs.write
  run: |
    edit_file("config.toml", "size = 10", "size = 50");
    write_file("new.txt", "created");
    "edited"
  compensate: |
    if !restore_file("config.toml") { fail("restore_file found nothing to restore") }

task notes "Notes" using:fs.write
  run: write_file("notes.txt", "changed")

gate ship "Ship"
  needs: edit, notes

task deploy "Deploy"
  needs: ship
  run: fail("deploy failed")
"#;
    let test = Test::new()
        .file("p.plan", plan)
        .file("config.toml", "size = 10\n")
        .file("notes.txt", "original notes\n");
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    let read = |f: &str| std::fs::read_to_string(test.path().join(f)).ok();
    assert_eq!(read("config.toml").as_deref(), Some("size = 50\n"));
    let resumed = cairn(&test, &["resume", "--approve", "ship"]);
    assert_eq!(resumed.status, 1, "{}", resumed.stdout);
    assert_eq!(
        status_step(&test, "edit")["status"],
        "compensated",
        "{}",
        resumed.stdout
    );
    assert_eq!(read("config.toml").as_deref(), Some("size = 10\n"));
    assert_eq!(read("notes.txt").as_deref(), Some("original notes\n"));
    assert_eq!(read("new.txt"), None, "a file the run created is removed");
}

/// The contents are committed before the file changes: killed between the
/// change and the end of the step, a resumed run still has what undoes it.
#[test]
fn a_file_changed_just_before_a_crash_is_still_restored() {
    let plan = r#"plan p "P"
  allow: fs.write, sh
  on failure: compensate

task edit "Edit" using:fs.write,sh
  run: |
    write_file("config.toml", "size = 50\n");
    sh("sleep 30");
    1

task deploy "Deploy"
  needs: edit
  run: fail("deploy failed")
"#;
    let test = Test::new()
        .file("p.plan", plan)
        .file("config.toml", "size = 10\n");
    let mut child = spawn(&test, &["run", "p.plan"]);
    let config = test.path().join("config.toml");
    wait_for(|| std::fs::read_to_string(&config).is_ok_and(|c| c.contains("50")));
    child.kill().expect("kill -9");
    let _ = child.wait();
    // Quick this time: the step runs again without the sleep.
    std::fs::write(
        test.path().join("p.plan"),
        plan.replace("sh(\"sleep 30\");", ""),
    )
    .expect("edit");
    let resumed = cairn(&test, &["resume", "--allow-changed"]);
    assert_eq!(resumed.status, 1, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        "size = 10\n"
    );
}

/// Steps without capabilities are committed in groups, but never later
/// than the start of a step that declares one: killed while that step
/// runs, the store already holds every step before it, so on resume only
/// the step that was running runs again.
#[test]
fn steps_before_a_step_with_a_capability_are_committed_when_it_starts() {
    let mut plan = String::from("plan p \"P\"\n  allow: sh\n  max_parallel: 1\n");
    for i in 0..50 {
        let needs = if i > 0 {
            format!("  needs: pure{}\n", i - 1)
        } else {
            String::new()
        };
        plan.push_str(&format!(
            "\ntask pure{i} \"Pure {i}\"\n{needs}  run: {i} * 2\n"
        ));
    }
    plan.push_str("\ntask slow \"Slow\" using:sh\n  needs: pure49\n  run: sh(\"echo started >> started.txt; sleep 30\").code\n");
    let test = Test::new().file("p.plan", &plan);
    let mut child = spawn(&test, &["run", "p.plan"]);
    let started = test.path().join("started.txt");
    wait_for(|| started.exists());
    child.kill().expect("kill -9");
    let _ = child.wait();
    let succeeded = settles(&test, "step_succeeded");
    for i in 0..50 {
        assert_eq!(
            succeeded.get(&format!("pure{i}")),
            Some(&1),
            "pure{i} was not committed before `slow` started"
        );
    }
    std::fs::write(test.path().join("p.plan"), plan.replace("sleep 30", "true")).expect("edit");
    let resumed = cairn(&test, &["resume", "--allow-changed"]);
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(settles(&test, "step_succeeded").get("pure0"), Some(&1));
    assert_eq!(
        std::fs::read_to_string(&started)
            .expect("started")
            .lines()
            .count(),
        2,
        "only `slow` runs again"
    );
}

/// A step with a capability is committed once it ends, though the steps
/// after it declare none: killed during a long capability-free step, the
/// resumed run does not run the step with the effect again.
#[test]
fn a_step_with_a_capability_is_committed_when_it_ends() {
    let plan = "plan p \"P\"\n  allow: sh\n\ntask effect \"Effect\" using:sh\n  run: sh(\"echo ran >> effect.txt\").code\n\ntask pure \"Pure\"\n  needs: effect\n  run: sleep(if params.slow { 30000 } else { 0 })\n  \n";
    let plan = plan.replace("plan p \"P\"\n", "plan p \"P\"\n  param slow = true\n");
    let test = Test::new().file("p.plan", &plan);
    let mut child = spawn(&test, &["run", "p.plan"]);
    let effect = test.path().join("effect.txt");
    wait_for(|| effect.exists());
    // Time for the scheduler to start `pure` (its sleep) after `effect`.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert_eq!(settles(&test, "step_succeeded").get("effect"), Some(&1));
    std::fs::write(
        test.path().join("p.plan"),
        plan.replace("slow = true", "slow = false"),
    )
    .expect("edit");
    let resumed = cairn(&test, &["resume", "--allow-changed"]);
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(
        std::fs::read_to_string(&effect)
            .expect("effect")
            .lines()
            .count(),
        1,
        "the step with the effect ran again"
    );
}

/// `budget: time` counts the run's running time across processes: 1.2 s
/// before a gate and 1.5 s after it cross a 2 s budget, though neither
/// process ran that long.
#[test]
fn the_time_budget_counts_across_resumes() {
    let plan = "plan p \"P\"\n  allow: sh\n  budget: time 2s\n\ntask a \"A\" using:sh\n  run: sh(\"sleep 1.2\").code\n\ngate g \"G\"\n  needs: a\n\ntask b \"B\" using:sh\n  needs: g\n  run: sh(\"sleep 1.5\").code\n";
    let test = Test::new().file("p.plan", plan);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    // Time paused at the gate does not count.
    std::thread::sleep(Duration::from_millis(900));
    let resumed = cairn(&test, &["resume", "--approve", "g"]);
    assert_eq!(resumed.status, 1, "{}", resumed.stdout);
    assert!(
        resumed
            .stdout
            .contains("run failed: the time budget of 2s ran out; running steps were cancelled"),
        "{}",
        resumed.stdout
    );
    // A fresh count would have let its 1.5 s run to the end.
    assert_eq!(status_step(&test, "b")["status"], "cancelled");
}

/// `budget: cost` counts what settled steps spent before a resume: 8 and 8
/// cross a budget of 10, though each process spent only 8.
#[test]
fn the_cost_budget_counts_across_resumes() {
    let plan = "plan p \"P\"\n  budget: cost 10\n\ntask a \"A\"\n  run: spend(8)\n\ngate g \"G\"\n  needs: a\n\ntask b \"B\"\n  needs: g\n  run: spend(8)\n";
    let test = Test::new().file("p.plan", plan);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    let resumed = cairn(&test, &["resume", "--approve", "g"]);
    assert_eq!(resumed.status, 1, "{}", resumed.stdout);
    assert_eq!(
        status_step(&test, "b")["error"],
        "cost budget of 10 exceeded by 6 (spent 16)"
    );
}

/// Paths were recorded relative to where the run began; they name the same
/// files from any other directory.
#[test]
fn a_run_resumes_and_replays_from_another_directory() {
    let lib = "plan lib \"Lib\"\n\ntask build \"Build\"\n  run: \"v2\"\n";
    let test = Test::new()
        .file("sub/p.plan", IMPORTING)
        .file("sub/lib.plan", lib)
        .file("elsewhere/.keep", "");
    assert_eq!(cairn(&test, &["run", "sub/p.plan"]).status, 3);
    let elsewhere = |args: &[&str]| {
        let mut all = vec!["--state-dir".to_owned(), "../.cairn".to_owned()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        crate::run_in(&test.path().join("elsewhere"), &all)
    };
    // An edited import is seen from there too.
    std::fs::write(test.path().join("sub/lib.plan"), lib.replace("v2", "v3")).expect("edit");
    let refused = elsewhere(&["resume", "--approve", "ship"]);
    assert_eq!(refused.status, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .starts_with("error: `sub/lib.plan`, imported by `sub/p.plan`, changed"),
        "{}",
        refused.stderr
    );
    std::fs::write(test.path().join("sub/lib.plan"), lib).expect("restore");
    let resumed = elsewhere(&["resume", "--approve", "ship"]);
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(status_step(&test, "release")["output"], "released v2");
    let replayed = elsewhere(&["replay"]);
    assert_eq!(
        replayed.status, 0,
        "{}\n{}",
        replayed.stdout, replayed.stderr
    );
    assert!(replayed.stdout.contains("identical"), "{}", replayed.stdout);
}

#[test]
fn an_edited_import_is_a_changed_plan() {
    let lib = "plan lib \"Lib\"\n\ntask build \"Build\"\n  run: \"v2\"\n";
    let test = Test::new().file("p.plan", IMPORTING).file("lib.plan", lib);
    let paused = cairn(&test, &["run", "p.plan"]);
    assert_eq!(paused.status, 3);
    let id = run_id(&paused);
    std::fs::write(test.path().join("lib.plan"), lib.replace("v2", "v3")).expect("edit");
    let refused = cairn(&test, &["resume", "--approve", "ship"]);
    assert_eq!(refused.status, 2, "{}", refused.stdout);
    assert_eq!(
        refused.stderr,
        format!(
            "error: `lib.plan`, imported by `p.plan`, changed since run {id} began:\n  edited: `lib.build`\nthis invalidates the recorded results of `lib.build`\nto run those again with the edited plan: cairn resume {id} --allow-changed\n"
        )
    );
    let resumed = cairn(&test, &["resume", "--approve", "ship", "--allow-changed"]);
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(status_step(&test, "release")["output"], "released v3");
}

const RECORDED: &str = "plan p \"P\"\n  allow: sh, fs.read, fs.write\n  seed: 7\n\ntask stamp \"Stamp\" using:sh,fs.write\n  run: |\n    let t = now();\n    let r = rand();\n    let who = sh(\"echo $RANDOM-$$\").stdout;\n    write_file(\"out.txt\", `${t} ${r} ${who}`);\n    #{ t: t, r: r, who: who }\n\ntask report \"Report\" using:fs.read\n  needs: stamp\n  run: read_file(\"out.txt\")\n";

/// Replay holds for every run the engine produces: one that failed while
/// a sibling ran (the sibling settled), one whose time budget cancelled a
/// step and compensated, and one resumed after a gate.
#[test]
fn replays_are_identical_for_failed_cancelled_compensated_and_resumed_runs() {
    let failed = "plan p \"P\"\n  allow: sh\n\ntask a \"A\" using:sh\n  run: |\n    sh(\"sleep 0.2\");\n    fail(\"boom\")\n\ntask b \"B\" using:sh\n  run: sh(\"sleep 0.6\").code\n\ntask c \"C\"\n  needs: a, b\n  run: 1\n";
    let cancelled = "plan p \"P\"\n  allow: sh, fs.write\n  on failure: compensate\n  budget: time 1s\n\ntask a \"A\" using:sh,fs.write\n  run: |\n    write_file(\"x.txt\", \"1\");\n    sh(\"echo a\").stdout\n  compensate: log(\"undo a\")\n\ntask b \"B\" using:sh\n  run: sh(\"sleep 5\").code\n\ntask c \"C\"\n  needs: a\n  run: outputs[\"a\"]\n";
    let resumed = "plan p \"P\"\n  allow: sh\n\ntask a \"A\" using:sh\n  run: sh(\"echo $$\").stdout\n\ngate g \"G\"\n  needs: a\n\ntask b \"B\" using:sh\n  needs: g\n  run: sh(\"echo $$\").stdout + outputs[\"a\"]\n";
    for (what, plan, status) in [
        ("failed", failed, 1),
        ("cancelled", cancelled, 1),
        ("resumed", resumed, 3),
    ] {
        let test = Test::new().file("p.plan", plan);
        let run = cairn(&test, &["run", "p.plan"]);
        assert_eq!(run.status, status, "{what}: {}", run.stdout);
        if status == 3 {
            let resumed = cairn(&test, &["resume", "--approve", "g"]);
            assert_eq!(resumed.status, 0, "{what}: {}", resumed.stdout);
        }
        let replay = cairn(&test, &["replay"]);
        assert_eq!(replay.status, 0, "{what}: {}", replay.stdout);
        assert!(
            replay.stdout.contains(", identical"),
            "{what}: {}",
            replay.stdout
        );
    }
}

#[test]
fn a_replay_is_identical_and_touches_nothing() {
    let test = Test::new().file("p.plan", RECORDED);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    std::fs::remove_file(test.path().join("out.txt")).expect("remove");
    let replay = cairn(&test, &["replay"]);
    assert_eq!(replay.status, 0, "{}\n{}", replay.stdout, replay.stderr);
    assert!(
        replay.stdout.starts_with("replayed 2 steps of run ")
            && replay.stdout.ends_with(", identical\n"),
        "{}",
        replay.stdout
    );
    assert!(!test.path().join("out.txt").exists(), "replay wrote a file");
    // An edited body asks for something else: the first divergence is named.
    std::fs::write(
        test.path().join("p.plan"),
        RECORDED.replace("echo $RANDOM-$$", "echo changed"),
    )
    .expect("edit");
    let diverged = cairn(&test, &["replay"]);
    assert_eq!(diverged.status, 1, "{}", diverged.stdout);
    assert!(
        diverged.stdout.contains(
            "diverged at step `stamp`, attempt 1, call 3: recorded sh(\"echo $RANDOM-$$\"), asked sh(\"echo changed\")"
        ),
        "{}",
        diverged.stdout
    );
}

#[test]
fn artifacts_are_stored_by_hash_with_their_step() {
    let plan = "plan p \"P\"\n\ntask write \"Write\"\n  run: artifact(\"postmortem\", \"root cause: pool\")\n";
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    let status = cairn(&test, &["status", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    let artifact = &value["artifacts"][0];
    assert_eq!(artifact["name"], "postmortem");
    assert_eq!(artifact["step"], "write");
    assert_eq!(artifact["bytes"], 16);
    let hash = artifact["sha256"].as_str().expect("hash");
    assert_eq!(value["steps"][0]["output"], hash);
    let content: Vec<u8> = db(&test)
        .query_row("SELECT content FROM blobs WHERE sha256 = ?1", [hash], |r| {
            r.get(0)
        })
        .expect("blob");
    assert_eq!(content, b"root cause: pool");
}

#[test]
fn status_and_log_follow_work_while_a_run_writes() {
    let plan = "plan p \"P\"\n  allow: sh\n  max_parallel: 1\n\ntask a \"A\" using:sh\n  run: sh(\"sleep 0.3\")\n\ntask b \"B\" using:sh\n  needs: a\n  run: sh(\"sleep 0.3\")\n\ntask c \"C\" using:sh\n  needs: b\n  run: sh(\"sleep 0.3\")\n";
    let test = Test::new().file("p.plan", plan);
    let child = spawn(&test, &["run", "p.plan"]);
    wait_for(|| test.path().join(".cairn/state.db").exists());
    std::thread::sleep(Duration::from_millis(300));
    let status = cairn(&test, &["status"]);
    assert_eq!(status.status, 0, "{}", status.stderr);
    assert!(status.stdout.contains("): running"), "{}", status.stdout);
    let follow = cairn(&test, &["log", "--follow"]);
    assert_eq!(follow.status, 0, "{}", follow.stderr);
    let out = child.wait_with_output().expect("exits");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        follow.stdout.contains("step_succeeded")
            && follow
                .stdout
                .lines()
                .last()
                .is_some_and(|l| l.contains("run_finished")),
        "{}",
        follow.stdout
    );
}

#[test]
fn a_locked_store_is_a_clear_error() {
    let test = Test::new().file("p.plan", "plan p \"P\"\n\ntask a \"A\"\n  run: 1\n");
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 0);
    let conn = db(&test);
    conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let locked = cairn(&test, &["run", "p.plan"]);
    assert_eq!(locked.status, 1, "{}", locked.stdout);
    assert!(
        locked
            .stderr
            .starts_with("error: the run store `.cairn/state.db`: database is locked"),
        "{}",
        locked.stderr
    );
}

/// Kills `cairn` with SIGKILL at random moments, resumes after each, and
/// checks that no finished step is lost or run twice, and that the commands
/// running at a kill die with cairn: none of them finishes after it (an
/// in-flight command runs again on resume, never beside its old copy).
#[test]
fn crash_torture_loses_nothing_and_repeats_only_running_steps() {
    let mut plan = String::from("plan torture \"Torture\"\n  allow: sh\n  max_parallel: 4\n");
    for i in 0..200 {
        let needs = if i >= 4 {
            format!("  needs: t{}\n", i - 4)
        } else {
            String::new()
        };
        plan.push_str(&format!(
            "\ntask t{i} \"T{i}\" using:sh\n{needs}  run: sh(\"echo t{i} >> ids.txt; sleep 0.05; echo t{i} >> ends.txt\")\n"
        ));
    }
    let test = Test::new().file("p.plan", &plan);
    let mut running_at_kill: HashSet<String> = HashSet::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut kills = 0;
    let mut args: Vec<&str> = vec!["run", "p.plan"];
    while kills < 25 {
        let mut child = spawn(&test, &args);
        args = vec!["resume"];
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(60 + rng % 120));
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        kills += 1;
        // What ran at the kill dies with cairn: nothing finishes after it
        // (each command has 50 ms to go at most).
        let ends = || std::fs::read_to_string(test.path().join("ends.txt")).unwrap_or_default();
        std::thread::sleep(Duration::from_millis(20));
        let before = ends();
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(ends(), before, "a command finished after cairn was killed");
        // Steps started and not settled were running at the kill.
        let conn = db(&test);
        let mut stmt = conn.prepare("SELECT body FROM events").expect("query");
        let mut open: HashSet<String> = HashSet::new();
        for body in stmt.query_map([], |r| r.get::<_, String>(0)).expect("rows") {
            let v: serde_json::Value = serde_json::from_str(&body.expect("row")).expect("json");
            let step = v["step"].as_str().unwrap_or_default().to_owned();
            match v["event"].as_str() {
                Some("step_started") => {
                    open.insert(step);
                }
                Some("step_succeeded" | "step_failed" | "step_cancelled") => {
                    open.remove(&step);
                }
                _ => {}
            }
        }
        running_at_kill.extend(open);
    }
    assert!(
        kills >= 20,
        "only {kills} kills: the plan finished too soon"
    );
    let end = cairn(&test, &["resume"]);
    assert!(
        end.status == 0 || end.stderr.contains("no unfinished run"),
        "{}\n{}",
        end.stdout,
        end.stderr
    );
    let succeeded = settles(&test, "step_succeeded");
    for i in 0..200 {
        assert_eq!(
            succeeded.get(&format!("t{i}")),
            Some(&1),
            "t{i} completed other than once"
        );
    }
    let ids = std::fs::read_to_string(test.path().join("ids.txt")).expect("ids");
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for id in ids.lines() {
        *seen.entry(id).or_default() += 1;
    }
    for i in 0..200 {
        let id = format!("t{i}");
        let n = seen.get(id.as_str()).copied().unwrap_or(0);
        assert!(n >= 1, "{id} never ran");
        assert!(
            n == 1 || running_at_kill.contains(&id),
            "{id} ran {n} times but was not running at a kill"
        );
    }
    let verify = cairn(&test, &["audit", "verify"]);
    assert_eq!(verify.status, 0, "{}", verify.stdout);
}

pub(crate) fn wait_for(ready: impl Fn() -> bool) {
    for _ in 0..200 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting");
}

/// A step stuck in a request does not stop at the first Ctrl-C; the second
/// exits at once, and the run can still be resumed.
#[test]
fn a_second_ctrl_c_exits_at_once_and_the_run_resumes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accept and never answer, so the request hangs.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let plan = format!(
        "plan p \"P\"\n  allow: http(127.0.0.1)\n\ntask hang \"Hang\" using:http\n  run: http_get(\"http://127.0.0.1:{port}/\").status\n"
    );
    let test = Test::new().file("p.plan", plan);
    let child = spawn(&test, &["run", "p.plan"]);
    std::thread::sleep(Duration::from_millis(800));
    let started = std::time::Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().expect("exits");
    assert_eq!(out.status.code(), Some(130));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("interrupted again: exiting now; `cairn resume` continues the run"),
        "{stderr}"
    );
    // The store is intact and knows the step was running.
    let verify = cairn(&test, &["audit", "verify"]);
    assert_eq!(verify.status, 0, "{}", verify.stdout);
    let status = cairn(&test, &["status"]);
    assert!(status.stdout.contains("hang  running"), "{}", status.stdout);
}

/// A plan whose second step waits (running) until the file `go` exists.
const WAITING: &str = "plan p \"P\"\n  allow: sh\n\ntask first \"First\" using:sh\n  run: sh(\"echo first >> done.txt\")\n\ntask wait \"Wait\" using:sh\n  needs: first\n  run: sh(\"touch waiting; while [ ! -e go ]; do sleep 0.02; done; echo wait >> done.txt\")\n";

/// The id of the test's only run.
fn only_run(test: &Test) -> String {
    db(test)
        .query_row("SELECT id FROM runs", [], |r| r.get(0))
        .expect("one run")
}

/// Runs `cairn` and waits for it up to 20 s; `None` (after killing it) if it
/// was still going then.
fn run_for_a_while(test: &Test, args: &[&str]) -> Option<std::process::Output> {
    let mut child = spawn(test, args);
    for _ in 0..400 {
        if child.try_wait().expect("wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill");
    child.wait().expect("reaped");
    None
}

/// The process start time `/proc/<pid>/stat` gives (field 22, clock ticks
/// since boot).
fn start_time(pid: u32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let (_, rest) = stat.rsplit_once(')').expect("comm");
    rest.split_whitespace()
        .nth(22 - 3)
        .expect("field 22")
        .parse()
        .expect("a number")
}

/// Leases in the store: (run, pid).
fn leases(test: &Test) -> Vec<(String, i64)> {
    crate::pairs(test, "SELECT run_id, pid FROM leases")
}

/// Deleting or replacing anything in the state directory beside the
/// database (the `locks/` a run used to be held by) does not free a running
/// run: `resume` is refused while the run goes on, and no step runs twice.
#[test]
fn a_running_run_stays_held_whatever_happens_to_its_lock_files() {
    let test = Test::new().file("p.plan", WAITING);
    let mut child = spawn(&test, &["run", "p.plan"]);
    wait_for(|| test.path().join("waiting").exists());
    let id = only_run(&test);
    assert_eq!(leases(&test), [(id.clone(), i64::from(child.id()))]);
    let locks = test.path().join(".cairn/locks");
    for break_it in ["delete", "replace"] {
        if locks.exists() {
            std::fs::remove_dir_all(&locks).expect("remove locks/");
        }
        if break_it == "replace" {
            std::fs::create_dir(&locks).expect("a new locks/");
            std::fs::write(locks.join(format!("{id}.lock")), "").expect("a new lock file");
        }
        let Some(refused) = run_for_a_while(&test, &["resume", &id]) else {
            std::fs::write(test.path().join("go"), "").expect("go");
            let _ = child.kill();
            panic!("{break_it}: resume ran the running run");
        };
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{break_it}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "run {id} is being run by another process; wait for it to stop"
            )),
            "{break_it}: {stderr}"
        );
    }
    std::fs::write(test.path().join("go"), "").expect("go");
    let out = child.wait_with_output().expect("exits");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let done = std::fs::read_to_string(test.path().join("done.txt")).expect("read");
    assert_eq!(done, "first\nwait\n");
    let succeeded = settles(&test, "step_succeeded");
    assert_eq!((succeeded["first"], succeeded["wait"]), (1, 1));
    assert!(leases(&test).is_empty(), "the lease outlived the run");
    let verify = cairn(&test, &["audit", "verify"]);
    assert_eq!(verify.status, 0, "{}", verify.stdout);
}

/// `kill -9` leaves the run's lease behind, naming a process that is gone:
/// `resume` takes it over.
#[test]
fn a_dead_holders_lease_is_taken_over_by_resume() {
    let test = Test::new().file("p.plan", WAITING);
    let mut child = spawn(&test, &["run", "p.plan"]);
    wait_for(|| test.path().join("waiting").exists());
    let pid = i64::from(child.id());
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let id = only_run(&test);
    assert_eq!(leases(&test), [(id.clone(), pid)]);
    std::fs::write(test.path().join("go"), "").expect("go");
    let resumed = cairn(&test, &["resume", &id]);
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    // `first` had completed: it did not run again (`wait` was running, and
    // its killed run's shell may finish too, now that `go` exists).
    let done = std::fs::read_to_string(test.path().join("done.txt")).expect("read");
    assert_eq!(done.matches("first").count(), 1, "{done}");
    let succeeded = settles(&test, "step_succeeded");
    assert_eq!((succeeded["first"], succeeded["wait"]), (1, 1));
    assert!(leases(&test).is_empty(), "the lease outlived the run");
}

/// A lease names its holder by pid and start time: a live process with
/// that pid and start time holds the run, one with the pid and another
/// start time (the pid reused after the holder died) does not.
#[test]
fn a_lease_with_a_live_pid_but_another_start_time_is_stale() {
    let test = Test::new().file("p.plan", GATED);
    let paused = cairn(&test, &["run", "p.plan"]);
    assert_eq!(paused.status, 3, "{}", paused.stdout);
    let id = run_id(&paused);
    assert!(leases(&test).is_empty());
    let mut holder = Command::new("sleep").arg("60").spawn().expect("sleep");
    let start = start_time(holder.id());
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    let pid_ns = std::fs::read_link("/proc/self/ns/pid").expect("pid namespace");
    db(&test)
        .execute(
            "INSERT INTO leases (run_id, pid, start_time, boot_id, pid_ns, token, taken_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 1, 0)",
            rusqlite::params![
                id,
                holder.id(),
                start,
                boot.trim(),
                pid_ns.display().to_string()
            ],
        )
        .expect("a lease");
    let refused = cairn(&test, &["resume", "--approve", "ship"]);
    assert_eq!(refused.status, 1, "{}", refused.stdout);
    assert!(
        refused
            .stderr
            .contains(&format!("run {id} is being run by another process")),
        "{}",
        refused.stderr
    );
    db(&test)
        .execute("UPDATE leases SET start_time = start_time - 1", [])
        .expect("another start time");
    let resumed = cairn(&test, &["resume", "--approve", "ship"]);
    holder.kill().expect("kill");
    holder.wait().expect("reaped");
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert!(leases(&test).is_empty(), "the lease outlived the run");
}

/// Values nested too deep to read back are refused where they leave the
/// step, with the depth in the error; a value far deeper than a thread's
/// default stack allows (cloned, compared, printed and dropped inside the
/// script) neither aborts the run nor a resume of it.
#[test]
fn deep_values_fail_their_step_and_never_abort() {
    for (depth, what) in [(127, "the output"), (1001, "the output")] {
        let plan = format!(
            "plan p \"P\"\n\ntask deep \"Deep\"\n  run: let a = []; for i in 1..{depth} {{ a = [take(a)]; }} a\n"
        );
        let test = Test::new().file("p.plan", plan);
        let run = cairn(&test, &["run", "p.plan"]);
        assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
        let error = format!(
            "{what} is nested {depth} levels deep; values leaving a step may nest at most 64 levels"
        );
        assert!(run.stdout.contains(&error), "{}", run.stdout);
        assert_eq!(status_step(&test, "deep")["status"], "failed");
        assert!(cairn(&test, &["runs"]).status == 0);
    }
    let plan = "plan p \"P\"\n  allow: fs.write\n\ntask deep \"Deep\" using:fs.write\n  run: let a = []; for i in 0..30000 { a = [take(a)]; } let b = a; let same = a == b; log(b); artifact(\"d\", a)\n";
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "artifact(\"d\"): the value is nested 30001 levels deep; values leaving a step may nest at most 64 levels"
        ),
        "{}",
        run.stdout
    );
}
