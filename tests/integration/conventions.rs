//! The conventions of a command-line tool: shell completions, a manual page, exit codes.

use crate::{cairn, Test};

/// Every shell clap_complete knows gets a script naming the subcommands;
/// bash's parses as bash.
#[test]
fn completions_are_printed_for_every_shell() {
    let test = Test::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = cairn(&test, &["completions", shell]);
        assert_eq!(run.status, 0, "{shell}: {}", run.stderr);
        for command in [
            "run",
            "resume",
            "status",
            "output",
            "artifact",
            "completions",
        ] {
            assert!(run.stdout.contains(command), "{shell} lacks `{command}`");
        }
    }
    let script = test.path().join("cairn.bash");
    std::fs::write(&script, cairn(&test, &["completions", "bash"]).stdout).expect("write");
    let parsed = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .expect("bash runs");
    assert!(
        parsed.success(),
        "the bash completion script does not parse"
    );
    let unknown = cairn(&test, &["completions", "tcsh"]);
    assert_eq!(unknown.status, 2);
    assert!(
        unknown.stderr.contains("possible values"),
        "{}",
        unknown.stderr
    );
}

/// No runs, no store, or no such run: one exit code (2, bad input), and
/// reading commands never create the store.
#[test]
fn no_runs_is_one_exit_code_and_reading_creates_nothing() {
    let test = Test::new().file("p.plan", "plan p \"P\"\n\ntask a \"A\"\n  run: 1\n");
    for args in [
        &["status"][..],
        &["runs"],
        &["log"],
        &["output", "a"],
        &["artifact"],
    ] {
        let run = cairn(&test, args);
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("no runs recorded"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(cairn(&test, &["check", "p.plan"]).status, 0);
    assert!(
        !test.path().join(".cairn").exists(),
        "a reading command made the store"
    );
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 0);
    let missing = cairn(&test, &["status", "zzzz"]);
    assert_eq!(missing.status, 2, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("no run `zzzz`"),
        "{}",
        missing.stderr
    );
}

/// `cairn man` prints a manual page in roff, from the same definitions as
/// `--help`.
#[test]
fn the_manual_page_is_roff_naming_every_command() {
    let run = cairn(&Test::new(), &["man"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stdout.contains(".TH cairn 1"), "{}", run.stdout);
    assert!(run.stdout.contains(".SH NAME"), "{}", run.stdout);
    let subcommands = run
        .stdout
        .split(".SH SUBCOMMANDS")
        .nth(1)
        .expect("a SUBCOMMANDS section");
    for command in [
        "check",
        "run",
        "resume",
        "status",
        "output",
        "artifact",
        "completions",
        "man",
    ] {
        assert!(
            subcommands.contains(&format!("\ncairn\\-{command}(1)\n")),
            "the manual lacks `{command}`"
        );
    }
}

/// `--color` decides colour whatever the output is (`never` also on a
/// terminal; `always` also into a pipe), and `NO_COLOR` turns `auto` off.
#[test]
fn color_is_chosen_by_the_flag() {
    let test = Test::new().file(
        "p.plan",
        "plan p \"P\"\n\ntask a \"A\"\n  needs: b\n  run: 1\n",
    );
    let always = cairn(&test, &["check", "--color", "always", "p.plan"]);
    assert!(always.stderr.contains("\u{1b}["), "{}", always.stderr);
    let never = cairn(&test, &["check", "--color", "never", "p.plan"]);
    assert!(!never.stderr.contains("\u{1b}["), "{}", never.stderr);
    // Into a pipe, `auto` is plain.
    let auto = cairn(&test, &["check", "p.plan"]);
    assert!(!auto.stderr.contains("\u{1b}["), "{}", auto.stderr);
    assert_eq!(never.stderr, auto.stderr);
}

/// `-q` leaves out the progress lines (and a success's table); what went
/// wrong still shows.
#[test]
fn quiet_runs_say_only_what_matters() {
    let test = Test::new()
        .file("ok.plan", "plan ok \"OK\"\n\ntask a \"A\"\n  run: 1\n")
        .file(
            "bad.plan",
            "plan bad \"Bad\"\n\ntask a \"A\"\n  run: fail(\"broke\")\n",
        );
    let ok = cairn(&test, &["run", "-q", "ok.plan"]);
    assert_eq!(ok.status, 0, "{}", ok.stderr);
    assert!(
        ok.stdout.starts_with("run succeeded\nrun "),
        "{}",
        ok.stdout
    );
    assert!(!ok.stdout.contains("start"), "{}", ok.stdout);
    let bad = cairn(&test, &["run", "bad.plan", "--quiet"]);
    assert_eq!(bad.status, 1);
    assert!(!bad.stdout.contains("  start"), "{}", bad.stdout);
    assert!(
        bad.stdout.contains("run failed: `a` failed: broke"),
        "{}",
        bad.stdout
    );
    let both = cairn(&test, &["-q", "-v", "runs"]);
    assert_eq!(both.status, 2, "{}", both.stderr);
}

/// `approve`, `reject`, `resume`, `replay` and `audit verify` say what they did as
/// JSON for tools, with the same exit codes.
#[test]
fn durable_commands_answer_in_json() {
    let test = Test::new().file(
        "g.plan",
        "plan g \"G\"\n\ngate ok \"OK?\"\n\ntask a \"A\"\n  needs: ok\n  run: 1\n",
    );
    assert_eq!(cairn(&test, &["run", "g.plan"]).status, 3);
    let approve = cairn(
        &test,
        &["approve", "ok", "--reason", "fine", "--by", "ana", "--json"],
    );
    assert_eq!(approve.status, 0, "{}", approve.stderr);
    let value: serde_json::Value = serde_json::from_str(&approve.stdout).expect("json");
    assert_eq!(value["answer"], "approved");
    assert_eq!(value["gate"], "ok");
    assert_eq!(value["by"], "ana");
    let run = value["run"].as_str().expect("run").to_owned();
    let resume = cairn(&test, &["resume", "--json"]);
    assert_eq!(resume.status, 0, "{}", resume.stderr);
    let value: serde_json::Value = serde_json::from_str(&resume.stdout).expect("one object");
    assert_eq!(value["status"], "succeeded");
    assert_eq!(value["run"], run.as_str());
    assert_eq!(value["steps"][1]["step"], "a");
    assert!(
        resume.stderr.contains("run succeeded"),
        "progress goes to stderr"
    );
    let replay = cairn(&test, &["replay", "--json"]);
    assert_eq!(replay.status, 0, "{}", replay.stderr);
    let value: serde_json::Value = serde_json::from_str(&replay.stdout).expect("json");
    assert_eq!(value["identical"], true);
    assert_eq!(value["run"], run.as_str());
    let verify = cairn(&test, &["audit", "verify", "--all", "--json"]);
    assert_eq!(verify.status, 0, "{}", verify.stderr);
    let value: serde_json::Value = serde_json::from_str(verify.stdout.trim()).expect("one run");
    assert_eq!(value["intact"], true);
    assert!(value["events"].as_u64().expect("events") > 3);
}

/// A command's `--help` lists its own options first and the flags every
/// command takes under their own heading.
#[test]
fn help_puts_the_global_options_apart() {
    let test = Test::new();
    let help = cairn(&test, &["status", "--help"]);
    assert_eq!(help.status, 0, "{}", help.stderr);
    let own = help.stdout.find("--json").expect("its own option");
    let global = help.stdout.find("Global options:").expect("the heading");
    assert!(own < global, "{}", help.stdout);
    for flag in [
        "--state-dir",
        "--color",
        "--quiet",
        "--verbose",
        "--log-format",
    ] {
        let at = help.stdout.find(flag).unwrap_or_else(|| panic!("{flag}"));
        assert!(
            at > global,
            "{flag} is not under the heading:\n{}",
            help.stdout
        );
    }
}

/// Commands that never touch the run store do not offer `--state-dir`;
/// the ones that do take it after the command (and, as older scripts
/// write it, before it), down to their own subcommands.
#[test]
fn only_the_store_commands_take_a_state_dir() {
    let test = Test::new().file("p.plan", "plan p \"P\"\n\ntask a \"A\"\n  run: 1\n");
    for command in [
        &["check", "--help"][..],
        &["graph", "--help"],
        &["templates", "--help"],
        &["new", "--help"],
    ] {
        let help = cairn(&test, command);
        assert_eq!(help.status, 0, "{}", help.stderr);
        assert!(
            !help.stdout.contains("--state-dir"),
            "{command:?}:\n{}",
            help.stdout
        );
    }
    let check = cairn(&test, &["check", "p.plan", "--state-dir", "x"]);
    assert_eq!(check.status, 2, "{}", check.stderr);
    assert!(check.stderr.contains("--state-dir"), "{}", check.stderr);

    let run = cairn(&test, &["--state-dir", "before", "run", "p.plan"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(test.path().join("before/state.db").is_file());
    let listed = cairn(
        &test,
        &["runs", "prune", "--keep", "0", "--state-dir", "before"],
    );
    assert_eq!(listed.status, 0, "{}", listed.stderr);
    let status = cairn(&test, &["status", "--state-dir", "before"]);
    assert_eq!(status.status, 2, "pruned, so none left: {}", status.stderr);
    assert!(
        status.stderr.contains("no runs recorded"),
        "{}",
        status.stderr
    );
}
