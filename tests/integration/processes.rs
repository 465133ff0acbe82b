//! Commands and everything they start die with their step, with cairn, and
//! before a resumed run runs their step again.
//!
//! Each test finds the processes it started by a marker unique to the test
//! in their command line (a `sleep` of an odd length), scanning `/proc`, and
//! kills whatever it finds at the end, so a failing test leaves nothing
//! behind.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::durable::spawn;
use crate::{cairn, Test};

/// A `sleep` length no other process has: `<whole>.<this test process's
/// pid><n>`.
fn marker(whole: u32, n: u32) -> String {
    format!("{whole}.{}{n}", std::process::id())
}

/// The pids of live (not zombie) processes whose command line holds
/// `marker`.
fn marked(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let words: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if words
            .iter()
            .any(|w| w.windows(marker.len()).any(|x| x == marker.as_bytes()))
        {
            found.push(pid);
        }
    }
    found
}

/// Kills whatever still carries the marker when dropped.
struct Sweep(Vec<String>);

impl Drop for Sweep {
    fn drop(&mut self) {
        for marker in &self.0 {
            for pid in marked(marker) {
                // SAFETY: only processes this test started carry the marker.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Waits up to `limit` for `done`; whether it came.
fn within(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `cairn run p.plan` and waits until `ready`.
fn start(test: &Test, ready: impl FnMut() -> bool) -> Child {
    let child = spawn(test, &["run", "p.plan"]);
    assert!(
        within(Duration::from_secs(10), ready),
        "the command did not start"
    );
    child
}

/// The process groups recorded in the store: (step, pgid).
fn groups(test: &Test) -> Vec<(String, i64)> {
    crate::pairs(test, "SELECT step, pgid FROM processes ORDER BY pgid")
}

fn read(test: &Test, file: &str) -> String {
    std::fs::read_to_string(test.path().join(file)).unwrap_or_default()
}

fn plan(run: &str) -> String {
    format!("plan p \"P\"\n  allow: sh\n\ntask a \"A\" using:sh\n  run: {run}\n")
}

/// `kill -9` of cairn takes its running command with it (the command's
/// supervisor gets a death signal and kills everything below it), and
/// `resume` then runs the step once.
#[test]
fn a_command_dies_with_cairn_and_resume_runs_it_once() {
    let sleep = marker(2, 1);
    let _sweep = Sweep(vec![sleep.clone()]);
    let test = Test::new().file(
        "p.plan",
        plan(&format!(
            "sh(\"touch started; sleep {sleep}; echo x >> ran.txt\")"
        )),
    );
    let mut child = start(&test, || {
        test.path().join("started").exists() && !marked(&sleep).is_empty()
    });
    // Recorded once it has run a little (20 ms).
    assert!(
        within(Duration::from_secs(2), || groups(&test).len() == 1),
        "the running command's group is recorded"
    );
    let killed = Instant::now();
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert!(
        within(Duration::from_secs(1), || marked(&sleep).is_empty()),
        "the command outlived cairn: {:?}",
        marked(&sleep)
    );
    // Past the end of the sleep: nothing ran on.
    std::thread::sleep(
        Duration::from_secs(2).saturating_sub(killed.elapsed()) + Duration::from_millis(300),
    );
    assert_eq!(read(&test, "ran.txt"), "");
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(read(&test, "ran.txt"), "x\n");
    assert!(groups(&test).is_empty(), "rows outlived their commands");
}

/// A command whose supervisor was killed with cairn (both `kill -9`, as the
/// OOM killer or a `kill -9` of the whole group would) leaves processes the
/// death signals do not reach: `sh`'s own child here. Its group is in the
/// store, and `resume` kills it before running the step again, so the old
/// copy never finishes beside the new one.
#[test]
fn resume_stops_what_a_killed_run_left_running_before_the_step_runs_again() {
    let sleep = marker(1, 2);
    let _sweep = Sweep(vec![sleep.clone()]);
    let test = Test::new().file(
        "p.plan",
        plan(&format!(
            "sh(\"echo start >> ran.txt; (sleep {sleep}; echo done >> ran.txt) & wait\")"
        )),
    );
    // `sh`, the subshell and its `sleep`.
    let mut child = start(&test, || {
        read(&test, "ran.txt") == "start\n"
            && marked(&sleep).len() == 3
            && !groups(&test).is_empty()
    });
    let recorded = groups(&test);
    let [(step, pgid)] = recorded.as_slice() else {
        panic!("one group: {recorded:?}");
    };
    assert_eq!(step, "a");
    let pgid = *pgid;
    let supervisor = pgid as libc::pid_t;
    // cairn stopped first, so that it does not see its supervisor die; a
    // stopped supervisor instead would make the group orphaned with a
    // stopped member when cairn dies, which the kernel answers with SIGHUP.
    // SAFETY: our own child, and the supervisor of its command (it leads
    // the group).
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGSTOP);
        libc::kill(supervisor, libc::SIGKILL);
    }
    // `sh` died with its supervisor; its child, the subshell, did not.
    assert!(
        within(Duration::from_secs(2), || marked(&sleep).len() == 2),
        "not just the subshell and its sleep survived: {:?}",
        marked(&sleep)
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert_eq!(groups(&test), [("a".to_owned(), pgid)]);
    let resumed = cairn(&test, &["resume"]);
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    // The old copy would have written `done` while the new one ran.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(&test, "ran.txt"), "start\nstart\ndone\n");
    assert!(
        resumed.stderr.contains(&format!(
            "stopped step `a`'s command (process group {pgid}), left running when run"
        )),
        "{}",
        resumed.stderr
    );
    assert!(marked(&sleep).is_empty(), "{:?}", marked(&sleep));
    assert!(groups(&test).is_empty(), "rows outlived their commands");
}

/// A detached child (`setsid`, its own session and group) is killed when
/// its command ends, whether it holds the command's output or not.
#[test]
fn a_detached_child_dies_when_its_command_ends() {
    let (holding, quiet) = (marker(100, 3), marker(100, 7));
    let _sweep = Sweep(vec![holding.clone(), quiet.clone()]);
    let test = Test::new().file(
        "p.plan",
        format!(
            "plan p \"P\"\n  allow: sh\n\ntask a \"A\" using:sh\n  run: sh(\"setsid sleep {holding} &\").code\n\ntask b \"B\" using:sh\n  run: sh(\"setsid sleep {quiet} >/dev/null 2>&1 &\").code\n"
        ),
    );
    let mut child = spawn(&test, &["run", "p.plan"]);
    let ended = within(Duration::from_secs(5), || {
        child.try_wait().expect("waits").is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("exits");
    assert!(ended, "the run waited for the detached sleep");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for sleep in [&holding, &quiet] {
        assert!(
            within(Duration::from_secs(1), || marked(sleep).is_empty()),
            "the detached sleep outlived its step: {:?}",
            marked(sleep)
        );
    }
}

/// A detached child holding the command's stdout does not hold the step
/// open: it is killed when the command exits, which closes the pipe.
#[test]
fn a_detached_child_holding_stdout_does_not_hold_the_step() {
    let sleep = marker(8, 4);
    let _sweep = Sweep(vec![sleep.clone()]);
    let test = Test::new().file(
        "p.plan",
        plan(&format!("sh(\"setsid sleep {sleep} & echo x\").stdout")),
    );
    let started = Instant::now();
    let run = cairn(&test, &["run", "p.plan", "--events", "events.jsonl"]);
    let took = started.elapsed();
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let events = read(&test, "events.jsonl");
    assert!(events.contains(r#""output":"x\n""#), "{events}");
    assert!(marked(&sleep).is_empty(), "{:?}", marked(&sleep));
}

/// A timeout kills the command's detached children too.
#[test]
fn a_timeout_kills_detached_children() {
    let sleep = marker(100, 5);
    let _sweep = Sweep(vec![sleep.clone()]);
    let test = Test::new().file(
        "p.plan",
        format!(
            "plan p \"P\"\n  allow: sh\n\ntask a \"A\" using:sh\n  timeout: 500ms\n  run: sh(\"setsid sleep {sleep} & sleep 30\")\n"
        ),
    );
    let started = Instant::now();
    let run = cairn(&test, &["run", "p.plan"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("timed out"), "{}", run.stdout);
    assert!(
        within(Duration::from_secs(1), || marked(&sleep).is_empty()),
        "the detached sleep outlived the timeout: {:?}",
        marked(&sleep)
    );
}

/// Ctrl-C kills running commands' detached children too.
#[test]
fn ctrl_c_kills_detached_children() {
    let sleep = marker(100, 6);
    let _sweep = Sweep(vec![sleep.clone()]);
    let test = Test::new().file(
        "p.plan",
        plan(&format!(
            "sh(\"setsid sleep {sleep} & touch started; sleep 30\")"
        )),
    );
    let child = start(&test, || {
        test.path().join("started").exists() && !marked(&sleep).is_empty()
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().expect("exits");
    assert_eq!(out.status.code(), Some(130));
    assert!(
        within(Duration::from_secs(1), || marked(&sleep).is_empty()),
        "the detached sleep outlived Ctrl-C: {:?}",
        marked(&sleep)
    );
    assert!(groups(&test).is_empty(), "rows outlived their commands");
}

/// The supervisor passes the program's exit on: its code, or the signal
/// that ended it; a program that cannot be started is reported as before.
#[test]
fn a_commands_status_is_its_programs() {
    let test = Test::new()
        .file(
            "p.plan",
            "plan p \"P\"\n  allow: sh\n\ntask a \"A\" using:sh\n  run: [sh_try(\"exit 7\").code, sh_try(\"kill -TERM $$\").code, sh_try([\"no-such-program-here\"]).code, sh_try(\"echo out; echo err >&2\"), sh_try([\"sh\", \"-c\", \"pwd\"]).stdout, sh_try([\"./script\", \"arg\"]).stdout]\n",
        )
        // No `#!`: run by the shell, as `execvp` runs it.
        .file("script", "echo script \"$1\"\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        test.path().join("script"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let run = cairn(&test, &["run", "p.plan", "--events", "events.jsonl"]);
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    let events = read(&test, "events.jsonl");
    let succeeded: serde_json::Value = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|e| e["event"] == "step_succeeded")
        .expect("a succeeded");
    let dir = test.path().canonicalize().expect("dir");
    assert_eq!(
        succeeded["output"],
        serde_json::json!([
            7,
            -1,
            127,
            {"code": 0, "stdout": "out\n", "stderr": "err\n"},
            format!("{}\n", dir.display()),
            "script arg\n"
        ])
    );
}

/// cairn ignores SIGXFSZ (a full store is an error it reports); what it
/// runs gets the default back, so a command past `ulimit -f` ends by the
/// signal as it would outside cairn (exit 153 from the shell).
#[test]
fn commands_get_the_default_file_size_signal_back() {
    let test = Test::new().file(
        "p.plan",
        plan("sh(\"ulimit -f 1; head -c 100000 /dev/zero > big; echo $?\").stdout"),
    );
    let run = crate::cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert_eq!(crate::status_step(&test, "a")["output"], "153\n");
}

/// The supervisor stops only when cairn asks (or dies): a `kill 0` from the
/// command's own group reaches it too, and must not end the command.
#[test]
fn a_command_signalling_its_own_group_is_not_stopped_by_its_supervisor() {
    let test = Test::new().file(
        "p.plan",
        plan(
            "sh(\"trap '' TERM HUP; kill -TERM 0; kill -HUP 0; sleep 0.2; echo survived\").stdout",
        ),
    );
    let run = crate::cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert_eq!(crate::status_step(&test, "a")["output"], "survived\n");
}

/// A program killed by a core-dumping signal is reported by that signal,
/// and cairn goes on: the supervisor, which shares cairn's memory, only
/// hands the status over (raising the signal in it would dump cairn's
/// memory, and before Linux 5.16 kill cairn).
#[test]
fn a_program_that_aborts_is_reported_and_cairn_goes_on() {
    let test = Test::new().file(
        "p.plan",
        "plan p \"P\"\n  allow: sh\n\ntask a \"A\" using:sh\n  run: sh_try(\"kill -ABRT $$\").code\n\ntask b \"B\"\n  needs: a\n  run: \"after\"\n",
    );
    let run = crate::cairn(&test, &["run", "p.plan"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(crate::status_step(&test, "a")["output"], -1);
    assert_eq!(crate::status_step(&test, "b")["output"], "after");
}
