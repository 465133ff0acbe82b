//! Where file capabilities may reach: a path is resolved through every
//! symbolic link, judged against the grants, and then opened without
//! following any link, so what was checked is exactly what is touched.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use globset::{GlobBuilder, GlobMatcher};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, CWD};

use cairn_lang::plan::Grant;

/// The largest file `read_file` and `edit_file` take: a plan's strings are
/// bounded, and so must be what a read holds in memory.
pub const MAX_FILE_BYTES: u64 = cairn_lang::script::MAX_STRING_SIZE as u64;

/// Symbolic links followed for one path before giving up (Linux's own limit).
const MAX_LINKS: u32 = 40;

/// The file system a run's file capabilities see: the plan's directory and
/// the scopes of its grants, minus the run store.
#[derive(Debug)]
pub struct Confinement {
    /// The plan's directory, every symbolic link in it resolved.
    root: PathBuf,
    /// No file capability reads, lists or changes anything in these: the
    /// run store (`--state-dir`) and the plan directory's `.cairn/`.
    sealed: Vec<PathBuf>,
    /// Each scope's matcher, made on its first use: compiling a glob (and
    /// resolving its literal part) on every file call cost more than the
    /// call. Kept as first resolved, so a link a step makes later in a
    /// scope's literal part cannot widen the scope.
    matchers: std::sync::Mutex<std::collections::HashMap<String, Option<Arc<GlobMatcher>>>>,
}

/// Why a path was refused. Paths are shown as the plan wrote them, with
/// where a symbolic link led when that is what took them out.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Outside the plan's directory and every scope: (shown path, capability).
    #[error("{0} is outside the plan's directory; plans read and write only below it unless `allow: {1}(<glob>)` names the path")]
    Outside(String, String),
    #[error("{path} is not in the plan's `allow: {capability}({scopes})`")]
    /// In the plan's directory, but the capability is narrowed to scopes that miss it.
    NotInScope {
        /// The path, as shown.
        path: String,
        /// `fs.read` or `fs.write`.
        capability: String,
        /// The grant's scopes, comma-separated.
        scopes: String,
    },
    #[error("`{0}` is inside cairn's run store; no plan may read, list or change it")]
    /// In the run store.
    Sealed(String),
    #[error("`{0}`: {1}")]
    /// The path could not be resolved (a missing directory before `..`, a loop of links).
    Io(String, io::Error),
}

/// `path` in backticks, and where links took it if they did.
fn shown(path: &str, resolved: &Path, root: &Path) -> String {
    if normalize(&root.join(path)) == resolved {
        format!("`{path}`")
    } else {
        format!(
            "`{path}` (through a symbolic link, `{}`)",
            resolved.display()
        )
    }
}

impl Confinement {
    /// Confines file access to `dir` (the plan's directory) and keeps it out
    /// of `state_dir` (the run store), wherever that is.
    pub fn new(dir: &Path, state_dir: Option<&Path>) -> Self {
        let root = absolute(dir);
        let root = physical(Path::new("/"), &root).unwrap_or(root);
        let mut sealed = vec![root.join(".cairn")];
        if let Some(state) = state_dir {
            let state = absolute(state);
            sealed.push(physical(Path::new("/"), &state).unwrap_or(state));
        }
        Self {
            root,
            sealed,
            matchers: Default::default(),
        }
    }

    /// The plan's directory, as resolved.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file `path` (relative to the plan's directory) names once every
    /// symbolic link on the way is followed, if `capability`'s grants allow
    /// it. The answer has no links, `.` or `..` in it: open it with
    /// [`open_exact`] and the same file is reached or the open fails.
    pub fn locate(
        &self,
        path: &str,
        grants: &[Grant],
        capability: &str,
    ) -> Result<PathBuf, Refusal> {
        let resolved =
            physical(&self.root, Path::new(path)).map_err(|e| Refusal::Io(path.to_owned(), e))?;
        self.judge(path, &resolved, grants, capability)?;
        Ok(resolved)
    }

