//! Source files: reading a plan from disk safely and mapping byte offsets to lines.

use std::path::Path;
use std::sync::Arc;

use crate::error::Error;

/// Plans larger than this are refused before parsing; a plan this big is
/// almost certainly not a plan (a log, a binary) and would only be slow.
pub const MAX_SOURCE_BYTES: u64 = 32 * 1024 * 1024;

/// The sha256 of a plan's text, in hex: what a run records to tell later
/// whether the text it was checked from changed.
pub fn sha256(bytes: impl AsRef<[u8]>) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes.as_ref()))
}

/// Opens a file for reading without waiting: on a FIFO with no writer a
/// plain `open` blocks until one comes; `O_NONBLOCK` makes it return at once
/// (and changes nothing for a regular file, which is all that is then read).
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    options.open(path)
}

/// What a file that is not a regular file is, for the error message.
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_symlink() {
        return "a symbolic link";
    }
    "something else"
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

    /// Reads a plan file, refusing directories, anything else that is not a
    /// regular file (FIFOs, devices, sockets: reading one can block forever
    /// or never end), huge files and non-UTF-8 bytes, with a message that
    /// says which.
    ///
    /// The path is checked with `metadata` (which follows symbolic links, so
    /// a link to a regular file is fine) before it is opened; it is then
    /// opened with `O_NONBLOCK` (opening a FIFO with no writer would block)
    /// and the opened file is checked again with `fstat`, so a file swapped
    /// for a FIFO in between is refused too, not read.
    pub fn read(path: &Path) -> Result<Arc<Self>, Error> {
        let name = path.display().to_string();
        let io = |source| Error::Io {
            path: name.clone(),
            source,
        };
        let refuse = |meta: &std::fs::Metadata| -> Result<(), Error> {
            if meta.is_dir() {
                return Err(Error::IsDirectory { path: name.clone() });
            }
            if !meta.is_file() {
                return Err(Error::Io {
                    path: name.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "it is not a regular file (it is {}); cairn reads plans only from regular files",
                            file_kind(&meta.file_type())
                        ),
                    ),
                });
            }
            if meta.len() > MAX_SOURCE_BYTES {
                return Err(Error::TooLarge {
                    path: name.clone(),
                    bytes: meta.len(),
                    limit: MAX_SOURCE_BYTES,
                });
            }
            Ok(())
        };
        refuse(&std::fs::metadata(path).map_err(io)?)?;
        let file = open_nonblocking(path).map_err(io)?;
        refuse(&file.metadata().map_err(io)?)?;
        // The file may grow while it is read: read at most one byte past
        // the limit, whatever its size said.
        let mut bytes = Vec::new();
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

    /// The number of lines (a final newline starts an empty last line).
    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// The 0-based line that holds byte `offset` (the last line past the end).
    pub fn line_index(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset) - 1
    }

    /// The bytes of 0-based line `index`, without its `\n` or `\r\n`.
    pub fn line_range(&self, index: usize) -> std::ops::Range<usize> {
        let start = self.line_starts[index];
        let mut end = self
            .line_starts
            .get(index + 1)
            .map_or(self.text.len(), |next| next - 1);
        if end > start && self.text.as_bytes()[end - 1] == b'\r' {
            end -= 1;
        }
        start..end
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
