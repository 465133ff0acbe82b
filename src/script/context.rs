//! What host functions know about the step they run for, set per thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rhai::{EvalAltResult, Position};

use crate::plan::Grant;

/// Why a running step must stop now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// The attempt's `timeout:` deadline passed.
    TimedOut,
    /// The run was cancelled (a stopping failure, the time budget, or Ctrl-C).
    Cancelled,
}

/// Spending against `budget: cost`, shared by every step of a run.
#[derive(Debug, Default)]
pub struct CostMeter {
    /// Spent so far, in millionths (atomic without a lock).
    micros: AtomicU64,
    limit: Option<f64>,
    /// Set when a `spend` crossed the limit: the plan must stop.
    pub exceeded: AtomicBool,
}

impl CostMeter {
    /// A meter with nothing spent; `limit` is the plan's `budget: cost` (`None`: unlimited).
    pub fn new(limit: Option<f64>) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Adds `amount`; an error says by how much the budget is crossed.
    pub fn spend(&self, amount: f64) -> Result<f64, String> {
        if !amount.is_finite() || amount < 0.0 {
            return Err(format!("spend({amount}): amounts must be zero or more"));
        }
        if amount > 1e12 {
            return Err(format!(
                "spend({amount}): amounts above 1e12 are not counted"
            ));
        }
        let micros = (amount * 1e6).round() as u64;
        let before = self
            .micros
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |m| {
                Some(m.saturating_add(micros))
            })
            .unwrap_or_default();
        let total = before.saturating_add(micros) as f64 / 1e6;
        match self.limit {
            Some(limit) if total > limit => {
                self.exceeded.store(true, Ordering::SeqCst);
                Err(format!(
                    "cost budget of {limit} exceeded by {} (spent {total})",
                    trim(total - limit)
                ))
            }
            _ => Ok(total),
        }
    }

    /// Spent so far.
    pub fn spent(&self) -> f64 {
        self.micros.load(Ordering::SeqCst) as f64 / 1e6
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Original contents of files changed by `edit_file` / `write_file`, so
/// `restore_file` and compensation can put them back.
#[derive(Debug, Default)]
pub struct Journal {
    /// Path (relative to the plan directory) → contents before the first
    /// change in this run (`None`: the file did not exist).
    pub originals: HashMap<PathBuf, Option<Vec<u8>>>,
    /// Which task changed which files, in order.
    pub by_task: HashMap<String, Vec<PathBuf>>,
}

/// Called with (step id, line) for every log line.
pub type LogSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// The step a host function runs for.
pub struct StepContext {
    /// The step's id; log lines and journal entries are filed under it.
    pub task: String,
    /// The plan's directory: `sh` runs there and relative paths resolve there.
    pub dir: PathBuf,
    /// The plan's `allow:` grants, whose scopes limit file paths and HTTP hosts.
    pub grants: Arc<Vec<Grant>>,
    /// Plan-wide cancellation (stop, watchdog, Ctrl-C).
    pub cancel: Arc<AtomicBool>,
    /// End of this attempt's `timeout:`.
    pub deadline: Option<Instant>,
    /// Generator for `rand()`, seeded from the run's seed, the step id and the attempt.
    pub rng: Mutex<SplitMix64>,
    /// The run's cost meter, for `spend()`.
    pub cost: Arc<CostMeter>,
    /// The run's record of changed files, for `restore_file` and compensation.
    pub journal: Arc<Mutex<Journal>>,
    /// Report log lines as they happen.
    pub on_log: Option<LogSink>,
}

impl StepContext {
    /// Whether the step must stop, and why.
    pub fn interrupted(&self) -> Option<Interrupt> {
        if self.cancel.load(Ordering::Relaxed) {
            Some(Interrupt::Cancelled)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(Interrupt::TimedOut)
        } else {
            None
        }
    }

    /// Records a log line and passes it to `on_log`, if set.
    pub fn log_line(&self, line: &str) {
        if let Some(on_log) = &self.on_log {
            on_log(&self.task, line);
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<StepContext>>> = const { RefCell::new(None) };
}

/// Runs `f` with `context` as the current step on this thread.
pub fn enter<T>(context: &Arc<StepContext>, f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|c| *c.borrow_mut() = None);
        }
    }
    CURRENT.with(|c| *c.borrow_mut() = Some(Arc::clone(context)));
    let _reset = Reset;
    f()
}

/// The current step, for host functions.
pub fn current() -> Result<Arc<StepContext>, Box<EvalAltResult>> {
    CURRENT
        .with(|c| c.borrow().clone())
        .ok_or_else(|| runtime("host functions run only inside a step"))
}

/// The current step, if any (for engine callbacks).
pub fn try_current() -> Option<Arc<StepContext>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// A script error with a message.
pub fn runtime(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        message.into().into(),
        Position::NONE,
    ))
}

/// A small, fast, seedable generator whose sequence never changes between
/// versions (a crate's could), so a seed means the same numbers forever.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next pseudo-random 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A stable 64-bit hash (FNV-1a) for deriving per-step seeds.
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}
