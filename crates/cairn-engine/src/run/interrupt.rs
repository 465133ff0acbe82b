//! Interrupting a run from outside: the library installs no signal handler
//! (that is its host's to decide); the host calls [`Interrupter::interrupt`]
//! from its own Ctrl-C handling, as the `cairn` binary does.

use std::sync::{Arc, Mutex};

/// A handle that interrupts the run it is given to (in
/// [`super::Options::interrupter`]), from any thread. Clones share it.
#[derive(Clone, Default)]
pub struct Interrupter {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Why, once interrupted: the run's message.
    reason: Mutex<Option<Stop>>,
    notify: tokio::sync::Notify,
}

/// Why a run was stopped from outside.
#[derive(Clone, Debug)]
pub(crate) struct Stop {
    /// The run's message.
    pub reason: String,
    /// Cancelled for good, not interrupted (resumable).
    pub for_good: bool,
}

impl Interrupter {
    /// A handle that has not interrupted anything yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Interrupts the run: its running steps are cancelled (their commands
    /// stopped), nothing new starts, and it ends `interrupted` with `reason`
    /// as its message, resumable. A second call changes nothing.
    pub fn interrupt(&self, reason: impl Into<String>) {
        self.stop(reason.into(), false);
    }

    /// Cancels the run for good: as [`Interrupter::interrupt`], but it
    /// ends `cancelled`, which does not resume. A later call changes
    /// nothing, nor does one after an interrupt.
    pub fn cancel(&self, reason: impl Into<String>) {
        self.stop(reason.into(), true);
    }

    fn stop(&self, reason: String, for_good: bool) {
        let mut held = self.inner.reason.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_none() {
            *held = Some(Stop { reason, for_good });
            drop(held);
            self.inner.notify.notify_one();
        }
    }

    /// Whether it was interrupted.
    pub fn is_interrupted(&self) -> bool {
        self.inner
            .reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Resolves with the reason once interrupted.
    pub(crate) async fn interrupted(&self) -> Stop {
        loop {
            if let Some(reason) = self
                .inner
                .reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return reason;
            }
            self.inner.notify.notified().await;
        }
    }
}

impl std::fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupter")
            .field("interrupted", &self.is_interrupted())
            .finish()
    }
}
