//! Each diagnostic's full rendered text, at a fixed width without colour.
//!
//! `cases/<code>[__<variant>].plan` must produce `cairn::<code>`; its whole
//! stderr and exit status are snapshotted in `snapshots/`.

use crate::run_in;

#[test]
fn rendered_diagnostics() {
    insta::glob!("cases/*.plan", |path| {
        let dir = path.parent().expect("cases dir");
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let stem = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let code = format!("cairn::{}", stem.split("__").next().expect("code"));
        let run = run_in(dir, &["check".to_owned(), name]);
        assert!(
            run.stderr.contains(&code),
            "{stem} should report {code}:\n{}",
            run.stderr
        );
        let warnings = [
            "decision_without_else",
            "unused_param",
            "each_not_array",
            "unit_output",
        ];
        let expected_status = if warnings.contains(&stem.as_str()) {
            0
        } else {
            2
        };
        assert_eq!(run.status, expected_status, "{}", run.stderr);
        insta::assert_snapshot!(format!("exit {}\n{}{}", run.status, run.stdout, run.stderr));
    });
}

#[test]
fn every_code_has_a_case() {
    let cases = std::fs::read_dir(crate::root().join("tests/integration/cases"))
        .expect("cases dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    for code in cairn_lang::diagnostic::Code::ALL {
        let name = code.as_str().trim_start_matches("cairn::");
        assert!(
            cases.iter().any(|c| c == &format!("{name}.plan")),
            "no tests/integration/cases/{name}.plan for {code}"
        );
    }
}

#[test]
fn json_lines_carry_positions_and_codes() {
    let run = crate::Test::new()
        .file("p.plan", "plan p \"P\"\n\ntask test \"Test\"\n  needs: biuld\n  run: 1\n\ntask build \"B\"\n  run: 1\n")
        .args(["check", "--format", "json", "p.plan"])
        .run();
    assert_eq!(run.status, 2);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    insta::assert_json_snapshot!(lines[0], @r#"
    {
      "code": "cairn::unknown_dependency",
      "column": 10,
      "file": "p.plan",
      "help": "did you mean `build`?",
      "labels": [
        {
          "column": 10,
          "line": 4,
          "span": {
            "end": 43,
            "start": 38
          },
          "text": "no such task, decision or gate"
        }
      ],
      "line": 4,
      "message": "`needs:` names `biuld`, which is not in this plan",
      "severity": "error",
      "span": {
        "end": 43,
        "start": 38
      }
    }
    "#);
}
