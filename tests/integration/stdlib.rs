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
    let content: String = rusqlite::Connection::open(test.path().join(".cairn/state.db"))
        .expect("open")
        .query_row(
            "SELECT CAST(content AS TEXT) FROM blobs WHERE sha256 = ?1",
            [artifact["sha256"].as_str().expect("hash")],
            |r| r.get(0),
        )
        .expect("postmortem stored");
    for section in [
        "## Symptom",
        "## Evidence per hypothesis",
        "## Root cause",
        "## Follow-ups",
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
        git(test.path(), &["init", "-q"]);
        git(test.path(), &["add", "."]);
        git(
            test.path(),
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
        "\"sent to #ops (confirmed) / sent to #general\""
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
        "{\"best\":\"disk\",\"disk\":0.75,\"net\":0.3333333333333333}"
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
