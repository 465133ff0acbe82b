//! Every example plan, every plan in the docs, and the README's commands are checked.

use std::path::Path;

use crate::{root, run_in, Test};

/// A fenced block tagged `plan`: its line, what it must do, its text and,
/// for `file=<name>`, the name later blocks of the document see it under.
struct PlanBlock {
    line: usize,
    expect: Option<String>,
    body: String,
    file: Option<String>,
}

/// Fenced blocks tagged `plan` (must check clean), `plan run` (must also
/// run to success), `plan fails` (must run and fail: exit 1) or `plan
/// error=<code>` (must report that code). Adding
/// `file=<name>` (`plan file=round.plan`) also writes the block as `<name>`
/// beside every later block, for the plans that `plan:` and `use` name.
fn plan_blocks(markdown: &str) -> Vec<PlanBlock> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```plan") else {
            continue;
        };
        let (mut expect, mut file) = (None, None);
        for word in info.split_whitespace() {
            if word == "run" || word == "fails" {
                expect = Some(word.to_owned());
            } else if let Some(code) = word.strip_prefix("error=") {
                expect = Some(code.to_owned());
            } else if let Some(name) = word.strip_prefix("file=") {
                file = Some(name.to_owned());
            }
        }
        let mut body = String::new();
        for (_, l) in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        blocks.push(PlanBlock {
            line: n + 1,
            expect,
            body,
            file,
        });
    }
    blocks
}

fn check_markdown(path: &Path) -> usize {
    let markdown = std::fs::read_to_string(path).expect("read docs");
    let blocks = plan_blocks(&markdown);
    let mut files: Vec<(String, String)> = Vec::new();
    for block in &blocks {
        let line = block.line;
        let with_files = |test: Test| {
            files
                .iter()
                .fold(test, |test, (name, body)| test.file(name, body))
                .file("block.plan", &block.body)
        };
        let run = with_files(Test::new())
            .args(["check", "--format", "json", "block.plan"])
            .run();
        if let Some(word @ ("run" | "fails")) = block.expect.as_deref() {
            let run = with_files(Test::new()).args(["run", "block.plan"]).run();
            assert_eq!(
                run.status,
                i32::from(word == "fails"),
                "{}:{line}: this plan should {word}:\n{}{}",
                path.display(),
                run.stdout,
                run.stderr
            );
        } else {
            match &block.expect {
                None => assert_eq!(
                    run.status,
                    0,
                    "{}:{line}: this plan should check clean:\n{}",
                    path.display(),
                    run.stdout
                ),
                Some(code) => assert!(
                    run.stdout.contains(&format!("\"code\":\"{code}\"")),
                    "{}:{line}: this plan should report {code}, got:\n{}",
                    path.display(),
                    run.stdout
                ),
            }
        }
        if let Some(name) = &block.file {
            files.push((name.clone(), block.body.clone()));
        }
    }
    blocks.len()
}

#[test]
fn language_reference_plans() {
    let count = check_markdown(&root().join("docs/language.md"));
    assert!(count >= 20, "docs/language.md has only {count} plan blocks");
}

#[test]
fn language_reference_documents_every_code() {
    let markdown = std::fs::read_to_string(root().join("docs/language.md")).expect("read");
    for code in cairn_lang::diagnostic::Code::ALL {
        assert!(
            markdown.contains(&format!("```plan error={code}")),
            "docs/language.md has no plan that triggers {code}"
        );
    }
}

#[test]
fn readme_plans() {
    check_markdown(&root().join("README.md"));
}

#[test]
fn every_example_checks_clean() {
    let mut count = 0;
    for entry in std::fs::read_dir(root().join("examples")).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "plan") {
            let run = run_in(&root(), &["check".into(), path.display().to_string()]);
            assert_eq!(run.status, 0, "{}:\n{}", path.display(), run.stderr);
            assert_eq!(run.stderr, "", "{} has warnings", path.display());
            count += 1;
        }
    }
    assert!(count >= 5, "only {count} example plans");
}

/// The README's quick start, run as written, prints what it says.
#[test]
fn readme_quick_start_session() {
    assert_eq!(run_sessions(&root().join("README.md")), 1);
}

#[test]
fn readme_main_command_works() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("read");
    let command = readme
        .lines()
        .find(|l| l.starts_with("cargo run --release -- "))
        .expect("README has a `cargo run --release -- …` line");
    let args: Vec<String> = command
        .trim_start_matches("cargo run --release -- ")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let run = run_in(&root(), &args);
    assert_eq!(run.status, 0, "{command}:\n{}", run.stderr);
}