    /// [`Confinement::locate`], judged against several grant lists (a child
    /// run's, then each plan's above it): the path must be within all.
    pub fn locate_within<'g>(
        &self,
        path: &str,
        mut lists: impl Iterator<Item = &'g [Grant]>,
        capability: &str,
    ) -> Result<PathBuf, Refusal> {
        let own = lists.next().unwrap_or_default();
        let resolved = self.locate(path, own, capability)?;
        for grants in lists {
            self.judge(path, &resolved, grants, capability)?;
        }
        Ok(resolved)
    }

    /// Whether `capability`'s grants reach `resolved` (already free of links).
    fn judge(
        &self,
        path: &str,
        resolved: &Path,
        grants: &[Grant],
        capability: &str,
    ) -> Result<(), Refusal> {
        if self.is_sealed(resolved) {
            return Err(Refusal::Sealed(path.to_owned()));
        }
        let scopes: Vec<&str> = grants
            .iter()
            .filter(|g| g.capability == capability)
            .flat_map(|g| g.scopes.iter().map(String::as_str))
            .collect();
        let in_scope = scopes
            .iter()
            .any(|glob| self.matcher(glob).is_some_and(|m| m.is_match(resolved)));
        if in_scope {
            return Ok(());
        }
        if !resolved.starts_with(&self.root) {
            return Err(Refusal::Outside(
                shown(path, resolved, &self.root),
                capability.to_owned(),
            ));
        }
        if !scopes.is_empty() {
            return Err(Refusal::NotInScope {
                path: shown(path, resolved, &self.root),
                capability: capability.to_owned(),
                scopes: scopes.join(", "),
            });
        }
        Ok(())
    }

    /// Whether `resolved` is in the run store.
    pub fn is_sealed(&self, resolved: &Path) -> bool {
        self.sealed.iter().any(|s| resolved.starts_with(s))
    }

    /// The matcher of a scope, made once per run.
    fn matcher(&self, glob: &str) -> Option<Arc<GlobMatcher>> {
        let mut matchers = self.matchers.lock().unwrap_or_else(|e| e.into_inner());
        matchers
            .entry(glob.to_owned())
            .or_insert_with(|| self.scope_matcher(glob).map(Arc::new))
            .clone()
    }

    /// A scope's glob, anchored at the plan's directory, with the links in
    /// its literal part resolved so it compares with resolved paths.
    fn scope_matcher(&self, glob: &str) -> Option<GlobMatcher> {
        let anchored = normalize(&self.root.join(glob));
        let mut literal = PathBuf::new();
        let mut pattern = PathBuf::new();
        for component in anchored.components() {
            let text = component.as_os_str().to_string_lossy();
            if pattern.as_os_str().is_empty() && !text.contains(['*', '?', '[', '{']) {
                literal.push(component);
            } else {
                pattern.push(component);
            }
        }
        let base = physical(Path::new("/"), &literal).unwrap_or(literal);
        let full = base.join(pattern);
        GlobBuilder::new(&full.to_string_lossy())
            .literal_separator(true)
            .build()
            .ok()
            .map(|g| g.compile_matcher())
    }
}

/// `path` made absolute against the current directory, without touching links.
fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    normalize(&joined)
}

/// Resolves `.` and `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// One step of a path still to walk.
enum Part {
    Root,
    Parent,
    Name(OsString),
}

fn parts(path: &Path) -> impl DoubleEndedIterator<Item = Part> + '_ {
    path.components().filter_map(|c| match c {
        Component::RootDir | Component::Prefix(_) => Some(Part::Root),
        Component::ParentDir => Some(Part::Parent),
        Component::CurDir => None,
        Component::Normal(name) => Some(Part::Name(name.to_owned())),
    })
}

