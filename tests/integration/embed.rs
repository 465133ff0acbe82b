//! The embedding API: host capabilities are checked, gated and callable.

use cairn_engine::run::Options;
use cairn_engine::Engine;

fn engine() -> Engine {
    let mut engine = Engine::new();
    engine.register_capability("tickets", &["ticket_open"], |rhai| {
        rhai.register_fn("ticket_open", |title: &str| format!("TICKET: {title}"));
    });
    engine
}

#[test]
fn a_host_capability_runs_for_tasks_that_declare_it() {
    let plan = engine()
        .load_str("p.plan", "plan p \"P\"\n  allow: tickets\n\ntask t \"T\" using:tickets\n  run: ticket_open(\"x\")\n")
        .expect("checks");
    let mut seen = Vec::new();
    let report = engine()
        .run_blocking(plan, Options::default(), |e| seen.push(format!("{e:?}")))
        .expect("runs");
    assert_eq!(report.steps[0].output, Some(serde_json::json!("TICKET: x")));
    assert!(seen.iter().any(|e| e.starts_with("RunFinished")));
}

#[test]
fn an_undeclared_host_capability_is_a_check_error() {
    let err = engine()
        .load_str(
            "p.plan",
            "plan p \"P\"\n  allow: tickets\n\ntask t \"T\"\n  run: ticket_open(\"x\")\n",
        )
        .expect_err("does not check");
    let cairn_engine::Error::Check(diagnostics) = err else {
        panic!("{err}")
    };
    assert_eq!(
        diagnostics[0].code,
        cairn_lang::diagnostic::Code::UndeclaredCapability
    );
    assert_eq!(
        diagnostics[0].message,
        "`ticket_open` needs the `tickets` capability, which task `t` does not declare"
    );
}

#[test]
fn an_unknown_capability_name_is_a_check_error_without_registration() {
    let err = Engine::new()
        .load_str("p.plan", "plan p \"P\"\n  allow: tickets\n")
        .expect_err("does not check");
    assert!(
        err.to_string().contains("unknown capability `tickets`"),
        "{err}"
    );
}

/// A host capability is described like the built-in ones: one that takes
/// scopes may be narrowed in `allow:`, one that does not is refused there.
#[test]
fn a_host_capability_says_whether_it_takes_scopes() {
    let mut engine = engine();
    engine.register(
        cairn_engine::script::Capability::new("queue", &["enqueue"]).scoped("<queue>"),
        |rhai| {
            rhai.register_fn("enqueue", |job: &str| format!("queued {job}"));
        },
    );
    let plan = "plan p \"P\"\n  allow: queue(builds), tickets\n\ntask t \"T\" using:queue\n  run: enqueue(\"x\")\n";
    let plan = engine.load_str("p.plan", plan).expect("queue takes scopes");
    let report = engine
        .run_blocking(plan, Options::default(), |_| {})
        .expect("runs");
    assert_eq!(report.steps[0].output, Some(serde_json::json!("queued x")));
    let err = engine
        .load_str("p.plan", "plan p \"P\"\n  allow: tickets(a)\n")
        .expect_err("tickets takes no scopes");
    let cairn_engine::Error::Check(diagnostics) = err else {
        panic!("{err}")
    };
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert_eq!(diagnostics[0].message, "`tickets` cannot be narrowed");
    assert_eq!(
        diagnostics[0].help.as_deref(),
        Some("only `fs.read(<glob>, …)`, `fs.write(<glob>, …)`, `http(host, …)` and `queue(<queue>, …)` take scopes")
    );
}

/// The built-in capabilities are registry entries like a host's: a host may
/// replace one, and its tasks then call the host's functions.
#[test]
fn a_host_may_replace_a_built_in_capability() {
    let mut engine = Engine::new();
    engine.register_capability("sh", &["sh"], |rhai| {
        rhai.register_fn("sh", |command: &str| format!("would run {command}"));
    });
    let plan = engine
        .load_str(
            "p.plan",
            "plan p \"P\"\n  allow: sh\n\ntask t \"T\" using:sh\n  run: sh(\"rm -rf /\")\n",
        )
        .expect("checks");
    let report = engine
        .run_blocking(plan, Options::default(), |_| {})
        .expect("runs");
    assert_eq!(
        report.steps[0].output,
        Some(serde_json::json!("would run rm -rf /"))
    );
}

