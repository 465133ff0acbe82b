//! `cairn check`: summaries, exit codes, and files that are not plans.

use crate::{cairn, Test};

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
fn devices_are_refused_not_read() {
    let run = Test::new().args(["check", "/dev/zero"]).run();
    assert_eq!(run.status, 2);
    assert_eq!(
        run.stderr,
        "error: cannot read `/dev/zero`: it is not a regular file (it is a character device); cairn reads plans only from regular files\n"
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

/// A plan whose second step imports a Rhai module, after a first step with
/// a side effect: the sandbox loads no modules (`set_max_modules(0)`).
const IMPORTS: &str = "plan p \"P\"\n  allow: fs.write\n\ntask first \"First\" using:fs.write\n  run: write_file(\"side.txt\", \"effect\")\n\ntask second \"Second\"\n  needs: first\n  run: |\n    import \"helpers\" as h;\n    h::greet()\n";

const IMPORT_REFUSED: &str = r#"cairn::script

  × `import` is not available in plan code: plans cannot load Rhai modules
    ╭─[p.plan:10:5]
  9 │   run: |
 10 │     import "helpers" as h;
    ·     ──────────┬──────────
    ·               ╰── not available in plan code
 11 │     h::greet()
    ╰────
  help: to run another plan's steps, add `use "file.plan" as <alias>` to the plan header; to reuse
        code, define it with `fn` under `functions:` in the plan header
error: 1 error found
"#;

#[test]
fn import_is_refused_by_check_at_its_statement() {
    let run = Test::new()
        .file("p.plan", IMPORTS)
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 2, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, IMPORT_REFUSED);
}

#[test]
fn a_plan_with_an_import_does_not_start_so_no_step_has_side_effects() {
    let test = Test::new().file("p.plan", IMPORTS).args(["run", "p.plan"]);
    let run = test.run();
    assert_eq!(run.status, 2, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stderr, IMPORT_REFUSED);
    assert!(
        !test.path().join("side.txt").exists(),
        "the first step ran before the plan failed"
    );
}

#[test]
fn import_in_a_function_a_closure_or_a_block_is_refused_too() {
    let run = Test::new()
        .file(
            "p.plan",
            "plan p \"P\"\n\ntask a \"A\"\n  run: |\n    fn load() { import \"a\" as a; 1 }\n    let f = || { import \"b\" as b; 2 };\n    if true { import \"c\"; }\n    load() + f.call()\n",
        )
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 2, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stderr,
        r#"cairn::script

  × `import` is not available in plan code: plans cannot load Rhai modules
   ╭─[p.plan:5:17]
 4 │   run: |
 5 │     fn load() { import "a" as a; 1 }
   ·                 ───────┬───────
   ·                        ╰── not available in plan code
 6 │     let f = || { import "b" as b; 2 };
   ╰────
  help: to run another plan's steps, add `use "file.plan" as <alias>` to the plan header; to reuse
        code, define it with `fn` under `functions:` in the plan header
cairn::script

  × `import` is not available in plan code: plans cannot load Rhai modules
   ╭─[p.plan:6:18]
 5 │     fn load() { import "a" as a; 1 }
 6 │     let f = || { import "b" as b; 2 };
   ·                  ───────┬───────
   ·                         ╰── not available in plan code
 7 │     if true { import "c"; }
   ╰────
  help: to run another plan's steps, add `use "file.plan" as <alias>` to the plan header; to reuse
        code, define it with `fn` under `functions:` in the plan header
cairn::script

  × `import` is not available in plan code: plans cannot load Rhai modules
   ╭─[p.plan:7:15]
 6 │     let f = || { import "b" as b; 2 };
 7 │     if true { import "c"; }
   ·               ─────┬────
   ·                    ╰── not available in plan code
 8 │     load() + f.call()
   ╰────
  help: to run another plan's steps, add `use "file.plan" as <alias>` to the plan header; to reuse
        code, define it with `fn` under `functions:` in the plan header
error: 3 errors found
"#
    );
}

