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
use crate::capability::Registry;

/// Engines for every distinct `using:` set of a plan, built once per run.
/// A function whose capability a task did not declare is not registered in
/// its engine, so it does not exist for that task.
pub struct Sandbox {
    engines: HashMap<Vec<String>, Arc<Engine>>,
}

impl Sandbox {
    /// Builds an engine for each capability set in `sets`, installing each
    /// capability as `registry` registers it.
    pub fn new<'a>(sets: impl IntoIterator<Item = &'a [String]>, registry: &Registry) -> Self {
        let mut engines = HashMap::new();
        for set in sets {
            let mut key = set.to_vec();
            key.sort();
            key.dedup();
            if let std::collections::hash_map::Entry::Vacant(slot) = engines.entry(key) {
                let engine = build(slot.key(), registry);
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

/// Every function the sandbox gives all code, whatever it declares: its
/// Rhai packages' and the host's (what a check looks a called name up in).
pub fn always_callable() -> Arc<std::collections::HashSet<String>> {
    static ALWAYS: std::sync::OnceLock<Arc<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    let names = ALWAYS.get_or_init(|| {
        let engine = build(&[], &Registry::bare());
        let mut names: std::collections::HashSet<String> = engine
            .gen_fn_signatures(true)
            .iter()
            .filter_map(|signature| signature.split('(').next())
            .map(|name| name.trim().to_owned())
            .collect();
        // Rhai's own, which are keywords rather than registered functions.
        names.extend(
            [
                "Fn",
                "call",
                "curry",
                "type_of",
                "print",
                "debug",
                "is_def_var",
                "is_def_fn",
                "is_shared",
            ]
            .map(str::to_owned),
        );
        Arc::new(names)
    });
    Arc::clone(names)
}

fn build(capabilities: &[String], registry: &Registry) -> Engine {
    let mut engine = Engine::new_raw();
    // Only pure packages: nothing that reads the clock or the environment
    // (`timestamp()` would make replay diverge); `now()` is the host's.
    engine.register_global_module(CorePackage::new().as_shared_module());
    engine.register_global_module(LogicPackage::new().as_shared_module());
    engine.register_global_module(BasicMathPackage::new().as_shared_module());
    engine.register_global_module(BasicArrayPackage::new().as_shared_module());
    engine.register_global_module(BasicMapPackage::new().as_shared_module());
    engine.register_global_module(MoreStringPackage::new().as_shared_module());
    cairn_lang::script::limit(&mut engine);
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
        registry.install(capability, &mut engine);
    }
    engine
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use cairn_lang::source::Source;

    use super::*;

    /// Code outside any step (param defaults) stops at its `within` limit,
    /// long before the operations limit would stop it.
    #[test]
    fn code_outside_a_step_stops_at_its_time_limit() {
        let sandbox = Sandbox::new([&[][..]], &Registry::empty());
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

    /// Each left-out function works in standard Rhai and fails in the
    /// run-time sandbox: if the sandbox gains a package, the list must shrink.
    #[test]
    fn left_out_functions_are_standard_rhai_but_not_in_the_sandbox() {
        let uses = [
            ("timestamp", "timestamp()"),
            ("elapsed", "elapsed(timestamp())"),
            ("blob", "blob(4)"),
            ("as_string", "blob(4).as_string()"),
            ("to_array", "blob(4).to_array()"),
            ("parse_be_float", "blob(8).parse_be_float(0, 8)"),
            ("parse_be_int", "blob(8).parse_be_int(0, 8)"),
            ("parse_le_float", "blob(8).parse_le_float(0, 8)"),
            ("parse_le_int", "blob(8).parse_le_int(0, 8)"),
            (
                "write_ascii",
                "let b = blob(4); b.write_ascii(0, 2, \"ab\"); b",
            ),
            ("write_be", "let b = blob(8); b.write_be(0, 8, 1); b"),
            ("write_le", "let b = blob(8); b.write_le(0, 8, 1); b"),
            (
                "write_utf8",
                "let b = blob(4); b.write_utf8(0, 2, \"ab\"); b",
            ),
            ("get_bit", "5.get_bit(1)"),
            ("get_bits", "5.get_bits(0, 2)"),
            ("set_bit", "let n = 5; n.set_bit(1, true); n"),
            ("set_bits", "let n = 5; n.set_bits(0, 2, 3); n"),
        ];
        assert_eq!(
            cairn_lang::check::LEFT_OUT
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>(),
            uses.iter().map(|(name, _)| *name).collect::<Vec<_>>()
        );
        let standard = rhai::Engine::new();
        let sandbox = Sandbox::new([&[][..]], &Registry::empty());
        let sandbox = sandbox.engine(&[]);
        for (name, code) in uses {
            assert!(code.contains(name), "{code}");
            if let Err(err) = standard.eval::<rhai::Dynamic>(code) {
                panic!("standard Rhai: {code}: {err}");
            }
            let err = sandbox.eval::<rhai::Dynamic>(code).expect_err(code);
            assert!(
                matches!(*err, rhai::EvalAltResult::ErrorFunctionNotFound(..)),
                "{code}: {err}"
            );
            let plan = format!("plan p \"P\"\n\ntask a \"A\"\n  run: |\n    {code}\n");
            let checked = crate::check(&Source::new("p.plan", plan));
            assert!(
                checked
                    .diagnostics
                    .iter()
                    .any(|d| d.is_error() && d.message.contains(&format!("`{name}`"))),
                "{code}: {:?}",
                checked.diagnostics
            );
        }
    }
}
