//! The command's signals: Ctrl-C, `kill` (SIGTERM) and a closed terminal
//! (SIGHUP) interrupt the run, so its steps are cancelled and their
//! commands stopped, and it can be resumed; a second Ctrl-C exits at once.
//! The library installs none of this: the binary does, for its own runs.

use std::sync::atomic::{AtomicI32, Ordering};

use cairn_engine::run::{Interrupter, RunStatus};

/// The signal that first interrupted this process's run (0: none yet).
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

/// The exit code for a run that ended so: an interrupted one exits as the
/// shell reports the signal that interrupted it (130 for Ctrl-C, 143 for
/// SIGTERM, 129 for SIGHUP).
pub fn exit_code(status: RunStatus) -> i32 {
    match (status, SIGNALLED.load(Ordering::SeqCst)) {
        (RunStatus::Interrupted, signal) if signal > 0 => 128 + signal,
        (status, _) => status.exit_code(),
    }
}

/// Notes `signal` as the one that interrupted the run, unless one did before.
fn signalled(signal: i32) {
    let _ = SIGNALLED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
}

/// Listens, on `runtime`, for the signals that interrupt a run, until the
/// returned guard drops. With `second_exits`, a Ctrl-C after the run was
/// interrupted ends the process at once (exit 130): the store commits whole
/// transactions, so leaving loses at most the steps still running, which
/// `resume` runs again.
pub fn interrupter(
    runtime: &tokio::runtime::Runtime,
    second_exits: bool,
) -> (Interrupter, Listening) {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupter = Interrupter::new();
    let handle = interrupter.clone();
    // Registered before the run starts, not when the task first runs.
    let _entered = runtime.enter();
    let mut ctrl_c = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut hangup = signal(SignalKind::hangup()).ok();
    let task = runtime.spawn(async move {
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        loop {
            tokio::select! {
                () = next(&mut ctrl_c) => {
                    if second_exits && handle.is_interrupted() {
                        eprintln!("interrupted again: exiting now; `cairn resume` continues the run");
                        std::process::exit(130);
                    }
                    signalled(libc::SIGINT);
                    handle.interrupt("interrupted (Ctrl-C); running steps were cancelled");
                }
                () = next(&mut terminate) => {
                    signalled(libc::SIGTERM);
                    handle.interrupt("interrupted by SIGTERM; running steps were cancelled");
                }
                () = next(&mut hangup) => {
                    signalled(libc::SIGHUP);
                    handle.interrupt("interrupted by SIGHUP; running steps were cancelled");
                }
            }
        }
    });
    (interrupter, Listening(task))
}

/// Stops listening when dropped.
pub struct Listening(tokio::task::JoinHandle<()>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}
