//! The embedding API: load plans, register host capabilities, run, observe.

use std::path::Path;
use std::sync::Arc;

use crate::capability::Registry;
use crate::error::Error;
use crate::run::{self, Event, Options, Report};
use crate::script::Capability;
use cairn_lang::check::Checked;
use cairn_lang::plan::Plan;
use cairn_lang::source::Source;

/// Loads and runs plans; holds the capabilities an application adds.
///
/// ```
/// use cairn_engine::Engine;
///
/// let mut engine = Engine::new();
/// // Plans may now declare `using:greet` (and `allow: greet`) to call `greet`.
/// engine.register_capability("greet", &["greet"], |rhai| {
///     rhai.register_fn("greet", |name: &str| format!("hello, {name}"));
/// });
/// let plan = engine
///     .load_str("hello.plan", "plan hello \"Hello\"\n  allow: greet\n\ntask hi \"Say hi\" using:greet\n  run: greet(\"world\")\n")
///     .expect("the plan checks");
/// let report = engine.run_blocking(plan, cairn_engine::run::Options::default(), |_event| {}).expect("runs");
/// assert_eq!(report.steps[0].output, Some(serde_json::json!("hello, world")));
/// ```
#[derive(Clone, Default)]
pub struct Engine {
    registry: Registry,
}

impl Engine {
    /// An engine with the built-in capabilities (`sh`, `fs.read`, `fs.write`, `http`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a capability that takes no scopes: plans name it in `using:`
    /// and `allow:`, and `register` adds its `functions` to the sandbox of
    /// the tasks that declare it (and only to theirs). The checker reports a
    /// call to one of `functions` from a task that does not declare the
    /// capability. [`Engine::register`] takes a full [`Capability`].
    ///
    /// To fail the calling task, return an error from the function, for
    /// example with [`crate::script::context::runtime`].
    pub fn register_capability(
        &mut self,
        name: &str,
        functions: &[&str],
        register: impl Fn(&mut rhai::Engine) + Send + Sync + 'static,
    ) -> &mut Self {
        self.register(Capability::new(name, functions), register)
    }

    /// Adds a capability, or replaces the one of that name (a built-in one
    /// too), as [`Registry::register`] does.
    pub fn register(
        &mut self,
        capability: Capability,
        register: impl Fn(&mut rhai::Engine) + Send + Sync + 'static,
    ) -> &mut Self {
        self.registry.register(capability, register);
        self
    }

    /// Every capability plans run by this engine may declare.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Checks plan text, with this engine's capabilities.
    pub fn check(&self, source: &Arc<Source>) -> Checked {
        crate::check_with(source, self.registry.capabilities())
    }

    /// Reads and checks a plan file; its diagnostics are in the error.
    pub fn load(&self, path: &Path) -> Result<Plan, Error> {
        self.checked(crate::read::read(path)?)
    }

    /// Checks plan text given as a string; `name` is what diagnostics show.
    pub fn load_str(&self, name: &str, text: &str) -> Result<Plan, Error> {
        self.checked(Source::new(name, text))
    }

    fn checked(&self, source: Arc<Source>) -> Result<Plan, Error> {
        let checked = self.check(&source);
        checked.plan.ok_or(Error::Check(checked.diagnostics))
    }

    /// Runs a plan (owned or shared) on the current tokio runtime, calling
    /// `observe` for every event in order. Scripts run on blocking threads.
    /// The run may call this engine's capabilities unless
    /// [`Options::capabilities`] names others.
    pub async fn run(
        &self,
        plan: impl Into<Arc<Plan>>,
        mut options: Options,
        observe: impl FnMut(&Event),
    ) -> Result<Report, Error> {
        options
            .capabilities
            .get_or_insert_with(|| self.registry.clone());
        run::run(plan.into(), options, observe).await
    }

    /// [`Engine::run`] on a runtime of its own, for callers without one.
    pub fn run_blocking(
        &self,
        plan: impl Into<Arc<Plan>>,
        options: Options,
        observe: impl FnMut(&Event),
    ) -> Result<Report, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Usage(format!("cannot start the runtime: {e}")))?;
        runtime.block_on(self.run(plan, options, observe))
    }
}
