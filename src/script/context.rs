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
    TimedOut,
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
        let micros = (amount * 1e6).round() as u64;
        let total = (self.micros.fetch_add(micros, Ordering::SeqCst) + micros) as f64 / 1e6;
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
    pub task: String,
    /// The plan's directory: `sh` runs there and relative paths resolve there.
    pub dir: PathBuf,
    pub capabilities: Vec<String>,
    pub grants: Arc<Vec<Grant>>,
    /// Plan-wide cancellation (stop, watchdog, Ctrl-C).
    pub cancel: Arc<AtomicBool>,
    /// End of this attempt's `timeout:`.
    pub deadline: Option<Instant>,
    pub rng: Mutex<SplitMix64>,
    pub cost: Arc<CostMeter>,
    pub journal: Arc<Mutex<Journal>>,
    /// Lines from `log`, `print` and `debug`.
    pub log: Mutex<Vec<String>>,
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

    pub fn log_line(&self, line: &str) {
        if let Some(on_log) = &self.on_log {
            on_log(&self.task, line);
        }
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.to_owned());
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
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

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
