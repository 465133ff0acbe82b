//! A fuzz harness on stable Rust: mutated plans never panic, never hang and
//! `cairn check` / `cairn graph --format json` exit 0 or 2.
//!
//! Seeds are every plan the repository ships (examples/, stdlib/, the
//! integration cases, the ```plan blocks of the docs and the README, and the
//! saved regressions); each input is a seed mutated by a small deterministic
//! RNG (bytes, lines, tokens, cross-over and, rarely, very large inputs).
//!
//! * `smoke` (every `cargo test`): the seeds and a few hundred mutants.
//! * `regressions` (every `cargo test`): every file in `tests/fuzz/regressions/`.
//! * `binary` (every `cargo test`): a sample through the real `cairn` binary.
//! * `fuzz` (ignored): mutants for `CAIRN_FUZZ_SECONDS` (default 90):
//!   `cargo test --release --test fuzz -- --ignored fuzz` (CI runs it in
//!   the debug build, for 90 s).
//!
//! An input that fails is written to `tests/fuzz/regressions/<sha256>.plan`
//! (and, when it could be shrunk, its shrunk form too), so that it is replayed
//! by every later `cargo test`. See CONTRIBUTING.md, "Fuzzing".

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Once, OnceLock};
use std::time::{Duration, Instant};

use cairn_lang::source::Source;
use miette::{GraphicalReportHandler, GraphicalTheme};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- settings

/// The name of the threads that check inputs (the panic hook looks at it).
const WORKER: &str = "cairn-fuzz-worker";

/// The main thread's stack on Linux, so deep nesting fails here as it would
/// in the binary.
const WORKER_STACK: usize = 8 << 20;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn regressions_dir() -> PathBuf {
    match std::env::var_os("CAIRN_FUZZ_SAVE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => root().join("tests/fuzz/regressions"),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value} is not a number")))
}

/// How long one input may take in-process before it counts as a hang:
/// `CAIRN_FUZZ_TIMEOUT_MS`, else 2 s in release and 10 s in debug builds
/// (whose checker is unoptimised).
fn bound() -> Duration {
    let default = if cfg!(debug_assertions) {
        10_000
    } else {
        2_000
    };
    Duration::from_millis(env_u64("CAIRN_FUZZ_TIMEOUT_MS").unwrap_or(default))
}

/// How long one `cairn` process may take.
fn process_bound() -> Duration {
    bound() + Duration::from_secs(5)
}

// ---------------------------------------------------------------- RNG

/// splitmix64: small, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True one time in `n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------- seeds

struct Seed {
    name: String,
    bytes: Vec<u8>,
}

struct Corpus {
    seeds: Vec<Seed>,
    /// Whitespace-separated words of every seed, for token splices.
    words: Vec<Vec<u8>>,
    /// How many seeds come from the shipped plans (the rest are saved
    /// regressions, some of them large).
    shipped: usize,
}

fn plan_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "plan") && p.is_file())
        .collect();
    files.sort();
    files
}

/// The fenced blocks whose info string starts with `plan`.
fn plan_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_start().starts_with("```plan") => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_start().starts_with("```") => {
                blocks.extend(current.take());
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = root();
        let mut seeds = Vec::new();
        for dir in [
            "examples",
            "crates/cairn-lang/templates",
            "tests/integration/cases",
        ] {
            for path in plan_files(&root.join(dir)) {
                let bytes = std::fs::read(&path).expect("read seed");
                let name = path.strip_prefix(&root).unwrap_or(&path).display();
                seeds.push(Seed {
                    name: name.to_string(),
                    bytes,
                });
            }
        }
        let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "md"))
                    .collect()
            })
            .unwrap_or_default();
        docs.sort();
        docs.push(root.join("README.md"));
        for path in docs {
            let Ok(markdown) = std::fs::read_to_string(&path) else {
                continue;
            };
            let name = path.strip_prefix(&root).unwrap_or(&path).display();
            for (i, block) in plan_blocks(&markdown).into_iter().enumerate() {
                seeds.push(Seed {
                    name: format!("{name}#plan{i}"),
                    bytes: block.into_bytes(),
                });
            }
        }
        let shipped = seeds.len();
        // Inputs that once failed are good places to look again.
        for path in plan_files(&regressions_dir()) {
            let bytes = std::fs::read(&path).expect("read regression");
            let name = path.strip_prefix(&root).unwrap_or(&path).display();
            seeds.push(Seed {
                name: name.to_string(),
                bytes,
            });
        }
        assert!(seeds.len() >= 20, "only {} fuzz seeds found", seeds.len());
        let mut words: Vec<Vec<u8>> = seeds
            .iter()
            .flat_map(|s| s.bytes.split(u8::is_ascii_whitespace))
            .filter(|w| !w.is_empty() && w.len() <= 40)
            .map(<[u8]>::to_vec)
            .collect();
        words.sort();
        words.dedup();
        Corpus {
            seeds,
            words,
            shipped,
        }
    })
}

// ---------------------------------------------------------------- mutations

/// Bytes that mean something to the grammar, the lexer or the renderer.
const BYTES: &[u8] = b"\0\r\n\t \"'`\\#{}[]()|:,.-><=!*/+@$%&;_0123456789azAZ\x7f";

