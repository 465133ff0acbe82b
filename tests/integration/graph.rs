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

/// `dot -T<format>` of `input`; `None` on a developer machine without
/// Graphviz (CI installs it).
fn graphviz(format: &str, input: &str) -> Option<String> {
    let dot = std::process::Command::new("dot")
        .arg(format!("-T{format}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match dot {
        Ok(child) => child,
        Err(_) if std::env::var_os("CI").is_none() => return None,
        Err(err) => panic!("Graphviz `dot` is required in CI: {err}"),
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("dot runs");
    assert!(
        out.status.success(),
        "dot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn dot_renders_with_graphviz() {
    let test = Test::new()
        .file("p.plan", PLAN)
        .args(["graph", "p.plan", "--format", "dot"]);
    let run = test.run();
    let Some(svg) = graphviz("svg", &run.stdout) else {
        return;
    };
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
    // Each step is one flat object: `step` names the kind, beside what
    // only that kind has (empty for the others).
    assert_eq!(tasks[1]["step"], "decision");
    assert_eq!(tasks[1]["branches"][0]["target"], "widen");
    assert_eq!(tasks[1]["else_target"], "rollback");
    assert_eq!(tasks[2]["step"], "gate");
    assert_eq!(tasks[2]["checks"], serde_json::json!(["dashboards green"]));
    assert_eq!(tasks[0]["step"], "task");
    assert_eq!(tasks[0]["branches"], serde_json::json!([]));
    assert_eq!(tasks[0]["checks"], serde_json::json!([]));
    // The JSON reads back into a plan, each step of its kind.
    let back: cairn_lang::plan::Plan = serde_json::from_str(&run.stdout).expect("round trip");
    assert_eq!(back.tasks.len(), 6);
    let kinds: Vec<&str> = back.tasks.iter().map(|t| t.kind().word()).collect();
    assert_eq!(kinds, ["task", "decision", "gate", "task", "task", "task"]);
    assert_eq!(back.tasks[1].branch(0).target, "widen");
    assert_eq!(back.tasks[2].checks(), ["dashboards green"]);
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

/// Plan text that would add lines, directives or statements to an export if
/// it were written as it is: a title holding `\n---\n` (the end of Mermaid's
/// front matter) and `click … javascript:`, a raw carriage return, line
/// separators, `%%{init: …}%%` directives, markdown backticks, entities, a
/// DOT `"]; evil [label="` and a trailing backslash.
const HOSTILE: &str = concat!(
    "plan p \"Deploy\\n---\\nflowchart TD\\nclick n0 href \\\"javascript:alert(1)\\\"\\n%%{init: {'theme':'forest'}}%%\"\n",
    "\n",
    "task a \"A\\nclick n0 href \\\"javascript:alert(2)\\\"\r\u{2028}\u{85}end\" kind:deploy\n",
    "  run: 1\n",
    "\n",
    "decision d \"%%{init: {'securityLevel':'loose'}}%% `md` R&amp;D #1\"\n",
    "  needs: a\n",
    "  when `%%{init: {'theme':'dark'}}%%` != \"\\n\" -> b\n",
    "  else -> c\n",
    "\n",
    "task b \"B\\\\\"\n",
    "  run: 2\n",
    "\n",
    "task c \"\\\"]; evil [label=\\\"pwned\"\n",
    "  run: 3\n",
);

fn hostile(format: &str) -> String {
    let run = Test::new()
        .file("p.plan", HOSTILE)
        .args(["graph", "p.plan", "--format", format])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        !run.stdout
            .chars()
            .any(|c| (c.is_control() && c != '\n') || matches!(c, '\u{2028}' | '\u{2029}')),
        "a control character or line separator reached the output:\n{:?}",
        run.stdout
    );
    run.stdout
}

#[test]
fn mermaid_plan_text_cannot_add_lines_or_directives() {
    let out = hostile("mermaid");
    let lines: Vec<&str> = out.lines().collect();
    // The front matter is three lines and the title one YAML string.
    assert_eq!(lines[0], "---", "{out}");
    assert_eq!(
        lines[1],
        r#"title: "Deploy\n---\nflowchart TD\nclick n0 href \"javascript:alert(1)\"\n\x25\x25{init: {'theme':'forest'}}\x25\x25""#,
        "{out}"
    );
    assert_eq!(&lines[2..4], ["---", "flowchart TD"], "{out}");
    // Every other line is one cairn wrote: a node, an edge or a class.
    for line in &lines[4..] {
        assert!(
            line.starts_with("  n") || line.starts_with("  class"),
            "a line the plan chose: {line:?}\n{out}"
        );
    }
    assert_eq!(lines.len(), 4 + 4 + 2 + 3, "{out}");
    // No directive or comment marker, no markdown string.
    assert!(!out.contains("%%") && !out.contains('`'), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn dot_plan_text_cannot_add_statements() {
    let out = hostile("dot");
    // Each line is one whole statement: no string runs on to the next line.
    for line in out.lines() {
        assert!(
            line.ends_with(';') || line.ends_with('{') || line == "}",
            "{line:?}\n{out}"
        );
    }
    assert_eq!(out.lines().count(), 6 + 4 + 3 + 1, "{out}");
    insta::assert_snapshot!(out);
    // Graphviz reads exactly the plan's nodes, each with its whole label.
    let Some(plain) = graphviz("plain", &out) else {
        return;
    };
    let nodes: Vec<&str> = plain
        .lines()
        .filter_map(|l| l.strip_prefix("node "))
        .map(|l| l.split(' ').next().expect("name"))
        .collect();
    assert_eq!(nodes, ["a", "d", "b", "c"], "{plain}");
    assert!(
        plain.contains(r#""c\n\"]; evil [label=\"pwned""#),
        "{plain}"
    );
}

#[test]
fn mermaid_title_newlines_stay_inside_the_front_matter() {
    let run = Test::new()
        .file(
            "p.plan",
            "plan p \"T\\n---\\nflowchart TD\\nclick n0 href \\\"javascript:alert(1)\\\"\"\n\ntask a \"A\"\n  run: 1\n",
        )
        .args(["graph", "p.plan"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "---\ntitle: \"T\\n---\\nflowchart TD\\nclick n0 href \\\"javascript:alert(1)\\\"\"\n---\nflowchart TD\n  n0[\"a<br/>A\"]\n"
    );
}

#[test]
fn dot_quotes_in_titles_cannot_end_a_label() {
    let run = Test::new()
        .file(
            "p.plan",
            "plan p \"P\\\"]; evil [label=\\\"\"\n\ntask a \"A\\\"]; evil [label=\\\"\\n\"\n  run: 1\n",
        )
        .args(["graph", "p.plan", "--format", "dot"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "digraph \"p\" {\n  label=\"P\\\"]; evil [label=\\\"\";\n  labelloc=t;\n  rankdir=TB;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n  \"a\" [label=\"a\\nA\\\"]; evil [label=\\\"\\n\", shape=box];\n}\n"
    );
}
