//! The conventions of a command-line tool: shell completions.

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