/// Keywords and fragments of the language (and of Rhai inside it).
const SNIPPETS: &[&str] = &[
    "task ",
    "task t \"T\"\n",
    "task t \"T\"\n  run: 1\n",
    "needs: ",
    "  needs: a, b\n",
    "  needs: t\n",
    "when",
    "  when: x > 1\n",
    " -> ",
    "->",
    "use \"x\" as y\n",
    "use \"debug-500\" as d\n",
    "use \"fuzz-input.plan\" as me\n",
    " with ",
    " as ",
    "#{",
    "#{ a: 1 }",
    "}",
    "|",
    "  run: |\n",
    "  run: |\n    ",
    "decision ",
    "decision d \"D\"\n  when: true -> a\n  else -> b\n",
    "gate ",
    "gate g \"G\"\n",
    "else",
    "else -> ",
    "on failure: ",
    "on failure: stop",
    "on success: ",
    "retry: 3 backoff 1s factor 2 max 1m",
    "retry: ",
    "timeout: ",
    "timeout: 0s",
    "default_timeout: 1ms",
    "param ",
    "param p = ",
    "param p = 1\n",
    "hypothesis ",
    "checks:",
    "expect:",
    "input:",
    "kind:",
    "kind:implement",
    "using:",
    "using:sh,fs.read",
    "allow: ",
    "allow: sh, fs.read, fs.write(a.txt)",
    "budget: ",
    "budget: time 1h, cost 5",
    "resources: cpu 2, mem 4G",
    "max_parallel: ",
    "max_parallel: 0",
    "priority: ",
    "seed: ",
    "compensate: |\n",
    "output_limit: ",
    "plan p \"P\"\n",
    "plan ",
    ":",
    ",",
    "\"",
    "\"\"\"",
    "\\",
    "\\\"",
    "${",
    "#",
    "# comment\n",
    "//",
    "/*",
    "*/",
    "0",
    "-1",
    "18446744073709551616",
    "99999999999999999999h",
    "1e309",
    "0s",
    "1.5",
    "NaN",
    "true",
    "()",
    "[]",
    "{}",
    "fn f() { f() }",
    "loop {}",
    "while true {}",
    "import \"x\" as h;",
    "eval(\"1\")",
    "params.",
    "outputs.",
    "\t",
    "    ",
    "\n\n",
    "\r\n",
];

/// Text that is one character but not one byte, changes length when
/// case-folded, or moves the cursor in odd ways.
const UNICODE: &[&str] = &[
    "é",
    "e\u{301}",
    "💥",
    "\u{200b}",
    "\u{202e}",
    "\u{feff}",
    "\u{85}",
    "\u{2028}",
    "\u{3000}",
    "İ",
    "ß",
    "ﬁ",
    "𝔘",
    "日本語",
    "\u{10ffff}",
    "\u{fffd}",
    "\t\u{300}",
];

/// Deep nesting fragments: opening, closing.
const NESTING: &[(&str, &str)] = &[
    ("(", ")"),
    ("[", "]"),
    ("{", "}"),
    ("#{", "}"),
    ("#{a:", "}"),
    ("[[", "]]"),
    ("\"", "\""),
    ("-", ""),
    ("!", ""),
    ("if true {", "}"),
    ("  ", ""),
];

fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

fn unlines(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.join(&b'\n')
}

/// Byte offsets where a word starts (after whitespace or at the start).
fn word_starts(bytes: &[u8]) -> Vec<usize> {
    (0..bytes.len())
        .filter(|&i| {
            !bytes[i].is_ascii_whitespace() && (i == 0 || bytes[i - 1].is_ascii_whitespace())
        })
        .collect()
}

fn word_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(u8::is_ascii_whitespace)
        .map_or(bytes.len(), |n| start + n)
}

/// The start of a random line (or the end of the text).
fn line_start(rng: &mut Rng, bytes: &[u8]) -> usize {
    let mut starts: Vec<usize> = vec![0];
    starts.extend(
        bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .map(|(i, _)| i + 1),
    );
    *rng.pick(&starts)
}

fn splice(bytes: &mut Vec<u8>, at: usize, insert: &[u8]) {
    let at = at.min(bytes.len());
    bytes.splice(at..at, insert.iter().copied());
}

