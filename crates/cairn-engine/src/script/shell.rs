//! The `sh` capability: commands in the plan's directory, each under a
//! supervisor that kills everything the command started when it ends.

mod supervisor;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::context::{current, outside, runtime, Artifact, ArtifactBody, Interrupt, Note};

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

/// What to run: a shell command line, or a program and its arguments
/// passed as they are, with no shell to split or expand them.
enum Program {
    Shell(String),
    Argv(Vec<String>),
}

impl Program {
    fn argv(items: Array) -> Result<Self> {
        let argv: Vec<String> = items
            .into_iter()
            .map(|item| {
                if item.is_string() || item.is_int() || item.is_float() || item.is_bool() {
                    Ok(item.to_string())
                } else {
                    Err(runtime(format!(
                        "sh([…]): every argument must be a string or a number, not {}",
                        item.type_name()
                    )))
                }
            })
            .collect::<Result<_>>()?;
        if argv.first().is_none_or(String::is_empty) {
            return Err(runtime(
                "sh([…]): the list must start with the program to run",
            ));
        }
        Ok(Self::Argv(argv))
    }

    /// How the call is recorded: the text, or the list.
    fn json(&self) -> serde_json::Value {
        match self {
            Self::Shell(command) => json!(command),
            Self::Argv(argv) => json!(argv),
        }
    }

    /// The command as a shell would read it, for messages.
    fn shown(&self) -> String {
        match self {
            Self::Shell(command) => command.clone(),
            Self::Argv(argv) => argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "),
        }
    }
}

/// `sh` and `sh_try` options.
#[derive(Default)]
struct Options {
    /// Keep the whole stdout and stderr as artifacts, by hash.
    keep_output: bool,
}

impl Options {
    fn parse(map: &Map) -> Result<Self> {
        let mut options = Self::default();
        for (key, value) in map {
            match key.as_str() {
                "keep_output" => {
                    options.keep_output = value.as_bool().map_err(|_| {
                        runtime("sh(…, #{ keep_output }): `keep_output` is true or false")
                    })?
                }
                other => {
                    return Err(runtime(format!(
                        "sh(…, #{{ {other} }}): unknown option; sh takes `keep_output`"
                    )))
                }
            }
        }
        Ok(options)
    }
}

/// Registers `sh` (fails on a non-zero exit) and `sh_try` (returns the exit
/// code in its result instead), each taking a command line or an argument
/// list, and optionally options.
pub fn register(engine: &mut Engine) {
    fn call(name: &'static str, program: Program, options: Option<Map>) -> Result<Map> {
        let parsed = options
            .as_ref()
            .map(Options::parse)
            .transpose()?
            .unwrap_or_default();
        let mut args = vec![program.json()];
        if let Some(options) = &options {
            args.push(serde_json::to_value(Dynamic::from_map(options.clone())).unwrap_or_default());
        }
        outside(name, serde_json::Value::Array(args), |_| {
            let out = run(&program, &parsed)?;
            if name == "sh" {
                checked(&program, out)
            } else {
                Ok(out.into_map())
            }
        })
    }
    for name in ["sh", "sh_try"] {
        engine.register_fn(name, move |command: &str| {
            call(name, Program::Shell(command.to_owned()), None)
        });
        engine.register_fn(name, move |command: &str, options: Map| {
            call(name, Program::Shell(command.to_owned()), Some(options))
        });
        engine.register_fn(name, move |argv: Array| {
            call(name, Program::argv(argv)?, None)
        });
        engine.register_fn(name, move |argv: Array, options: Map| {
            call(name, Program::argv(argv)?, Some(options))
        });
    }
}

/// `text` as one word for `sh -c`: in single quotes, with each `'` closed,
/// escaped and reopened. Nothing inside is expanded.
pub fn quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// A non-zero exit is an error quoting the end of stderr.
fn checked(program: &Program, out: Output) -> Result<Map> {
    if out.code != 0 {
        let tail: String = out
            .stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        let detail = if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        };
        return Err(super::context::raise(
            crate::failure::ErrorKind::Exit,
            Some(out.code),
            format!(
                "`{}` exited with code {}{detail}",
                program.shown(),
                out.code
            ),
        ));
    }
    Ok(out.into_map())
}

