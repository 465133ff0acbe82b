//! Functions every step has: `log`, `fail`, `now`, `rand`, `sleep`, `spend`,
//! `artifact`, and `evidence`, `confidence`, `best_hypothesis`.

use std::time::Duration;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use serde_json::json;

use sha2::{Digest, Sha256};

use super::context::{
    current, nesting, nesting_error, outside, runtime, Artifact, ArtifactBody, Evidence, Note,
    MAX_NESTING,
};

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
        outside("now", json!([]), |ctx| Ok(ctx.clock.unix_ms() as i64))
    });
    engine.register_fn("rand", || -> Result<f64> {
        outside("rand", json!([]), |ctx| {
            let mut rng = ctx.rng.lock().unwrap_or_else(|e| e.into_inner());
            Ok(rng.next_f64())
        })
    });
    engine.register_fn("sleep", |duration: &str| -> Result<()> {
        let ms =
            cairn_lang::units::duration_ms(duration).map_err(|e| runtime(format!("sleep: {e}")))?;
        pause(Duration::from_millis(ms))
    });
    engine.register_fn("sleep", |ms: i64| -> Result<()> {
        pause(Duration::from_millis(ms.max(0) as u64))
    });
    engine.register_fn("artifact", |name: &str, value: Dynamic| -> Result<String> {
        let ctx = current()?;
        let content = match value.clone().into_immutable_string() {
            Ok(text) => text.as_bytes().to_vec(),
            Err(_) => {
                let depth = nesting(&value);
                if depth > MAX_NESTING {
                    return Err(runtime(format!(
                        "artifact(\"{name}\"): {}",
                        nesting_error("the value", depth)
                    )));
                }
                let json: serde_json::Value = rhai::serde::from_dynamic(&value).map_err(|e| {
                    runtime(format!(
                        "artifact(\"{name}\"): the value cannot be stored as JSON: {e}"
                    ))
                })?;
                serde_json::to_vec_pretty(&json).expect("JSON values serialize")
            }
        };
        ctx.charge(content.len() as u64)?;
        let artifact = Artifact {
            name: name.to_owned(),
            sha256: format!("{:x}", Sha256::digest(&content)),
            content: ArtifactBody::Bytes(std::sync::Arc::new(content)),
        };
        ctx.note(Note::Artifact(&artifact));
        Ok(artifact.sha256)
    });
    engine.register_fn(
        "evidence",
        |id: &str, verdict: &str, note: Dynamic| -> Result<f64> {
            let ctx = current()?;
            let depth = nesting(&note);
            if depth > MAX_NESTING {
                return Err(runtime(format!(
                    "evidence(\"{id}\"): {}",
                    nesting_error("the note", depth)
                )));
            }
            let tally = ctx.hypotheses.add(id, verdict).map_err(runtime)?;
            let evidence = Evidence {
                hypothesis: id.to_owned(),
                verdict: verdict.to_owned(),
                note: note.to_string(),
                confidence: tally.confidence(),
            };
            ctx.note(Note::Evidence(&evidence));
            Ok(evidence.confidence)
        },
    );
    engine.register_fn("confidence", |id: &str| -> Result<f64> {
        let ctx = current()?;
        Ok(ctx.hypotheses.tally(id).map_err(runtime)?.confidence())
    });
    engine.register_fn("best_hypothesis", || -> Result<String> {
        Ok(current()?.hypotheses.best().unwrap_or_default())
    });
    engine.register_fn("parse_json", |text: &str| -> Result<Dynamic> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| runtime(format!("parse_json: not JSON: {e}")))?;
        rhai::serde::to_dynamic(&value).map_err(|e| runtime(format!("parse_json: {e}")))
    });
    engine.register_fn("shell_quote", |text: &str| -> String {
        super::shell::quote(text)
    });
    engine.register_fn("url_encode", url_encode);
    engine.register_fn("matrix", matrix);
    engine.register_fn("spend", |amount: f64| -> Result<f64> { spend(amount) });
    engine.register_fn("spend", |amount: i64| -> Result<f64> {
        spend(amount as f64)
    });
}

