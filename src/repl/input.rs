//! Reading the REPL's input: rustyline on a terminal (completion, hints,
//! history, multi-line blocks), plain lines otherwise (scripted sessions).

use std::borrow::Cow;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper};

use super::commands::COMMANDS;

/// What completion and hints know about the plan, updated after each command.
#[derive(Clone, Debug, Default)]
pub struct Known {
    pub steps: Vec<String>,
    pub gates: Vec<String>,
    pub params: Vec<String>,
    /// The steps that would start next, for the hint line.
    pub ready: Vec<String>,
}

/// One line (or block) of input, or why there is none.
pub enum Line {
    Text(String),
    /// Ctrl-C at the prompt: the line was cleared.
    Cleared,
    /// Ctrl-D or the end of the input.
    End,
}

/// Where input comes from.
pub enum Input {
    Terminal {
        editor: Box<Editor<ReplHelper, rustyline::history::DefaultHistory>>,
        history: PathBuf,
    },
    Plain(std::io::StdinLock<'static>),
}

impl Input {
    /// rustyline on a terminal (with its history file), plain lines otherwise.
    pub fn new(terminal: bool, history: PathBuf, known: Arc<Mutex<Known>>) -> Self {
        if terminal {
            if let Ok(mut editor) = Editor::new() {
                editor.set_helper(Some(ReplHelper { known }));
                let _ = editor.load_history(&history);
                return Input::Terminal {
                    editor: Box::new(editor),
                    history,
                };
            }
        }
        Input::Plain(std::io::stdin().lock())
    }

    /// The next line; a line with unclosed brackets goes on to the next
    /// (`...> `) until they close.
    pub fn read(&mut self, prompt: &str) -> Line {
        match self {
            Input::Terminal { editor, history } => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                        if let Some(dir) = history.parent() {
                            let _ = std::fs::create_dir_all(dir);
                        }
                        let _ = editor.save_history(history);
                    }
                    Line::Text(line)
                }
                Err(ReadlineError::Interrupted) => Line::Cleared,
                Err(_) => Line::End,
            },
            Input::Plain(stdin) => {
                // Scripted input is echoed after the prompt, so the output
                // reads as a transcript.
                let mut block = String::new();
                let mut shown = prompt.to_owned();
                loop {
                    print!("{shown}");
                    let _ = std::io::stdout().flush();
                    let mut line = String::new();
                    match stdin.read_line(&mut line) {
                        Ok(0) | Err(_) => {
                            println!();
                            return if block.is_empty() {
                                Line::End
                            } else {
                                Line::Text(block)
                            };
                        }
                        Ok(_) => {}
                    }
                    let line = line.trim_end_matches(['\n', '\r']);
                    println!("{line}");
                    if !block.is_empty() {
                        block.push('\n');
                    }
                    block.push_str(line);
                    if depth(&block) <= 0 {
                        return Line::Text(block);
                    }
                    shown = "...> ".to_owned();
                }
            }
        }
    }
}

/// Open brackets minus closed ones, outside strings.
fn depth(text: &str) -> i64 {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '`' | '\'' => quote = Some(c),
                '{' | '(' | '[' => depth += 1,
                '}' | ')' | ']' => depth -= 1,
                _ => {}
            },
        }
    }
    depth
}

/// Completion of commands, step ids, gate ids and params; a hint with the
/// next ready steps; multi-line input while brackets are open.
pub struct ReplHelper {
    known: Arc<Mutex<Known>>,
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind([' ', '(', '"']).map_or(0, |i| i + 1);
        let word = &before[start..];
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let candidates: Vec<String> = if start == 0 && word.starts_with(':') {
            COMMANDS.iter().map(|c| format!(":{}", c.name)).collect()
        } else {
            let command = before.split_whitespace().next().unwrap_or("");
            match command {
                ":approve" | ":reject" => known.gates.clone(),
                ":set" => known.params.clone(),
                ":step" | ":break" | ":unbreak" | ":inspect" | ":skip" | ":retry" => {
                    known.steps.clone()
                }
                ":help" => COMMANDS.iter().map(|c| c.name.to_owned()).collect(),
                _ if before.ends_with("params.") || word.is_empty() => Vec::new(),
                _ => known.steps.iter().chain(&known.params).cloned().collect(),
            }
        };
        let matches = candidates
            .into_iter()
            .filter(|c| c.starts_with(word))
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, matches))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;

    fn hint(&self, line: &str, _pos: usize, _: &Context<'_>) -> Option<String> {
        if !line.is_empty() {
            return None;
        }
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        match known.ready.as_slice() {
            [] => None,
            ready => Some(format!("  (next: {})", ready.join(", "))),
        }
    }
}

impl Highlighter for ReplHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(if depth(ctx.input()) > 0 {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::depth;

    #[test]
    fn brackets_outside_strings_count() {
        assert_eq!(depth("let x = #{"), 1);
        assert_eq!(depth("let x = #{ a: \"}\" }"), 0);
        assert_eq!(depth("if true { [1, 2"), 2);
        assert_eq!(depth("`${a}`"), 0);
    }
}