/// Walks `path` from `base` as the kernel would, following every symbolic
/// link (`..` after a link goes up from where the link led, not lexically).
/// The part of the path that does not exist yet is appended as written; a
/// `..` inside it is an error, as it would be for the kernel.
pub fn physical(base: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut out = base.to_path_buf();
    // A stack: the next part to walk is at the end.
    let mut pending: Vec<Part> = parts(path).rev().collect();
    let mut links = 0;
    let mut missing = false;
    let mut is_dir = true;
    while let Some(part) = pending.pop() {
        match part {
            Part::Root => {
                out = PathBuf::from("/");
                is_dir = true;
            }
            Part::Parent if missing => return Err(io::ErrorKind::NotFound.into()),
            Part::Parent if !is_dir => return Err(io::ErrorKind::NotADirectory.into()),
            Part::Parent => {
                out.pop();
            }
            Part::Name(name) => {
                if !is_dir && !missing {
                    return Err(io::ErrorKind::NotADirectory.into());
                }
                out.push(&name);
                if missing {
                    continue;
                }
                match std::fs::symlink_metadata(&out) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        links += 1;
                        if links > MAX_LINKS {
                            return Err(io::Error::other("too many levels of symbolic links"));
                        }
                        let target = std::fs::read_link(&out)?;
                        out.pop();
                        pending.extend(parts(&target).rev());
                    }
                    Ok(meta) => is_dir = meta.is_dir(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => missing = true,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}

/// Opens `path` (absolute, free of links) refusing a symbolic link at any
/// component: if one was swapped in after the path was checked, the open
/// fails instead of following it.
pub fn open_exact(path: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC;
    match rustix::fs::openat2(CWD, path, flags, mode, ResolveFlags::NO_SYMLINKS) {
        // Kernels before 5.6 (or a seccomp filter) lack openat2: walk the
        // path one component at a time, none of them followed if a link.
        Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => walk(path, flags, mode),
        other => other.map_err(|e| swapped(e.into())),
    }
}

fn walk(path: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let mut dir = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let names: Vec<_> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let Some((last, parents)) = names.split_last() else {
        return rustix::fs::open("/", flags, mode).map_err(Into::into);
    };
    for name in parents {
        dir = rustix::fs::openat(
            &dir,
            *name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| swapped(e.into()))?;
    }
    rustix::fs::openat(&dir, *last, flags | OFlags::NOFOLLOW, mode).map_err(|e| swapped(e.into()))
}

/// ELOOP from a no-links open means a link appeared after the check.
fn swapped(error: io::Error) -> io::Error {
    if error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        io::Error::other("a symbolic link appeared on the path after it was checked")
    } else {
        error
    }
}

/// Reads a whole file, refusing one larger than `limit` bytes.
pub fn read(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let fd = open_exact(path, OFlags::RDONLY, Mode::empty())?;
    let mut file = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    (&mut file).take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::other(format!(
            "the file is larger than {} MiB, the most a plan reads at once",
            limit >> 20
        )));
    }
    Ok(bytes)
}

/// Whether `path` exists (as itself, not through a link).
pub fn exists(path: &Path) -> io::Result<bool> {
    match open_exact(path, OFlags::PATH, Mode::empty()) {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The names in a directory, sorted.
pub fn list(path: &Path) -> io::Result<Vec<OsString>> {
    let fd = open_exact(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::new(fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            use std::os::unix::ffi::OsStrExt;
            names.push(std::ffi::OsStr::from_bytes(name).to_owned());
        }
    }
    // Directory order is not stable across machines; plans must be.
    names.sort();
    Ok(names)
}

/// The directory holding `path`, opened exactly, and the file's name in it.
fn parent_of(path: &Path) -> io::Result<(OwnedFd, OsString)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::other("not a file name"));
    };
    let dir = open_exact(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
    Ok((dir, name.to_owned()))
}

/// Writes next to the target and renames over it, all inside the directory
/// opened exactly: a failed step never leaves a half-written file, and a
/// link swapped in for the file is replaced, never written through. An
/// existing file keeps its permissions.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (dir, name) = parent_of(path)?;
    let mode = match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if (stat.st_mode & libc::S_IFMT) == libc::S_IFREG => {
            Some(Mode::from_raw_mode(stat.st_mode & 0o7777))
        }
        _ => None,
    };
    // Unique per write: steps of one run may write at the same time.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = format!(
        ".{}.cairn-{}-{n}",
        name.to_string_lossy(),
        std::process::id()
    );
    let fd = rustix::fs::openat(
        &dir,
        temp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )?;
    let written = (|| {
        if let Some(mode) = mode {
            rustix::fs::fchmod(&fd, mode)?;
        }
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes)?;
        rustix::fs::renameat(&dir, temp.as_str(), &dir, &name)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
    }
    written
}

