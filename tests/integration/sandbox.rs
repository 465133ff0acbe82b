//! The sandbox against a hostile plan: links, the run store, compensation,
//! floods, time and shell arguments. Each test fails if its protection goes.

use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use crate::{cairn, status_json, status_step, step_output as output, Run, Test};

/// A test directory with the plan in `plan/` and a precious file outside it,
/// in `elsewhere/`.
fn outside_the_plan(plan: &str) -> Test {
    Test::new()
        .file("plan/p.plan", plan)
        .file("elsewhere/victim.txt", "precious")
        .file("elsewhere/sub/keep", "")
        .args(["run", "plan/p.plan"])
}

fn link(test: &Test, target: &str, at: &str) {
    symlink(target, test.path().join(at)).expect("symlink");
}

fn read(test: &Test, path: &str) -> String {
    std::fs::read_to_string(test.path().join(path)).unwrap_or_else(|e| format!("<{e}>"))
}

/// The error a step failed with, as `cairn status --json` has it.
fn error(test: &Test, step: &str) -> String {
    status_step(test, step)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn one_step(allow: &str, using: &str, body: &str) -> String {
    format!("plan p \"P\"\n  allow: {allow}\n\ntask t \"T\" using:{using}\n  run: {body}\n")
}

#[test]
fn a_write_through_a_link_and_dot_dot_is_judged_where_it_lands() {
    let plan = "plan p \"P\"\n  allow: fs.write\n  on failure: compensate\n\ntask w \"W\" using:fs.write\n  run: write_file(\"link/../victim.txt\", \"pwned\")\n";
    let test = outside_the_plan(plan);
    link(&test, "../elsewhere/sub", "plan/link");
    let run = test.run();
    assert_eq!(run.status, 1, "{}", run.stdout);
    let error = error(&test, "w");
    assert!(error.contains("outside the plan's directory"), "{error}");
    assert!(error.contains("through a symbolic link"), "{error}");
    assert_eq!(read(&test, "elsewhere/victim.txt"), "precious");
}

#[test]
fn compensation_restores_exactly_the_file_that_was_written() {
    // `w` changes a file in the plan's directory; then another step swaps
    // its directory for a link to the outside and fails. The restore must
    // not follow the link and overwrite the file out there.
    let plan = "plan p \"P\"\n  allow: sh, fs.write\n  on failure: compensate\n\ntask w \"W\" using:fs.write\n  run: write_file(\"sub/victim.txt\", \"changed\")\n\ntask swap \"Swap\" using:sh\n  needs: w\n  run: |\n    sh(\"mv sub real && ln -s ../elsewhere sub\");\n    fail(\"broken on purpose\")\n";
    let test = outside_the_plan(plan).file("plan/sub/victim.txt", "original");
    let run = test.run();
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(read(&test, "elsewhere/victim.txt"), "precious");
    assert_eq!(read(&test, "plan/real/victim.txt"), "changed");
}

#[test]
fn compensation_still_restores_a_file_in_place() {
    let plan = "plan p \"P\"\n  allow: fs.write\n  on failure: compensate\n\ntask w \"W\" using:fs.write\n  run: write_file(\"sub/victim.txt\", \"changed\")\n\ntask boom \"Boom\"\n  needs: w\n  run: fail(\"broken on purpose\")\n";
    let test = outside_the_plan(plan).file("plan/sub/victim.txt", "original");
    let run = test.run();
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert_eq!(read(&test, "plan/sub/victim.txt"), "original");
}

#[test]
fn a_scoped_grant_does_not_reach_through_a_link() {
    let plan = one_step(
        "fs.write(config/*)",
        "fs.write",
        "write_file(\"config/link/../x\", \"pwned\")",
    );
    let test = outside_the_plan(&plan).file("plan/config/ok", "");
    link(&test, "../../elsewhere/sub", "plan/config/link");
    let run = test.run();
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(!test.path().join("elsewhere/x").exists());
    assert!(error(&test, "t").contains("through a symbolic link"));
}

#[test]
fn the_run_store_is_out_of_reach_of_every_file_function() {
    for (allow, call) in [
        ("fs.write", "write_file(\".cairn/state.db\", \"\")"),
        ("fs.read", "read_file(\".cairn/state.db\")"),
        ("fs.read", "list_dir(\".cairn\")"),
        ("fs.read", "exists(\".cairn/state.db\")"),
        ("fs.write", "write_file(\"store/state.db\", \"\")"),
        (
            "fs.write",
            "edit_file(\".cairn/state.db\", \"SQLite\", \"x\")",
        ),
    ] {
        let test = Test::new()
            .file("p.plan", one_step(allow, allow, call))
            .args(["run", "p.plan"]);
        link(&test, ".cairn", "store");
        let run = test.run();
        assert_eq!(run.status, 1, "{call}: {}", run.stdout);
        let error = error(&test, "t");
        assert!(
            error.contains("inside cairn's run store"),
            "{call}: {error}"
        );
        let runs = cairn(&test, &["runs"]);
        assert_eq!(runs.status, 0, "{call}: {}", runs.stderr);
        assert!(
            std::fs::metadata(test.path().join(".cairn/state.db"))
                .unwrap()
                .len()
                > 0
        );
    }
}

#[test]
fn a_state_dir_given_with_a_flag_is_out_of_reach_too() {
    let plan = one_step(
        "fs.write",
        "fs.write",
        "write_file(\"runs/state.db\", \"\")",
    );
    let test = Test::new()
        .file("p.plan", plan)
        .args(["--state-dir", "runs", "run", "p.plan"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}", run.stdout);
    let status = cairn(&test, &["--state-dir", "runs", "status", "--json"]);
    assert!(
        status.stdout.contains("inside cairn's run store"),
        "{}",
        status.stdout
    );
}

#[test]
fn listing_the_plan_directory_does_not_show_the_run_store() {
    let plan = one_step("fs.read", "fs.read", "list_dir(\".\")");
    let test = Test::new()
        .file("p.plan", plan)
        .file("a.txt", "")
        .args(["run", "p.plan"]);
    assert_eq!(test.run().status, 0);
    assert_eq!(output(&test, "t"), serde_json::json!(["a.txt", "p.plan"]));
}

#[test]
fn glob_scopes_judge_the_fully_resolved_path() {
    let cases: [(&str, &str, &str, &str); 3] = [
        // A link in the scope to a file beside it.
        (
            "fs.read(config/*)",
            "fs.read",
            "read_file(\"config/link\")",
            "config/link",
        ),
        // A link in the scope to its parent.
        (
            "fs.write(config/**)",
            "fs.write",
            "write_file(\"config/up/x\", \"pwned\")",
            "config/up",
        ),
        // A widened scope whose link leads out of it.
        (
            "fs.read(../shared/*)",
            "fs.read",
            "read_file(\"../shared/link\")",
            "shared/link",
        ),
    ];
    for (allow, using, call, at) in cases {
        let test = outside_the_plan(&one_step(allow, using, call))
            .file("plan/secret.env", "TOKEN=1")
            .file("plan/config/ok", "")
            .file("shared/ok.txt", "shared");
        let target = match at {
            "config/link" => "../secret.env",
            "config/up" => "..",
            _ => "../elsewhere/victim.txt",
        };
        let at = if at.starts_with("shared") {
            at.to_owned()
        } else {
            format!("plan/{at}")
        };
        link(&test, target, &at);
        let run = test.run();
        assert_eq!(run.status, 1, "{allow} {call}: {}", run.stdout);
        let error = error(&test, "t");
        assert!(error.contains("symbolic link"), "{allow} {call}: {error}");
        assert!(!test.path().join("plan/x").exists());
    }
}

#[test]
fn links_that_stay_in_scope_still_work() {
    let plan = "plan p \"P\"\n  allow: fs.read(config/*), fs.read(../shared/*)\n\ntask t \"T\" using:fs.read\n  run: [read_file(\"config/alias\"), read_file(\"../shared/ok.txt\"), read_file(\"config/far\")]\n";
    let test = outside_the_plan(plan)
        .file("plan/config/real.txt", "real")
        .file("shared/ok.txt", "shared");
    link(&test, "real.txt", "plan/config/alias");
    link(&test, "../../shared/ok.txt", "plan/config/far");
    let run = test.run();
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert_eq!(
        output(&test, "t"),
        serde_json::json!(["real", "shared", "shared"])
    );
}

#[test]
fn a_link_made_mid_run_by_another_step_is_judged_when_used() {
    let plan = "plan p \"P\"\n  allow: sh, fs.read\n\ntask make \"Make\" using:sh\n  run: sh(\"ln -s ../elsewhere made\")\n\ntask use-it \"Use\" using:fs.read\n  needs: make\n  run: read_file(\"made/victim.txt\")\n";
    let test = outside_the_plan(plan);
    let run = test.run();
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(error(&test, "use-it").contains("through a symbolic link"));
}

/// A scope is resolved once, on its first use: replacing its literal part
/// with a link later in the run does not move the scope to where the link
/// points.
#[test]
fn a_link_made_in_a_scope_mid_run_does_not_widen_it() {
    let plan = "plan p \"P\"\n  allow: sh, fs.write(out/*)\n\ntask first \"First\" using:fs.write\n  run: write_file(\"out/a.txt\", \"a\")\n\ntask swap \"Swap\" using:sh\n  needs: first\n  run: sh(\"rm -r out && ln -s ../elsewhere out\").code\n\ntask then \"Then\" using:fs.write\n  needs: swap\n  run: write_file(\"out/victim.txt\", \"overwritten\")\n";
    let test = outside_the_plan(plan).file("plan/out/.keep", "");
    let run = test.run();
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(
        error(&test, "then").contains("through a symbolic link"),
        "{}",
        error(&test, "then")
    );
    assert_eq!(read(&test, "elsewhere/victim.txt"), "precious");
}

/// Runs `cairn <args>` in `dir` and follows its peak resident size
/// (`VmHWM`, in KiB) until it exits. `ru_maxrss` would not do: a child
/// inherits the high-water mark of the (large) test process it was forked
/// from.
fn run_measured(dir: &std::path::Path, args: &[&str]) -> (i32, i64) {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cairn starts");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    loop {
        // The mark only rises, so the last reading before the exit is the peak.
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok());
            peak_kib = peak_kib.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().expect("wait") {
            return (status.code().unwrap_or(-1), peak_kib);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_command_that_prints_without_end_keeps_memory_bounded() {
    let body = "|\n    let r = sh(\"head -c 400000000 /dev/zero | tr '\\\\0' a; echo END\");\n    #{ len: r.stdout.len(), truncated: r.truncated, end: r.stdout.ends_with(\"END\\n\"), marker: r.stdout.contains(\"cairn left out\") }";
    let test = Test::new().file("p.plan", one_step("sh", "sh", body));
    let (code, peak_kib) = run_measured(test.path(), &["run", "p.plan"]);
    assert_eq!(code, 0);
    let output = output(&test, "t");
    assert_eq!(output["truncated"], true, "{output}");
    assert_eq!(output["end"], true, "{output}");
    assert_eq!(output["marker"], true, "{output}");
    assert!(
        output["len"].as_i64().unwrap() < (1 << 20) + 400,
        "{output}"
    );
    // 400 MB went through; cairn held a little of it.
    let peak_mib = peak_kib / 1024;
    assert!(peak_mib > 1, "the peak was measured ({peak_kib} KiB)");
    assert!(peak_mib < 200, "cairn peaked at {peak_mib} MiB");
}

#[test]
fn output_limit_narrows_what_a_step_keeps() {
    let plan = "plan p \"P\"\n  allow: sh\n\ntask t \"T\" using:sh\n  output_limit: 4K\n  run: sh(\"seq 1 100000\").stdout.len()\n";
    let test = Test::new().file("p.plan", plan).args(["run", "p.plan"]);
    assert_eq!(test.run().status, 0);
    let len = output(&test, "t").as_i64().expect("a length");
    assert!((4096..4096 + 400).contains(&len), "{len}");
}

#[test]
fn output_limit_is_checked() {
    let plan = "plan p \"P\"\n\ntask t \"T\"\n  output_limit: 1G\n  run: 1\n";
    let run = Test::new()
        .file("p.plan", plan)
        .args(["check", "p.plan"])
        .run();
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("bad output_limit"), "{}", run.stderr);
}

#[test]
fn keep_output_stores_the_whole_output_by_hash() {
    let plan = "plan p \"P\"\n  allow: sh\n\ntask t \"T\" using:sh\n  output_limit: 1K\n  run: sh(\"seq 1 300000\", #{ keep_output: true }).stdout_sha256\n";
    let test = Test::new().file("p.plan", plan).args(["run", "p.plan"]);
    let run = test.run();
    assert_eq!(run.status, 0, "{}", run.stdout);
    let expected: String = (1..=300_000).map(|n| format!("{n}\n")).collect();
    let sha = output(&test, "t").as_str().expect("hash").to_owned();
    use sha2::Digest;
    assert_eq!(
        sha,
        format!("{:x}", sha2::Sha256::digest(expected.as_bytes()))
    );
    let kept = std::fs::read_to_string(test.path().join(".cairn/blobs").join(&sha)).expect("kept");
    assert_eq!(kept, expected);
    let status = status_json(&test);
    let artifact = &status["artifacts"][0];
    assert_eq!(artifact["sha256"], sha.as_str(), "{status}");
    assert_eq!(artifact["bytes"], expected.len() as u64, "{status}");
}

#[test]
fn a_log_flood_is_cut_with_a_note() {
    let plan = one_step("sh", "sh", "for i in 0..50000 { log(`line ${i}`) }");
    let test = Test::new().file("p.plan", plan).args(["run", "p.plan"]);
    assert_eq!(test.run().status, 0);
    let log = cairn(&test, &["log", "--json"]);
    let lines: Vec<&str> = log
        .stdout
        .lines()
        .filter(|l| l.contains("\"log\""))
        .collect();
    assert!(lines.len() <= 10_001, "{} log events", lines.len());
    assert!(
        lines.iter().any(|l| l.contains("log limit reached")),
        "no note"
    );
}

#[test]
fn a_step_cannot_fill_the_disk_through_the_store() {
    let body = "|\n    let s = \"x\";\n    for i in 0..20 { s += s; }\n    for i in 0..400 { artifact(`a${i}`, s + i); }";
    let test = Test::new()
        .file("p.plan", one_step("sh", "sh", body))
        .args(["run", "p.plan"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(error(&test, "t").contains("more than 256 MiB in the run store"));
    let size = std::fs::metadata(test.path().join(".cairn/state.db"))
        .unwrap()
        .len()
        + std::fs::metadata(test.path().join(".cairn/state.db-wal")).map_or(0, |m| m.len());
    assert!(size < 300 << 20, "{size} bytes stored");
}

#[test]
fn every_script_has_a_wall_clock_limit() {
    let plan = "plan p \"P\"\n  default_timeout: 300ms\n\ntask spin \"Spin\"\n  run: |\n    let a = [];\n    a.pad(50000, 0);\n    loop { a.insert(0, 1); a.pop(); }\n";
    let started = Instant::now();
    let test = Test::new().file("p.plan", plan).args(["run", "p.plan"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(started.elapsed() < Duration::from_secs(20));
    let error = error(&test, "spin");
    assert!(
        error.contains("timed out after 300ms, the plan's `default_timeout:`"),
        "{error}"
    );
}

#[test]
fn the_default_time_limit_is_ten_minutes() {
    let test = Test::new()
        .file("p.plan", "plan p \"P\"\n\ntask t \"T\"\n  run: 1\n")
        .args(["graph", "p.plan", "--format", "json"]);
    let run = test.run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(plan["default_timeout_ms"], 600_000);
}

fn shell_test(body: &str) -> (Test, Run) {
    let plan = format!(
        "plan p \"P\"\n  param name = \"world\"\n  allow: sh\n\ntask t \"T\" using:sh\n  run: {body}\n"
    );
    let test = Test::new().file("p.plan", plan).args([
        "run",
        "p.plan",
        "--set",
        "name=x; touch pwned; echo `touch pwned2`",
    ]);
    let run = test.run();
    (test, run)
}

#[test]
fn an_argument_list_runs_the_program_without_a_shell() {
    let (test, run) = shell_test("sh([\"printf\", \"%s\", params.name]).stdout");
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert_eq!(output(&test, "t"), "x; touch pwned; echo `touch pwned2`");
    assert!(!test.path().join("pwned").exists() && !test.path().join("pwned2").exists());
}

#[test]
fn shell_quote_makes_a_value_one_word() {
    let (test, run) = shell_test("sh(\"printf %s \" + shell_quote(params.name)).stdout");
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert_eq!(output(&test, "t"), "x; touch pwned; echo `touch pwned2`");
    assert!(!test.path().join("pwned").exists() && !test.path().join("pwned2").exists());
}

#[test]
fn sh_try_takes_an_argument_list_too() {
    let (test, run) = shell_test("sh_try([\"sh\", \"-c\", \"exit 3\"]).code");
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert_eq!(output(&test, "t"), 3);
    let (test, run) = shell_test("sh([])");
    assert_eq!(run.status, 1);
    assert!(error(&test, "t").contains("must start with the program"));
}

#[test]
fn a_failed_argv_command_is_quoted_in_its_error() {
    let (test, _) = shell_test("sh([\"sh\", \"-c\", \"echo oops >&2; exit 4\", \"a b\"])");
    let error = error(&test, "t");
    assert!(
        error.contains("`sh -c 'echo oops >&2; exit 4' 'a b'` exited with code 4: oops"),
        "{error}"
    );
}

#[test]
fn a_program_that_cannot_start_ends_as_the_shell_would_say() {
    let (test, run) = shell_test("sh_try([\"./no-such-program\", params.name]).code");
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert_eq!(output(&test, "t"), 127);
    let (test, _) = shell_test("sh([\"./no-such-program\"])");
    let error = error(&test, "t");
    assert!(
        error.contains("exited with code 127: cannot start `./no-such-program`"),
        "{error}"
    );
}

/// `use` and `plan:` read only `.plan` files: a hostile plan cannot have
/// another file's text shown back in its diagnostics (which an agent that
/// wrote it may read).
#[test]
fn use_and_plan_read_no_file_but_plan_files() {
    for line in [
        "  use \"secret.key\" as s\n",
        "  use \"./secret.key\" as s\n",
        "\ntask s \"S\"\n  plan: \"secret.key\"\n",
        "\ntask s \"S\"\n  plan: \"./secret.key\"\n",
    ] {
        let plan = format!("plan p \"P\"\n{line}");
        let test = Test::new()
            .file("secret.key", "TOPSECRET line one\nTOPSECRET line two\n")
            .file("p.plan", plan);
        let check = cairn(&test, &["check", "p.plan"]);
        assert_eq!(check.status, 2, "{}", check.stderr);
        assert!(
            check.stderr.contains("only `.plan` files are plans")
                || check.stderr.contains("a plan file's name ends in `.plan`"),
            "{}",
            check.stderr
        );
        assert!(!check.stderr.contains("TOPSECRET"), "{}", check.stderr);
    }
}