/// One small mutation.
fn mutate_once(rng: &mut Rng, corpus: &Corpus, input: &mut Vec<u8>) {
    let len = input.len();
    match rng.below(24) {
        // Flip a bit.
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        // Insert a meaningful byte.
        1 => {
            let b = *rng.pick(BYTES);
            let at = rng.below(len + 1);
            input.insert(at, b);
        }
        // Insert a random byte (any value, so not always UTF-8).
        2 => {
            let at = rng.below(len + 1);
            input.insert(at, rng.next() as u8);
        }
        // Delete a range of bytes.
        3 if len > 0 => {
            let at = rng.below(len);
            let n = rng.range(1, 16).min(len - at);
            input.drain(at..at + n);
        }
        // Duplicate a range of bytes.
        4 if len > 0 => {
            let at = rng.below(len);
            let n = rng.range(1, 64).min(len - at);
            let chunk = input[at..at + n].to_vec();
            splice(input, rng.below(len + 1), &chunk);
        }
        // Duplicate a line.
        5 => {
            let mut ls = lines(input);
            let i = rng.below(ls.len());
            let line = ls[i].clone();
            ls.insert(rng.below(ls.len() + 1), line);
            *input = unlines(&ls);
        }
        // Delete a few lines.
        6 => {
            let mut ls = lines(input);
            let i = rng.below(ls.len());
            let n = rng.range(1, 4).min(ls.len() - i);
            ls.drain(i..i + n);
            *input = unlines(&ls);
        }
        // Swap two lines.
        7 => {
            let mut ls = lines(input);
            let (a, b) = (rng.below(ls.len()), rng.below(ls.len()));
            ls.swap(a, b);
            *input = unlines(&ls);
        }
        // Change a line's indentation.
        8 => {
            let mut ls = lines(input);
            let i = rng.below(ls.len());
            let line = &mut ls[i];
            match rng.below(4) {
                0 => {
                    let n = line
                        .iter()
                        .take_while(|b| **b == b' ' || **b == b'\t')
                        .count();
                    line.drain(..n);
                }
                1 => line
                    .splice(0..0, std::iter::repeat_n(b' ', rng.range(1, 8)))
                    .for_each(drop),
                2 => line.insert(0, b'\t'),
                _ if !line.is_empty() && line[0] == b' ' => {
                    line.remove(0);
                }
                _ => line.insert(0, b' '),
            }
            *input = unlines(&ls);
        }
        // Replace a word with a word from any seed.
        9 | 10 => {
            let starts = word_starts(input);
            if !starts.is_empty() && !corpus.words.is_empty() {
                let start = *rng.pick(&starts);
                let end = word_end(input, start);
                let word = rng.pick(&corpus.words).clone();
                input.splice(start..end, word);
            }
        }
        // Swap two words of the input.
        11 => {
            let starts = word_starts(input);
            if starts.len() >= 2 {
                let (mut a, mut b) = (*rng.pick(&starts), *rng.pick(&starts));
                if a > b {
                    std::mem::swap(&mut a, &mut b);
                }
                let (a_end, b_end) = (word_end(input, a), word_end(input, b));
                if a_end <= b {
                    let wa = input[a..a_end].to_vec();
                    let wb = input[b..b_end].to_vec();
                    input.splice(b..b_end, wa);
                    input.splice(a..a_end, wb);
                }
            }
        }
        // Insert a keyword or fragment, at a line start or anywhere.
        12..=14 => {
            let snippet = rng.pick(SNIPPETS).as_bytes();
            let at = if rng.one_in(2) {
                line_start(rng, input)
            } else {
                rng.below(len + 1)
            };
            splice(input, at, snippet);
        }
        // Insert unicode.
        15 => {
            let text = rng.pick(UNICODE).as_bytes();
            let at = rng.below(len + 1);
            splice(input, at, text);
        }
        // NUL and CR: one, or every newline as CRLF or CR.
        16 => match rng.below(4) {
            0 => input.insert(rng.below(len + 1), 0),
            1 => input.insert(rng.below(len + 1), b'\r'),
            2 => {
                *input = input
                    .iter()
                    .flat_map(|&b| {
                        if b == b'\n' {
                            vec![b'\r', b'\n']
                        } else {
                            vec![b]
                        }
                    })
                    .collect();
            }
            _ => input
                .iter_mut()
                .filter(|b| **b == b'\n')
                .for_each(|b| *b = b'\r'),
        },
        // Cross-over: the start of this input, the end of another seed.
        17 => {
            let other = &rng.pick(&corpus.seeds).bytes;
            let mine = lines(input);
            let theirs = lines(other);
            let a = rng.below(mine.len() + 1);
            let b = rng.below(theirs.len() + 1);
            let mut joined = mine[..a].to_vec();
            joined.extend_from_slice(&theirs[b..]);
            *input = unlines(&joined);
        }
        // Splice a few lines of another seed in.
        18 => {
            let other = lines(&rng.pick(&corpus.seeds).bytes);
            let from = rng.below(other.len());
            let n = rng.range(1, 12).min(other.len() - from);
            let mut ls = lines(input);
            let at = rng.below(ls.len() + 1);
            ls.splice(at..at, other[from..from + n].iter().cloned());
            *input = unlines(&ls);
        }
        // Truncate.
        19 if len > 0 => input.truncate(rng.below(len)),
        // A little nesting.
        20 => {
            let (open, close) = *rng.pick(NESTING);
            let depth = rng.range(1, 64);
            let at = rng.below(len + 1);
            let mut nested = open.repeat(depth);
            if rng.one_in(2) {
                nested.push_str(&close.repeat(depth));
            }
            splice(input, at, nested.as_bytes());
        }
        // Repeat a block of lines a few times.
        21 => {
            let mut ls = lines(input);
            let from = rng.below(ls.len());
            let n = rng.range(1, 8).min(ls.len() - from);
            let block: Vec<Vec<u8>> = ls[from..from + n].to_vec();
            for _ in 0..rng.range(1, 20) {
                ls.splice(from..from, block.iter().cloned());
            }
            *input = unlines(&ls);
        }
        // Rename every occurrence of one word (keeps references consistent).
        22 => {
            let starts = word_starts(input);
            if !starts.is_empty() {
                let start = *rng.pick(&starts);
                let word = input[start..word_end(input, start)].to_vec();
                let replacement = rng.pick(&corpus.words).clone();
                *input = replace_all(input, &word, &replacement);
            }
        }
        // An empty or whitespace-only input.
        _ => match rng.below(6) {
            0 => input.clear(),
            1 => *input = b"\n".repeat(rng.range(1, 5)),
            _ => {
                let at = rng.below(len + 1);
                input.insert(at, b' ');
            }
        },
    }
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// One large mutation: the sizes where quadratic work and 16-bit columns live.
fn mutate_large(rng: &mut Rng, input: &mut Vec<u8>) {
    match rng.below(7) {
        // A line over 65,535 columns: a token pushed far right, a long
        // word, string or comment.
        0 => {
            let width = rng.range(65_536, 80_000);
            let at = line_start(rng, input);
            let filler: Vec<u8> = match rng.below(4) {
                0 => vec![b' '; width],
                1 => {
                    let mut v = b"# ".to_vec();
                    v.extend(std::iter::repeat_n(b'x', width));
                    v.push(b'\n');
                    v
                }
                2 => {
                    let mut v = b"task t \"".to_vec();
                    v.extend(std::iter::repeat_n(b'y', width));
                    v.extend_from_slice(b"\" oops\n");
                    v
                }
                _ => {
                    let mut v = vec![b' '; width];
                    v.extend_from_slice(b"needs: nowhere ");
                    v
                }
            };
            splice(input, at, &filler);
        }
        // Thousands of steps, chained, unknown-needing or in one long cycle.
        1 | 2 => {
            let n = rng.range(2_000, 10_000);
            let style = rng.below(4);
            let mut text = String::with_capacity(n * 40);
            if !input.starts_with(b"plan") {
                text.push_str("plan big \"Big\"\n");
            }
            for i in 0..n {
                let _ = writeln!(text, "\ntask t{i} \"Step {i}\"");
                match style {
                    0 if i > 0 => {
                        let _ = writeln!(text, "  needs: t{}", i - 1);
                    }
                    1 => {
                        let _ = writeln!(text, "  needs: missing{i}");
                    }
                    2 => {
                        let _ = writeln!(text, "  needs: t{}", (i + 1) % n);
                    }
                    _ => {}
                }
                text.push_str("  run: 1\n");
            }
            if rng.one_in(2) {
                input.extend_from_slice(text.as_bytes());
            } else {
                *input = text.into_bytes();
            }
        }
        // One step that needs thousands of unknown steps.
        3 => {
            let n = rng.range(2_000, 10_000);
            let needs: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
            let text = format!(
                "plan wide \"Wide\"\n\ntask t \"T\"\n  needs: {}\n  run: 1\n",
                needs.join(", ")
            );
            *input = text.into_bytes();
        }
        // Deep nesting.
        4 => {
            let (open, close) = *rng.pick(NESTING);
            let depth = rng.range(1_000, 20_000);
            let at = rng.below(input.len() + 1);
            let mut nested = open.repeat(depth);
            if rng.one_in(2) {
                nested.push_str(&close.repeat(depth));
            }
            splice(input, at, nested.as_bytes());
        }
        // The whole input many times over.
        5 => {
            let copies = rng.range(20, 200);
            *input = input.repeat(copies).into_iter().take(4 << 20).collect();
        }
        // Thousands of lines of one repeated word.
        _ => {
            let word = rng.pick(SNIPPETS).as_bytes().to_vec();
            let n = rng.range(2_000, 20_000);
            let mut block = Vec::new();
            for _ in 0..n {
                block.extend_from_slice(&word);
                block.push(b'\n');
            }
            let at = line_start(rng, input);
            splice(input, at, &block);
        }
    }
}

/// Input `index` of a run seeded with `seed`: independent of every other
/// input, so any one can be regenerated.
/// The quick tests leave out the saved regressions as parents (`regressions`
/// replays them, and the large ones are slow in a debug build).
fn generate(seed: u64, index: u64, large_one_in: usize, regressions: bool) -> (String, Vec<u8>) {
    let corpus = corpus();
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0xd134_2543_de82_ef95));
    let parents = if regressions {
        &corpus.seeds[..]
    } else {
        &corpus.seeds[..corpus.shipped]
    };
    let parent = rng.pick(parents);
    let mut input = parent.bytes.clone();
    let rounds = match rng.below(8) {
        0..=3 => 1,
        4 | 5 => rng.range(2, 4),
        _ => rng.range(5, 16),
    };
    for _ in 0..rounds {
        mutate_once(&mut rng, corpus, &mut input);
    }
    if large_one_in > 0 && rng.one_in(large_one_in) {
        mutate_large(&mut rng, &mut input);
    }
    (parent.name.clone(), input)
}

