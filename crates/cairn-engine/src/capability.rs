//! The capability registry: each capability described once (name, functions, scope) with how it registers into Rhai.
//!
//! The checker reads the descriptions, the sandbox installs the
//! registrations, and the dry run and error messages name a function's
//! capability from the same entry. The built-in `sh`, `fs.read`, `fs.write`
//! and `http` are registered in [`Registry::builtin`] exactly as a host
//! application registers its own.

use std::collections::HashMap;
use std::sync::Arc;

use cairn_lang::script::{Capabilities, Capability};

/// How a capability adds its functions to a Rhai engine.
pub type Registrar = Arc<dyn Fn(&mut rhai::Engine) + Send + Sync>;

/// Capabilities by name, each with its description and registration.
#[derive(Clone)]
pub struct Registry {
    descriptions: Capabilities,
    registrars: HashMap<String, Registrar>,
}

impl Registry {
    /// No capability at all: plans may declare none.
    pub fn empty() -> Self {
        let mut registry = Self::bare();
        // What every sandbox gives all code: the checker looks calls up in it.
        registry
            .descriptions
            .set_always(crate::script::always_callable());
        registry
    }

    /// [`Registry::empty`], without what the sandbox always gives (which
    /// is read off a sandbox built from this).
    pub(crate) fn bare() -> Self {
        Self {
            descriptions: Capabilities::new(),
            registrars: HashMap::new(),
        }
    }

    /// The built-in capabilities: `sh`, `fs.read`, `fs.write` and `http`.
    pub fn builtin() -> Self {
        use crate::script::{files, shell, web};
        let mut registry = Self::empty();
        registry
            .register(Capability::new("sh", &["sh", "sh_try"]), shell::register)
            .register(
                Capability::new("fs.read", &["read_file", "exists", "list_dir"]).scoped("<glob>"),
                files::register_read,
            )
            .register(
                Capability::new("fs.write", &["write_file", "edit_file", "restore_file"])
                    .scoped("<glob>"),
                files::register_write,
            )
            .register(
                Capability::new("http", &["http_get", "http_post"]).scoped("host"),
                web::register,
            );
        registry
    }

    /// Adds a capability, or replaces the one of the same name: plans name
    /// it in `using:` and `allow:`, and `register` adds its functions to the
    /// sandbox of the tasks that declare it (and only to theirs).
    pub fn register(
        &mut self,
        capability: Capability,
        register: impl Fn(&mut rhai::Engine) + Send + Sync + 'static,
    ) -> &mut Self {
        self.registrars
            .insert(capability.name.clone(), Arc::new(register));
        self.descriptions.add(capability);
        self
    }

    /// What the checker and the dry run know of each capability.
    pub fn capabilities(&self) -> &Capabilities {
        &self.descriptions
    }

    /// Adds the functions of the capability `name` to `engine`; an unknown
    /// name adds nothing (the checker has already refused it).
    pub(crate) fn install(&self, name: &str, engine: &mut rhai::Engine) {
        if let Some(register) = self.registrars.get(name) {
            register(engine);
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.descriptions.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A built-in capability is an entry like any other: replacing it
    /// replaces what the sandbox installs.
    #[test]
    fn builtins_are_entries_a_host_can_replace() {
        let mut registry = Registry::builtin();
        registry.register(Capability::new("sh", &["sh"]), |rhai| {
            rhai.register_fn("sh", |_: &str| 7_i64);
        });
        let mut engine = rhai::Engine::new_raw();
        registry.install("sh", &mut engine);
        assert_eq!(engine.eval::<i64>("sh(\"ls\")").unwrap(), 7);
        assert_eq!(registry.capabilities().get("sh").unwrap().functions, ["sh"]);
        assert!(registry.capabilities().providing("sh_try").is_none());
    }
}
