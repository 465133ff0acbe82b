//! The `http` capability: GET and POST to the hosts the plan allows.

use std::time::{Duration, Instant};

use rhai::{Engine, EvalAltResult, Map};

use serde_json::json;

use super::context::{current, io_failed, outside, refused, runtime, StepContext};

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

/// The longest a request may take when the step has no `timeout:`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Registers `http_get` and `http_post`.
pub fn register(engine: &mut Engine) {
    engine.register_fn("http_get", |url: &str| -> Result<Map> {
        outside("http_get", json!([url]), |_| {
            request("GET", url, None, None)
        })
    });
    engine.register_fn("http_post", |url: &str, body: &str| -> Result<Map> {
        outside("http_post", json!([url, body]), |_| {
            request("POST", url, Some(body), None)
        })
    });
    // A map is sent as JSON.
    engine.register_fn("http_post", |url: &str, body: Map| -> Result<Map> {
        let json: serde_json::Value = rhai::serde::from_dynamic(&body.into())
            .map_err(|e| runtime(format!("http_post: the body cannot be sent as JSON: {e}")))?;
        outside("http_post", json!([url, json]), |_| {
            request(
                "POST",
                url,
                Some(&json.to_string()),
                Some("application/json"),
            )
        })
    });
}

/// Parses an http(s) URL and checks its host against the plan's
/// `allow: http(…)` hosts (any host when the grant has none). The same
/// parser ureq uses decides the host, so the check and the request can never
/// disagree about where a URL leads.
pub fn allowed_url(ctx: &StepContext, url: &str) -> Result<url::Url> {
    let parsed = url::Url::parse(url).map_err(|e| runtime(format!("`{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(runtime(format!(
            "`{url}` is not an http:// or https:// URL"
        )));
    }
    let bare = parsed
        .host_str()
        .ok_or_else(|| runtime(format!("`{url}` has no host")))?
        .to_owned();
    let host = match parsed.port() {
        Some(port) => format!("{bare}:{port}"),
        None => bare.clone(),
    };
    // Within the plan's grants and, in a child run, every plan's above it.
    for grants in ctx.grant_lists() {
        let scopes: Vec<&str> = grants
            .iter()
            .filter(|g| g.capability == "http")
            .flat_map(|g| g.scopes.iter().map(String::as_str))
            .collect();
        if !scopes.is_empty() && !scopes.iter().any(|s| *s == host || *s == bare) {
            return Err(refused(format!(
                "`{host}` is not in the plan's `allow: http({})`",
                scopes.join(", ")
            )));
        }
    }
    Ok(parsed)
}

fn request(method: &str, url: &str, body: Option<&str>, content_type: Option<&str>) -> Result<Map> {
    let ctx = current()?;
    let parsed = allowed_url(&ctx, url)?;
    let timeout = ctx.deadline.map_or(DEFAULT_TIMEOUT, |d| {
        d.saturating_duration_since(Instant::now())
    });
    // Redirects are not followed: each hop would need its own check.
    let agent = ureq::AgentBuilder::new()
        .timeout(timeout)
        .redirects(0)
        .build();
    let mut request = agent.request_url(method, &parsed);
    if let Some(content_type) = content_type {
        request = request.set("Content-Type", content_type);
    }
    let response = match body {
        Some(body) => request.send_string(body),
        None => request.call(),
    };
    let response = match response {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(err) => return Err(io_failed(format!("{method} {url}: {err}"))),
    };
    let status = i64::from(response.status());
    let text = response
        .into_string()
        .map_err(|e| io_failed(format!("{method} {url}: reading the body: {e}")))?;
    let mut map = Map::new();
    map.insert("status".into(), status.into());
    map.insert("body".into(), text.into());
    Ok(map)
}