// ---------------------------------------------------------------- oracles

/// What went wrong with one input.
#[derive(Clone, Debug)]
enum Failure {
    Panic {
        message: String,
        location: String,
        backtrace: String,
    },
    Hang {
        /// How long it took in the end, if it finished at all.
        finished_after: Option<Duration>,
    },
    /// No panic, but a broken promise (a span outside its file, …).
    Contract(String),
    /// The `cairn` binary exited with something other than 0 or 2, or hung.
    Process(String),
    /// The input took the fuzz process down (a stack overflow aborts).
    Crash(String),
}

impl Failure {
    /// What identifies the bug, to shrink an input without losing it and
    /// to save only a few inputs per bug.
    fn signature(&self) -> String {
        match self {
            Failure::Panic { location, .. } => format!("panic at {location}"),
            Failure::Hang { .. } => "hang".to_owned(),
            Failure::Contract(m) => format!("contract: {}", m.chars().take(60).collect::<String>()),
            Failure::Process(m) => format!("process: {}", m.chars().take(60).collect::<String>()),
            Failure::Crash(_) => "crash".to_owned(),
        }
    }

    fn describe(&self, bound: Duration) -> String {
        match self {
            Failure::Panic {
                message,
                location,
                backtrace,
            } => {
                let frames: Vec<&str> = backtrace
                    .lines()
                    .filter(|l| !l.contains("/rustc/") && !l.contains("std::panicking"))
                    .take(40)
                    .collect();
                format!(
                    "panicked at {location}:\n{message}\nbacktrace:\n{}",
                    frames.join("\n")
                )
            }
            Failure::Hang { finished_after } => match finished_after {
                Some(t) => format!("took {t:.2?}, over the {bound:?} bound"),
                None => format!("still running long after the {bound:?} bound"),
            },
            Failure::Contract(m) => format!("contract broken: {m}"),
            Failure::Process(m) | Failure::Crash(m) => m.clone(),
        }
    }
}

struct CaughtPanic {
    message: String,
    location: String,
    backtrace: String,
}

thread_local! {
    static PANIC: RefCell<Option<CaughtPanic>> = const { RefCell::new(None) };
}

/// Panics on worker threads are recorded (with a backtrace) instead of
/// printed; every other thread keeps the usual hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(WORKER) {
                return previous(info);
            }
            let payload = info.payload();
            let message = match (
                payload.downcast_ref::<&str>(),
                payload.downcast_ref::<String>(),
            ) {
                (Some(s), _) => (*s).to_owned(),
                (_, Some(s)) => s.clone(),
                _ => "<non-string panic payload>".to_owned(),
            };
            let location = info
                .location()
                .map_or_else(|| "<unknown>".to_owned(), ToString::to_string);
            let backtrace = std::backtrace::Backtrace::force_capture().to_string();
            PANIC.with(|p| {
                *p.borrow_mut() = Some(CaughtPanic {
                    message,
                    location,
                    backtrace,
                })
            });
        }));
    });
}

