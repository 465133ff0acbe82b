//! The `load` capability: `load_test(url, #{concurrency, requests, duration})`
//! sends GET requests from many threads at once, only to the hosts the plan's
//! `allow: http(…)` names and within caps a plan cannot lift, and counts what
//! came back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rhai::{Dynamic, EvalAltResult, Map};
use serde_json::json;

use crate::script::context::{outside, runtime, StepContext};

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

/// The most requests in flight at once (`concurrency`).
pub const MAX_CONCURRENCY: i64 = 64;
/// The most requests one call sends (`requests`).
pub const MAX_REQUESTS: i64 = 100_000;
/// The longest one call sends for (`duration`, and its default); it also
/// never runs past the step's `timeout:`.
pub const MAX_DURATION: Duration = Duration::from_secs(5 * 60);
/// The longest one request may take (less when the call's time runs out first).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

const DEFAULT_CONCURRENCY: i64 = 8;
const DEFAULT_REQUESTS: i64 = 100;
const OPTIONS: [&str; 3] = ["concurrency", "requests", "duration"];

/// What one call was asked for, each within its cap.
struct Limits {
    concurrency: usize,
    requests: usize,
    /// `duration`, if the plan gave one.
    duration: Option<Duration>,
}

/// Registers `load_test`.
pub fn register(engine: &mut rhai::Engine) {
    engine.register_fn("load_test", |url: &str, options: Map| -> Result<Map> {
        let limits = limits(&options)?;
        let mut args = json!({ "concurrency": limits.concurrency, "requests": limits.requests });
        if let Some(duration) = limits.duration {
            args["duration_ms"] = json!(duration.as_millis() as u64);
        }
        outside("load_test", json!([url, args]), |ctx| {
            load_test(ctx, url, &limits)
        })
    });
}

/// Reads the options, refusing unknown ones, wrong types and values above a cap.
fn limits(options: &Map) -> Result<Limits> {
    for key in options.keys() {
        if !OPTIONS.contains(&key.as_str()) {
            let hint = cairn_lang::check::closest(key.as_str(), OPTIONS)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            return Err(runtime(format!(
                "load_test: no option `{key}`; {hint}it takes `concurrency`, `requests` and `duration`"
            )));
        }
    }
    let count = |key: &str, default: i64, cap: i64, what: &str| -> Result<usize> {
        let n = match options.get(key) {
            None => default,
            Some(v) => v.as_int().map_err(|_| {
                runtime(format!(
                    "load_test: `{key}` takes an integer, not {}",
                    v.type_name()
                ))
            })?,
        };
        if n < 1 {
            return Err(runtime(format!("load_test: `{key}` must be at least 1")));
        }
        if n > cap {
            return Err(runtime(format!(
                "load_test: `{key}: {n}` is above the cap of {cap} {what}"
            )));
        }
        Ok(n as usize)
    };
    let concurrency = count(
        "concurrency",
        DEFAULT_CONCURRENCY,
        MAX_CONCURRENCY,
        "requests in flight at once",
    )?;
    let requests = count(
        "requests",
        DEFAULT_REQUESTS,
        MAX_REQUESTS,
        "requests a call",
    )?;
    let duration = options.get("duration").map(duration).transpose()?;
    Ok(Limits {
        concurrency,
        requests,
        duration,
    })
}

/// `duration`: `"30s"` or milliseconds, more than 0 and at most [`MAX_DURATION`].
fn duration(value: &Dynamic) -> Result<Duration> {
    let ms = if let Ok(ms) = value.as_int() {
        u64::try_from(ms).unwrap_or(0)
    } else if let Ok(text) = value.clone().into_immutable_string() {
        cairn_lang::units::duration_ms(&text)
            .map_err(|e| runtime(format!("load_test: `duration`: {e}")))?
    } else {
        return Err(runtime(format!(
            "load_test: `duration` takes a duration (`\"30s\"`) or milliseconds, not {}",
            value.type_name()
        )));
    };
    let cap = MAX_DURATION.as_millis() as u64;
    if ms == 0 {
        return Err(runtime("load_test: `duration` must be more than 0"));
    }
    if ms > cap {
        return Err(runtime(format!(
            "load_test: `duration: {}` is above the cap of {}",
            cairn_lang::units::human_ms(ms),
            cairn_lang::units::human_ms(cap)
        )));
    }
    Ok(Duration::from_millis(ms))
}

