//! `cairn check`: summaries, exit codes, and files that are not plans.

use crate::Test;

const CLEAN: &str = "plan p \"P\"\n  allow: sh\n\ntask build \"Build\" using:sh\n  run: sh(\"true\")\n\ntask test \"Test\"\n  needs: build\n  run: 1\n\ntask lint \"Lint\"\n  needs: build\n  run: 2\n";

#[test]
fn clean_plan_prints_a_summary_and_exits_0() {
    let run = Test::new()
        .file("p.plan", CLEAN)
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "p.plan: ok: plan `p`, 3 steps, 2 edges, width 2\n"
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn warnings_do_not_fail_the_check() {
    let run = Test::new()
        .file(
            "p.plan",
            "plan p \"P\"\n  param unused = 1\n\ntask a \"A\"\n  run: 1\n",
        )
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 0);
    assert_eq!(
        run.stdout,
        "p.plan: ok: plan `p`, 1 step, 0 edges, width 1, 1 warning\n"
    );
    assert!(run.stderr.contains("cairn::unused_param"));
}

#[test]
fn every_file_is_checked_and_any_error_exits_2() {
    let run = Test::new()
        .file("good.plan", CLEAN)
        .file("bad.plan", "plan p \"P\"\n\ntask a \"A\"\n  needs: nope\n")
        .args(["check", "good.plan", "bad.plan"])
        .run();
    assert_eq!(run.status, 2);
    assert!(run.stdout.contains("good.plan: ok"));
    assert!(run.stderr.contains("cairn::unknown_dependency"));
    assert!(
        run.stderr.ends_with("error: 1 error found\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn all_problems_are_reported_in_one_pass() {
    let run = Test::new()
        .file(
            "p.plan",
            "plan p \"P\"\n\ntask a \"A\"\n  needs: nope\n  timeout: 5x\n  retry: -2\n\ntask a \"B\"\n  run: 1\n",
        )
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 2);
    for code in [
        "unknown_dependency",
        "bad_duration",
        "bad_retry",
        "duplicate_id",
    ] {
        assert!(
            run.stderr.contains(&format!("cairn::{code}")),
            "missing {code}:\n{}",
            run.stderr
        );
    }
    assert!(
        run.stderr.ends_with("error: 4 errors found\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn syntax_errors_in_several_items_are_all_reported() {
    let run = Test::new()
        .file(
            "p.plan",
            "plan p \"P\"\n\ntask A \"A\"\n  run: 1\n\ntask b\n  run: 1\n",
        )
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 2);
    assert_eq!(
        run.stderr.matches("cairn::syntax").count(),
        2,
        "{}",
        run.stderr
    );
}

#[test]
fn missing_file() {
    let run = Test::new().args(["check", "nope.plan"]).run();
    assert_eq!(run.status, 2);
    assert_eq!(
        run.stderr,
        "error: cannot read `nope.plan`: No such file or directory (os error 2)\n"
    );
}

#[test]
fn directory() {
    let test = Test::new();
    std::fs::create_dir(test.path().join("plans")).expect("mkdir");
    let run = test.args(["check", "plans"]).run();
    assert_eq!(run.status, 2);
    assert_eq!(
        run.stderr,
        "error: `plans` is a directory, not a plan file\n"
    );
}

#[test]
fn empty_file() {
    let run = Test::new()
        .file("p.plan", "")
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("cairn::empty_plan"), "{}", run.stderr);
    assert!(run.stderr.contains("the file has no plan in it"));
}

#[test]
fn non_utf8_bytes() {
    let run = Test::new()
        .file("p.plan", b"plan p \"P\"\ntask a \"\xff\"\n")
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 2);
    assert_eq!(
        run.stderr,
        "error: `p.plan` is not UTF-8 text: invalid byte at line 2, column 9 (byte 19)\n"
    );
}

#[test]
fn a_50_mb_file_is_refused_clearly() {
    let test = Test::new();
    let file = std::fs::File::create(test.path().join("big.plan")).expect("create");
    file.set_len(50 * 1000 * 1000).expect("grow");
    let run = test.args(["check", "big.plan"]).run();
    assert_eq!(run.status, 2);
    assert_eq!(
        run.stderr,
        "error: `big.plan` is 47.7 MiB; cairn reads plans up to 32 MiB\n"
    );
}

