//! How the command's output looks, as the global flags chose: colour
//! (`--color`, `NO_COLOR`) and how much is said (`-q`, `-v`). Set once by
//! `main`, read wherever output is written.

use std::io::IsTerminal;
use std::sync::OnceLock;

use clap::ValueEnum;

/// `--color`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set.
    #[default]
    Auto,
    /// Always, even into a pipe or file.
    Always,
    /// Never.
    Never,
}

/// What the global flags chose.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub color: ColorChoice,
    /// `-q`: no progress lines, only what went wrong and where the run is.
    pub quiet: bool,
}

static STYLE: OnceLock<Style> = OnceLock::new();

/// Sets the style for the rest of the process (once; later calls change nothing).
pub fn set(style: Style) {
    let _ = STYLE.set(style);
}

fn style() -> Style {
    STYLE.get().copied().unwrap_or_default()
}

/// Whether text written to stderr is coloured.
pub fn color_on_stderr() -> bool {
    match style().color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    }
}

/// Whether `-q` was given.
pub fn quiet() -> bool {
    style().quiet
}