/// A host function reached by name at run time (past the checker) from a
/// task that did not declare its capability is named as such.
#[test]
fn a_dynamic_call_to_an_undeclared_host_function_names_its_capability() {
    let plan = engine()
        .load_str(
            "p.plan",
            "plan p \"P\"\n  allow: tickets\n\ntask t \"T\"\n  run: call(Fn(\"ticket_\" + \"open\"), \"x\")\n",
        )
        .expect("checks");
    let report = engine()
        .run_blocking(plan, Options::default(), |_| {})
        .expect("runs");
    assert_eq!(
        report.steps[0].error.as_ref().map(|e| e.message.as_str()),
        Some("line 5, column 8: `ticket_open` is not available: the task does not declare `using:tickets`")
    );
}

#[test]
fn the_embed_example_runs() {
    // Integration tests live in target/<profile>/deps; examples beside them.
    let exe = std::env::current_exe().expect("test exe");
    let example = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("examples/embed");
    let output = std::process::Command::new(&example)
        .output()
        .expect("cargo test builds examples");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("file: \"TICKET-1\""), "{stdout}");
    assert!(
        stdout.contains("tickets: [(\"pool::exhaustion fails\", \"high\")]"),
        "{stdout}"
    );
}

/// A run whose future is dropped half-way (a caller's timeout) cancels its
/// steps, and a gate that becomes ready does not wait for an observer that
/// is gone: the runtime shuts down instead of hanging.
#[test]
fn a_dropped_run_cancels_its_steps_and_lets_the_runtime_stop() {
    let engine = Engine::new();
    let plan = engine
        .load_str(
            "p.plan",
            "plan p \"P\"\n\ntask slow \"Slow\"\n  run: sleep(\"3s\")\n\ngate ship \"Ship\"\n  needs: slow\n",
        )
        .expect("checks");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let started = std::time::Instant::now();
        let options = Options {
            approver: Some(std::sync::Arc::new(|_: &cairn_engine::run::GateRequest| {
                None
            })),
            ..Options::default()
        };
        let outcome = runtime.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_millis(200),
                engine.run(plan, options, |_| {}),
            )
            .await
        });
        assert!(outcome.is_err(), "the run should outlast the timeout");
        drop(runtime);
        let _ = done.send(started.elapsed());
    });
    let took = finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the runtime stopped");
    assert!(
        took < std::time::Duration::from_secs(2),
        "the step was not cancelled: {took:?}"
    );
}

/// A host tool that panics fails its step, with the panic's message; the
/// run goes on and ends instead of waiting for the step forever.
#[test]
fn a_panicking_host_tool_fails_its_step_and_the_run_ends() {
    let mut engine = Engine::new();
    engine.register_capability("flaky", &["explode"], |rhai| {
        rhai.register_fn("explode", || -> i64 { panic!("the tool broke") });
    });
    let plan = engine
        .load_str(
            "p.plan",
            "plan p \"P\"\n  allow: flaky\n  on failure: continue\n\ntask boom \"Boom\" using:flaky\n  run: explode()\n\ntask after \"After\"\n  run: 1\n",
        )
        .expect("checks");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(engine.run_blocking(plan, Options::default(), |_| {}));
    });
    let report = finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the run ended")
        .expect("runs");
    let boom = &report.steps[0];
    assert_eq!(boom.status, cairn_engine::run::StepStatus::Failed);
    assert_eq!(
        boom.error.as_ref().map(|e| e.message.as_str()),
        Some("internal error: the step panicked (the tool broke)")
    );
    assert_eq!(
        report.steps[1].status,
        cairn_engine::run::StepStatus::Succeeded
    );
}

