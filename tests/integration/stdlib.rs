//! The stdlib: templates that check and run out of the box, `templates` /
//! `new`, composition with `use`, and hypotheses with evidence.

use crate::{cairn, status_json, status_step, Test};

const TEMPLATES: &[&str] = &[
    "debug-500",
    "research-then-build",
    "feature-with-approval",
    "refactor-with-tests",
    "staged-rollout",
];

#[test]
fn every_template_checks_clean_by_name() {
    let test = Test::new();
    for name in TEMPLATES {
        let run = cairn(&test, &["check", name]);
        assert_eq!(run.status, 0, "{name}:\n{}", run.stderr);
        assert_eq!(run.stderr, "", "{name} has warnings");
        assert!(
            run.stdout
                .starts_with(&format!("{name}: ok: plan `{name}`")),
            "{}",
            run.stdout
        );
    }
}

/// A name that is neither a file nor a template, but close to one, is
/// answered with the template's name.
#[test]
fn a_misspelt_template_name_suggests_the_template() {
    let test = Test::new();
    for command in ["run", "check", "graph"] {
        let run = cairn(&test, &[command, "debug-50"]);
        assert_eq!(run.status, 2, "{command}");
        assert!(
            run.stderr
                .contains("no plan file or stdlib template `debug-50`; did you mean the template `debug-500`?"),
            "{command}: {}",
            run.stderr
        );
    }
}

