//! `cairn repl`: scripted sessions through standard input, compared with
//! their transcripts, and a real terminal for completion and Ctrl-C.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use crate::Test;

const PLAN: &str = "plan demo \"Demo\"\n  param name = \"world\"\n\ntask greet \"Greet\"\n  run: `hello, ${params.name}`\n\ntask count \"Count\"\n  needs: greet\n  input:\n    text: outputs[\"greet\"]\n  run: |\n    log(`counting ${input.text}`);\n    input.text.len()\n\ngate ship \"Ship it\"\n  needs: count\n\ntask done \"Done\"\n  needs: ship\n  run: outputs[\"count\"] * 2\n";

/// Feeds `input` to `cairn <args>` in the test's directory.
fn session(test: &Test, args: &[&str], input: &str) -> String {
    let output = assert_cmd::Command::cargo_bin("cairn")
        .expect("binary")
        .args(args)
        .current_dir(test.path())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env("USER", "tester")
        .write_stdin(input)
        .output()
        .expect("cairn runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Each line of `actual` matches the same line of `expected`, where `…`
/// in `expected` stands for anything.
pub fn assert_transcript(actual: &str, expected: &str) {
    let actual: Vec<&str> = actual.lines().collect();
    let expected: Vec<&str> = expected.lines().collect();
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        let mut rest = *a;
        let mut ok = true;
        for (k, piece) in e.split('…').enumerate() {
            match rest.find(piece) {
                Some(at) if k > 0 || at == 0 => rest = &rest[at + piece.len()..],
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        ok &= e.ends_with('…') || rest.is_empty();
        assert!(
            ok,
            "line {}:\n  got      {a}\n  expected {e}\n\n{}",
            i + 1,
            actual.join("\n")
        );
    }
    assert_eq!(
        actual.len(),
        expected.len(),
        "transcript length differs:\n{}",
        actual.join("\n")
    );
}

#[test]
fn stepping_breakpoints_inspect_eval_and_approve() {
    let test = Test::new().file("demo.plan", PLAN);
    let input = ":plan\n:next\noutputs[\"greet\"]\nlet n = input.text.len();\nn * 10\n:break done\n:breaks\n:run\n:approve ship tests are green\n:run\n:run\n:inspect count\n:nxt\n:step doen\n:quit\n";
    let expected = r#"run … of `demo` (4 steps); `:help` lists the commands
demo 0/4> :plan
step   status
greet  ready
count  not run  waits for greet
ship   not run  waits for count
done   not run  waits for ship
demo 0/4> :next
  start     greet
  ok        greet
            = "hello, world"
demo 1/4> outputs["greet"]
"hello, world"
demo 1/4> let n = input.text.len();
()
demo 1/4> n * 10
120
demo 1/4> :break done
breakpoint at `done`
demo 1/4> :breaks
  done
demo 1/4> :run
  start     count
  log       count: counting hello, world
  ok        count
            = 12
  waiting   ship: Ship it
waiting at ship: `:approve <gate> [reason]` or `:reject`
demo 2/4> :approve ship tests are green
approved `ship`
demo 3/4> :run
breakpoint: `done` is next (`:run` goes on, `:inspect done` looks first)
demo 3/4> :run
  start     done
  ok        done
            = 24
run succeeded
demo 4/4> :inspect count
count "Count" (Task)
  status    succeeded
  attempts  1
  time      …
  output    12
  input     text: outputs["greet"]
  log       counting hello, world
demo 4/4> :nxt
error: no command `:nxt`; did you mean `:next`?
demo 4/4> :step doen
error: no step `doen`; did you mean `done`?
demo 4/4> :quit
run … is saved; `cairn repl --resume …` (or `cairn resume …`) goes on
"#;
    assert_transcript(&session(&test, &["repl", "demo.plan"], input), expected);
}

/// `:set` reads its value as `--set` does, and keeps nothing it refuses.
#[test]
fn set_refuses_a_value_of_the_wrong_type() {
    let plan = "plan p \"P\"\n  param n = 3\n\ntask a \"A\"\n  run: params.n * 2\n";
    let test = Test::new().file("p.plan", plan);
    let input = ":set n = abc\n:run\n:quit\n";
    let expected = r#"run … of `p` (1 steps); `:help` lists the commands
p 0/1> :set n = abc
error: `--set n=abc`: param `n` takes an integer (its default is 3)
p 0/1> :run
  start     a
  ok        a
            = 6
run succeeded
p 1/1> :quit
run … is saved; `cairn repl --resume …` (or `cairn resume …`) goes on
"#;
    assert_transcript(&session(&test, &["repl", "p.plan"], input), expected);
}

/// Stepping through a fan-out: `:next` starts one instance at a time, the
/// count is of the plan's steps, and `:run` runs the rest of the instances.
#[test]
fn stepping_through_each_instance_by_instance() {
    let plan = "plan p \"P\"\n\ntask sq \"Squares\"\n  each: [1, 2, 3]\n  max_parallel: 1\n  run: item * item\n\ntask sum \"Sum\"\n  needs: sq\n  run: outputs[\"sq\"].reduce(|a, b| a + b, 0)\n";
    let test = Test::new().file("p.plan", plan);
    let input = ":next\n:next\n:run\n:quit\n";
    let expected = r#"run … of `p` (2 steps); `:help` lists the commands
p 0/2> :next
  start     sq
  each      sq: 3 instances
p 0/2> :next
  start     sq[0]
  ok        sq[0]
            = 1
p 0/2> :run
  start     sq[1]
  ok        sq[1]
            = 4
  start     sq[2]
  ok        sq[2]
            = 9
  ok        sq
            = [1,4,9]
  start     sum
  ok        sum
            = 14
run succeeded
p 2/2> :quit
run … is saved; `cairn repl --resume …` (or `cairn resume …`) goes on
"#;
    assert_transcript(&session(&test, &["repl", "p.plan"], input), expected);
}

/// A loop steps iteration by iteration: each is a step of its own.
#[test]
fn stepping_through_a_loop_iteration_by_iteration() {
    let plan = "plan p \"P\"\n\ntask grow \"Grow\"\n  repeat: max 4 until result >= 2\n  run: iteration.index\n";
    let test = Test::new().file("p.plan", plan);
    let input = ":next\n:next\n:step grow#2\n:retry grow\n:break grow\n:run\n:run\n:quit\n";
    let expected = r#"run … of `p` (1 steps); `:help` lists the commands
p 0/1> :next
  start     grow
  repeat    grow: at most 4 iterations
p 0/1> :next
  start     grow#1
  ok        grow#1 (`until` does not hold yet)
            = 1
p 0/1> :step grow#2
  start     grow#2
  ok        grow#2 (`until` holds)
            = 2
  ok        grow
            = 2
run succeeded
p 1/1> :retry grow
…
p 0/1> :break grow
breakpoint at `grow`
p 0/1> :run
…breakpoint: `grow` is next (`:run` goes on, `:inspect grow` looks first)
p 0/1> :run
  start     grow
  repeat    grow: at most 4 iterations
  start     grow#1
  ok        grow#1 (`until` does not hold yet)
            = 1
  start     grow#2
  ok        grow#2 (`until` holds)
            = 2
  ok        grow
            = 2
run succeeded
p 1/1> :quit
run … is saved; `cairn repl --resume …` (or `cairn resume …`) goes on
"#;
    assert_transcript(&session(&test, &["repl", "p.plan"], input), expected);
}

/// Expressions at the prompt see the hypotheses with the evidence weighed
/// so far, as `:status` shows them.
#[test]
fn the_prompt_sees_the_hypotheses() {
    let plan = "plan p \"P\"\n  hypothesis h1 \"It is the pool\"\n  hypothesis h2 \"It is a race\"\n\ntask a \"A\"\n  run: evidence(\"h1\", \"supports\", \"saw it\")\n";
    let test = Test::new().file("p.plan", plan);
    let input = "best_hypothesis()\n:run\nbest_hypothesis()\nconfidence(\"h1\") > confidence(\"h2\")\n:quit\n";
    let expected = r#"run … of `p` (1 steps); `:help` lists the commands
p 0/1> best_hypothesis()
""
p 0/1> :run
  start     a
  evidence  a: supports h1 (saw it); confidence 0.67
  ok        a
            = 0.6666666666666666
run succeeded
p 1/1> best_hypothesis()
"h1"
p 1/1> confidence("h1") > confidence("h2")
true
p 1/1> :quit
run … is saved; `cairn repl --resume …` (or `cairn resume …`) goes on
"#;
    assert_transcript(&session(&test, &["repl", "p.plan"], input), expected);
}

/// The plan's `functions:` are callable at the prompt, as in its steps.
#[test]
fn the_prompt_calls_the_plan_s_functions() {
    let plan = "plan p \"P\"\n  functions: |\n    fn double(x) { x * 2 }\n\ntask a \"A\"\n  input:\n    n: double(4)\n  run: double(input.n)\n";
    let test = Test::new().file("p.plan", plan);
    let input = "double(21)\ninput.n\n:quit\n";
    let expected = r#"run … of `p` (1 steps); `:help` lists the commands
p 0/1> double(21)
42
p 0/1> input.n
8
p 0/1> :quit
run … is saved; `cairn repl --resume …` (or `cairn resume …`) goes on
"#;
    assert_transcript(&session(&test, &["repl", "p.plan"], input), expected);
}

#[test]
fn skip_retry_set_reload_and_quit_then_resume() {
    let test = Test::new().file("demo.plan", PLAN);
    let first = ":skip ship\n:next\n:retry greet\n:set name = \"cairn\"\n:next\n:quit\n";
    let expected = r#"run … of `demo` (4 steps); `:help` lists the commands
demo 0/4> :skip ship
`ship` will be skipped
demo 1/4> :next
  start     greet
  ok        greet
            = "hello, world"
demo 2/4> :retry greet
will run again: greet
demo 1/4> :set name = "cairn"
params.name = "cairn" for the steps that have not run yet
demo 1/4> :next
  start     greet
  ok        greet
            = "hello, cairn"
demo 2/4> :quit
run … is saved; `cairn repl --resume …` (or `cairn resume …`) goes on
"#;
    assert_transcript(&session(&test, &["repl", "demo.plan"], first), expected);
    // Edit `count` while the run is saved; resume in a new process.
    std::fs::write(
        test.path().join("demo.plan"),
        PLAN.replace("input.text.len()", "input.text.len() + 1"),
    )
    .expect("edit");
    let second = ":reload\n:run\n:status\n";
    let expected = r#"run … of `demo` (4 steps); `:help` lists the commands
demo 2/4> :reload
edited: count
every recorded result still stands
demo 2/4> :run
  start     count
  log       count: counting hello, cairn
  ok        count
            = 13
  skipped   done: every step it needs was skipped
run succeeded
demo 4/4> :status
run … of `demo` (demo.plan): 4/4 steps settled
the run has ended
demo 4/4> 
run … is saved; `cairn repl --resume …` (or `cairn resume …`) goes on
"#;
    assert_transcript(&session(&test, &["repl", "--resume"], second), expected);
}

/// On a real terminal (util-linux `script`): Tab completes a command, Ctrl-C
/// cancels the running step and returns to the prompt, Ctrl-C at the prompt
/// clears the line.
#[test]
fn on_a_terminal_tab_completes_and_ctrl_c_cancels_the_step() {
    let plan = "plan slow \"Slow\"\n  allow: sh\n\ntask wait \"Wait\" using:sh\n  run: sh(\"sleep 30\")\n\ntask after \"After\"\n  needs: wait\n  run: 1\n";
    let test = Test::new().file("p.plan", plan);
    let exe = assert_cmd::cargo::cargo_bin("cairn");
    // `exec`: the shell `script` starts must not stay in the terminal's
    // foreground group, where Ctrl-C would end it and report 130.
    let child = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("exec '{}' repl p.plan", exe.display()),
            "/dev/null",
        ])
        .current_dir(test.path())
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(_) if std::env::var_os("CI").is_none() => return,
        Err(err) => panic!("`script` (util-linux) is needed for terminal tests: {err}"),
    };
    let mut stdin = child.stdin.take().expect("stdin");
    let mut terminal = Screen::new(child.stdout.take().expect("stdout"));
    let started = std::time::Instant::now();
    let mut type_in = |text: &str| {
        stdin.write_all(text.as_bytes()).expect("type");
        stdin.flush().expect("flush");
    };
    terminal.wait_for("(next: wait)");
    type_in(":ne\t\r");
    terminal.wait_for("start     wait");
    type_in("\x03");
    terminal.wait_for("interrupted:");
    // The hint is drawn once the line editor has the terminal again.
    terminal.wait_for("(next: wait)");
    type_in("junk\x03");
    terminal.wait_for("(next: wait)");
    type_in(":quit\r");
    let status = child.wait().expect("script exits");
    drop(stdin);
    let screen = terminal.finish();
    assert_eq!(status.code(), Some(0), "{screen}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the step was not cancelled:\n{screen}"
    );
    for expected in [":next", "cancelled wait", "is saved;"] {
        assert!(screen.contains(expected), "no `{expected}` in:\n{screen}");
    }
    // The run is saved with the step cancelled: it runs again when resumed.
    let status = crate::run_in(test.path(), &["status".to_owned()]);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["wait", "cancelled"])),
        "{}",
        status.stdout
    );
}

