//! Events on their way from the workers to the observer, handed over in batches.
//!
//! Waking the observer for every event cost a futex call per event on the
//! worker that emitted it (inside the scheduler's lock). Instead, a worker
//! only queues the event; the observer is woken when the queue goes from
//! empty to not empty, and after it drains it waits one [`TICK`] before
//! draining again. A busy run wakes it at most once a tick.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::events::Event;

/// The longest an event waits before the observer sees it.
pub const TICK: Duration = Duration::from_millis(10);

/// The queue between the emitters and the observer.
#[derive(Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Wakes the observer when the first event of a batch arrives.
    ready: tokio::sync::Notify,
    /// Signalled after each drain, for [`Outbox::flush`].
    drained: Condvar,
}

#[derive(Default)]
struct Queue {
    events: Vec<Event>,
    /// Events queued so far, and events the observer has seen.
    sent: u64,
    observed: u64,
    /// Nobody drains any more (the run ended, or its future was dropped).
    closed: bool,
}

impl Outbox {
    /// Queues an event for the observer.
    pub fn send(&self, event: Event) {
        let mut queue = self.lock();
        queue.events.push(event);
        queue.sent += 1;
        let first = queue.events.len() == 1;
        drop(queue);
        if first {
            self.ready.notify_one();
        }
    }

    /// Waits until the observer has seen every event queued so far (at most
    /// about a [`TICK`] while a run is going): a gate's question must come
    /// after the lines about the steps before it. Returns at once once the
    /// outbox is closed.
    pub fn flush(&self) {
        let mut queue = self.lock();
        let target = queue.sent;
        self.ready.notify_one();
        while queue.observed < target && !queue.closed {
            queue = self
                .drained
                .wait_timeout(queue, TICK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Resolves once there may be events to drain.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Hands every queued event to `observe`, in order.
    pub fn drain(&self, observe: &mut impl FnMut(&Event)) -> bool {
        let events = std::mem::take(&mut self.lock().events);
        for event in &events {
            observe(event);
        }
        self.lock().observed += events.len() as u64;
        self.drained.notify_all();
        !events.is_empty()
    }

    /// Nobody will drain again: a waiting [`Outbox::flush`] returns.
    pub fn close(&self) {
        self.lock().closed = true;
        self.drained.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}
