//! The invariants ARCHITECTURE.md states, checked: which crate may depend on
//! which, that the front end does no I/O, and that exports read only the plan.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `cargo` with the workspace's manifest, offline (the crates are on disk
/// by the time tests run).
fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(args)
        .args(["--offline", "--manifest-path"])
        .arg(root().join("Cargo.toml"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Each workspace crate and the crates it declares as normal dependencies.
fn declared() -> Vec<(String, BTreeSet<String>)> {
    let metadata: serde_json::Value =
        serde_json::from_str(&cargo(&["metadata", "--format-version", "1", "--no-deps"]))
            .expect("JSON");
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|package| {
            let dependencies = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().expect("name").to_owned())
                .collect();
            (
                package["name"].as_str().expect("name").to_owned(),
                dependencies,
            )
        })
        .collect()
}

/// The stages in order: a crate may depend only on crates before it.
const STAGES: &[&str] = &["cairn-lang", "cairn-engine", "cairn-store", "cairn"];

/// What only the binary may use: the terminal, the allocator, log output.
const BINARY_ONLY: &[&str] = &[
    "clap",
    "rustyline",
    "indicatif",
    "tracing-subscriber",
    "mimalloc",
];

#[test]
fn the_crates_depend_only_downwards() {
    let crates = declared();
    let names: BTreeSet<&str> = crates.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        STAGES.iter().copied().collect(),
        "the workspace's crates"
    );
    for (name, dependencies) in &crates {
        let stage = STAGES.iter().position(|s| s == name).expect("a stage");
        for later in &STAGES[stage..] {
            assert!(
                !dependencies.contains(*later),
                "{name} depends on {later}, a later stage (ARCHITECTURE.md)"
            );
        }
        if *name != "cairn" {
            for binary in BINARY_ONLY {
                assert!(
                    !dependencies.contains(*binary),
                    "{name} depends on {binary}, which only the binary may use"
                );
            }
        }
    }
}

#[test]
fn no_library_crate_brings_the_terminal() {
    for library in &STAGES[..STAGES.len() - 1] {
        let tree = cargo(&[
            "tree",
            "-p",
            library,
            "-e",
            "features,normal",
            "--prefix",
            "none",
        ]);
        for line in tree.lines() {
            let package = line.split_whitespace().next().unwrap_or_default();
            assert!(
                !BINARY_ONLY.contains(&package),
                "{library} brings in {line} (ARCHITECTURE.md)"
            );
            assert!(
                !line.starts_with("miette feature \"fancy"),
                "{library} turns on miette's renderer: {line}"
            );
        }
    }
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("reads") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("reads");
                files.push((path, text));
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "{} has sources", dir.display());
    files
}

/// Whether `word` stands in `line` as a whole identifier path.
fn names(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

#[test]
fn the_front_end_does_no_io() {
    let (_, dependencies) = declared()
        .into_iter()
        .find(|(name, _)| name == "cairn-lang")
        .expect("cairn-lang");
    // Parsing, graphs, Rhai's parser, serialisation, hashing, suggestions:
    // nothing that reaches outside the process.
    let pure: BTreeSet<String> = [
        "miette",
        "pest",
        "pest_derive",
        "petgraph",
        "rhai",
        "serde",
        "serde_json",
        "sha2",
        "strsim",
        "thiserror",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let impure: Vec<_> = dependencies.difference(&pure).collect();
    assert!(
        impure.is_empty(),
        "cairn-lang depends on {impure:?}: add it to this list only if it does no I/O"
    );
    let forbidden = [
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "std::os",
        "Instant",
        "SystemTime",
        "File",
        "unsafe",
    ];
    for (path, text) in sources(&root().join("crates/cairn-lang/src")) {
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in forbidden {
                assert!(
                    !names(code, word),
                    "{}:{}: `{word}` in cairn-lang, which does no I/O: {line}",
                    path.display(),
                    number + 1
                );
            }
        }
    }
}

#[test]
fn exports_read_only_the_plan() {
    for (path, text) in sources(&root().join("crates/cairn-lang/src/export")) {
        for (number, line) in text.lines().enumerate() {
            for (at, _) in line.match_indices("crate::") {
                let module = line[at + "crate::".len()..]
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or_default();
                assert!(
                    matches!(module, "plan" | "export"),
                    "{}:{}: an export reads `crate::{module}`, not only the plan: {line}",
                    path.display(),
                    number + 1
                );
            }
        }
    }
}