/// What a terminal shows, read as it arrives.
struct Screen {
    bytes: std::sync::mpsc::Receiver<Vec<u8>>,
    /// What has not been waited for yet.
    seen: String,
    /// Everything, for assertions and failure messages.
    all: String,
}

impl Screen {
    fn new(mut output: impl Read + Send + 'static) -> Self {
        let (send, bytes) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(n @ 1..) = output.read(&mut buffer) {
                if send.send(buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Self {
            bytes,
            seen: String::new(),
            all: String::new(),
        }
    }

    /// Waits (up to 15 s) until `text` appears after what was waited for
    /// before, and consumes the screen up to it.
    fn wait_for(&mut self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(at) = self.seen.find(text) {
                self.seen.drain(..at + text.len());
                return;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.bytes.recv_timeout(left) {
                Ok(bytes) => self.take(&bytes),
                Err(_) => panic!("no `{text}` on the terminal; it shows:\n{}", self.all),
            }
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes).replace('\r', "");
        self.seen.push_str(&text);
        self.all.push_str(&text);
    }

    /// The whole screen, once the terminal closes.
    fn finish(mut self) -> String {
        while let Ok(bytes) = self.bytes.recv_timeout(Duration::from_secs(15)) {
            self.take(&bytes);
        }
        self.all
    }
}

/// A gate inside a `plan:` step's child run is named under the step, and
/// `:approve` answers it in the child's log; the next `:run` goes on there.
#[test]
fn a_child_runs_gate_is_approved_under_its_step() {
    let child = "plan one \"One\"\n\ntask build \"Build\"\n  run: 41\n\ngate ok \"OK?\"\n  needs: build\n\ntask ship \"Ship\"\n  needs: ok\n  run: outputs[\"build\"] + 1\n";
    let parent = "plan p \"P\"\n\ntask one \"One\"\n  plan: \"one.plan\"\n";
    let test = Test::new().file("one.plan", child).file("p.plan", parent);
    let input = ":run\n:status\n:approve one.ok fine\n:run\n:quit\n";
    let expected = r#"run … of `p` (1 steps); `:help` lists the commands
p 0/1> :run
  start     one
  plan      one: runs `one.plan` as run …
  waiting   one: on one.ok
waiting at one.ok: `:approve <gate> [reason]` or `:reject`
p 0/1> :status
run … of `p` (p.plan): 0/1 steps settled
ready: one
waiting for approval: one.ok
p 0/1> :approve one.ok fine
approved `one.ok`
p 0/1> :run
  start     one
  plan      one: runs `one.plan` as run …
  ok        one
            = {"build":41,"ok":{"approved":true,"by":"tester","input":{},"reason":"fine"},"ship":42}
run succeeded
p 1/1> :quit
run … is saved; `cairn repl --resume …` (or `cairn resume …`) goes on
"#;
    assert_transcript(&session(&test, &["repl", "p.plan"], input), expected);
}

/// `:break <step> if <expr>` stops `:run` only when the expression holds as
/// the step comes next (here at the third instance); `:watch` shows an
/// expression after each command that runs steps.
#[test]
fn conditional_breakpoints_and_watches() {
    let plan = "plan loop \"Loop\"\n  max_parallel: 1\n\ntask items \"Items\"\n  run: [1, 2, 3]\n\ntask each-one \"Each\"\n  needs: items\n  each: outputs[\"items\"]\n  run: item * 10\n";
    let test = Test::new().file("loop.plan", plan);
    let input = ":watch outputs.len()\n:break each-one if outputs.len() >= 3\n:breaks\n:run\n:run\n:unwatch outputs.len()\n:unwatch nothing\n:quit\n";
    let expected = r#"run … of `loop` (2 steps); `:help` lists the commands
loop 0/2> :watch outputs.len()
watching outputs.len() = 0
loop 0/2> :break each-one if outputs.len() >= 3
breakpoint at `each-one` if outputs.len() >= 3
loop 0/2> :breaks
  each-one if outputs.len() >= 3
loop 0/2> :run
  start     items
  ok        items
            = [1,2,3]
  start     each-one
  each      each-one: 3 instances
  start     each-one[0]
  ok        each-one[0]
            = 10
  start     each-one[1]
  ok        each-one[1]
            = 20
breakpoint: `each-one[2]` is next and outputs.len() >= 3 (`:run` goes on, `:inspect each-one[2]` looks first)
watch outputs.len() = 3
loop 1/2> :run
  start     each-one[2]
  ok        each-one[2]
            = 30
  ok        each-one
            = [10,20,30]
run succeeded
watch outputs.len() = 5
loop 2/2> :unwatch outputs.len()
no longer watching outputs.len()
loop 2/2> :unwatch nothing
error: `nothing` is not watched (`:watch` adds it)
loop 2/2> :quit
run … is saved; `cairn repl --resume …` (or `cairn resume …`) goes on
"#;
    assert_transcript(&session(&test, &["repl", "loop.plan"], input), expected);
}

/// `:approve <gate> field=value … reason`: the leading `field=value` words
/// fill the gate's `input:`, checked as `cairn approve --input` checks them.
#[test]
fn approve_fills_a_gates_input() {
    let plan = "plan p \"P\"\n\ngate ship \"Ship?\"\n  input:\n    percent: int 1..100 = 10\n    note: string\n\ntask after \"After\"\n  needs: ship\n  run: outputs[\"ship\"].input\n";
    let test = Test::new().file("p.plan", plan);
    let input = ":run\n:approve ship percent=500 looks fine\n:approve ship percent=30 note=flat looks fine\n:run\n:quit\n";
    let transcript = session(&test, &["repl", "p.plan"], input);
    assert!(
        transcript.contains("gate `ship` cannot be approved with this input:\n  input `percent`: `500` is not a whole number from 1 to 100\n  input `note` is missing: it takes any text and has no default"),
        "{transcript}"
    );
    assert!(transcript.contains("approved `ship`"), "{transcript}");
    assert!(
        transcript.contains(r#"= {"note":"flat","percent":30}"#),
        "{transcript}"
    );
}