/// Removes a file (a link in its place is removed itself, never its
/// target); a file already gone is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    let (dir, name) = parent_of(path)?;
    match rustix::fs::unlinkat(&dir, &name, AtFlags::empty()) {
        Err(rustix::io::Errno::NOENT) => Ok(()),
        other => other.map_err(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_after_a_link_goes_up_from_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("plan")).unwrap();
        std::fs::create_dir_all(root.join("elsewhere/sub")).unwrap();
        std::os::unix::fs::symlink(root.join("elsewhere/sub"), root.join("plan/link")).unwrap();
        let resolved = physical(&root.join("plan"), Path::new("link/../victim.txt")).unwrap();
        assert_eq!(resolved, root.join("elsewhere/victim.txt"));
    }

    #[test]
    fn a_missing_directory_cannot_be_climbed_out_of() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        assert_eq!(
            physical(&root, Path::new("new/file")).unwrap(),
            root.join("new/file")
        );
        assert!(physical(&root, Path::new("missing/../../x")).is_err());
    }

    #[test]
    fn an_open_refuses_a_link_anywhere_on_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        std::fs::write(root.join("real/f"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        assert!(read(&root.join("real/f"), 10).is_ok());
        assert!(read(&root.join("link/f"), 10).is_err());
        assert!(walk(&root.join("link/f"), OFlags::RDONLY, Mode::empty()).is_err());
        assert!(walk(&root.join("real/f"), OFlags::RDONLY, Mode::empty()).is_ok());
    }

    /// The check passes, then the directory is swapped for a link to the
    /// outside before the file is opened: every operation must refuse.
    #[test]
    fn a_swap_between_check_and_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("plan/sub")).unwrap();
        std::fs::create_dir_all(base.join("elsewhere")).unwrap();
        std::fs::write(base.join("plan/sub/f"), "inside").unwrap();
        std::fs::write(base.join("elsewhere/f"), "precious").unwrap();
        let confinement = Confinement::new(&base.join("plan"), None);
        let checked = confinement.locate("sub/f", &[], "fs.write").unwrap();
        std::fs::rename(base.join("plan/sub"), base.join("plan/real")).unwrap();
        std::os::unix::fs::symlink("../elsewhere", base.join("plan/sub")).unwrap();
        let error = read(&checked, 100).unwrap_err();
        assert!(
            error.to_string().contains("symbolic link appeared"),
            "{error}"
        );
        assert!(write_atomically(&checked, b"pwned").is_err());
        assert!(remove(&checked).is_err());
        assert!(!exists(&checked).unwrap_or(false));
        assert!(list(&base.join("plan/sub")).is_err());
        assert_eq!(
            std::fs::read(base.join("elsewhere/f")).unwrap(),
            b"precious"
        );
        // The kernel without openat2 takes the other path: the same answers.
        assert!(walk(&checked, OFlags::RDONLY, Mode::empty()).is_err());
    }

    /// Another process swaps a checked directory for a link to the outside
    /// while reads and writes go on: none may reach the outside file.
    #[test]
    fn a_link_swapped_in_after_the_check_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let (plan, outside) = (base.join("plan"), base.join("outside"));
        std::fs::create_dir_all(plan.join("d")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(plan.join("d/f"), "inside").unwrap();
        std::fs::write(outside.join("f"), "outside").unwrap();
        let confinement = Confinement::new(&plan, None);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::fs::rename(plan.join("d"), plan.join("real"));
                    let _ = std::os::unix::fs::symlink(&outside, plan.join("d"));
                    std::thread::yield_now();
                    let _ = std::fs::remove_file(plan.join("d"));
                    let _ = std::fs::rename(plan.join("real"), plan.join("d"));
                }
            });
            for _ in 0..3000 {
                if let Ok(path) = confinement.locate("d/f", &[], "fs.read") {
                    if let Ok(bytes) = read(&path, 100) {
                        assert_eq!(bytes, b"inside");
                    }
                    let _ = write_atomically(&path, b"inside");
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"outside");
        let strays: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
        assert_eq!(strays.len(), 1, "nothing was written outside");
    }
}