/// `cairn templates` fits an 80-column terminal, and names every template
/// and param.
#[test]
fn the_template_listing_fits_80_columns() {
    let run = cairn(&Test::new(), &["templates"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    for line in run.stdout.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} columns: {line}",
            line.chars().count()
        );
    }
    for name in TEMPLATES {
        assert!(
            run.stdout.lines().any(|l| l == *name),
            "{name} is not listed"
        );
    }
    assert!(
        run.stdout.contains("\n    pool_size = 64\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn every_template_is_listed_with_its_params() {
    let run = cairn(&Test::new(), &["templates", "--json"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let listed: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let names: Vec<&str> = listed
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, TEMPLATES);
    for template in &listed {
        assert!(
            !template["purpose"].as_str().expect("purpose").is_empty(),
            "{template}"
        );
        let params = template["params"].as_array().expect("params");
        assert!(!params.is_empty(), "{template} has no params");
        for param in params {
            assert!(
                !param["doc"].as_str().expect("doc").is_empty(),
                "{template}: {param} has no doc"
            );
        }
    }
    assert_eq!(
        listed[0]["params"][1],
        serde_json::json!({"name": "requests", "default": "120", "doc": "Requests in each cell of the reproduction matrix."})
    );
}

#[test]
fn the_other_templates_dry_run() {
    let test = Test::new();
    for name in &TEMPLATES[1..] {
        let run = cairn(&test, &["run", name, "--dry-run"]);
        assert_eq!(run.status, 0, "{name}:\n{}{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("wave 1"), "{name}:\n{}", run.stdout);
    }
}

/// The dry run names the stdlib tools' calls from the same registry entry
/// the checker and the sandbox use, as it names `sh` or `http`.
#[test]
fn the_dry_run_names_host_capability_calls() {
    let test = Test::new();
    let run = cairn(&test, &["run", "debug-500", "--dry-run"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("would call simulated_service()  [simulate]")
            && run.stdout.contains("would call load_test(…, …)  [load]"),
        "{}",
        run.stdout
    );
}

#[test]
fn debug_500_finds_pool_exhaustion_and_writes_a_postmortem() {
    let test = Test::new();
    let run = cairn(&test, &["run", "debug-500", "--approve", "ship-fix"]);
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("chose     pick -> ship-fix (when best_hypothesis() == \"h1-pool\")"),
        "{}",
        run.stdout
    );
    let status = status_json(&test);
    let hypotheses = status["hypotheses"].as_array().expect("hypotheses");
    let h1 = hypotheses
        .iter()
        .find(|h| h["id"] == "h1-pool")
        .expect("h1");
    assert!(
        h1["supports"].as_u64() >= Some(1) && h1["refutes"] == 0,
        "{h1}"
    );
    for other in ["h2-race", "h3-upstream"] {
        let h = hypotheses
            .iter()
            .find(|h| h["id"] == other)
            .expect("hypothesis");
        assert!(h["confidence"].as_f64() < h1["confidence"].as_f64(), "{h}");
    }
    let artifact = &status["artifacts"][0];
    assert_eq!(artifact["name"], "postmortem.md");
    assert_eq!(artifact["step"], "postmortem");
    // Read back as a user would, through `cairn artifact`.
    let content = cairn(&test, &["artifact", "postmortem.md"]).stdout;
    // Markdown with real line breaks: a heading, a blank line, its text.
    assert!(
        content.starts_with("# Postmortem: intermittent HTTP 500s\n\n## Symptom\n\n"),
        "{content}"
    );
    assert!(!content.contains("\\n"), "a literal \\n in: {content}");
    for section in [
        "\n## Evidence per hypothesis\n\n- H1 connection-pool exhaustion: confidence ",
        "\n## Root cause\n\nBursts wider than the connection pool",
        "\n## Follow-ups\n\n- Alert on pool wait time",
    ] {
        assert!(content.contains(section), "{content}");
    }
    assert!(content.contains("pool"), "{content}");
    let replay = cairn(&test, &["replay"]);
    assert_eq!(replay.status, 0, "{}", replay.stdout);
}

#[test]
fn new_writes_an_editable_copy_once() {
    let test = Test::new();
    let first = cairn(&test, &["new", "staged-rollout"]);
    assert_eq!(first.status, 0, "{}", first.stderr);
    let text = std::fs::read_to_string(test.path().join("staged-rollout.plan")).expect("written");
    assert!(text.contains("plan staged-rollout "));
    let again = cairn(&test, &["new", "staged-rollout"]);
    assert_eq!(again.status, 2);
    assert!(
        again.stderr.contains("cannot create `staged-rollout.plan`"),
        "{}",
        again.stderr
    );
    let unknown = cairn(&test, &["new", "debug-404"]);
    assert_eq!(unknown.status, 2);
    assert!(
        unknown
            .stderr
            .contains("no template `debug-404`; the stdlib has `debug-500`"),
        "{}",
        unknown.stderr
    );
    // A file of that name wins over the template.
    let local = Test::new().file(
        "debug-500",
        "plan mine \"Mine\"\n\ntask a \"A\"\n  run: 1\n",
    );
    let run = cairn(&local, &["check", "debug-500"]);
    assert!(run.stdout.contains("plan `mine`"), "{}", run.stdout);
}

/// A repository of everything in `dir`, committed.
fn commit_all(dir: &std::path::Path) {
    git(dir, &["init", "-q"]);
    git(dir, &["add", "."]);
    git(
        dir,
        &[
            "-c",
            "user.email=t@e",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            "base",
        ],
    );
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn refactor_with_tests_edits_and_restores_on_failing_tests() {
    let repo = |test_script: &str| {
        let test = Test::new()
            .file("src/lib.txt", "fn parse_cfg() {}\n")
            .file("test.sh", test_script);
        commit_all(test.path());
        test
    };
    let good = repo("grep -q 'fn parse_c' src/lib.txt\n");
    let run = cairn(&good, &["run", "refactor-with-tests"]);
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        std::fs::read_to_string(good.path().join("src/lib.txt")).expect("read"),
        "fn parse_config() {}\n"
    );
    let bad = repo("grep -q parse_cfg src/lib.txt\n");
    let run = cairn(&bad, &["run", "refactor-with-tests"]);
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("undone"), "{}", run.stdout);
    assert_eq!(
        std::fs::read_to_string(bad.path().join("src/lib.txt")).expect("read"),
        "fn parse_cfg() {}\n",
        "compensation restores the file"
    );
}

/// A script that appends its arguments to `file`, each in brackets, one call
/// a line; with `fail_when`, a shell condition on `$1`…, it then exits 1.
fn recorder(file: &str, fail_when: &str) -> String {
    format!("{{ for a in \"$@\"; do printf '[%s]' \"$a\"; done; echo; }} >> {file}\n{fail_when}\n")
}

/// A value that breaks out of hand-written single quotes (`'…'`) and, in
/// a shell, runs `touch pwned`; it also holds `;` and `$(…)`.
const HOSTILE: &str = "x'; touch pwned; '$(touch pwned)";

#[test]
fn refactor_with_tests_passes_odd_paths_to_git_as_they_are() {
    // Quoted by hand, `'src/a'$(touch pwned)'.txt'` ran `touch pwned` and
    // asked git about `src/a.txt`.
    let path = "src/a'$(touch pwned)'.txt";
    let repo = || {
        let test = Test::new()
            .file(path, "fn parse_cfg() {}\n")
            .file("test.sh", "true\n");
        commit_all(test.path());
        test
    };
    let files = format!("files={}", serde_json::json!([path]));
    let clean = repo();
    let run = cairn(&clean, &["run", "refactor-with-tests", "--set", &files]);
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        std::fs::read_to_string(clean.path().join(path)).expect("read"),
        "fn parse_config() {}\n"
    );
    let report = status_step(&clean, "report")["output"].clone();
    let diffstat = report["diffstat"].as_str().expect("diffstat");
    assert!(
        diffstat.contains(path) && diffstat.contains("1 file changed"),
        "{report}"
    );
    assert!(!clean.path().join("pwned").exists(), "a path ran a command");
    // git status sees the file itself, so its uncommitted change stops the run.
    let dirty = repo();
    std::fs::write(dirty.path().join(path), "fn parse_cfg() {}\n// wip\n").expect("write");
    let run = cairn(&dirty, &["run", "refactor-with-tests", "--set", &files]);
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("uncommitted changes in the files to edit")
            && run.stdout.contains(path),
        "{}",
        run.stdout
    );
    assert!(!dirty.path().join("pwned").exists(), "a path ran a command");
}

