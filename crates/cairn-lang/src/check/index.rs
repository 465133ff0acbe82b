//! Where each name in a plan is defined and used: steps, params,
//! hypotheses, `use` aliases and capabilities, with their spans. What an
//! editor needs for go to definition, find references and rename.

use serde::Serialize;

use crate::span::Span;

/// What kind of thing a name names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameKind {
    /// A task, decision or gate id.
    Step,
    /// A `param`.
    Param,
    /// A `hypothesis`.
    Hypothesis,
    /// The alias of a `use` (its steps are `alias.id`).
    Alias,
    /// A capability (`using:`); defined by the engine, not the plan.
    Capability,
}

/// Where a name is defined (or used), in the checked file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Site {
    /// What kind of thing it names.
    pub kind: NameKind,
    /// The name as written (`fetch`, `dbg.probe`).
    pub name: String,
    /// The name's bytes in the file.
    pub span: Span,
}

/// Every definition and reference of the checked file, in file order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Index {
    /// Where names are defined: step ids, params, hypotheses, aliases.
    pub definitions: Vec<Site>,
    /// Where they are used: `needs:`, routes, branches, `outputs[…]`,
    /// `params.…`, `using:`.
    pub references: Vec<Site>,
}

impl Index {
    pub(super) fn define(&mut self, kind: NameKind, name: &str, span: Span) {
        self.definitions.push(Site {
            kind,
            name: name.to_owned(),
            span,
        });
    }

    pub(super) fn refer(&mut self, kind: NameKind, name: &str, span: Span) {
        self.references.push(Site {
            kind,
            name: name.to_owned(),
            span,
        });
    }

    /// Sorts both lists by position (the index is built field by field).
    pub(super) fn finish(&mut self) {
        self.definitions.sort_by_key(|s| (s.span.start, s.span.end));
        self.references.sort_by_key(|s| (s.span.start, s.span.end));
    }

    /// Where `name` of this kind is defined, if in this file.
    pub fn definition(&self, kind: NameKind, name: &str) -> Option<&Site> {
        self.definitions
            .iter()
            .find(|s| s.kind == kind && s.name == name)
    }

    /// Every use of `name` of this kind, in file order.
    pub fn references_to<'a>(
        &'a self,
        kind: NameKind,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Site> + 'a {
        self.references
            .iter()
            .filter(move |s| s.kind == kind && s.name == name)
    }

    /// The definition or reference at byte `offset`, if one covers it.
    pub fn at(&self, offset: usize) -> Option<&Site> {
        self.definitions
            .iter()
            .chain(&self.references)
            .find(|s| s.span.start <= offset && offset <= s.span.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Found, Resolver};
    use crate::script::capabilities::builtin_for_tests;
    use crate::source::Source;

    /// One imported plan, `lib`, held in memory.
    struct Lib;

    impl Resolver for Lib {
        fn resolve(&self, _from: &Source, reference: &str) -> Result<Found, String> {
            (reference == "lib").then_some(()).ok_or("no such plan")?;
            Ok(Found {
                identity: "lib".to_owned(),
                source: Source::new("lib", "plan lib \"Lib\"\n\ntask verify \"Verify\"\n"),
                file: None,
            })
        }

        fn identity(&self, source: &Source) -> String {
            source.name().to_owned()
        }

        fn templates(&self) -> Vec<String> {
            Vec::new()
        }
    }

    const PLAN: &str = r#"plan p "P"
  param n = 2
  hypothesis pool "The pool runs out"
  allow: sh
  use "lib" as dbg

task fetch "Fetch"
  run: params.n + 1

task build "Build" using:sh
  needs: fetch, dbg.verify
  run: outputs["fetch"] * params.n
  on failure -> fix

task fix "Fix"
  run: 1
"#;

    /// What each site covers, as text.
    fn texts<'a>(
        source: &'a str,
        sites: impl Iterator<Item = &'a Site>,
    ) -> Vec<(NameKind, &'a str)> {
        sites
            .map(|s| (s.kind, &source[s.span.start..s.span.end]))
            .collect()
    }

    #[test]
    fn definitions_and_references_cover_exactly_their_names() {
        let source = Source::new("p.plan", PLAN);
        let (checked, index) = super::super::check_indexed(&source, &builtin_for_tests(), &Lib);
        assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
        use NameKind::*;
        assert_eq!(
            texts(PLAN, index.definitions.iter()),
            [
                (Param, "n"),
                (Hypothesis, "pool"),
                (Alias, "dbg"),
                (Step, "fetch"),
                (Step, "build"),
                (Step, "fix")
            ]
        );
        assert_eq!(
            texts(PLAN, index.references.iter()),
            [
                (Param, "n"),
                (Capability, "sh"),
                (Step, "fetch"),
                (Alias, "dbg"),
                (Step, "dbg.verify"),
                (Step, "fetch"),
                (Param, "n"),
                (Step, "fix")
            ]
        );
        let fetch: Vec<_> = index.references_to(Step, "fetch").collect();
        assert_eq!(fetch.len(), 2, "`needs:` and `outputs[…]`");
        let at = PLAN.find("outputs[\"fetch\"]").expect("there") + "outputs[\"".len() + 2;
        let site = index.at(at).expect("a name there");
        assert_eq!((site.kind, site.name.as_str()), (Step, "fetch"));
        let defined = index.definition(Step, "fetch").expect("defined");
        assert_eq!(&PLAN[defined.span.start..defined.span.end], "fetch");
    }
}