#[test]
fn crlf_plans_check_like_lf_plans() {
    let run = Test::new()
        .file("p.plan", CLEAN.replace('\n', "\r\n"))
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "p.plan: ok: plan `p`, 3 steps, 2 edges, width 2\n"
    );
}

#[test]
fn usage_errors_exit_2() {
    let run = Test::new().args(["check"]).run();
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("required"), "{}", run.stderr);
}

#[test]
fn help_lists_the_commands() {
    let run = Test::new().args(["--help"]).run();
    assert_eq!(run.status, 0);
    assert!(run.stdout.contains("check") && run.stdout.contains("graph"));
}

/// A plan big enough to be parsed in several batches on several threads.
fn big_plan(tasks: usize, broken: &[usize]) -> String {
    let mut text = String::from("plan big \"Big\"\n");
    for i in 0..tasks {
        if broken.contains(&i) {
            text.push_str(&format!("\ntask T{i} \"Broken\"\n  run: {i}\n"));
        } else {
            text.push_str(&format!(
                "\ntask t{i} \"Task number {i} of the big plan\"\n"
            ));
            if i > 0 {
                text.push_str(&format!("  needs: t{}\n", i - 1));
            }
            text.push_str(&format!(
                "  run: |\n    let x = {i};\n    x * 2\n  timeout: 5s\n"
            ));
        }
    }
    text
}

#[test]
fn big_plans_parse_in_batches_like_small_ones() {
    let text = big_plan(3000, &[]);
    assert!(text.len() > 4 * 64 * 1024, "the plan spans several batches");
    let run = Test::new()
        .file("big.plan", &text)
        .args(["check", "big.plan"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "big.plan: ok: plan `big`, 3000 steps, 2999 edges, width 1\n"
    );
}

#[test]
fn syntax_errors_in_different_batches_are_all_reported_in_order() {
    let text = big_plan(3000, &[10, 2990]);
    let run = Test::new()
        .file("big.plan", &text)
        .args(["check", "--format", "json", "big.plan"])
        .run();
    assert_eq!(run.status, 2);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(lines[0].contains("`T10` is not a valid id"), "{}", lines[0]);
    assert!(
        lines[1].contains("`T2990` is not a valid id"),
        "{}",
        lines[1]
    );
}

#[test]
fn files_without_a_final_newline() {
    for (last, summary) in [
        ("", "0 steps, 0 edges"),
        ("  owner: ops", "0 steps, 0 edges"),
        ("  labels: a, b", "0 steps, 0 edges"),
        ("  resources: cpu 1", "0 steps, 0 edges"),
        ("  budget: time 1m", "0 steps, 0 edges"),
        ("  allow: sh", "0 steps, 0 edges"),
        (
            "\ntask a \"A\"\n  run: 1\n\ntask b \"B\"\n  needs: a",
            "2 steps, 1 edge",
        ),
        ("\ntask a \"A\"\n  run: |\n    1", "1 step, 0 edges"),
    ] {
        let text = format!("plan p \"P\"\n{last}");
        let text = text.trim_end_matches('\n');
        let run = Test::new()
            .file("p.plan", text)
            .args(["check", "p.plan"])
            .run();
        assert_eq!(run.status, 0, "{text:?}:\n{}", run.stderr);
        assert!(run.stdout.contains(summary), "{text:?}: {}", run.stdout);
    }
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_plan() {
    let run = Test::new()
        .file("p.plan", "\u{feff}plan p \"P\"\n\ntask a \"A\"\n  run: 1\n")
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
}

#[test]
fn devices_are_read_up_to_the_limit_only() {
    let run = Test::new().args(["check", "/dev/zero"]).run();
    assert_eq!(run.status, 2);
    assert_eq!(
        run.stderr,
        "error: `/dev/zero` is more than 32 MiB; cairn reads plans up to 32 MiB\n"
    );
}

#[test]
fn non_ascii_whitespace_in_a_block_is_reported_not_a_crash() {
    let run = Test::new()
        .file(
            "p.plan",
            "plan p \"P\"\n\ntask a \"A\"\n  run: |\n    let x = 1;\n   \u{a0}\n    x\n",
        )
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("cairn::script"), "{}", run.stderr);
}

#[test]
fn an_inline_expectation_may_start_with_a_map() {
    let run = Test::new()
        .file(
            "p.plan",
            "plan p \"P\"\n\ntask a \"A\"\n  run: 1\n  expect: #{a: 1} != result\n",
        )
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
}