#[test]
fn functions_the_sandbox_leaves_out_are_refused_by_check() {
    let run = Test::new()
        .file(
            "p.plan",
            "plan p \"P\"\n\ntask a \"A\"\n  run: |\n    let started = timestamp();\n    blob(4).len()\n  expect: result.get_bit(0)\n",
        )
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 2, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stderr,
        r#"cairn::script

  × `timestamp` is not available in plan code: the sandbox leaves out Rhai's clock, so that a
  │ resumed run replays the same
   ╭─[p.plan:5:19]
 4 │   run: |
 5 │     let started = timestamp();
   ·                   ────┬────
   ·                       ╰── not available in plan code
 6 │     blob(4).len()
   ╰────
  help: use `now()`: the time in milliseconds since 1970, recorded for replay
cairn::script

  × `blob` is not available in plan code: the sandbox has no byte blobs
   ╭─[p.plan:6:5]
 5 │     let started = timestamp();
 6 │     blob(4).len()
   ·     ──┬─
   ·       ╰── not available in plan code
 7 │   expect: result.get_bit(0)
   ╰────
  help: use strings, or arrays of numbers
cairn::script

  × `get_bit` is not available in plan code: the sandbox has no bit-field functions
   ╭─[p.plan:7:18]
 6 │     blob(4).len()
 7 │   expect: result.get_bit(0)
   ·                  ───┬───
   ·                     ╰── not available in plan code
   ╰────
  help: use the bit operators: `(n >> i) & 1` reads bit `i`; `|`, `&` and `<<` set and clear bits
error: 3 errors found
"#
    );
}

#[test]
fn a_function_the_plan_defines_may_share_a_left_out_name() {
    let test = Test::new().file(
        "p.plan",
        "plan p \"P\"\n\ntask a \"A\"\n  run: |\n    fn timestamp() { 42 }\n    timestamp()\n  expect: result == 42\n",
    );
    let check = cairn(&test, &["check", "p.plan"]);
    assert_eq!(check.status, 0, "{}", check.stderr);
    assert_eq!(check.stderr, "");
    let run = cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
}