fn engine() -> &'static cairn_engine::Engine {
    static ENGINE: OnceLock<cairn_engine::Engine> = OnceLock::new();
    ENGINE.get_or_init(cairn_engine::stdlib::engine)
}

/// The same report handler as `cairn check`'s human output.
fn render(diagnostic: &cairn_lang::diagnostic::Diagnostic) -> String {
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    let _ = handler.render_report(&mut out, diagnostic);
    out
}

/// Everything `cairn check` (both formats) and `cairn graph` (every format)
/// do with a file, in-process; `Err` for a broken promise.
fn exercise(bytes: &[u8]) -> Result<(), String> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => {
            // The binary refuses the file when reading it; so must the library.
            let mut file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
            std::io::Write::write_all(&mut file, bytes).map_err(|e| e.to_string())?;
            match cairn_engine::read::read(file.path()) {
                Err(cairn_engine::Error::NotUtf8 { .. }) => {}
                Err(other) => return Err(format!("non-UTF-8 input read as: {other}")),
                Ok(_) => return Err("non-UTF-8 input read as text".to_owned()),
            }
            // Then check what is left when it is made valid.
            String::from_utf8_lossy(bytes).into_owned()
        }
    };
    // Next to the examples, so their relative `use` lines resolve.
    let source = Source::new("examples/fuzz-input.plan", text);
    let checked = engine().check(&source);
    for d in &checked.diagnostics {
        let file = d.source.text();
        for label in &d.labels {
            let span = label.span;
            if span.start > span.end
                || span.end > file.len()
                || !file.is_char_boundary(span.start)
                || !file.is_char_boundary(span.end)
            {
                return Err(format!(
                    "{} label {}..{} is not a span of {} ({} bytes): {}",
                    d.code,
                    span.start,
                    span.end,
                    d.source.name(),
                    file.len(),
                    d.message
                ));
            }
            let _ = d.source.line_col(span.start);
        }
        let _ = d.source.line_col(d.offset());
        let _ = render(d);
        let _ = serde_json::to_string(&serde_json::json!({
            "severity": d.severity,
            "code": d.code,
            "message": d.message,
            "help": d.help,
        }))
        .map_err(|e| format!("diagnostic JSON: {e}"))?;
    }
    match &checked.plan {
        None if !checked.has_errors() => {
            return Err(
                "no plan, yet no error diagnostic (`cairn check` would say `0 errors`)".into(),
            )
        }
        None => {}
        Some(plan) => {
            VALID.fetch_add(1, Ordering::Relaxed);
            let json =
                serde_json::to_string_pretty(plan).map_err(|e| format!("graph JSON: {e}"))?;
            serde_json::from_str::<serde_json::Value>(&json)
                .map_err(|e| format!("graph JSON does not parse back: {e}"))?;
            let _ = cairn_lang::export::mermaid(plan);
            let _ = cairn_lang::export::dot(plan);
            let _ = cairn_lang::check::width(&plan.graph);
        }
    }
    Ok(())
}

/// Inputs that checked clean, so their graph was exported too.
static VALID: AtomicUsize = AtomicUsize::new(0);

/// Threads that overran the bound and were left running.
static STUCK: AtomicUsize = AtomicUsize::new(0);

/// Runs [`exercise`] on a worker thread, within `bound`.
fn run_in_process(bytes: &[u8], bound: Duration) -> Result<Duration, Failure> {
    run_in_process_patiently(bytes, bound, bound * 4)
}

/// [`run_in_process`], waiting at most `patience` more for an input that
/// overran the bound (to say how long it takes).
fn run_in_process_patiently(
    bytes: &[u8],
    bound: Duration,
    patience: Duration,
) -> Result<Duration, Failure> {
    install_panic_hook();
    let (tx, rx) = mpsc::channel();
    let input = bytes.to_vec();
    std::thread::Builder::new()
        .name(WORKER.to_owned())
        .stack_size(WORKER_STACK)
        .spawn(move || {
            let start = Instant::now();
            let result = panic::catch_unwind(AssertUnwindSafe(|| exercise(&input)));
            let elapsed = start.elapsed();
            let outcome = match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(broken)) => Err(Failure::Contract(broken)),
                Err(_) => {
                    let caught = PANIC.with(|p| p.borrow_mut().take());
                    let caught = caught.unwrap_or(CaughtPanic {
                        message: "<panic not recorded>".to_owned(),
                        location: "<unknown>".to_owned(),
                        backtrace: String::new(),
                    });
                    Err(Failure::Panic {
                        message: caught.message,
                        location: caught.location,
                        backtrace: caught.backtrace,
                    })
                }
            };
            let _ = tx.send((elapsed, outcome));
        })
        .expect("spawn a fuzz worker");
    let finished = match rx.recv_timeout(bound) {
        Ok(finished) => finished,
        // Let it finish, to say how long it takes and so that it does not
        // slow down the inputs after it; give up on it after a while.
        Err(_) => match rx.recv_timeout(patience.min(bound * 4)) {
            Ok(finished) => finished,
            Err(_) => {
                STUCK.fetch_add(1, Ordering::Relaxed);
                return Err(Failure::Hang {
                    finished_after: None,
                });
            }
        },
    };
    match finished {
        (elapsed, _) if elapsed > bound => Err(Failure::Hang {
            finished_after: Some(elapsed),
        }),
        (elapsed, Ok(())) => Ok(elapsed),
        (_, Err(failure)) => Err(failure),
    }
}