/// A `console` block: `$ cairn …` commands run in order in one directory
/// holding the page's `plan file=<name>` blocks. The lines under a command
/// must each appear in its output (`…` stands for anything, such as a run
/// id); `# exit N` gives its exit status (default 0).
fn run_sessions(path: &Path) -> usize {
    let markdown = std::fs::read_to_string(path).expect("read docs");
    let mut test = Test::new();
    let mut sessions = 0;
    let mut lines = markdown.lines().enumerate();
    while let Some((_, line)) = lines.next() {
        if let Some(name) = line.strip_prefix("```plan file=") {
            let body: Vec<&str> = lines
                .by_ref()
                .map(|(_, l)| l)
                .take_while(|l| !l.starts_with("```"))
                .collect();
            test = test.file(name.trim(), body.join("\n") + "\n");
            continue;
        }
        if line != "```console" {
            continue;
        }
        sessions += 1;
        let block: Vec<(usize, &str)> = lines
            .by_ref()
            .take_while(|(_, l)| !l.starts_with("```"))
            .collect();
        let mut i = 0;
        while i < block.len() {
            let (n, command) = block[i];
            let args = command
                .strip_prefix("$ cairn ")
                .unwrap_or_else(|| panic!("{}:{}: expected `$ cairn …`", path.display(), n + 1));
            // `$(cairn …)` stands for what that command printed, as in a shell.
            let args: Vec<String> = shell_words(args)
                .into_iter()
                .map(|word| {
                    match word
                        .strip_prefix("$(cairn ")
                        .and_then(|w| w.strip_suffix(')'))
                    {
                        Some(inner) => run_in(test.path(), &shell_words(inner))
                            .stdout
                            .trim()
                            .to_owned(),
                        None => word,
                    }
                })
                .collect();
            let run = run_in(test.path(), &args);
            let output = format!("{}{}", run.stdout, run.stderr);
            let mut status = 0;
            i += 1;
            while i < block.len() && !block[i].1.starts_with("$ ") {
                let (n, expected) = block[i];
                if let Some(code) = expected.strip_prefix("# exit ") {
                    status = code.parse().expect("an exit status");
                } else {
                    assert!(
                        output.lines().any(|l| matches(l, expected)),
                        "{}:{}: `{command}` printed no line like `{expected}`:\n{output}",
                        path.display(),
                        n + 1
                    );
                }
                i += 1;
            }
            assert_eq!(
                run.status,
                status,
                "{}:{}: `{command}`:\n{output}",
                path.display(),
                n + 1
            );
        }
    }
    sessions
}

/// Whether `line` holds the pieces of `pattern` between its `…`s, in order.
fn matches(line: &str, pattern: &str) -> bool {
    let mut rest = line;
    for piece in pattern.split('…') {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Splits a command line on spaces, keeping "quoted words" and `$(…)`
/// together.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut nested = 0;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' if word.ends_with('$') => {
                nested += 1;
                word.push(c);
            }
            ')' if nested > 0 => {
                nested -= 1;
                word.push(c);
            }
            ' ' if !quoted && nested == 0 => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[test]
fn security_guide() {
    check_markdown(&root().join("docs/security.md"));
}

#[test]
fn durable_runs_guide() {
    check_markdown(&root().join("docs/durable.md"));
    assert!(run_sessions(&root().join("docs/durable.md")) >= 1);
}

#[test]
fn stdlib_guide() {
    check_markdown(&root().join("docs/stdlib.md"));
    assert!(run_sessions(&root().join("docs/stdlib.md")) >= 3);
}

/// A `repl` block is a session transcript: `$ cairn …` on its first line,
/// then what the REPL printed. The text after each prompt (`plan 1/4> `,
/// `...> `) is fed to the command's standard input, and the output must
/// match the transcript (`…` stands for anything).
fn run_repl_blocks(path: &Path) -> usize {
    let markdown = std::fs::read_to_string(path).expect("read docs");
    let mut test = Test::new();
    let mut blocks = 0;
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("```plan file=") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            test = test.file(name.trim(), body.join("\n") + "\n");
            continue;
        }
        if line != "```repl" {
            continue;
        }
        blocks += 1;
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        let command = block[0]
            .strip_prefix("$ cairn ")
            .expect("`$ cairn …` first");
        let transcript = block[1..].join("\n") + "\n";
        let mut input = String::new();
        for l in &block[1..] {
            let typed = l
                .split_once("> ")
                .filter(|(prompt, _)| {
                    *prompt == "..."
                        || prompt
                            .rsplit_once(' ')
                            .is_some_and(|(_, n)| n.contains('/'))
                })
                .map(|(_, typed)| typed);
            if let Some(typed) = typed {
                input.push_str(typed);
                input.push('\n');
            }
        }
        let output = assert_cmd::Command::cargo_bin("cairn")
            .expect("binary")
            .args(shell_words(command))
            .current_dir(test.path())
            .env("NO_COLOR", "1")
            .write_stdin(input)
            .output()
            .expect("cairn runs");
        crate::repl::assert_transcript(&String::from_utf8_lossy(&output.stdout), &transcript);
    }
    blocks
}

#[test]
fn repl_guide() {
    check_markdown(&root().join("docs/repl.md"));
    assert_eq!(run_repl_blocks(&root().join("docs/repl.md")), 1);
}
