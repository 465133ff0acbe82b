//! `plan:`: a task that runs another plan as a child run, recorded and
//! linked to its parent, with its own steps, gates and resume.

use crate::durable::{spawn, wait_for};
use crate::{assert_replays_identically, cairn, status_json, step_output as output, Test};

const ROUND: &str = r#"plan round "One draft–critique round"
  param topic = "cairns"
  param previous = ()
  output: #{ text: outputs["revise"], score: outputs["critique"] }

task draft "Draft"
  run: if params.previous == () { `notes on ${params.topic}` } else { params.previous.text + "+" }

task critique "Critique"
  needs: draft
  run: outputs["draft"].len()

task revise "Revise"
  needs: critique
  run: outputs["draft"]
"#;

const ESSAY: &str = r#"plan essay "Essay"
  param topic = "cairns"

task round "One round"
  plan: "round.plan" with topic = params.topic, previous = iteration.previous
  repeat: max 6 until result.score >= 19

task publish "Publish"
  needs: round
  run: outputs["round"].text
"#;

/// Each iteration runs the round as a child run with its params; the
/// step's output is the child's `output:`; `status` shows each child's
/// steps under its step, and `status <child>` shows the child alone.
#[test]
fn a_sub_plan_runs_as_a_child_run_with_its_output() {
    let test = Test::new()
        .file("round.plan", ROUND)
        .file("essay.plan", ESSAY);
    let run = cairn(&test, &["run", "essay.plan", "--events", "-"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    // "notes on cairns" is 15 long; each round adds one: 15, 16, … 19.
    assert_eq!(
        output(&test, "round"),
        serde_json::json!({ "text": "notes on cairns++++", "score": 19 })
    );
    assert_eq!(
        output(&test, "publish"),
        serde_json::json!("notes on cairns++++")
    );
    let started: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "sub_plan_started")
        .collect();
    assert_eq!(started.len(), 5);
    assert_eq!(started[1]["step"], "round#2");
    assert_eq!(started[1]["plan"], "round.plan");
    let child = started[1]["run"].as_str().expect("a child run id");
    let status = cairn(&test, &["status"]);
    assert!(
        status.stdout.contains("round#2.critique"),
        "{}",
        status.stdout
    );
    let json = status_json(&test);
    let round2 = json["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == "round#2")
        .expect("round#2");
    assert_eq!(round2["child"]["run"], child);
    assert_eq!(round2["child"]["steps"][1]["output"], 16);
    // The child on its own: its steps, and whose it is.
    let alone = cairn(&test, &["status", child]);
    assert_eq!(alone.status, 0, "{}", alone.stderr);
    assert!(
        alone.stdout.contains(&format!(
            "run {child} of `round` (round.plan, a sub-plan of run "
        )),
        "{}",
        alone.stdout
    );
    // Child runs are listed under their parents, not among the runs.
    let runs = cairn(&test, &["runs"]);
    assert_eq!(runs.stdout.lines().count(), 2, "{}", runs.stdout);
    // A child goes on only with its parent.
    let resume = cairn(&test, &["resume", child]);
    assert_eq!(resume.status, 2, "{}", resume.stderr);
    assert!(
        resume.stderr.contains("it goes on with its parent"),
        "{}",
        resume.stderr
    );
    assert_replays_identically(&test);
}

/// Without `output:` the step's output is the map of the child's outputs.
#[test]
fn without_output_a_sub_plan_gives_every_steps_output() {
    let child = "plan c \"C\"\n  param n = 1\n\ntask a \"A\"\n  run: params.n * 2\n\ntask b \"B\"\n  needs: a\n  run: outputs[\"a\"] + 1\n";
    let parent = "plan p \"P\"\n\ntask call \"Call\"\n  plan: \"c.plan\" with n = 20\n";
    let test = Test::new().file("c.plan", child).file("p.plan", parent);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        output(&test, "call"),
        serde_json::json!({ "a": 40, "b": 41 })
    );
}

/// A failing child fails the step with the child's reason and run id, and
/// the step's `on failure ->` routes it like any failure.
#[test]
fn a_failing_sub_plan_fails_its_step() {
    let child = "plan c \"C\"\n\ntask a \"A\"\n  run: fail(\"no luck\")\n";
    let parent = "plan p \"P\"\n\ntask call \"Call\"\n  plan: \"c.plan\"\n  on failure -> rescue\n\ntask rescue \"Rescue\"\n  run: failure.error\n";
    let test = Test::new().file("c.plan", child).file("p.plan", parent);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let error = output(&test, "rescue");
    let error = error.as_str().expect("the error");
    assert!(
        error.starts_with("sub-plan `c.plan` (run ")
            && error.ends_with("failed: `a` failed: no luck"),
        "{error}"
    );
}

/// A plan may run itself under `when:`; past 64 levels the step fails with
/// the chain of plans, said once.
#[test]
fn recursion_is_bounded_at_64_levels() {
    let plan = r#"plan countdown "Count down"
  param n = 3
  output: if outputs["deeper"] == () { 0 } else { outputs["deeper"] + 1 }

task deeper "Go one deeper"
  when: params.n > 0
  plan: "countdown.plan" with n = params.n - 1
"#;
    let test = Test::new().file("countdown.plan", plan);
    let run = cairn(&test, &["run", "countdown.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(output(&test, "deeper"), serde_json::json!(2));
    let status = cairn(&test, &["status"]);
    assert!(
        status
            .stdout
            .contains("deeper.deeper.deeper.deeper  skipped"),
        "{}",
        status.stdout
    );
    let deep = cairn(&test, &["run", "countdown.plan", "--set", "n=100"]);
    assert_eq!(deep.status, 1, "{}{}", deep.stdout, deep.stderr);
    assert!(
        deep.stdout.contains(
            "run failed: `deeper` failed: sub-plans nest deeper than 64 levels: `countdown` (×65); a plan that runs itself needs a `when:` that ends the recursion\n"
        ),
        "{}",
        deep.stdout
    );
}

const SHIP: &str = r#"plan ship "Ship"
  param name = "a"
  output: outputs["build"]

task build "Build"
  run: `built ${params.name}`

gate ok "Ship it?"
  needs: build
"#;

/// A gate inside a child pauses the whole run; `approve` names it under
/// the step (`one.ok`), and a resume goes on with the child, whose
/// finished steps do not run again. `--approve one.ok` answers it up front.
#[test]
fn a_gate_in_a_child_pauses_the_parent_and_is_approved_under_the_step() {
    let parent = r#"plan p "P"

task one "One"
  plan: "ship.plan" with name = "one"

task after "After"
  needs: one
  run: outputs["one"] + "!"
"#;
    let test = Test::new().file("ship.plan", SHIP).file("p.plan", parent);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 3, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("gate `one.ok` waits: cairn approve "),
        "{}",
        run.stdout
    );
    let status = cairn(&test, &["status"]);
    assert!(
        status.stdout.contains("waiting for approval: one.ok\n"),
        "{}",
        status.stdout
    );
    let wrong = cairn(&test, &["approve", "ok", "--reason", "r"]);
    assert_eq!(wrong.status, 2, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("(waiting: `one.ok`)"),
        "{}",
        wrong.stderr
    );
    let approved = cairn(&test, &["approve", "one.ok", "--reason", "looks right"]);
    assert_eq!(approved.status, 0, "{}", approved.stderr);
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 0, "{}{}", resumed.stdout, resumed.stderr);
    assert_eq!(output(&test, "after"), serde_json::json!("built one!"));
    // The child's build ran once: the resume kept it.
    let json = status_json(&test);
    let child = &json["steps"][0]["child"];
    assert_eq!(child["steps"][0]["step"], "build");
    assert_eq!(child["steps"][0]["attempts"], 1);
    assert_eq!(child["steps"][1]["status"], "succeeded");
    let up_front = Test::new().file("ship.plan", SHIP).file("p.plan", parent);
    let run = cairn(&up_front, &["run", "p.plan", "--approve", "one.ok"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
}

/// A sub-plan can do no more than the task that runs it: its steps'
/// capabilities must be in the task's `using:`, and at run time its file
/// access stays within the grants of every plan above it too.
#[test]
fn a_child_reaches_no_further_than_its_caller() {
    let writer = r#"plan writer "Writer"
  allow: fs.write

task put "Put" using:fs.write
  run: write_file("elsewhere/x.txt", "hi")
"#;
    let ungranted = "plan p \"P\"\n\ntask call \"Call\"\n  plan: \"writer.plan\"\n";
    let test = Test::new()
        .file("writer.plan", writer)
        .file("p.plan", ungranted);
    let check = cairn(&test, &["check", "p.plan"]);
    assert_eq!(check.status, 2, "{}", check.stderr);
    assert!(
        check.stderr.contains("cairn::call_not_granted")
            && check.stderr.contains(
                "`writer.plan` has steps that use `fs.write`, which task `call` does not grant"
            ),
        "{}",
        check.stderr
    );
    // Granted, but the caller's plan scopes `fs.write` to `out/`: the child
    // (which allows anywhere in the directory) cannot write elsewhere.
    let scoped = r#"plan p "P"
  allow: fs.write(out/**)

task call "Call" using:fs.write
  plan: "writer.plan"
"#;
    let test = Test::new()
        .file("writer.plan", writer)
        .file("p.plan", scoped);
    std::fs::create_dir_all(test.path().join("elsewhere")).expect("dir");
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("`elsewhere/x.txt` is not in the plan's `allow: fs.write(out/**)`"),
        "{}",
        run.stdout
    );
    assert!(!test.path().join("elsewhere/x.txt").exists());
}

/// Killed while a loop of sub-plans runs, a resumed run keeps every
/// finished round and every finished step of the round that was running:
/// nothing that finished runs twice.
#[test]
fn a_killed_loop_of_sub_plans_resumes_without_running_anything_twice() {
    let round = r#"plan round "Round"
  allow: sh
  param n = 0

task first "First" using:sh
  run: sh(`echo ${params.n}a >> ran.txt`).code

task second "Second" using:sh
  needs: first
  run: |
    sh(`if [ ${params.n} -ge 2 ] && [ -e slow ]; then sleep 30; fi; echo ${params.n}b >> ran.txt`);
    params.n
"#;
    let parent = r#"plan p "P"
  allow: sh

task rounds "Rounds" using:sh
  plan: "round.plan" with n = iteration.index
  repeat: max 3
"#;
    let test = Test::new()
        .file("round.plan", round)
        .file("p.plan", parent)
        .file("slow", "");
    let read = || {
        std::fs::read_to_string(test.path().join("ran.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut child = spawn(&test, &["run", "p.plan"]);
    wait_for(|| read().len() == 3);
    // Let the second round's `second` step start its sleep.
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert_eq!(read(), ["1a", "1b", "2a"]);
    std::fs::remove_file(test.path().join("slow")).expect("quick now");
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 0, "{}{}", resumed.stdout, resumed.stderr);
    assert_eq!(read(), ["1a", "1b", "2a", "2b", "3a", "3b"]);
    assert_eq!(
        output(&test, "rounds"),
        serde_json::json!({ "first": 0, "second": 3 })
    );
}

/// `cairn replay` answers a child's calls from the child's own recording,
/// and an edited child plan diverges there, reported by the parent's replay.
#[test]
fn replay_answers_a_childs_calls_from_its_recording() {
    let child = "plan echo \"Echo\"\n  allow: sh\n\ntask say \"Say\" using:sh\n  run: sh(\"echo hi\").stdout\n";
    let parent =
        "plan p \"P\"\n  allow: sh\n\ntask call \"Call\" using:sh\n  plan: \"echo.plan\"\n";
    let test = Test::new().file("echo.plan", child).file("p.plan", parent);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(output(&test, "call"), serde_json::json!({ "say": "hi\n" }));
    assert_replays_identically(&test);
    std::fs::write(
        test.path().join("echo.plan"),
        child.replace("echo hi", "echo ho"),
    )
    .expect("edit");
    let replay = cairn(&test, &["replay"]);
    assert_eq!(replay.status, 1, "{}{}", replay.stdout, replay.stderr);
    assert!(
        replay
            .stdout
            .contains(r#"recorded sh("echo hi"), asked sh("echo ho")"#),
        "{}{}",
        replay.stdout,
        replay.stderr
    );
}

/// A child plan edited while its run waits is a change of the parent's plan:
/// `resume` refuses, naming the file, and `--allow-changed` runs again only
/// the child's steps the edit invalidates.
#[test]
fn an_edited_child_plan_is_a_change_that_resume_names() {
    let child = "plan one \"One\"\n\ntask build \"Build\"\n  run: \"v1\"\n\ntask count \"Count\"\n  run: 7\n\ngate ok \"OK?\"\n  needs: build, count\n\ntask ship \"Ship\"\n  needs: ok\n  run: outputs[\"build\"]\n";
    let parent = "plan p \"P\"\n\ntask one \"One\"\n  plan: \"one.plan\"\n";
    let test = Test::new().file("one.plan", child).file("p.plan", parent);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 3, "{}{}", run.stdout, run.stderr);
    std::fs::write(
        test.path().join("one.plan"),
        child.replace("\"v1\"", "\"v2\""),
    )
    .expect("edit");
    let refused = cairn(&test, &["resume"]);
    assert_eq!(refused.status, 2, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stderr
            .contains("`one.plan`, run by `p.plan`, changed since run"),
        "{}",
        refused.stderr
    );
    // The gate waits afresh: it was upstream of nothing the edit left alone.
    let resumed = cairn(&test, &["resume", "--allow-changed", "--events", "-"]);
    assert_eq!(resumed.status, 3, "{}{}", resumed.stdout, resumed.stderr);
    let child = status_json(&test)["steps"][0]["child"]["steps"].clone();
    let build = child
        .as_array()
        .expect("child steps")
        .iter()
        .find(|s| s["step"] == "build")
        .expect("build");
    assert_eq!(build["output"], "v2", "{child}");
    let count = child
        .as_array()
        .expect("child steps")
        .iter()
        .find(|s| s["step"] == "count")
        .expect("count");
    assert_eq!(count["attempts"], 1, "kept, not run again: {child}");
    let approve = cairn(
        &test,
        &["approve", "one.ok", "--reason", "fine", "--by", "tester"],
    );
    assert_eq!(approve.status, 0, "{}", approve.stderr);
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 0, "{}{}", resumed.stdout, resumed.stderr);
    assert_eq!(
        output(&test, "one"),
        // (An approved gate's output is its approval.)
        serde_json::json!({ "build": "v2", "count": 7, "ship": "v2",
            "ok": { "approved": true, "by": "tester", "input": {}, "reason": "fine" } })
    );
}

/// The example pair runs as the docs say: each round a child run, the
/// graph and the dry run naming the plan the task runs.
#[test]
fn the_essay_rounds_example_runs_its_rounds_as_sub_plans() {
    let example = |name: &str| {
        std::fs::read_to_string(crate::root().join("examples").join(name)).expect("example")
    };
    let test = Test::new()
        .file("critique-round.plan", example("critique-round.plan"))
        .file("essay-rounds.plan", example("essay-rounds.plan"));
    let graph = cairn(&test, &["graph", "essay-rounds.plan"]);
    assert!(
        graph.stdout.contains("runs plan critique-round.plan"),
        "{}",
        graph.stdout
    );
    let dry = cairn(&test, &["run", "--dry-run", "essay-rounds.plan"]);
    assert!(
        dry.stdout
            .contains("runs `critique-round.plan` (3 steps) as a child run"),
        "{}",
        dry.stdout
    );
    let run = cairn(&test, &["run", "essay-rounds.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        output(&test, "publish"),
        serde_json::json!(
            "published with score 8: An essay on durable workflows. For example, a resumed run. In short: nothing runs twice. In short: nothing runs twice."
        )
    );
    let status = cairn(&test, &["status"]);
    assert!(
        status.stdout.contains("round#3.critique"),
        "{}",
        status.stdout
    );
}

/// A plan that fans out into itself cannot start threads until the system
/// has none: the child runs of one run share 1,024 threads, and a child
/// that would need more fails its attempt with the reason.
#[test]
fn sub_plans_that_fan_out_into_themselves_share_a_bounded_set_of_threads() {
    let bomb = r#"plan bomb "Fans out into itself"
  param depth = 0
  max_parallel: 16

task spread "Spread"
  when: params.depth < 5
  each: range(0, 16)
  plan: "bomb.plan" with depth = params.depth + 1
"#;
    let test = Test::new().file("bomb.plan", bomb);
    let run = cairn(&test, &["run", "bomb.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "sub-plans running at once would need more than 1024 threads; `bomb.plan` cannot start"
        ),
        "{}",
        run.stdout
    );
}

/// A child's code outside its steps (param defaults, `output:`) has no
/// capability, whatever the calling task has: a child that allows nothing
/// cannot reach `sh` through the task that runs it.
#[test]
fn a_childs_params_and_output_reach_nothing_outside() {
    for header in [
        "  param who = call(Fn(\"s\" + \"h\"), \"touch pwned\").code\n",
        "  output: call(Fn(\"s\" + \"h\"), \"touch pwned\").code\n",
    ] {
        let child = format!("plan c \"Allows nothing\"\n{header}\ntask t \"T\"\n  run: 1\n");
        let parent = "plan p \"P\"\n  allow: sh\n\ntask s \"S\" using:sh\n  plan: \"c.plan\"\n";
        let test = Test::new().file("c.plan", child).file("p.plan", parent);
        let run = cairn(&test, &["run", "p.plan"]);
        assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("`sh`"), "{}", run.stdout);
        assert!(!test.path().join("pwned").exists(), "{header}");
    }
}

/// A child goes on with the params it began with: a resumed parent does
/// not evaluate `with` again (its calls ran once), and replays identically.
#[test]
fn a_resumed_child_keeps_the_params_it_began_with() {
    let child = "plan c \"C\"\n  param x = \"\"\n  output: [outputs[\"a\"], outputs[\"b\"]]\n\ntask a \"A\"\n  run: params.x\n\ngate ship \"Ship?\"\n  needs: a\n\ntask b \"B\"\n  needs: ship\n  run: params.x\n";
    let parent = "plan p \"P\"\n  allow: sh\n\ntask s \"S\" using:sh\n  plan: \"c.plan\" with x = sh(\"echo ran >> ran.log; date +%N\").stdout\n";
    let test = Test::new().file("c.plan", child).file("p.plan", parent);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 3, "{}{}", run.stdout, run.stderr);
    let approve = cairn(&test, &["approve", "s.ship", "--reason", "ok"]);
    assert_eq!(approve.status, 0, "{}", approve.stderr);
    let resume = cairn(&test, &["resume"]);
    assert_eq!(resume.status, 0, "{}{}", resume.stdout, resume.stderr);
    let ran = std::fs::read_to_string(test.path().join("ran.log")).expect("ran");
    assert_eq!(ran, "ran\n");
    let both = output(&test, "s");
    assert_eq!(both[0], both[1], "{both}");
    assert_replays_identically(&test);
}

/// `timeout:` on a `plan:` task bounds the whole child run: past it the
/// child is stopped (its commands killed) and the attempt fails, saying so.
#[test]
fn a_timeout_stops_the_whole_child_run() {
    let child = "plan c \"C\"\n  allow: sh\n\ntask wait \"Wait\" using:sh\n  run: sh(\"sleep 5 && touch late\").code\n";
    let parent =
        "plan p \"P\"\n  allow: sh\n\ntask s \"S\" using:sh\n  plan: \"c.plan\"\n  timeout: 1s\n";
    let test = Test::new().file("c.plan", child).file("p.plan", parent);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("timed out after 1s: sub-plan `c.plan` (run "),
        "{}",
        run.stdout
    );
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert!(!test.path().join("late").exists());
}

/// An attempt that timed out abandons its child run (marked cancelled), so
/// a parent killed during its next attempt goes on with that attempt's
/// child, never with the abandoned one.
#[test]
fn a_killed_parent_goes_on_with_the_child_of_its_last_attempt() {
    let child = "plan c \"C\"\n  allow: sh\n\ntask t \"T\" using:sh\n  run: sh(\"echo run >> ran.log; n=$(wc -l < ran.log); if [ $n -le 2 ]; then sleep 30; fi; echo end-$n >> ran.log\").code\n";
    let parent = "plan p \"P\"\n  allow: sh\n\ntask s \"S\" using:sh\n  plan: \"c.plan\"\n  timeout: 1s\n  retry: 3 backoff 10ms\n";
    let test = Test::new().file("c.plan", child).file("p.plan", parent);
    let mut running = spawn(&test, &["run", "p.plan", "--events", "-"]);
    let log = test.path().join("ran.log");
    // The second attempt's child has started its command.
    wait_for(|| std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() == 2));
    running.kill().expect("kill -9");
    let stopped = running.wait_with_output().expect("reaped");
    let first = crate::first_child_run(&String::from_utf8_lossy(&stopped.stdout));
    let resume = cairn(&test, &["resume"]);
    assert_eq!(resume.status, 0, "{}{}", resume.stdout, resume.stderr);
    assert!(
        resume.stdout.contains("the attempt that ran it timed out"),
        "{}",
        resume.stdout
    );
    let log = std::fs::read_to_string(&log).expect("log");
    assert_eq!(log, "run\nrun\nrun\nend-3\n");
    let abandoned = cairn(&test, &["status", &first, "--json"]);
    let abandoned: serde_json::Value = serde_json::from_str(&abandoned.stdout).expect("json");
    assert_eq!(abandoned["run"]["status"], "cancelled", "{abandoned}");
    assert_eq!(status_json(&test)["steps"][0]["attempts"], 2);
}

/// Instances of a fan-out whose child runs wait at gates leave their task
/// waiting (in the summary and in `status`), each gate named under its
/// instance, and answered there.
#[test]
fn a_fan_out_of_sub_plans_waits_at_each_childs_gate() {
    let review = "plan review \"Review one file\"\n  param file = \"a.txt\"\n  output: params.file.len()\n\ngate ship \"Ship it?\"\n";
    let all = "plan all \"All\"\n\ntask each-file \"Review each\"\n  each: [\"a.txt\", \"bb.txt\"]\n  plan: \"review.plan\" with file = item\n\ntask sum \"Sum\"\n  needs: each-file\n  run: outputs[\"each-file\"]\n";
    let test = Test::new()
        .file("review.plan", review)
        .file("all.plan", all);
    let run = cairn(&test, &["run", "all.plan"]);
    assert_eq!(run.status, 3, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("waiting for approval of `each-file[0].ship`, `each-file[1].ship`"),
        "{}",
        run.stdout
    );
    let waiting_task = |text: &str| {
        text.lines()
            .any(|l| l.starts_with("each-file ") && l.contains(" waiting "))
    };
    assert!(waiting_task(&run.stdout), "{}", run.stdout);
    let status = cairn(&test, &["status"]);
    assert!(waiting_task(&status.stdout), "{}", status.stdout);
    for gate in ["each-file[0].ship", "each-file[1].ship"] {
        let approve = cairn(&test, &["approve", gate, "--reason", "ok"]);
        assert_eq!(approve.status, 0, "{}", approve.stderr);
    }
    let resume = cairn(&test, &["resume"]);
    assert_eq!(resume.status, 0, "{}{}", resume.stdout, resume.stderr);
    assert_eq!(output(&test, "sum"), serde_json::json!([5, 6]));
}