/// An approver that answers after the gate's `timeout:` has passed is
/// overruled: the gate is rejected by timeout.
#[test]
fn a_late_approval_does_not_count() {
    let engine = Engine::new();
    let plan = engine
        .load_str(
            "p.plan",
            "plan p \"P\"\n\ngate ship \"Ship\"\n  timeout: 200ms\n",
        )
        .expect("checks");
    let options = Options {
        approver: Some(std::sync::Arc::new(|_: &cairn_engine::run::GateRequest| {
            std::thread::sleep(std::time::Duration::from_millis(400));
            Some(cairn_engine::run::Approval {
                approved: true,
                by: "slowpoke".to_owned(),
                reason: "finally".to_owned(),
                input: serde_json::Map::new(),
            })
        })),
        ..Options::default()
    };
    let report = engine.run_blocking(plan, options, |_| {}).expect("runs");
    assert_eq!(
        report.steps[0].status,
        cairn_engine::run::StepStatus::Failed
    );
    assert_eq!(
        report.steps[0].error.as_ref().map(|e| e.message.as_str()),
        Some("rejected by timeout: no answer within 200ms")
    );
}

/// A program that runs plans through the library keeps its own signals: no
/// handler of cairn's swallows Ctrl-C after (or between) runs, and a run is
/// interrupted through an `Interrupter` the program holds.
#[test]
fn a_program_running_plans_can_still_be_interrupted_normally() {
    use std::io::{BufRead, BufReader};
    let exe = std::env::current_exe().expect("test exe");
    let example = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("examples/interrupt");
    let mut child = std::process::Command::new(&example)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cargo test builds examples");
    let mut lines = Vec::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while out.read_line(&mut line).expect("reads") > 0 {
        lines.push(line.trim_end().to_owned());
        if line.trim_end() == "ready" {
            break;
        }
        line.clear();
    }
    assert_eq!(
        lines,
        [
            "quick: Succeeded",
            "quick: Succeeded",
            "slow: Interrupted: the application stopped it",
            "ready"
        ]
    );
    // SAFETY: signals the child this test started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let waited = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        if waited.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            panic!("Ctrl-C did not end the program: a handler swallowed it");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
}

/// An embedding application's approver fills a gate's input as JSON:
/// values that fit (with the defaults of the rest) reach the gate's
/// output; a value that does not fit rejects the gate, saying why.
#[test]
fn an_approvers_input_is_checked_and_reaches_the_gates_output() {
    let engine = Engine::new();
    let plan = engine
        .load_str(
            "p.plan",
            "plan p \"P\"\n\ngate ship \"Ship\"\n  input:\n    percent: int 1..100 = 10\n    note: string\n\ntask after \"After\"\n  needs: ship\n  run: outputs[\"ship\"].input\n",
        )
        .expect("checks");
    let approving = |percent: i64| Options {
        approver: Some(std::sync::Arc::new(
            move |request: &cairn_engine::run::GateRequest| {
                assert_eq!(request.input.len(), 2);
                let mut input = serde_json::Map::new();
                input.insert("percent".into(), percent.into());
                input.insert("note".into(), "ok".into());
                Some(cairn_engine::run::Approval {
                    approved: true,
                    by: "app".to_owned(),
                    reason: "checked".to_owned(),
                    input,
                })
            },
        )),
        ..Options::default()
    };
    let report = engine
        .run_blocking(plan.clone(), approving(25), |_| {})
        .expect("runs");
    assert_eq!(
        report.steps[1].output,
        Some(serde_json::json!({"percent": 25, "note": "ok"}))
    );
    let report = engine
        .run_blocking(plan, approving(500), |_| {})
        .expect("runs");
    assert_eq!(
        report.steps[0].status,
        cairn_engine::run::StepStatus::Failed
    );
    assert_eq!(
        report.steps[0].error.as_ref().map(|e| e.message.as_str()),
        Some("rejected by app: its input was refused: input `percent`: 500 is not a whole number from 1 to 100")
    );
}
