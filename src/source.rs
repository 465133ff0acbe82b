//! Source files: reading a plan from disk safely and mapping byte offsets to lines.

use std::path::Path;
use std::sync::Arc;

use crate::error::Error;

/// Plans larger than this are refused before parsing; a plan this big is
/// almost certainly not a plan (a log, a binary) and would only be slow.
pub const MAX_SOURCE_BYTES: u64 = 32 * 1024 * 1024;

/// The sha256 of a plan's text, in hex: what a run records to tell later
/// whether the text it was checked from changed.
pub fn sha256(text: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(text))
}

/// A named piece of plan text, shared by every diagnostic that points into it.
#[derive(Debug)]
pub struct Source {
    name: String,
    text: String,
    line_starts: Vec<usize>,
}

impl Source {
    /// Wraps text that did not come from disk (tests, embedders, the REPL).
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
        let mut text = text.into();
        // A byte-order mark is an encoding artefact, not part of the plan.
        if text.starts_with('\u{feff}') {
            text.drain(..3);
        }
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Arc::new(Self {
            name: name.into(),
            text,
            line_starts,
        })
    }

    /// Reads a plan file, refusing directories, huge files and non-UTF-8 bytes
    /// with a message that says which.
    pub fn read(path: &Path) -> Result<Arc<Self>, Error> {
        let name = path.display().to_string();
        let io = |source| Error::Io {
            path: name.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Err(Error::IsDirectory { path: name });
        }
        if meta.len() > MAX_SOURCE_BYTES {
            return Err(Error::TooLarge {
                path: name,
                bytes: meta.len(),
                limit: MAX_SOURCE_BYTES,
            });
        }
        // `metadata().len()` is 0 for devices and pipes: read at most one
        // byte past the limit, whatever the file claims.
        let mut bytes = Vec::new();
        let file = std::fs::File::open(path).map_err(io)?;
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_SOURCE_BYTES + 1),
            &mut bytes,
        )
        .map_err(io)?;
        if bytes.len() as u64 > MAX_SOURCE_BYTES {
            return Err(Error::TooLarge {
                path: name,
                bytes: bytes.len() as u64,
                limit: MAX_SOURCE_BYTES,
            });
        }
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Self::new(name, text)),
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                let valid = std::str::from_utf8(&e.as_bytes()[..offset]).unwrap_or_default();
                let line = valid.matches('\n').count() + 1;
                let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                Err(Error::NotUtf8 {
                    path: name,
                    offset,
                    line,
                    column,
                })
            }
        }
    }

    /// The name diagnostics show for this source (usually its path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self.text[start..offset].chars().count() + 1;
        (line + 1, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let source = Source::new("t", "ab\ncé d\n");
        assert_eq!(source.line_col(0), (1, 1));
        assert_eq!(source.line_col(3), (2, 1));
        assert_eq!(source.line_col(6), (2, 3));
        assert_eq!(source.line_col(99), (3, 1));
    }
}