/// Parses `url` and checks it against the hosts `allow: http(…)` names. A
/// load test must name its targets: `allow: load` alone, or a bare
/// `allow: http`, lets it reach no host at all.
fn allowed_url(ctx: &StepContext, url: &str) -> Result<url::Url> {
    let names_hosts = ctx
        .grants
        .iter()
        .any(|g| g.capability == "http" && !g.scopes.is_empty());
    if !names_hosts {
        return Err(runtime(format!(
            "load_test({url}): load goes only to hosts the plan names: add `allow: http(<host>)` \
             (e.g. `allow: load, http(127.0.0.1)`)"
        )));
    }
    crate::script::web::allowed_url(ctx, url)
}

fn load_test(ctx: &StepContext, url: &str, limits: &Limits) -> Result<Map> {
    let parsed = allowed_url(ctx, url)?;
    let started = Instant::now();
    // The call's own end, and never past the step's deadline.
    let end = started + limits.duration.unwrap_or(MAX_DURATION);
    let end = ctx.deadline.map_or(end, |deadline| end.min(deadline));
    let requests = limits.requests;
    let next = AtomicUsize::new(0);
    let results: Mutex<(Vec<u16>, Vec<Duration>, Vec<String>)> = Mutex::default();
    let agent = ureq::AgentBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .redirects(0)
        .build();
    std::thread::scope(|scope| {
        for _ in 0..limits.concurrency.min(requests) {
            scope.spawn(|| loop {
                if ctx.interrupted().is_some() {
                    return;
                }
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() || next.fetch_add(1, Ordering::Relaxed) >= requests {
                    return;
                }
                let sent = Instant::now();
                let outcome = match agent
                    .request_url("GET", &parsed)
                    .timeout(left.min(REQUEST_TIMEOUT))
                    .call()
                {
                    Ok(r) | Err(ureq::Error::Status(_, r)) => Ok(r.status()),
                    // Cut off because the call's time ran out: not the service's fault.
                    Err(_) if Instant::now() >= end => return,
                    Err(e) => Err(e.to_string()),
                };
                let took = sent.elapsed();
                let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
                match outcome {
                    Ok(status) => {
                        results.0.push(status);
                        results.1.push(took);
                    }
                    Err(error) => results.2.push(error),
                }
            });
        }
    });
    if let Some(i) = ctx.interrupted() {
        return Err(Box::new(EvalAltResult::ErrorTerminated(
            format!("{i:?}").into(),
            rhai::Position::NONE,
        )));
    }
    let (statuses, mut latencies, failures) =
        results.into_inner().unwrap_or_else(|e| e.into_inner());
    if statuses.is_empty() {
        return Err(runtime(format!(
            "load_test({url}): no request got an answer: {}",
            failures
                .first()
                .map_or("the time ran out first", String::as_str)
        )));
    }
    latencies.sort();
    let percentile = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i].as_secs_f64() * 1000.0
    };
    let mut by_status = Map::new();
    for status in &statuses {
        let key: rhai::Identifier = status.to_string().into();
        let count = by_status
            .get(&key)
            .and_then(|v| v.as_int().ok())
            .unwrap_or(0);
        by_status.insert(key, (count + 1).into());
    }
    let mut map = Map::new();
    map.insert("requests".into(), (statuses.len() as i64).into());
    map.insert(
        "errors".into(),
        (statuses.iter().filter(|s| **s >= 500).count() as i64).into(),
    );
    map.insert("failed_to_connect".into(), (failures.len() as i64).into());
    map.insert("statuses".into(), by_status.into());
    map.insert("p50_ms".into(), percentile(0.5).into());
    map.insert("p99_ms".into(), percentile(0.99).into());
    // Whether every request was sent before the time ran out.
    map.insert(
        "complete".into(),
        (statuses.len() + failures.len() == requests).into(),
    );
    map.insert(
        "duration_ms".into(),
        (started.elapsed().as_millis() as i64).into(),
    );
    Ok(map)
}
