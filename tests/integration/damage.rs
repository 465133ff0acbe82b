//! A store that cannot be written, is damaged, or fills up: reads still
//! work, damage is named, and a failed commit leaves a consistent record.

use std::process::Command;

use crate::{cairn, db, Run, Test};

const PLAN: &str = "plan p \"P\"\n  allow: sh\n\ntask a \"A\" using:sh\n  run: sh(\"echo hi\").stdout\n\ngate g \"G\"\n  needs: a\n";

fn output(out: std::process::Output) -> Run {
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `cairn <args>` with the test's `.cairn` read-only: a read-only bind
/// mount in a mount namespace of its own when run as root (whom file modes
/// do not stop), the directory's and file's write bits removed otherwise.
fn read_only(test: &Test, args: &[&str]) -> Run {
    let exe = assert_cmd::cargo::cargo_bin("cairn");
    // SAFETY: geteuid only reads the process's effective user id.
    let root = unsafe { libc::geteuid() } == 0;
    let mut command = if root {
        let mut c = Command::new("unshare");
        c.args(["-m", "sh", "-c"])
            .arg("mount --bind .cairn .cairn && mount -o remount,bind,ro .cairn && exec \"$0\" \"$@\"")
            .arg(&exe);
        c
    } else {
        use std::os::unix::fs::PermissionsExt;
        for path in [".cairn/state.db", ".cairn"] {
            let path = test.path().join(path);
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !0o222))
                .expect("chmod");
        }
        Command::new(&exe)
    };
    let out = command
        .args(args)
        .current_dir(test.path())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("cairn runs");
    if !root {
        use std::os::unix::fs::PermissionsExt;
        for path in [".cairn", ".cairn/state.db"] {
            let path = test.path().join(path);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
    output(out)
}

#[test]
fn a_read_only_store_still_answers_every_reading_command() {
    let test = Test::new().file("p.plan", PLAN);
    assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
    let writable = |args: &[&str]| cairn(&test, args).stdout;
    // (`runs --json`: the table's "started … ago" moves between the two.)
    for args in [
        &["runs", "--json"][..],
        &["status"],
        &["log"],
        &["audit", "verify"],
        &["audit", "head"],
    ] {
        let run = read_only(&test, args);
        assert_eq!(run.status, 0, "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, writable(args), "{args:?}");
    }
    let replay = read_only(&test, &["replay"]);
    assert_eq!(replay.status, 0, "{}", replay.stderr);
    for args in [&["resume", "--approve", "g"][..], &["run", "p.plan"]] {
        let refused = read_only(&test, args);
        assert_eq!(refused.status, 1, "{args:?}: {}", refused.stdout);
        assert_eq!(
            refused.stderr,
            "error: the run store `.cairn/state.db` is read-only: `cairn runs`, `status`, `log`, `replay` and `audit` read it, but running or going on with a run writes to it\n",
            "{args:?}"
        );
    }
}

/// A truncated store is damage, not a new store: nothing writes over it.
#[test]
fn an_empty_state_db_is_reported_as_damaged() {
    let test = Test::new().file("p.plan", PLAN).file(".cairn/state.db", "");
    for args in [&["runs"][..], &["run", "p.plan"]] {
        let run = cairn(&test, args);
        assert_eq!(run.status, 1, "{args:?}: {}", run.stdout);
        assert_eq!(
            run.stderr,
            "error: the run store `.cairn/state.db` is damaged: it is empty (0 bytes); move it aside to start a new one (its runs are lost)\n",
            "{args:?}"
        );
    }
    let len = std::fs::metadata(test.path().join(".cairn/state.db"))
        .expect("kept")
        .len();
    assert_eq!(len, 0);
}

#[test]
fn a_schema_version_no_cairn_writes_is_refused() {
    for (version, problem) in [
        (-1, "its schema version is -1, which no cairn writes"),
        (
            0,
            "its schema version is 0 but it holds cairn's tables (the version was reset)",
        ),
    ] {
        let test = Test::new().file("p.plan", PLAN);
        assert_eq!(cairn(&test, &["run", "p.plan"]).status, 3);
        db(&test)
            .pragma_update(None, "user_version", version)
            .expect("set");
        let run = cairn(&test, &["runs"]);
        assert_eq!(run.status, 1, "{version}: {}", run.stdout);
        assert_eq!(
            run.stderr,
            format!("error: the run store `.cairn/state.db` is damaged: {problem}; move it aside to start a new one (its runs are lost)\n"),
        );
    }
}

/// Past a file-size limit the commit fails: cairn is not killed, says the
/// run is not recorded in full, records nothing after the failed commit
/// (the run stays resumable), and a resume with room finishes it.
#[test]
fn a_full_disk_leaves_a_consistent_resumable_record() {
    let plan = "plan p \"P\"\n\ntask a \"A\"\n  run: 1\n\ntask big \"Big\"\n  needs: a\n  run: |\n    let s = \"x\";\n    while s.len() < 3000000 { s += s; }\n    artifact(\"big\", s);\n    1\n\ntask c \"C\"\n  needs: big\n  run: 2\n";
    let test = Test::new().file("p.plan", plan);
    let exe = assert_cmd::cargo::cargo_bin("cairn");
    let out = Command::new("sh")
        .args(["-c", "ulimit -f 2000; exec \"$0\" run p.plan"])
        .arg(&exe)
        .current_dir(test.path())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("cairn runs");
    let run = output(out);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("is not recorded in full (the run store `.cairn/state.db`: disk I/O error (is the disk full, or a file-size limit (`ulimit -f`) reached?)): .cairn/state.db keeps it up to its last commit"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("is recorded in"), "{}", run.stdout);
    let runs = cairn(&test, &["runs"]);
    let cells: Vec<&str> = runs
        .stdout
        .lines()
        .nth(1)
        .expect("a run")
        .split_whitespace()
        .collect();
    // `a` declares no capability, so it waited for the commit that failed:
    // the record ends before it, and the resume runs it again.
    assert_eq!(cells[2..4], ["running", "0/3"], "{}", runs.stdout);
    assert_eq!(cairn(&test, &["audit", "verify"]).status, 0);
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 0, "{}", resumed.stdout);
    assert!(
        resumed.stdout.contains("run succeeded"),
        "{}",
        resumed.stdout
    );
}
