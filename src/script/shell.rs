//! The `sh` capability: commands in the plan's directory, killed as a group.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use rhai::{Engine, EvalAltResult, Map};

use serde_json::json;

use super::context::{current, outside, runtime, Interrupt};

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

/// Registers `sh` (fails on a non-zero exit) and `sh_try` (returns the exit code in its result instead).
pub fn register(engine: &mut Engine) {
    engine.register_fn("sh", |command: &str| -> Result<Map> {
        outside("sh", json!([command]), |_| checked(command))
    });
    engine.register_fn("sh_try", |command: &str| -> Result<Map> {
        outside("sh_try", json!([command]), |_| Ok(run(command)?.into_map()))
    });
}

/// Runs the command; a non-zero exit is an error quoting the end of stderr.
fn checked(command: &str) -> Result<Map> {
    let out = run(command)?;
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
        return Err(runtime(format!(
            "`{command}` exited with code {}{detail}",
            out.code
        )));
    }
    Ok(out.into_map())
}

/// What a command printed and how it ended.
pub struct Output {
    /// The exit code, or -1 if a signal ended the shell.
    pub code: i64,
    /// Everything written to stdout, lossily decoded as UTF-8.
    pub stdout: String,
    /// Everything written to stderr, lossily decoded as UTF-8.
    pub stderr: String,
}

impl Output {
    fn into_map(self) -> Map {
        let mut map = Map::new();
        map.insert("code".into(), self.code.into());
        map.insert("stdout".into(), self.stdout.into());
        map.insert("stderr".into(), self.stderr.into());
        map
    }
}

/// Runs `sh -c command` in its own process group, so a timeout or
/// cancellation kills it and everything it started.
pub fn run(command: &str) -> Result<Output> {
    let ctx = current()?;
    // An absolute path: looking `sh` up along PATH costs a failed exec per entry.
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .current_dir(&ctx.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| runtime(format!("cannot start `{command}`: {e}")))?;
    let group = child.id() as libc::pid_t;
    let mut stdout_pipe = child.stdout.take();
    let mut stderr_pipe = child.stderr.take();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let exit = ExitWatch::new(group);
    // One thread waits for the exit, the pipes and the clock at once: no
    // polling delay after a quick command, no reader threads per command.
    let mut exited = false;
    while !exited || stdout_pipe.is_some() || stderr_pipe.is_some() {
        if let Some(interrupt) = ctx.interrupted() {
            kill_group(group);
            let _ = child.wait();
            let why = match interrupt {
                Interrupt::TimedOut => "TimedOut",
                Interrupt::Cancelled => "Cancelled",
            };
            return Err(Box::new(EvalAltResult::ErrorTerminated(
                why.into(),
                rhai::Position::NONE,
            )));
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
            if let Some(fd) = exit.fd() {
                fds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        // Wake at least every 10 ms to notice a timeout or cancellation.
        let wait_ms = if exited || exit.fd().is_some() { 10 } else { 1 };
        // SAFETY: `fds` is a valid array of pollfd for the call's duration.
        unsafe {
            libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms);
        }
        read_ready(&mut stdout_pipe, &mut stdout, &fds);
        read_ready(&mut stderr_pipe, &mut stderr, &fds);
        if !exited
            && child
                .try_wait()
                .map_err(|e| runtime(format!("waiting for `{command}`: {e}")))?
                .is_some()
        {
            exited = true;
            // The shell is gone; anything it left running in its group
            // goes too, which also closes the pipes it held.
            kill_group(group);
        }
    }
    let status = child
        .wait()
        .map_err(|e| runtime(format!("waiting for `{command}`: {e}")))?;
    let code = status.code().map_or(-1, i64::from);
    Ok(Output {
        code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Reads what a pipe has, if `poll` said it is ready; drops it at EOF.
fn read_ready<P: Read + AsRawFd>(pipe: &mut Option<P>, buffer: &mut Vec<u8>, fds: &[libc::pollfd]) {
    let Some(p) = pipe else { return };
    if !fds.iter().any(|f| f.fd == p.as_raw_fd() && f.revents != 0) {
        return;
    }
    let mut chunk = [0u8; 8192];
    match p.read(&mut chunk) {
        Ok(0) | Err(_) => *pipe = None,
        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
    }
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
