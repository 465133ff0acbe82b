//! Reading a plan file from disk safely: regular files only, bounded, UTF-8.

use std::path::Path;
use std::sync::Arc;

use cairn_lang::source::{Source, MAX_SOURCE_BYTES};

use crate::error::Error;

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
pub fn read(path: &Path) -> Result<Arc<Source>, Error> {
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
        Ok(text) => Ok(Source::new(name, text)),
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
