//! The `sh` capability: commands in the plan's directory, killed as a group.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use rhai::{Engine, EvalAltResult, Map};

use super::context::{current, runtime, Interrupt};

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

pub fn register(engine: &mut Engine) {
    engine.register_fn("sh", |command: &str| -> Result<Map> {
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
    });
    engine.register_fn("sh_try", |command: &str| -> Result<Map> {
        Ok(run(command)?.into_map())
    });
}

/// What a command printed and how it ended.
pub struct Output {
    pub code: i64,
    pub stdout: String,
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
    let mut child = Command::new("sh")
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
    // Pipes are drained on their own threads so a chatty command never
    // blocks on a full pipe while we wait for it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let mut wait = Duration::from_micros(50);
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| runtime(format!("waiting for `{command}`: {e}")))?
        {
            break status;
        }
        if let Some(interrupt) = ctx.interrupted() {
            kill_group(group);
            let _ = child.wait();
            let _ = (stdout.join(), stderr.join());
            let why = match interrupt {
                Interrupt::TimedOut => "TimedOut",
                Interrupt::Cancelled => "Cancelled",
            };
            return Err(Box::new(EvalAltResult::ErrorTerminated(
                why.into(),
                rhai::Position::NONE,
            )));
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_millis(5));
    };
    // The shell is gone; anything it left running in its group goes too.
    kill_group(group);
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let code = status.code().map_or(-1, i64::from);
    Ok(Output {
        code,
        stdout,
        stderr,
    })
}

fn kill_group(group: libc::pid_t) {
    // SAFETY: killpg only sends a signal; a group that is gone is ESRCH.
    unsafe {
        libc::killpg(group, libc::SIGKILL);
    }
}
