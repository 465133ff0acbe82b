//! `cairn graph`: Mermaid, DOT (rendered by Graphviz when present) and JSON.

use crate::Test;

const PLAN: &str = r#"plan rollout "Roll out"
  allow: sh

task canary "Canary" kind:deploy using:sh
  run: sh("true")
  on failure -> rollback

decision judge "Healthy?"
  needs: canary
  when outputs["canary"] == () -> widen
  else -> rollback

gate approve "Approve \"wide\" rollout"
  needs: judge
  checks:
    - "dashboards green"

task widen "Widen"
  run: 1
  on success -> verify

task verify "Verify"
  run: 2

task rollback "Roll back" kind:ops
  run: 3
"#;

fn graph(format: &str) -> crate::Run {
    let run = Test::new()
        .file("p.plan", PLAN)
        .args(["graph", "p.plan", "--format", format])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    run
}

#[test]
fn mermaid() {
    insta::assert_snapshot!(graph("mermaid").stdout);
}

#[test]
fn mermaid_is_the_default() {
    let run = Test::new()
        .file("p.plan", PLAN)
        .args(["graph", "p.plan"])
        .run();
    assert_eq!(run.stdout, graph("mermaid").stdout);
}

#[test]
fn dot() {
    insta::assert_snapshot!(graph("dot").stdout);
}

#[test]
fn dot_renders_with_graphviz() {
    let test = Test::new()
        .file("p.plan", PLAN)
        .args(["graph", "p.plan", "--format", "dot"]);
    let run = test.run();
    let dot = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match dot {
        Ok(child) => child,
        // CI installs Graphviz; only a developer machine may lack it.
        Err(_) if std::env::var_os("CI").is_none() => return,
        Err(err) => panic!("Graphviz `dot` is required in CI: {err}"),
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(run.stdout.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("dot runs");
    assert!(
        out.status.success(),
        "dot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(svg.contains("<svg") && svg.contains("rollback"));
}

#[test]
fn json_is_the_checked_plan() {
    let run = graph("json");
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(plan["id"], "rollout");
    let tasks = plan["tasks"].as_array().expect("tasks");
    let ids: Vec<&str> = tasks
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        ["canary", "judge", "approve", "widen", "verify", "rollback"]
    );
    let conditional: Vec<&str> = tasks
        .iter()
        .filter(|t| t["conditional"] == true)
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    assert_eq!(conditional, ["widen", "rollback"]);
    let edges = plan["graph"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 6);
    // The JSON reads back into a plan.
    let back: cairn::plan::Plan = serde_json::from_str(&run.stdout).expect("round trip");
    assert_eq!(back.tasks.len(), 6);
}

#[test]
fn invalid_plans_print_diagnostics_and_exit_2() {
    let run = Test::new()
        .file("p.plan", "plan p \"P\"\n\ntask a \"A\"\n  needs: b\n")
        .args(["graph", "p.plan"])
        .run();
    assert_eq!(run.status, 2);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("cairn::unknown_dependency"));
}

#[test]
fn repeated_dependencies_are_one_edge() {
    let run = Test::new()
        .file(
            "p.plan",
            "plan p \"P\"\n  labels: \"a\", \"b\"\n\ntask a \"A\"\n  run: 1\n  on success -> b\n\ntask b \"B\"\n  needs: a, a\n  needs: a\n  run: 2\n",
        )
        .args(["graph", "p.plan", "--format", "json"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(plan["graph"]["edges"].as_array().expect("edges").len(), 1);
    assert_eq!(plan["metadata"]["labels"], serde_json::json!(["a", "b"]));
}

#[test]
fn mermaid_titles_are_quoted_yaml() {
    let run = Test::new()
        .file(
            "p.plan",
            "plan p \"Fix: the [pool] #1 \\\"now\\\"\"\n\ntask a \"A\"\n  run: 1\n",
        )
        .args(["graph", "p.plan"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("---\ntitle: \"Fix: the [pool] #1 \\\"now\\\"\"\n---\n"),
        "{}",
        run.stdout
    );
}
