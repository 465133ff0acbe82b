//! Capabilities as the checker knows them: named groups of host functions that a task must declare.

/// What the checker, the dry run and error messages know of one capability.
/// The engine's registry pairs each with how its functions register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability {
    /// The name plans write in `using:` and `allow:`, e.g. `fs.read`.
    pub name: String,
    /// The Rhai functions it provides; the checker reports calls to them from tasks that do not declare it.
    pub functions: Vec<String>,
    /// What one scope in `allow: name(…)` is, as help text shows it (`host`,
    /// `<glob>`); `None`: the capability cannot be narrowed.
    pub scope: Option<String>,
}

impl Capability {
    /// A capability that provides `functions` and takes no scopes.
    pub fn new(name: &str, functions: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            functions: functions.iter().map(|f| (*f).to_owned()).collect(),
            scope: None,
        }
    }

    /// The same capability, narrowed in `allow:` by scopes of this shape.
    pub fn scoped(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_owned());
        self
    }
}

/// The capabilities a plan may name in `using:` and `allow:`, in the order
/// they were added.
#[derive(Clone, Debug, Default)]
pub struct Capabilities {
    list: Vec<Capability>,
    /// The functions any code may call whatever it declares (the
    /// sandbox's Rhai packages and host functions), when the engine says:
    /// then a call to a function no one provides is a check error.
    always: Option<std::sync::Arc<std::collections::HashSet<String>>>,
}

impl Capabilities {
    /// None at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a capability, replacing one of the same name in its place.
    pub fn add(&mut self, capability: Capability) {
        match self.list.iter_mut().find(|c| c.name == capability.name) {
            Some(slot) => *slot = capability,
            None => self.list.push(capability),
        }
    }

    /// The capability with this name.
    pub fn get(&self, name: &str) -> Option<&Capability> {
        self.list.iter().find(|c| c.name == name)
    }

    /// The capability that provides a function, if any does.
    pub fn providing(&self, function: &str) -> Option<&Capability> {
        self.list
            .iter()
            .find(|c| c.functions.iter().any(|f| f == function))
    }

    /// Every capability, in the order added.
    pub fn iter(&self) -> impl Iterator<Item = &Capability> {
        self.list.iter()
    }

    /// Every capability name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|c| c.name.as_str())
    }

    /// Says which functions any code may call whatever it declares: with
    /// it, the checker reports calls to functions that do not exist.
    pub fn set_always(&mut self, functions: std::sync::Arc<std::collections::HashSet<String>>) {
        self.always = Some(functions);
    }

    /// The functions any code may call, if known (see [`Capabilities::set_always`]).
    pub fn always(&self) -> Option<&std::collections::HashSet<String>> {
        self.always.as_deref()
    }
}

/// The built-in capabilities as the engine describes them, for the front
/// end's own tests (which cannot depend on the engine).
#[cfg(test)]
pub(crate) fn builtin_for_tests() -> Capabilities {
    let mut capabilities = Capabilities::new();
    capabilities.add(Capability::new("sh", &["sh", "sh_try"]));
    capabilities
        .add(Capability::new("fs.read", &["read_file", "exists", "list_dir"]).scoped("<glob>"));
    capabilities.add(
        Capability::new("fs.write", &["write_file", "edit_file", "restore_file"]).scoped("<glob>"),
    );
    capabilities.add(Capability::new("http", &["http_get", "http_post"]).scoped("host"));
    capabilities
}