/// `text` as one URL component: every byte but RFC 3986's unreserved
/// characters percent-encoded, so a value cannot add query parameters or
/// path segments of its own.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `matrix(#{ os: ["linux", "mac"], rust: ["stable", "beta"] })`: every
/// combination of one value per key, as maps, the first key (in sorted
/// order) varying slowest, as GitHub Actions' `strategy.matrix` lists them.
pub fn matrix(axes: Map) -> Result<Array> {
    let mut count: usize = 1;
    let mut columns: Vec<(rhai::ImmutableString, Array)> = Vec::with_capacity(axes.len());
    for (key, values) in axes {
        let type_name = values.type_name();
        let values = values.try_cast::<Array>().ok_or_else(|| {
            runtime(format!(
                "matrix: `{key}` is {type_name}, not an array of its values"
            ))
        })?;
        count = count.saturating_mul(values.len());
        columns.push((key.as_str().into(), values));
    }
    // Checked before anything is built: a product can be vast.
    let most = cairn_lang::script::MAX_ARRAY_SIZE;
    if count > most {
        return Err(runtime(format!(
            "matrix: {count} combinations, more than the {most} an array may hold"
        )));
    }
    let mut combinations = Array::with_capacity(count);
    for n in 0..count {
        let mut combination = Map::new();
        let mut rest = n;
        for (key, values) in columns.iter().rev() {
            combination.insert(key.as_str().into(), values[rest % values.len()].clone());
            rest /= values.len();
        }
        combinations.push(combination.into());
    }
    Ok(combinations)
}

/// Crossing the budget ends the script in a way `try`/`catch` cannot stop.
fn spend(amount: f64) -> Result<f64> {
    let ctx = current()?;
    ctx.cost.spend(&ctx.task, amount).map_err(|message| {
        Box::new(EvalAltResult::ErrorTerminated(
            message.into(),
            rhai::Position::NONE,
        ))
    })
}

/// Sleeps in short slices so a timeout or cancellation ends it promptly.
pub fn pause(total: Duration) -> Result<()> {
    let ctx = current()?;
    // A replay reproduces what the code did, not how long it took.
    if ctx.replaying() {
        return Ok(());
    }
    let clock = &ctx.clock;
    let end = clock
        .monotonic_ms()
        .saturating_add(total.as_millis() as u64);
    loop {
        if let Some(i) = ctx.interrupted() {
            return Err(Box::new(EvalAltResult::ErrorTerminated(
                format!("{i:?}").into(),
                rhai::Position::NONE,
            )));
        }
        let now = clock.monotonic_ms();
        if now >= end {
            return Ok(());
        }
        // In slices, so a cancel or a timeout ends the wait within 10 ms.
        clock.sleep(Duration::from_millis((end - now).min(10)));
    }
}

#[cfg(test)]
mod matrix_tests {
    use super::matrix;

    fn axes(text: &str) -> rhai::Map {
        rhai::Engine::new().eval(text).expect("a map")
    }

    /// Every combination, the first key varying slowest.
    #[test]
    fn a_matrix_is_every_combination_in_order() {
        let all = matrix(axes(
            r#"#{ os: ["linux", "mac"], rust: ["stable", "beta"] }"#,
        ))
        .unwrap();
        let shown: Vec<String> = all
            .iter()
            .map(|c| {
                let c = c.clone().cast::<rhai::Map>();
                format!("{}/{}", c["os"], c["rust"])
            })
            .collect();
        assert_eq!(
            shown,
            ["linux/stable", "linux/beta", "mac/stable", "mac/beta"]
        );
        assert_eq!(matrix(axes("#{}")).unwrap().len(), 1);
        assert!(matrix(axes("#{ a: [1, 2], b: [] }")).unwrap().is_empty());
    }

    /// A product too large for an array is refused before it is built, and
    /// a value that is not a list says which key.
    #[test]
    fn a_matrix_too_large_or_not_of_arrays_is_refused() {
        let big = "let a = []; for i in 0..1000 { a.push(i) } #{ a: a, b: a }";
        let error = matrix(axes(big)).unwrap_err().to_string();
        assert!(
            error.contains("1000000 combinations, more than the 100000"),
            "{error}"
        );
        let error = matrix(axes(r#"#{ os: "linux" }"#)).unwrap_err().to_string();
        assert!(error.contains("`os` is string, not an array"), "{error}");
    }
}
