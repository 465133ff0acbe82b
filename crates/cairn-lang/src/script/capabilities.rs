//! Capabilities: named groups of host functions that a task must declare.

/// One capability and the functions it brings into scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability {
    /// The name plans write in `using:` and `allow:`, e.g. `fs.read`.
    pub name: String,
    /// The Rhai functions it provides; the checker reports calls to them from tasks that do not declare it.
    pub functions: Vec<String>,
}

/// The capabilities a plan may name in `using:` and `allow:`.
#[derive(Clone, Debug)]
pub struct Capabilities {
    list: Vec<Capability>,
}

impl Capabilities {
    /// The built-in capabilities: `sh`, `fs.read`, `fs.write` and `http`.
    pub fn builtin() -> Self {
        let cap = |name: &str, functions: &[&str]| Capability {
            name: name.to_owned(),
            functions: functions.iter().map(|f| (*f).to_owned()).collect(),
        };
        Self {
            list: vec![
                cap("sh", &["sh", "sh_try"]),
                cap("fs.read", &["read_file", "exists", "list_dir"]),
                cap("fs.write", &["write_file", "edit_file", "restore_file"]),
                cap("http", &["http_get", "http_post"]),
            ],
        }
    }

    /// Adds a capability (an embedding application's tool).
    pub fn add(&mut self, capability: Capability) {
        self.list.retain(|c| c.name != capability.name);
        self.list.push(capability);
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

    /// Every capability name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|c| c.name.as_str())
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::builtin()
    }
}