/// What a command printed and how it ended.
pub struct Output {
    /// The exit code, or -1 if a signal ended the shell.
    pub code: i64,
    /// stdout, lossily decoded as UTF-8; the middle left out past the limit.
    pub stdout: String,
    /// stderr, the same way.
    pub stderr: String,
    /// Whether either was cut to the limit.
    pub truncated: bool,
    /// The hashes of the whole stdout and stderr, when kept.
    pub kept: Vec<(&'static str, String)>,
}

impl Output {
    fn into_map(self) -> Map {
        let mut map = Map::new();
        map.insert("code".into(), self.code.into());
        map.insert("stdout".into(), self.stdout.into());
        map.insert("stderr".into(), self.stderr.into());
        if self.truncated {
            map.insert("truncated".into(), true.into());
        }
        for (stream, sha256) in self.kept {
            map.insert(format!("{stream}_sha256").into(), sha256.into());
        }
        map
    }
}

/// One stream of a command's output, held in bounded memory: the first and
/// last halves of the limit, a count of what was left out between them, and
/// (with `keep_output`) everything, streamed to a file while it is hashed.
struct Capture {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    omitted: u64,
    keep: Option<Spool>,
    /// What came since the last whole line, for the live output.
    partial: Vec<u8>,
    /// Lines ended since they were last taken.
    lines: Vec<String>,
}

/// A line of live output this long is passed on as it is, unended.
const LIVE_LINE_BYTES: usize = 16 << 10;

impl Capture {
    fn new(limit: usize, keep: Option<Spool>) -> Self {
        Self {
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            head_cap: limit / 2,
            tail_cap: limit - limit / 2,
            omitted: 0,
            keep,
            partial: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn push(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        if let Some(spool) = &mut self.keep {
            spool.write(bytes)?;
        }
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            self.partial.extend_from_slice(piece);
            if piece.ends_with(b"\n") || self.partial.len() >= LIVE_LINE_BYTES {
                self.end_line();
            }
        }
        let room = self.head_cap - self.head.len();
        let (first, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(first);
        bytes = rest;
        self.tail.extend(bytes);
        if self.tail.len() > self.tail_cap {
            let excess = self.tail.len() - self.tail_cap;
            self.tail.drain(..excess);
            self.omitted += excess as u64;
        }
        Ok(())
    }

    /// Ends the line being gathered, if any (and at the command's end).
    fn end_line(&mut self) {
        if self.partial.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.partial);
        self.lines
            .push(line.trim_end_matches(['\n', '\r']).to_owned());
        self.partial.clear();
    }

    /// Passes the lines ended since the last call on to the step's log.
    fn pass_on(&mut self, ctx: &crate::script::context::StepContext, stream: crate::run::Stream) {
        for line in self.lines.drain(..) {
            ctx.output_line(stream, &line);
        }
    }

    /// The text kept, with a marker where the middle was left out.
    fn text(&self) -> String {
        let (a, b) = self.tail.as_slices();
        if self.omitted == 0 {
            let mut all = self.head.clone();
            all.extend_from_slice(a);
            all.extend_from_slice(b);
            return String::from_utf8_lossy(&all).into_owned();
        }
        let mut tail = Vec::with_capacity(self.tail.len());
        tail.extend_from_slice(a);
        tail.extend_from_slice(b);
        format!(
            "{}\n[… cairn left out {} bytes here: output past `output_limit:` keeps its first {} and last {} bytes; `sh(…, #{{ keep_output: true }})` keeps all of it …]\n{}",
            String::from_utf8_lossy(&self.head),
            self.omitted,
            self.head.len(),
            tail.len(),
            String::from_utf8_lossy(&tail)
        )
    }
}

/// A command's whole stream on its way to `blobs/<sha256>`.
struct Spool {
    file: std::fs::File,
    temp: std::path::PathBuf,
    hash: Sha256,
    bytes: u64,
}

impl Spool {
    fn create(dir: &std::path::Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = dir.join(format!(".spool-{}-{n}", std::process::id()));
        let file = std::fs::File::create(&temp)?;
        Ok(Self {
            file,
            temp,
            hash: Sha256::new(),
            bytes: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        // Counted against the step's store quota as it is written.
        if let Some(ctx) = super::context::try_current() {
            if ctx.charge(bytes.len() as u64).is_err() {
                return Err(std::io::Error::other(format!(
                    "the kept output passed the {} MiB a step may store",
                    super::context::STORE_QUOTA >> 20
                )));
            }
        }
        self.file.write_all(bytes)?;
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Names the file by its hash; the store takes it from there.
    fn finish(self) -> std::io::Result<Artifact> {
        let sha256 = format!("{:x}", self.hash.finalize());
        let path = self.temp.with_file_name(&sha256);
        std::fs::rename(&self.temp, &path)?;
        Ok(Artifact {
            name: String::new(),
            sha256,
            content: ArtifactBody::File {
                path: std::sync::Arc::new(path),
                bytes: self.bytes,
            },
        })
    }

    fn discard(self) {
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// Runs the program in its own process group, under a supervisor (see
/// [`supervisor`]): when the program exits, times out or is cancelled,
/// every process it started is killed, even those that left the group, and
/// if cairn dies, the supervisor kills them too. With a process log (the run
/// store), the group is recorded while it runs, so that a `resume` after
/// cairn was killed can make sure it is gone. Its output is read as it
/// comes, into bounded memory (and, when kept, a file).
fn run(program: &Program, options: &Options) -> Result<Output> {
    let ctx = current()?;
    let started = match program {
        // An absolute path: looking `sh` up along PATH costs a failed exec per entry.
        Program::Shell(line) => supervisor::spawn(
            &["/bin/sh".as_ref(), "-c".as_ref(), line.as_ref()],
            &ctx.dir,
        ),
        Program::Argv(argv) => supervisor::spawn(
            &argv.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
            &ctx.dir,
        ),
    };
    let started = match started {
        Ok(started) => started,
        Err(e) => return not_started(program, e),
    };
    let mut stdout_pipe = Some(started.stdout);
    let mut stderr_pipe = Some(started.stderr);
    let mut running = Running::new(started.pid, started.shared);
    // The group is recorded once the command has run for RECORD_AFTER (see
    // there): most commands end sooner and cost no commit.
    let spawned_at = Instant::now();
    let mut unrecorded = ctx.processes.clone();
    let spool = || -> Result<Option<Spool>> {
        if !options.keep_output {
            return Ok(None);
        }
        let dir = ctx.blobs.as_deref().map_or_else(
            || std::env::temp_dir().join("cairn-blobs"),
            std::path::Path::to_path_buf,
        );
        Spool::create(&dir).map(Some).map_err(|e| {
            runtime(format!(
                "keep_output: cannot write in `{}`: {e}",
                dir.display()
            ))
        })
    };
    let (mut stdout, mut stderr) = match (spool(), spool()) {
        (Ok(a), Ok(b)) => (
            Capture::new(ctx.output_limit, a),
            Capture::new(ctx.output_limit, b),
        ),
        (Err(e), other) | (other, Err(e)) => {
            if let Ok(Some(spool)) = other {
                spool.discard();
            }
            // `running` stops the command as it drops.
            return Err(e);
        }
    };
    // One thread waits for the exit, the pipes and the clock at once: no
    // polling delay after a quick command, no reader threads per command.
    let mut exited = false;
    let mut failure: Option<Box<EvalAltResult>> = None;
    while !exited || stdout_pipe.is_some() || stderr_pipe.is_some() {
        if let Some(interrupt) = ctx.interrupted() {
            let why = match interrupt {
                Interrupt::TimedOut => "TimedOut",
                Interrupt::Cancelled => "Cancelled",
            };
            failure = Some(Box::new(EvalAltResult::ErrorTerminated(
                why.into(),
                rhai::Position::NONE,
            )));
        }
        if failure.is_some() {
            running.stop();
            break;
        }
        let mut fds = Vec::with_capacity(3);
        if let Some(p) = &stdout_pipe {
            fds.push(libc::pollfd {
                fd: p.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some(p) = &stderr_pipe {
            fds.push(libc::pollfd {
                fd: p.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if !exited {
            if let Some(fd) = running.exit.fd() {
                fds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        // Wake at least every 10 ms to notice a timeout or cancellation.
        let wait_ms = if exited || running.exit.fd().is_some() {
            10
        } else {
            1
        };
        // SAFETY: `fds` is a valid array of pollfd for the call's duration.
        unsafe {
            libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms);
        }
        let read = read_ready(&mut stdout_pipe, &mut stdout, &fds)
            .and_then(|()| read_ready(&mut stderr_pipe, &mut stderr, &fds));
        // What the command wrote shows while it runs, a line at a time.
        if stdout_pipe.is_none() {
            stdout.end_line();
        }
        if stderr_pipe.is_none() {
            stderr.end_line();
        }
        stdout.pass_on(&ctx, crate::run::Stream::Stdout);
        stderr.pass_on(&ctx, crate::run::Stream::Stderr);
        if let Err(e) = read {
            failure = Some(Box::new(EvalAltResult::ErrorTerminated(
                format!("`{}`: keeping its output: {e}", program.shown()).into(),
                rhai::Position::NONE,
            )));
        }
        // The supervisor exits once the program and everything it started
        // are gone, which also closes the pipes they held.
        if !exited && running.exited() {
            exited = true;
        }
        if !exited && spawned_at.elapsed() >= RECORD_AFTER {
            if let Some(log) = unrecorded.take() {
                // Committed when it returns: if cairn and the supervisor are
                // killed from here on, `resume` finds the group.
                match log.started(&ctx.task, running.group) {
                    Ok(()) => running.log = Some(log),
                    Err(e) => {
                        failure = Some(runtime(format!(
                            "`{}`: cannot record its process group: {e}",
                            program.shown()
                        )))
                    }
                }
            }
        }
    }
    let status = match failure {
        Some(failure) => Err(failure),
        None => running
            .finish()
            .map_err(|e| runtime(format!("waiting for `{}`: {e}", program.shown()))),
    };
    let unstarted = running.unstarted.take();
    drop(running);
    if status.is_err() || unstarted.is_some() {
        for spool in [stdout.keep.take(), stderr.keep.take()]
            .into_iter()
            .flatten()
        {
            spool.discard();
        }
    }
    let status = status?;
    if let Some(e) = unstarted {
        return not_started(program, e);
    }
    let code = status.code().map_or(-1, i64::from);
    let mut kept = Vec::new();
    let number = ctx.calls.load(std::sync::atomic::Ordering::SeqCst);
    for (stream, capture) in [("stdout", &mut stdout), ("stderr", &mut stderr)] {
        let Some(spool) = capture.keep.take() else {
            continue;
        };
        let mut artifact = spool
            .finish()
            .map_err(|e| runtime(format!("keep_output: {e}")))?;
        artifact.name = format!("sh-{number}.{stream}");
        ctx.note(Note::Artifact(&artifact));
        kept.push((stream, artifact.sha256));
    }
    Ok(Output {
        code,
        truncated: stdout.omitted > 0 || stderr.omitted > 0,
        stdout: stdout.text(),
        stderr: stderr.text(),
        kept,
    })
}

/// A program that is missing or not executable ends as a shell would
/// report it (127, 126), so `sh_try` never fails either way; any other
/// failure to start is an error.
fn not_started(program: &Program, e: std::io::Error) -> Result<Output> {
    if matches!(program, Program::Argv(_))
        && matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
        )
    {
        return Ok(Output {
            code: if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            },
            stdout: String::new(),
            stderr: format!("cannot start `{}`: {e}", program.shown()),
            truncated: false,
            kept: Vec::new(),
        });
    }
    Err(super::context::io_failed(format!(
        "cannot start `{}`: {e}",
        program.shown()
    )))
}

/// How long a supervisor told to stop has to kill what runs below it
/// before cairn kills the whole group (the supervisor too) itself.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A command running under its supervisor, whose pid leads the group.
/// Dropped before it finished, it stops the command; either way, it then
/// tells the process log that the group is gone.
struct Running {
    group: libc::pid_t,
    exit: ExitWatch,
    /// What the supervisor shares with cairn, until it is reaped.
    shared: Option<supervisor::Shared>,
    /// Why the program could not be started, once the supervisor is reaped.
    unstarted: Option<std::io::Error>,
    /// Where the group was recorded, if it was.
    log: Option<Arc<dyn super::context::ProcessLog>>,
    /// Reaped: the group's id may belong to anyone now.
    reaped: bool,
}

impl Running {
    fn new(group: libc::pid_t, shared: supervisor::Shared) -> Self {
        Self {
            group,
            exit: ExitWatch::new(group),
            shared: Some(shared),
            unstarted: None,
            log: None,
            reaped: false,
        }
    }

    /// Whether the supervisor has exited. It is not reaped, so its pid (the
    /// group's id) cannot be given to another process yet.
    fn exited(&self) -> bool {
        // SAFETY: a zeroed siginfo_t is valid; waitid writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits, without reaping, for our own child only.
        let done = unsafe {
            libc::waitid(
                libc::P_PID,
                self.group as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid filled `info` (si_pid stays 0 while it runs).
        done != 0 || unsafe { info.si_pid() } != 0
    }

    /// Kills whatever is left in the group (only a process that joined it
    /// from outside, or any where the supervisor found no `/proc`), then
    /// reaps the supervisor: the program's status.
    fn finish(&mut self) -> std::io::Result<ExitStatus> {
        kill_group(self.group);
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child.
            if unsafe { libc::waitpid(self.group, &mut status, 0) } >= 0 {
                break;
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                // Not reaped (it cannot be): what it shares stays
                // (dropping it without `reaped` leaves it allocated).
                self.reaped = true;
                self.shared = None;
                return Err(error);
            }
        }
        self.reaped = true;
        if let Some(shared) = self.shared.take() {
            let (unstarted, program) = shared.reaped();
            self.unstarted = unstarted;
            // The program's own status, as its supervisor saw it; the
            // supervisor's (killed before it was done) otherwise.
            status = program.unwrap_or(status);
        }
        Ok(ExitStatus::from_raw(status))
    }

    /// Stops the command: asks the supervisor to kill everything below it,
    /// gives it [`STOP_GRACE`], then kills the group with it.
    fn stop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: signals our own child, not reaped yet.
        unsafe {
            libc::kill(self.group, libc::SIGTERM);
        }
        let until = Instant::now() + STOP_GRACE;
        while !self.exited() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.exit.fd() {
                Some(fd) => {
                    let mut ready = [libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    }];
                    // SAFETY: one valid pollfd.
                    unsafe {
                        libc::poll(ready.as_mut_ptr(), 1, left.as_millis().max(1) as i32);
                    }
                }
                None => std::thread::sleep(left.min(Duration::from_millis(2))),
            }
        }
        let _ = self.finish();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
        if let Some(log) = &self.log {
            log.ended(self.group);
        }
    }
}

/// How long a command runs before its process group is committed to the
/// store. The group matters to `resume` only if cairn and the command's
/// supervisor are both killed (the supervisor kills everything when cairn
/// alone dies); a commit per command cost about 4% of a 1,000-`true` plan,
/// and a command that ends within this never needs one.
const RECORD_AFTER: Duration = Duration::from_millis(20);

/// Reads what a pipe has, if `poll` said it is ready; drops it at EOF.
fn read_ready<P: Read + AsRawFd>(
    pipe: &mut Option<P>,
    capture: &mut Capture,
    fds: &[libc::pollfd],
) -> std::io::Result<()> {
    let Some(p) = pipe else { return Ok(()) };
    if !fds.iter().any(|f| f.fd == p.as_raw_fd() && f.revents != 0) {
        return Ok(());
    }
    let mut chunk = [0u8; 65536];
    match p.read(&mut chunk) {
        Ok(0) | Err(_) => *pipe = None,
        Ok(n) => capture.push(&chunk[..n])?,
    }
    Ok(())
}

/// A pidfd that becomes readable when the process exits (Linux 5.3+);
/// without one, the loop above polls every millisecond instead.
struct ExitWatch(Option<OwnedFd>);

impl ExitWatch {
    fn new(pid: libc::pid_t) -> Self {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a non-negative result is a file descriptor we now own.
        Self((fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    fn fd(&self) -> Option<RawFd> {
        self.0.as_ref().map(AsRawFd::as_raw_fd)
    }
}

fn kill_group(group: libc::pid_t) {
    // SAFETY: killpg only sends a signal; a group that is gone is ESRCH.
    unsafe {
        libc::killpg(group, libc::SIGKILL);
    }
}