#[test]
fn feature_with_approval_passes_params_as_single_arguments() {
    let test = Test::new()
        .file("src/notes.txt", "it's here\nnothing\n")
        .file("implement.sh", recorder("implement.txt", ""));
    let options =
        serde_json::json!([{ "name": HOSTILE, "effort": 1, "risk": 1, "touches": "src" }]);
    let run = cairn(
        &test,
        &[
            "run",
            "feature-with-approval",
            "--set",
            "keywords=[\"it's\", \"$(touch pwned)\"]",
            "--set",
            "paths=[\"src\"]",
            "--set",
            &format!("options={options}"),
            "--set",
            "implement_command=sh implement.sh",
            "--set",
            "checks=[\"true\"]",
            "--approve",
            "approve-design",
        ],
    );
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    // Each keyword is one grep pattern: `it's` is found, nothing runs.
    let research = status_step(&test, "research")["output"].clone();
    assert_eq!(
        research["hits"],
        serde_json::json!([{ "file": "src/notes.txt", "line": 1, "text": "it's here" }])
    );
    assert_eq!(
        std::fs::read_to_string(test.path().join("implement.txt")).expect("implement ran"),
        format!("[{HOSTILE}][design/export-reports-as-csv.md]\n")
    );
    assert!(!test.path().join("pwned").exists(), "a param ran a command");
}

/// A metrics endpoint on a loopback port: every GET gets the error rate 0.
/// A metrics endpoint that answers 0.0 to everything and keeps the
/// request lines it was sent.
fn metrics_endpoint() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            let mut first = true;
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if std::mem::take(&mut first) {
                    log.lock().expect("log").push(line.trim_end().to_owned());
                }
                line.clear();
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n0.0");
        }
    });
    (port, seen)
}

