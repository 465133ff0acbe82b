//! The REPL's commands: names, arguments and help text.

/// One command: its name, its arguments and what it does.
pub struct Command {
    pub name: &'static str,
    pub args: &'static str,
    pub help: &'static str,
}

/// Every command, in the order `:help` lists them.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "load",
        args: "<file>",
        help: "start a new run of another plan file (or stdlib template)",
    },
    Command {
        name: "reload",
        args: "",
        help: "re-read the plan file: show which steps changed and keep the results still valid",
    },
    Command {
        name: "plan",
        args: "",
        help: "every step with its status and what it waits for",
    },
    Command {
        name: "graph",
        args: "",
        help: "the plan's graph as a Mermaid flowchart",
    },
    Command {
        name: "next",
        args: "",
        help: "run the next ready step in scheduling order and show its output",
    },
    Command {
        name: "step",
        args: "<step>",
        help: "run this ready step and show its output",
    },
    Command {
        name: "run",
        args: "",
        help: "run to the end, a breakpoint or a gate",
    },
    Command {
        name: "break",
        args: "<step> [if <expr>]",
        help:
            "stop `:run` before this step starts (with `if`: only when the expression holds then)",
    },
    Command {
        name: "unbreak",
        args: "<step>",
        help: "remove a breakpoint",
    },
    Command {
        name: "breaks",
        args: "",
        help: "list the breakpoints",
    },
    Command {
        name: "watch",
        args: "<expr>",
        help: "show this expression's value after every command that runs steps",
    },
    Command {
        name: "unwatch",
        args: "<expr>",
        help: "stop showing a watched expression",
    },
    Command {
        name: "inspect",
        args: "<step>",
        help: "a step's input, output, attempts, error, log lines and timing",
    },
    Command {
        name: "skip",
        args: "<step>",
        help: "mark a step skipped: it will not run",
    },
    Command {
        name: "retry",
        args: "<step>",
        help: "drop a settled step's outcome (and its dependents'): it runs again",
    },
    Command {
        name: "set",
        args: "<param> = <value>",
        help: "change a param for the steps that have not run yet",
    },
    Command {
        name: "approve",
        args: "<gate> [field=value …] [reason]",
        help: "approve a waiting gate (with values for its `input:` fields)",
    },
    Command {
        name: "reject",
        args: "<gate> [reason]",
        help: "reject a waiting gate (it fails like a step)",
    },
    Command {
        name: "status",
        args: "",
        help: "the run: id, status, progress, waiting gates, hypotheses",
    },
    Command {
        name: "history",
        args: "",
        help: "the lines entered in this session",
    },
    Command {
        name: "help",
        args: "[command]",
        help: "this list, or one command's help",
    },
    Command {
        name: "quit",
        args: "",
        help: "leave; the run stays saved and `cairn repl --resume` goes on",
    },
];

/// The command named `name`.
pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// `:help` or `:help <command>`.
pub fn help(topic: Option<&str>) -> Result<String, String> {
    match topic.map(|t| t.trim_start_matches(':')) {
        None => {
            let width = COMMANDS
                .iter()
                .map(|c| c.name.len() + c.args.len() + 2)
                .max()
                .unwrap_or(0);
            let mut text = String::new();
            for c in COMMANDS {
                let usage = format!(":{} {}", c.name, c.args);
                text.push_str(&format!("  {usage:<width$}  {}\n", c.help));
            }
            text.push_str(
                "  any other line is a Rhai expression over `params`, `outputs` and `input`\n",
            );
            Ok(text)
        }
        Some(name) => match find(name) {
            Some(c) => Ok(format!(":{} {}\n  {}\n", c.name, c.args, c.help)),
            None => Err(unknown(name)),
        },
    }
}

/// "no command `:nxt`; did you mean `:next`?".
pub fn unknown(name: &str) -> String {
    match cairn_lang::check::closest(name, COMMANDS.iter().map(|c| c.name)) {
        Some(close) => format!("no command `:{name}`; did you mean `:{close}`?"),
        None => format!("no command `:{name}`; `:help` lists them"),
    }
}