/// Makes a FIFO at `path` (nothing ever writes to it: opening it to read
/// blocks until something does).
fn mkfifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// Runs `cairn <args>` in `dir`, killed after 10 s, so a read that blocks
/// fails the test instead of hanging it.
fn run_with_timeout(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let output = assert_cmd::Command::cargo_bin("cairn")
        .expect("the cairn binary is built")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(10))
        .output()
        .expect("cairn runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const NOT_REGULAR: &str =
    "it is not a regular file (it is a FIFO); cairn reads plans only from regular files";

#[test]
fn a_fifo_as_the_plan_is_refused_without_blocking() {
    let test = Test::new();
    mkfifo(&test.path().join("fifo.plan"));
    for command in ["check", "graph", "run"] {
        let (status, stderr) = run_with_timeout(test.path(), &[command, "fifo.plan"]);
        assert_eq!(status, Some(2), "{command}: {stderr}");
        assert_eq!(
            stderr,
            format!("error: cannot read `fifo.plan`: {NOT_REGULAR}\n"),
            "{command}"
        );
    }
}

#[test]
fn a_symlink_to_a_regular_file_is_read() {
    let test = Test::new().file("real.plan", CLEAN);
    std::os::unix::fs::symlink("real.plan", test.path().join("link.plan")).expect("symlink");
    let run = cairn(&test, &["check", "link.plan"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
}

#[test]
fn importing_a_fifo_is_refused_without_blocking() {
    let test = Test::new().file(
        "p.plan",
        "plan p \"P\"\n  use \"fifo.plan\" as f\n\ntask a \"A\"\n  run: 1\n",
    );
    mkfifo(&test.path().join("fifo.plan"));
    let (status, stderr) = run_with_timeout(test.path(), &["check", "p.plan"]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("cairn::unknown_import"), "{stderr}");
    // miette wraps the message at 100 columns.
    let flat = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = flat.replace(" │ ", " ");
    assert!(
        flat.contains(&format!("cannot read `fifo.plan`: {NOT_REGULAR}")),
        "{stderr}"
    );
}

#[test]
fn importing_dev_stdin_is_refused_without_blocking() {
    use std::io::Read;
    // (Named `.plan`, as only plan files are read: a link to the pipe.)
    let test = Test::new().file(
        "p.plan",
        "plan p \"P\"\n  use \"stdin.plan\" as s\n\ntask a \"A\"\n  run: 1\n",
    );
    std::os::unix::fs::symlink("/dev/stdin", test.path().join("stdin.plan")).expect("link");
    // Stdin is a pipe that stays open and empty: reading it would block.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"))
        .args(["check", "p.plan"])
        .current_dir(test.path())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("cairn runs");
    let stdin = child.stdin.take();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().expect("kill");
            child.wait().expect("wait");
            panic!("`use \"/dev/stdin\"` blocked for 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    drop(stdin);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cairn::unknown_import"), "{stderr}");
    let flat = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = flat.replace(" │ ", " ");
    assert!(
        flat.contains(&format!("cannot read `stdin.plan`: {NOT_REGULAR}")),
        "{stderr}"
    );
}

/// The two inputs that made miette panic: a label past column 65,535, and a
/// Rhai error in an array literal of more than 100,000 elements.
fn long_line_plans() -> [(&'static str, String, &'static str); 2] {
    let spaces = " ".repeat(65_536);
    let elements = vec!["1"; 100_001].join(",");
    [
        (
            "branch.plan",
            format!("plan p \"P\"\n\ntask a \"A\"\n  run: 1\n{spaces}when true fix\n"),
            "cairn::syntax",
        ),
        (
            "array.plan",
            format!("plan p \"P\"\n\ntask a \"A\"\n  run: [{elements}]\n"),
            "cairn::script",
        ),
    ]
}

#[test]
fn labels_on_very_long_lines_are_rendered_not_a_crash() {
    let mut test = Test::new();
    for (name, text, _) in long_line_plans() {
        test = test.file(name, text);
    }
    for (name, _, code) in long_line_plans() {
        for command in ["check", "graph", "run"] {
            let run = cairn(&test, &[command, name]);
            assert_eq!(run.status, 2, "{command} {name}: {}", run.stderr);
            assert!(
                run.stderr.contains(code),
                "{command} {name}: {}",
                run.stderr
            );
            assert!(
                run.stderr.contains("the line is cut to fit"),
                "{command} {name}: {}",
                run.stderr
            );
            // Only a window of the line is shown.
            assert!(
                run.stderr.lines().all(|l| l.chars().count() < 300),
                "{command} {name}: {}",
                run.stderr
            );
        }
    }
}

#[test]
fn json_keeps_exact_positions_on_very_long_lines() {
    let [(name, text, _), _] = long_line_plans();
    let run = Test::new()
        .file(name, text)
        .args(["check", "--format", "json", name])
        .run();
    assert_eq!(run.status, 2, "{}", run.stderr);
    let line: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("json");
    assert_eq!(line["line"], 5);
    assert_eq!(line["column"], 65_537);
    let start = "plan p \"P\"\n\ntask a \"A\"\n  run: 1\n".len() + 65_536;
    assert_eq!(line["span"]["start"], start);
    assert_eq!(line["span"]["end"], start + "when true fix".len());
}

/// Runs `cairn <args>` like [`cairn`], but killed after five minutes: not a
/// timing assertion (these take a few seconds, even unoptimised), a guard
/// so that reporting that went quadratic again fails instead of hanging.
fn cairn_guarded(test: &Test, args: &[&str]) -> crate::Run {
    let output = assert_cmd::Command::cargo_bin("cairn")
        .expect("the cairn binary is built")
        .args(args)
        .current_dir(test.path())
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .expect("cairn runs");
    crate::Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A plan of `steps` steps in one cycle (each needs the one before it).
fn cycle_plan(steps: usize) -> String {
    let mut text = String::from("plan p \"P\"\n");
    for i in 0..steps {
        text.push_str(&format!(
            "\ntask t{i} \"S\"\n  needs: t{}\n",
            (i + steps - 1) % steps
        ));
    }
    text
}

#[test]
fn a_20000_step_cycle_is_reported_and_summarised() {
    let test = Test::new().file("p.plan", cycle_plan(20_000));
    let run = cairn_guarded(&test, &["check", "--format", "json", "p.plan"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    assert_eq!(lines[0]["code"], "cairn::cycle");
    let message = lines[0]["message"].as_str().expect("message");
    assert_eq!(
        message,
        "dependency cycle of 20000 steps: t0 → t1 → t2 → t3 → t4 → … (19994 more) … → t19999 → t0"
    );
    // The first few edges and the one that closes the cycle, not 20,000.
    assert_eq!(lines[0]["labels"].as_array().expect("labels").len(), 6);
    let human = cairn_guarded(&test, &["check", "p.plan"]);
    assert_eq!(human.status, 2, "{}", human.stderr);
    assert!(human.stderr.contains("cairn::cycle"), "{}", human.stderr);
    assert!(human.stderr.lines().count() < 60, "{}", human.stderr);
}

#[test]
fn a_short_cycle_is_listed_whole() {
    let test = Test::new().file("p.plan", cycle_plan(8));
    let run = cairn(&test, &["check", "--format", "json", "p.plan"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    let line: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("json");
    assert_eq!(
        line["message"],
        "dependency cycle: t0 → t1 → t2 → t3 → t4 → t5 → t6 → t7 → t0"
    );
    assert_eq!(line["labels"].as_array().expect("labels").len(), 8);
}

#[test]
fn twenty_thousand_unknown_needs_are_reported_with_suggestions() {
    let mut text = String::from("plan p \"P\"\n");
    for i in 0..20_000 {
        text.push_str(&format!(
            "\ntask step-{i} \"S\"\n  needs: stpe-{}\n",
            (i + 1) % 20_000
        ));
    }
    let test = Test::new().file("p.plan", text);
    let run = cairn_guarded(&test, &["check", "--format", "json", "p.plan"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 20_000);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["code"], "cairn::unknown_dependency");
        assert_eq!(
            line["help"],
            format!("did you mean `step-{}`?", (i + 1) % 20_000),
            "{line}"
        );
    }
    let human = cairn_guarded(&test, &["check", "p.plan"]);
    assert_eq!(human.status, 2);
    assert!(
        human.stderr.ends_with("error: 20000 errors found\n"),
        "{}",
        &human.stderr[human.stderr.len().saturating_sub(500)..]
    );
}

/// `use` resolves through a `Resolver`: checking reads no file of its own,
/// so plans held in memory (an editor's unsaved buffers) import each other.
#[test]
fn imports_resolve_through_the_resolver_given() {
    use cairn_lang::check::{check_using, Found, Resolver};
    use cairn_lang::source::Source;

    struct Buffers;
    impl Resolver for Buffers {
        fn resolve(&self, _from: &Source, reference: &str) -> Result<Found, String> {
            match reference {
                "lib.plan" => Ok(Found {
                    identity: "buffer lib".to_owned(),
                    source: Source::new(
                        "lib.plan".to_owned(),
                        "plan lib \"Lib\"\n\ntask build \"Build\"\n  run: 1\n".to_owned(),
                    ),
                    file: None,
                }),
                _ => Err("no such buffer".to_owned()),
            }
        }
        fn identity(&self, source: &Source) -> String {
            format!("buffer {}", source.name())
        }
        fn templates(&self) -> Vec<String> {
            Vec::new()
        }
    }

    let main = Source::new(
        "main.plan".to_owned(),
        "plan main \"Main\"\n  use \"lib.plan\" as lib\n\ntask ship \"Ship\"\n  needs: lib.build\n  run: 2\n"
            .to_owned(),
    );
    // Neither file exists on disk.
    let checked = check_using(
        &main,
        cairn_engine::Registry::builtin().capabilities(),
        &Buffers,
    );
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    let plan = checked.plan.expect("a plan");
    assert!(plan.tasks.iter().any(|t| t.id == "lib.build"));
    // The stdlib-only resolver reads no file either: a file import fails.
    let checked = check_using(
        &main,
        cairn_engine::Registry::builtin().capabilities(),
        &cairn_lang::templates::Templates,
    );
    assert!(
        checked.diagnostics[0]
            .message
            .contains("cannot be imported: it is not a stdlib template"),
        "{:?}",
        checked.diagnostics
    );
}

/// What code may call is not reported as unknown: Rhai's functions and
/// methods, cairn's, the capabilities', the plan's `functions:`, the code's
/// own `fn`s, and names it declares (which may hold a function pointer).
#[test]
fn known_functions_are_not_reported_as_unknown() {
    let plan = r#"plan p "P"
  allow: sh, fs.read
  functions: |
    fn helper(x) { x + 1 }

task b "B" using:sh, fs.read
  run: |
    let f = |x| x + 1;
    fn twice(x) { x * 2 }
    for (v, i) in [1, 2] { log(`${v}${i}`); }
    let m = #{ double: |x| x * 2 };
    let files = if exists("data") { list_dir("data") } else { [] };
    let n = helper(f.call(2)) + twice(1) + m.double(1) + parse_int("3") + files.len();
    let s = sh_try(["true"]).code + matrix(#{ a: [1] }).len() + range(0, 2).len();
    `${n}${s}`.to_upper() + type_of(n)
"#;
    let test = Test::new().file("p.plan", plan);
    let run = cairn(&test, &["check", "p.plan"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "");
}
