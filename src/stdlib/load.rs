//! The `load` capability: `load_test(url, #{concurrency, requests})` sends
//! GET requests from many threads at once and counts what came back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rhai::{EvalAltResult, Map};
use serde_json::json;

use crate::script::context::{outside, runtime, StepContext};

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

/// Registers `load_test`.
pub fn register(engine: &mut rhai::Engine) {
    engine.register_fn("load_test", |url: &str, options: Map| -> Result<Map> {
        let number = |key: &str, default: i64| {
            options
                .get(key)
                .and_then(|v| v.as_int().ok())
                .unwrap_or(default)
        };
        let concurrency = number("concurrency", 8).clamp(1, 256) as usize;
        let requests = number("requests", 100).clamp(1, 1_000_000) as usize;
        outside(
            "load_test",
            json!([url, { "concurrency": concurrency, "requests": requests }]),
            |ctx| load_test(ctx, url, concurrency, requests),
        )
    });
}

fn load_test(ctx: &StepContext, url: &str, concurrency: usize, requests: usize) -> Result<Map> {
    // Load is HTTP: it goes only where `allow: http(…)` lets requests go.
    let parsed = crate::script::web::allowed_url(ctx, url)?;
    let next = AtomicUsize::new(0);
    let results: Mutex<(Vec<u16>, Vec<Duration>, Vec<String>)> = Mutex::default();
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .redirects(0)
        .build();
    std::thread::scope(|scope| {
        for _ in 0..concurrency.min(requests) {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    if ctx.interrupted().is_some() {
                        return;
                    }
                    let started = Instant::now();
                    let outcome = match agent.request_url("GET", &parsed).call() {
                        Ok(r) | Err(ureq::Error::Status(_, r)) => Ok(r.status()),
                        Err(e) => Err(e.to_string()),
                    };
                    let took = started.elapsed();
                    let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
                    match outcome {
                        Ok(status) => {
                            results.0.push(status);
                            results.1.push(took);
                        }
                        Err(error) => results.2.push(error),
                    }
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
            failures.first().map_or("", String::as_str)
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
    Ok(map)
}
