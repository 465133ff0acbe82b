//! The standard library's tools: what its template plans' tasks use (a
//! simulated service and a load generator). The templates themselves are
//! `cairn_lang::templates`.

mod load;
mod service;

use rhai::Map;
use serde_json::json;

pub use service::Service;

use crate::script::context::{outside, runtime};

/// An engine with the built-in capabilities plus the stdlib's tools:
/// `simulate` (`simulated_service()`) and `load` (`load_test(url, options)`).
pub fn engine() -> crate::Engine {
    let mut engine = crate::Engine::new();
    engine.register_capability("simulate", &["simulated_service"], |rhai| {
        rhai.register_fn(
            "simulated_service",
            || -> Result<Map, Box<rhai::EvalAltResult>> {
                outside("simulated_service", json!([]), |_| {
                    let service = Service::start()
                        .map_err(|e| runtime(format!("simulated_service(): {e}")))?;
                    let mut map = Map::new();
                    map.insert("url".into(), service.url.into());
                    Ok(map)
                })
            },
        );
    });
    engine.register_capability("load", &["load_test"], load::register);
    engine
}

/// The built-in capabilities and the stdlib's tools, as run options take them.
pub fn registry() -> crate::Registry {
    engine().registry().clone()
}