#[test]
fn staged_rollout_gives_the_deploy_command_each_param_as_one_argument() {
    // The last stage fails, so the rollback deploys `stable` too.
    let test = Test::new().file(
        "deploy.sh",
        recorder(
            "deploys.txt",
            "[ \"$2\" != stable ] && [ \"$3\" = 100 ] && exit 1; exit 0",
        ),
    );
    let version = "2.5.0 $(touch pwned)&version=stable";
    let (port, requests) = metrics_endpoint();
    let run = cairn(
        &test,
        &[
            "run",
            "staged-rollout",
            "--set",
            &format!("metrics_url=http://127.0.0.1:{port}"),
            "--set",
            &format!("service={HOSTILE}"),
            "--set",
            &format!("version={version}"),
            "--set",
            "deploy_command=sh deploy.sh",
            "--set",
            "stages=[50, 100]",
            "--set",
            "samples=1",
            "--set",
            "sample_interval=10ms",
            "--approve",
            "approve-widen",
        ],
    );
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("failed    rollback-widen: rolled back to stable: widen failed"),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_to_string(test.path().join("deploys.txt")).expect("deploys ran"),
        format!(
            "[{HOSTILE}][{version}][5]\n[{HOSTILE}][{version}][50]\n[{HOSTILE}][{version}][100]\n[{HOSTILE}][stable][100]\n"
        )
    );
    assert!(!test.path().join("pwned").exists(), "a param ran a command");
    // Each param is one query value: none adds a parameter of its own.
    let requests = requests.lock().expect("requests").clone();
    assert!(
        requests.contains(&format!(
            "GET /error-rate?service={}&version={} HTTP/1.1",
            "x%27%3B%20touch%20pwned%3B%20%27%24%28touch%20pwned%29",
            "2.5.0%20%24%28touch%20pwned%29%26version%3Dstable"
        )),
        "{requests:?}"
    );
}

const NOTIFY: &str = "plan notify \"Notify\"\n  param channel = \"#general\"\n\ntask send \"Send\"\n  run: `sent to ${params.channel}`\n\ntask confirm \"Confirm\"\n  needs: send\n  run: outputs[\"send\"] + \" (confirmed)\"\n";

#[test]
fn use_imports_steps_under_an_alias_with_params() {
    let plan = "plan incident \"Incident\"\n  param room = \"#ops\"\n  use \"lib/notify.plan\" as note with channel = params.room\n  use \"lib/notify.plan\" as quiet\n\ntask announce \"Announce\"\n  needs: note.confirm, quiet.send\n  run: `${outputs[\"note.confirm\"]} / ${outputs[\"quiet.send\"]}`\n";
    let test = Test::new()
        .file("main.plan", plan)
        .file("lib/notify.plan", NOTIFY);
    let run = cairn(&test, &["run", "main.plan"]);
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        status_step(&test, "announce")["output"],
        "sent to #ops (confirmed) / sent to #general"
    );
}