/// Runs the real `cairn check` (both formats) and `cairn graph --format
/// json` on the input: each must exit 0 or 2 within the bound, agree with
/// each other, and print JSON where JSON was asked for.
fn run_binary(bytes: &[u8]) -> Result<(), Failure> {
    let dir = tempfile::tempdir().map_err(|e| Failure::Process(format!("temp dir: {e}")))?;
    std::fs::write(dir.path().join("input.plan"), bytes)
        .map_err(|e| Failure::Process(format!("write input: {e}")))?;
    let bound = process_bound();
    let mut codes = Vec::new();
    for args in [
        &["check", "input.plan"][..],
        &["check", "--format", "json", "input.plan"],
        &["graph", "input.plan", "--format", "json"],
    ] {
        let shown = format!("cairn {}", args.join(" "));
        let start = Instant::now();
        let output = assert_cmd::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("CAIRN_STATE_DIR", dir.path().join(".cairn"))
            .env_remove("RUST_LOG")
            .timeout(bound)
            .output()
            .map_err(|e| Failure::Process(format!("`{shown}` did not start: {e}")))?;
        let elapsed = start.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = {
            let lines: Vec<&str> = stderr.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        let code = match output.status.code() {
            Some(code @ (0 | 2)) => code,
            Some(code) => {
                return Err(Failure::Process(format!(
                    "`{shown}` exited {code} (not 0 or 2) after {elapsed:.2?}; stderr ends:\n{tail}"
                )))
            }
            None if elapsed >= bound => {
                return Err(Failure::Process(format!(
                    "`{shown}` hung: killed after {bound:?}"
                )))
            }
            None => {
                return Err(Failure::Process(format!(
                "`{shown}` was killed by a signal ({:?}) after {elapsed:.2?}; stderr ends:\n{tail}",
                output.status
            )))
            }
        };
        if args.contains(&"json") {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let parsed = if args[0] == "graph" {
                if code == 0 {
                    serde_json::from_str::<serde_json::Value>(&stdout).err()
                } else {
                    None
                }
            } else {
                stdout
                    .lines()
                    .find_map(|l| serde_json::from_str::<serde_json::Value>(l).err())
            };
            if let Some(err) = parsed {
                return Err(Failure::Process(format!(
                    "`{shown}` printed bad JSON: {err}"
                )));
            }
        }
        codes.push((shown, code));
    }
    if codes.iter().any(|(_, c)| *c != codes[0].1) {
        return Err(Failure::Process(format!(
            "the commands disagree: {codes:?}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- failures

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Saves a failing input as `<dir>/<first 16 hex digits of its sha256>.plan`.
fn save(dir: &Path, bytes: &[u8]) -> PathBuf {
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("{}.plan", &sha256_hex(bytes)[..16]));
    if let Err(e) = std::fs::write(&path, bytes) {
        eprintln!("fuzz: could not save {}: {e}", path.display());
    }
    path
}

/// The start of an input, escaped, to show in a report.
fn preview(bytes: &[u8]) -> String {
    let shown: String = String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        .chars()
        .flat_map(char::escape_debug)
        .collect();
    let more = if bytes.len() > 300 { "…" } else { "" };
    format!(
        "{} bytes, {} lines: \"{shown}\"{more}",
        bytes.len(),
        bytes.split(|&b| b == b'\n').count()
    )
}

/// Runs the input the way it failed (in-process, or through the binary).
fn reproduce(bytes: &[u8], through_binary: bool) -> Result<(), Failure> {
    if through_binary {
        run_binary(bytes)
    } else {
        run_in_process(bytes, bound()).map(drop)
    }
}

/// A smaller input with the same failure: drops chunks of lines, then of
/// bytes, for at most `budget`. Hangs are not shrunk (each try is slow).
fn shrink(bytes: &[u8], failure: &Failure, through_binary: bool, budget: Duration) -> Vec<u8> {
    if matches!(failure, Failure::Hang { .. } | Failure::Crash(_)) {
        return bytes.to_vec();
    }
    let signature = failure.signature();
    let deadline = Instant::now() + budget;
    let fails = |candidate: &[u8]| matches!(reproduce(candidate, through_binary), Err(f) if f.signature() == signature);
    let mut current = bytes.to_vec();
    // Lines, then bytes: remove chunks, halving their size.
    for by_lines in [true, false] {
        let units = |input: &[u8]| -> Vec<Vec<u8>> {
            if by_lines {
                input
                    .split_inclusive(|&b| b == b'\n')
                    .map(<[u8]>::to_vec)
                    .collect()
            } else {
                input.iter().map(|&b| vec![b]).collect()
            }
        };
        let mut chunk = units(&current).len().div_ceil(2).max(1);
        loop {
            let mut parts = units(&current);
            let mut i = 0;
            let mut removed_any = false;
            while i < parts.len() {
                if Instant::now() > deadline {
                    return current;
                }
                let end = (i + chunk).min(parts.len());
                let candidate: Vec<u8> = parts[..i]
                    .iter()
                    .chain(&parts[end..])
                    .flatten()
                    .copied()
                    .collect();
                if candidate.len() < current.len() && fails(&candidate) {
                    current = candidate;
                    parts = units(&current);
                    removed_any = true;
                } else {
                    i += chunk;
                }
            }
            if chunk == 1 && !removed_any {
                break;
            }
            chunk = (chunk / 2).max(1);
            if !by_lines && chunk == 1 && current.len() > 4_096 {
                // Byte by byte is too slow for a large input.
                break;
            }
        }
    }
    current
}

/// Failures found by one run, at most a few saved per distinct bug.
#[derive(Default)]
struct Findings {
    /// When shrinking must stop (the end of a timed run).
    deadline: Option<Instant>,
    by_signature: BTreeMap<String, usize>,
    reports: Vec<String>,
}

impl Findings {
    fn record(&mut self, origin: &str, bytes: &[u8], failure: Failure, through_binary: bool) {
        let signature = failure.signature();
        let seen = self.by_signature.entry(signature.clone()).or_default();
        *seen += 1;
        if *seen > 2 {
            return;
        }
        let dir = regressions_dir();
        let path = save(&dir, bytes);
        let mut report = format!(
            "fuzz failure ({origin}{}): {}\n  input: {}\n  saved: {}\n",
            if through_binary {
                ", through the binary"
            } else {
                ""
            },
            failure.describe(bound()),
            preview(bytes),
            path.display(),
        );
        // A try through the binary takes a second or more: shrink less.
        let mut budget = Duration::from_secs(if through_binary { 10 } else { 20 });
        if let Some(deadline) = self.deadline {
            budget = budget.min(deadline.saturating_duration_since(Instant::now()));
        }
        let small = shrink(bytes, &failure, through_binary, budget);
        if small.len() < bytes.len() {
            let small_path = save(&dir, &small);
            let _ = writeln!(
                report,
                "  shrunk: {} ({})",
                small_path.display(),
                preview(&small)
            );
        }
        eprintln!("{report}");
        self.reports.push(report);
    }

    fn assert_none(&self, what: &str) {
        if self.reports.is_empty() {
            return;
        }
        let counts: Vec<String> = self
            .by_signature
            .iter()
            .map(|(sig, n)| format!("  {n} × {sig}"))
            .collect();
        panic!(
            "{what}: {} failing inputs\n{}\n\n{}\nReproduce one with \
             `CAIRN_FUZZ_REPLAY=<file> cargo test --test fuzz -- --ignored replay --nocapture`.",
            self.by_signature.values().sum::<usize>(),
            counts.join("\n"),
            self.reports.join("\n"),
        );
    }
}

/// Where the input being checked is written first, so that it survives a
/// crash that takes the whole test process down (a stack overflow aborts).
fn current_input_path(test: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cairn-fuzz-{test}-current.plan"))
}

// ---------------------------------------------------------------- tests

/// Inputs for the quick run (which has no large ones: an unoptimised
/// checker takes seconds on them), and its seed.
const SMOKE_INPUTS: u64 = 600;
const SMOKE_SEED: u64 = 0x00ca_1e5e_ed00_0015;

/// How often an input of the long run gets a large mutation
/// (`CAIRN_FUZZ_LARGE_ONE_IN`, 0 for never).
fn large_one_in() -> usize {
    env_u64("CAIRN_FUZZ_LARGE_ONE_IN").map_or(40, |n| n as usize)
}

/// The seeds themselves and a few hundred mutants, in-process.
#[test]
fn smoke() {
    let seed = env_u64("CAIRN_FUZZ_SEED").unwrap_or(SMOKE_SEED);
    let inputs = env_u64("CAIRN_FUZZ_INPUTS").unwrap_or(SMOKE_INPUTS);
    let crash = current_input_path("smoke");
    let mut findings = Findings::default();
    let start = Instant::now();
    for s in &corpus().seeds[..corpus().shipped] {
        let _ = std::fs::write(&crash, &s.bytes);
        if let Err(failure) = run_in_process(&s.bytes, bound()) {
            findings.record(&format!("seed {}", s.name), &s.bytes, failure, false);
        }
    }
    for index in 0..inputs {
        let (parent, bytes) = generate(seed, index, 0, false);
        let _ = std::fs::write(&crash, &bytes);
        if let Err(failure) = run_in_process(&bytes, bound()) {
            let origin = format!("seed {seed:#x} input {index}, from {parent}");
            findings.record(&origin, &bytes, failure, false);
        }
    }
    eprintln!(
        "fuzz smoke: {} seeds and {inputs} mutants of seed {seed:#x} in {:.2?}",
        corpus().shipped,
        start.elapsed()
    );
    findings.assert_none("fuzz smoke");
}

/// Every input that ever failed, in-process and through the binary.
#[test]
fn regressions() {
    let mut findings = Findings::default();
    let files = plan_files(&root().join("tests/fuzz/regressions"));
    for path in &files {
        let bytes = std::fs::read(path).expect("read regression");
        let name = path.display().to_string();
        if let Err(failure) = run_in_process(&bytes, bound()) {
            findings.record(&name, &bytes, failure, false);
        } else if let Err(failure) = run_binary(&bytes) {
            findings.record(&name, &bytes, failure, true);
        }
    }
    findings.assert_none(&format!("{} fuzz regressions", files.len()));
}

/// A sample of seeds and mutants through the real binary.
#[test]
fn binary() {
    let seed = env_u64("CAIRN_FUZZ_SEED").unwrap_or(SMOKE_SEED) ^ 0xb1;
    let mut findings = Findings::default();
    let seeds = &corpus().seeds[..corpus().shipped];
    for s in seeds.iter().step_by(seeds.len() / 4) {
        if let Err(failure) = run_binary(&s.bytes) {
            findings.record(&format!("seed {}", s.name), &s.bytes, failure, true);
        }
    }
    for index in 0..12 {
        let (parent, bytes) = generate(seed, index, 0, false);
        if let Err(failure) = run_binary(&bytes) {
            let origin = format!("seed {seed:#x} input {index} (no large), from {parent}");
            findings.record(&origin, &bytes, failure, true);
        }
    }
    findings.assert_none("fuzz through the binary");
}

/// The long run: mutants for `CAIRN_FUZZ_SECONDS` (default 90), every 64th
/// also through the binary. `CAIRN_FUZZ_SEED` repeats a run.
///
/// The inputs are checked by a child process (this test, run again with
/// `CAIRN_FUZZ_CHILD` set), so that an input that takes the whole process
/// down (a stack overflow aborts) is saved like any other failure, and the
/// run goes on from the next input.
#[test]
#[ignore = "long: cargo test --release --test fuzz -- --ignored fuzz"]
fn fuzz() {
    if std::env::var_os("CAIRN_FUZZ_CHILD").is_some() {
        return fuzz_child();
    }
    let seconds = env_u64("CAIRN_FUZZ_SECONDS").unwrap_or(90);
    let seed = env_u64("CAIRN_FUZZ_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    eprintln!("fuzz: seed {seed:#x} for {seconds} s (CAIRN_FUZZ_SEED={seed:#x} repeats it)");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let crash = current_input_path("fuzz");
    let mut findings = Findings {
        deadline: Some(deadline),
        ..Findings::default()
    };
    let mut first = 0u64;
    let mut child_failed = false;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let _ = std::fs::remove_file(crash.with_extension("index"));
        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--ignored",
                "--exact",
                "fuzz",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CAIRN_FUZZ_CHILD", "1")
            .env("CAIRN_FUZZ_SEED", format!("{seed:#x}"))
            .env("CAIRN_FUZZ_FIRST", first.to_string())
            .env("CAIRN_FUZZ_MILLIS", remaining.as_millis().to_string())
            .status()
            .expect("run the fuzz child");
        if status.success() {
            break;
        }
        if status.code().is_some() {
            // It reported its failures itself (above).
            child_failed = true;
            break;
        }
        // What the child was checking when it died (regenerating it could
        // differ: the inputs saved since are seeds too).
        let marker = std::fs::read_to_string(crash.with_extension("index")).unwrap_or_default();
        let (index, parent) = marker.split_once(' ').unwrap_or((&marker, "?"));
        let Ok(index) = index.trim().parse::<u64>() else {
            panic!("the fuzz child died ({status}) before its first input");
        };
        let bytes = std::fs::read(&crash).expect("read the input the fuzz child died on");
        let origin = format!("seed {seed:#x} input {index}, from {parent}");
        // The binary shows what happened (e.g. "stack overflow") on stderr.
        match run_binary(&bytes) {
            Err(failure) => findings.record(&origin, &bytes, failure, true),
            Ok(()) => findings.record(
                &origin,
                &bytes,
                Failure::Crash(format!("the fuzz process died in-process ({status})")),
                false,
            ),
        }
        first = index + 1;
    }
    findings.assert_none("fuzz (inputs that crashed the fuzz process)");
    assert!(!child_failed, "fuzz: failing inputs, reported above");
}

/// The inputs of a [`fuzz`] run from `CAIRN_FUZZ_FIRST` on, for
/// `CAIRN_FUZZ_MILLIS`.
fn fuzz_child() {
    let seed = env_u64("CAIRN_FUZZ_SEED").expect("CAIRN_FUZZ_SEED");
    let first = env_u64("CAIRN_FUZZ_FIRST").unwrap_or(0);
    let millis = env_u64("CAIRN_FUZZ_MILLIS").unwrap_or(90_000);
    let deadline = Instant::now() + Duration::from_millis(millis);
    let crash = current_input_path("fuzz");
    let large = large_one_in();
    let mut findings = Findings {
        deadline: Some(deadline),
        ..Findings::default()
    };
    eprintln!(
        "fuzz: seed {seed:#x}, inputs from {first} on, for {:.1} s, bound {:?} per input \
         (CAIRN_FUZZ_SEED={seed:#x} repeats it)",
        millis as f64 / 1000.0,
        bound(),
    );
    let (mut count, mut through_binary) = (0u64, 0u64);
    let mut slowest = (Duration::ZERO, 0u64, 0usize);
    let start = Instant::now();
    let valid_before = VALID.load(Ordering::Relaxed);
    while Instant::now() < deadline {
        let index = first + count;
        count += 1;
        let (parent, bytes) = generate(seed, index, large, true);
        let _ = std::fs::write(&crash, &bytes);
        let _ = std::fs::write(crash.with_extension("index"), format!("{index} {parent}"));
        let origin = format!("seed {seed:#x} input {index}, from {parent}");
        let patience = deadline.saturating_duration_since(Instant::now());
        match run_in_process_patiently(&bytes, bound(), patience) {
            Ok(elapsed) => {
                if elapsed > slowest.0 {
                    slowest = (elapsed, index, bytes.len());
                }
            }
            Err(failure) => findings.record(&origin, &bytes, failure, false),
        }
        if index % 64 == 0 {
            through_binary += 1;
            if let Err(failure) = run_binary(&bytes) {
                findings.record(&origin, &bytes, failure, true);
            }
        }
        if STUCK.load(Ordering::Relaxed) >= 2 {
            eprintln!("fuzz: stopping early, two inputs never finished");
            break;
        }
    }
    let elapsed = start.elapsed();
    eprintln!(
        "fuzz: inputs {first}..{} in {elapsed:.1?} ({:.0}/s), {} valid plans, {through_binary} \
         through the binary; slowest {:.2?} (input {}, {} bytes)",
        first + count,
        count as f64 / elapsed.as_secs_f64(),
        VALID.load(Ordering::Relaxed) - valid_before,
        slowest.0,
        slowest.1,
        slowest.2,
    );
    findings.assert_none("fuzz");
}

/// Runs one file (`CAIRN_FUZZ_REPLAY`) in-process and through the binary
/// and prints what happens; for reproducing a saved failure.
#[test]
#[ignore = "tool: CAIRN_FUZZ_REPLAY=<file> cargo test --test fuzz -- --ignored replay"]
fn replay() {
    let Some(path) = std::env::var_os("CAIRN_FUZZ_REPLAY") else {
        eprintln!("set CAIRN_FUZZ_REPLAY to the file to replay");
        return;
    };
    let bytes = std::fs::read(&path).expect("read CAIRN_FUZZ_REPLAY");
    eprintln!(
        "replaying {}: {}",
        Path::new(&path).display(),
        preview(&bytes)
    );
    let in_process = run_in_process(&bytes, bound());
    match &in_process {
        Ok(t) => eprintln!("in-process: ok in {t:.2?}"),
        Err(f) => eprintln!("in-process: {}", f.describe(bound())),
    }
    let binary = run_binary(&bytes);
    match &binary {
        Ok(()) => eprintln!("binary: ok"),
        Err(f) => eprintln!("binary: {}", f.describe(bound())),
    }
    assert!(
        in_process.is_ok() && binary.is_ok(),
        "the input still fails"
    );
}
