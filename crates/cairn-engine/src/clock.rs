//! Time as the engine sees it, behind a trait: the scheduler's timestamps
//! and gate deadlines, `now()`, `sleep()` and retry backoff all read or wait
//! on a [`Clock`], so a test (or a replay) can run hours of waiting at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of time that can also be waited on.
pub trait Clock: Send + Sync {
    /// Milliseconds since 1970: what outlives the process (gate deadlines).
    fn unix_ms(&self) -> u64;
    /// Milliseconds on a clock that never goes back, from any origin: what
    /// durations are measured with.
    fn monotonic_ms(&self) -> u64;
    /// Waits `duration` (one short slice of a longer wait: callers check
    /// for cancellation between slices).
    fn sleep(&self, duration: Duration);
}

/// The machine's clocks, and real waiting.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn unix_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn monotonic_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// A clock that moves only when told to, or when waited on: a wait
/// returns at once, the clock that far ahead.
#[derive(Debug, Default)]
pub struct ManualClock {
    ms: AtomicU64,
}

impl ManualClock {
    /// A clock reading `unix_ms` (its monotonic reading starts there too).
    pub fn at(unix_ms: u64) -> Self {
        Self {
            ms: AtomicU64::new(unix_ms),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, duration: Duration) {
        self.ms
            .fetch_add(duration.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn unix_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }

    fn monotonic_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }

    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
}