#[test]
fn a_bad_use_is_reported_where_it_is() {
    let test = Test::new()
        .file("main.plan", "plan main \"Main\"\n  use \"lib/missing.plan\" as gone\n  use \"lib/broken.plan\" as broken\n\ntask a \"A\"\n  needs: gone.x, broken.y\n")
        .file("lib/broken.plan", "plan broken \"Broken\"\n\ntask y \"Y\"\n  needs: nowhere\n");
    let run = cairn(&test, &["check", "main.plan"]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("cairn::unknown_import"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("cannot read `lib/missing.plan`"),
        "{}",
        run.stderr
    );
    // The imported file's own problem points into it, by its own name.
    assert!(
        run.stderr.contains("╭─[lib/broken.plan:4:10]"),
        "{}",
        run.stderr
    );
    // Steps naming the unimportable plans' steps are not reported again.
    assert!(
        !run.stderr.contains("`gone.x`") && !run.stderr.contains("`broken.y`"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_import_cycle_shows_the_chain() {
    let test = Test::new()
        .file(
            "a.plan",
            "plan a \"A\"\n  use \"b.plan\" as b\n\ntask x \"X\"\n  needs: b.y\n",
        )
        .file(
            "b.plan",
            "plan b \"B\"\n  use \"c.plan\" as c\n\ntask y \"Y\"\n",
        )
        .file(
            "c.plan",
            "plan c \"C\"\n  use \"a.plan\" as a\n\ntask z \"Z\"\n",
        );
    let run = cairn(&test, &["check", "a.plan"]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr
            .contains("`use` imports plans in a cycle: a.plan → b.plan → c.plan → a.plan"),
        "{}",
        run.stderr
    );
}

const TRIAGE: &str = "plan triage \"Triage\"\n  hypothesis disk \"The disk is full\"\n  hypothesis net \"The network drops packets\"\n\ntask look \"Look\"\n  run: |\n    evidence(\"disk\", \"supports\", \"df shows 100%\");\n    evidence(\"disk\", \"supports\", \"writes fail with ENOSPC\");\n    evidence(\"net\", \"refutes\", \"no retransmits\");\n    evidence(\"net\", \"neutral\", \"one timeout\");\n    #{ disk: confidence(\"disk\"), net: confidence(\"net\"), best: best_hypothesis() }\n\ndecision pick \"Pick\"\n  needs: look\n  when best_hypothesis() == \"disk\" -> clean\n  else -> investigate\n\ntask clean \"Clean the disk\"\n  run: \"cleaned\"\n\ntask investigate \"Investigate\"\n  run: \"investigated\"\n";

#[test]
fn evidence_sets_confidence_and_drives_decisions() {
    let test = Test::new().file("p.plan", TRIAGE);
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("chose     pick -> clean"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("evidence  look: supports disk (df shows 100%); confidence 0.67"),
        "{}",
        run.stdout
    );
    // The summary's hypotheses table.
    let squeezed: Vec<String> = run
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        squeezed.contains(&"disk 0.75 2 0 The disk is full".to_owned()),
        "{}",
        run.stdout
    );
    assert!(
        squeezed.contains(&"net 0.33 0 1 The network drops packets".to_owned()),
        "{}",
        run.stdout
    );
    let status = status_json(&test);
    assert_eq!(
        status["hypotheses"],
        serde_json::json!([
            {"id": "disk", "supports": 2, "refutes": 0, "neutral": 0, "confidence": 0.75},
            {"id": "net", "supports": 0, "refutes": 1, "neutral": 1, "confidence": 1.0 / 3.0}
        ])
    );
    let look = &status["steps"][0];
    assert_eq!(
        look["output"],
        serde_json::json!({ "best": "disk", "disk": 0.75, "net": 0.3333333333333333 })
    );
}

#[test]
fn evidence_for_an_undeclared_hypothesis_fails_the_step() {
    let plan = "plan p \"P\"\n  hypothesis disk \"The disk is full\"\n\ntask look \"Look\"\n  run: evidence(\"dsk\", \"supports\", \"typo\")\n";
    let run = Test::new()
        .file("p.plan", plan)
        .args(["run", "p.plan"])
        .run();
    assert_eq!(run.status, 1);
    assert!(
        run.stdout
            .contains("no hypothesis `dsk` (the plan declares `disk`)"),
        "{}",
        run.stdout
    );
}

/// A plan whose step `a` runs `code` (with `url`, the bundled simulated
/// service on a loopback port) under `allow: simulate, load<grant>`.
fn load_plan(grant: &str, timeout: &str, code: &str) -> String {
    format!(
        "plan p \"P\"\n  allow: simulate, load{grant}\n  on failure: continue\n\ntask svc \"Service\" using:simulate\n  run: simulated_service()\n\ntask a \"Load\" using:load\n  needs: svc\n  timeout: {timeout}\n  run: |\n    let url = outputs[\"svc\"].url;\n    {code}\n"
    )
}

/// Runs `plan`; step `a`'s status, error and output (parsed).
fn load_step(plan: &str) -> (String, String, serde_json::Value) {
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["run", "p.plan"]);
    assert!(
        run.status == 0 || run.status == 1,
        "{}{}",
        run.stdout,
        run.stderr
    );
    let a = status_step(&test, "a");
    let output = a["output"].clone();
    (
        a["status"].as_str().unwrap_or_default().to_owned(),
        a["error"].as_str().unwrap_or_default().to_owned(),
        output,
    )
}

#[test]
fn load_test_reaches_no_host_without_an_http_grant_naming_it() {
    for grant in ["", ", http"] {
        let plan = load_plan(grant, "10s", "load_test(url, #{ requests: 2 })");
        let (status, error, _) = load_step(&plan);
        assert_eq!(status, "failed", "allow: load{grant}");
        assert!(
            error.contains("load goes only to hosts the plan names: add `allow: http(<host>)`"),
            "allow: load{grant}: {error}"
        );
    }
    let plan = load_plan(
        ", http(127.0.0.1)",
        "10s",
        "load_test(url, #{ requests: 2 })",
    );
    let (status, error, output) = load_step(&plan);
    assert_eq!(status, "succeeded", "{error}");
    assert_eq!(output["requests"], 2);
    assert_eq!(output["complete"], true);
}

#[test]
fn load_test_reaches_only_the_hosts_http_allows() {
    // The same service by another name is another host; `example.invalid`
    // is refused before any lookup.
    for (code, host) in [
        (
            "url.replace(\"127.0.0.1\", \"localhost\"); load_test(url, #{ requests: 2 })",
            "`localhost:",
        ),
        (
            "load_test(\"http://example.invalid/\", #{ requests: 2 })",
            "`example.invalid`",
        ),
    ] {
        let plan = load_plan(", http(127.0.0.1)", "10s", code);
        let (status, error, _) = load_step(&plan);
        assert_eq!(status, "failed", "{code}");
        assert!(
            error.contains(host) && error.contains("is not in the plan's `allow: http(127.0.0.1)`"),
            "{code}: {error}"
        );
    }
}

#[test]
fn load_test_refuses_options_above_its_caps() {
    for (options, message) in [
        (
            "concurrency: 65",
            "load_test: `concurrency: 65` is above the cap of 64 requests in flight at once",
        ),
        (
            "requests: 100001",
            "load_test: `requests: 100001` is above the cap of 100000 requests a call",
        ),
        (
            "duration: \"6m\"",
            "load_test: `duration: 6m` is above the cap of 5m",
        ),
        (
            "duration: 300001",
            "load_test: `duration: 300001ms` is above the cap of 5m",
        ),
        (
            "concurrency: 0",
            "load_test: `concurrency` must be at least 1",
        ),
        (
            "concurrency: 8.5",
            "load_test: `concurrency` takes an integer, not f64",
        ),
        (
            "reqeusts: 5",
            "load_test: no option `reqeusts`; did you mean `requests`?",
        ),
    ] {
        // A short timeout: were a cap lifted, the step would fail on it, not hang.
        let code = format!("load_test(url, #{{ {options} }})");
        let (status, error, _) = load_step(&load_plan(", http(127.0.0.1)", "3s", &code));
        assert_eq!(status, "failed", "{options}");
        assert!(error.contains(message), "{options}: {error}");
    }
}

#[test]
fn load_test_stops_when_its_duration_ends() {
    let started = std::time::Instant::now();
    let code = "load_test(url, #{ concurrency: 2, requests: 100000, duration: \"300ms\" })";
    let (status, error, output) = load_step(&load_plan(", http(127.0.0.1)", "10s", code));
    assert_eq!(status, "succeeded", "{error}");
    assert_eq!(output["complete"], false, "{output}");
    let requests = output["requests"].as_u64().expect("requests");
    assert!(requests > 0 && requests < 100000, "{output}");
    assert!(output["duration_ms"].as_u64() < Some(2000), "{output}");
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
}

#[test]
fn load_test_never_runs_past_the_steps_timeout() {
    // A loopback server that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let plan = format!(
        "plan p \"P\"\n  allow: load, http(127.0.0.1)\n\ntask a \"Load\" using:load\n  timeout: 500ms\n  run: load_test(\"http://127.0.0.1:{port}/\", #{{ requests: 1 }})\n"
    );
    let test = Test::new().file("p.plan", plan);
    let started = std::time::Instant::now();
    let run = cairn(&test, &["run", "p.plan"]);
    let took = started.elapsed();
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        status_step(&test, "a")["error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out")),
        "{}",
        run.stdout
    );
    // Each request waits at most 5 s; this one is cut off at the deadline.
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
}
