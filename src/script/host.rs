//! Functions every step has: `log`, `fail`, `now`, `rand`, `sleep`, `spend`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rhai::{Dynamic, Engine, EvalAltResult};

use super::context::{current, runtime};

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

pub fn always(engine: &mut Engine) {
    engine.register_fn("log", |message: Dynamic| -> Result<()> {
        current()?.log_line(&message.to_string());
        Ok(())
    });
    engine.register_fn("fail", |message: Dynamic| -> Result<()> {
        Err(runtime(message.to_string()))
    });
    engine.register_fn("now", || -> Result<i64> {
        current()?;
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Ok(ms)
    });
    engine.register_fn("rand", || -> Result<f64> {
        let ctx = current()?;
        let mut rng = ctx.rng.lock().unwrap_or_else(|e| e.into_inner());
        Ok(rng.next_f64())
    });
    engine.register_fn("sleep", |duration: &str| -> Result<()> {
        let ms = crate::units::duration_ms(duration).map_err(|e| runtime(format!("sleep: {e}")))?;
        pause(Duration::from_millis(ms))
    });
    engine.register_fn("sleep", |ms: i64| -> Result<()> {
        pause(Duration::from_millis(ms.max(0) as u64))
    });
    engine.register_fn("spend", |amount: f64| -> Result<f64> { spend(amount) });
    engine.register_fn("spend", |amount: i64| -> Result<f64> {
        spend(amount as f64)
    });
}

/// Crossing the budget ends the script in a way `try`/`catch` cannot stop.
fn spend(amount: f64) -> Result<f64> {
    current()?.cost.spend(amount).map_err(|message| {
        Box::new(EvalAltResult::ErrorTerminated(
            message.into(),
            rhai::Position::NONE,
        ))
    })
}

/// Sleeps in short slices so a timeout or cancellation ends it promptly.
pub fn pause(total: Duration) -> Result<()> {
    let ctx = current()?;
    let end = std::time::Instant::now() + total;
    loop {
        if let Some(i) = ctx.interrupted() {
            return Err(Box::new(EvalAltResult::ErrorTerminated(
                format!("{i:?}").into(),
                rhai::Position::NONE,
            )));
        }
        let now = std::time::Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(10)));
    }
}
