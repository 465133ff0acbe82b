//! The runtime Rhai engines: one per set of capabilities, never one per task.

use std::collections::HashMap;
use std::sync::Arc;

use rhai::packages::{
    BasicArrayPackage, BasicMapPackage, BasicMathPackage, CorePackage, LogicPackage,
    MoreStringPackage, Package,
};
use rhai::Engine;

use super::context;
use super::host;

/// A host capability registered by an embedding application: a name plans
/// use in `using:` and `allow:`, and the functions it brings.
pub type Registrar = Arc<dyn Fn(&mut Engine) + Send + Sync>;

/// Engines for every distinct `using:` set of a plan, built once per run.
/// A function whose capability a task did not declare is not registered in
/// its engine, so it does not exist for that task.
pub struct Sandbox {
    engines: HashMap<Vec<String>, Arc<Engine>>,
}

impl Sandbox {
    /// Builds an engine for each capability set in `sets`; `extra` holds
    /// host capabilities by name.
    pub fn new<'a>(
        sets: impl IntoIterator<Item = &'a [String]>,
        extra: &HashMap<String, Registrar>,
    ) -> Self {
        let mut engines = HashMap::new();
        for set in sets {
            let mut key = set.to_vec();
            key.sort();
            key.dedup();
            if let std::collections::hash_map::Entry::Vacant(slot) = engines.entry(key) {
                let engine = build(slot.key(), extra);
                slot.insert(Arc::new(engine));
            }
        }
        Self { engines }
    }

    /// The engine for a capability set (one given to [`Sandbox::new`]).
    pub fn engine(&self, set: &[String]) -> Arc<Engine> {
        let mut key = set.to_vec();
        key.sort();
        key.dedup();
        Arc::clone(
            self.engines
                .get(&key)
                .expect("every capability set was prepared"),
        )
    }
}

fn build(capabilities: &[String], extra: &HashMap<String, Registrar>) -> Engine {
    let mut engine = Engine::new_raw();
    // Only pure packages: nothing that reads the clock or the environment
    // (`timestamp()` would make replay diverge); `now()` is the host's.
    engine.register_global_module(CorePackage::new().as_shared_module());
    engine.register_global_module(LogicPackage::new().as_shared_module());
    engine.register_global_module(BasicMathPackage::new().as_shared_module());
    engine.register_global_module(BasicArrayPackage::new().as_shared_module());
    engine.register_global_module(BasicMapPackage::new().as_shared_module());
    engine.register_global_module(MoreStringPackage::new().as_shared_module());
    super::engine::limit(&mut engine);
    // Timeouts and cancellation interrupt a running script here.
    engine.on_progress(|operations| {
        context::interrupt_at(operations).map(|i| format!("{i:?}").into())
    });
    engine.on_print(|text| {
        if let Some(ctx) = context::try_current() {
            ctx.log_line(text);
        }
    });
    engine.on_debug(|text, _, _| {
        if let Some(ctx) = context::try_current() {
            ctx.log_line(text);
        }
    });
    host::always(&mut engine);
    for capability in capabilities {
        match capability.as_str() {
            "sh" => super::shell::register(&mut engine),
            "fs.read" => super::files::register_read(&mut engine),
            "fs.write" => super::files::register_write(&mut engine),
            "http" => super::web::register(&mut engine),
            other => {
                if let Some(register) = extra.get(other) {
                    register(&mut engine);
                }
            }
        }
    }
    engine
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Code outside any step (param defaults) stops at its `within` limit,
    /// long before the operations limit would stop it.
    #[test]
    fn code_outside_a_step_stops_at_its_time_limit() {
        let sandbox = Sandbox::new([&[][..]], &HashMap::new());
        let engine = sandbox.engine(&[]);
        let started = Instant::now();
        let result = context::within(Duration::from_millis(50), || {
            engine.eval::<rhai::Dynamic>("let n = 0; loop { n += 1; }")
        });
        let error = result.expect_err("the loop is stopped");
        assert!(
            matches!(*error, rhai::EvalAltResult::ErrorTerminated(ref why, _) if why.to_string() == "TimedOut"),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
