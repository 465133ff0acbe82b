//! A run's checked plan, kept encoded so resuming it need not check its source again.

use cairn_lang::plan::Plan;

/// Names the encoding: postcard of [`Plan`] as this build's types shape it.
/// A build that finds another format checks the recorded source instead, so
/// bump the last number whenever a type a plan holds changes (the test
/// below fails until then).
pub const FORMAT: &str = concat!("postcard/", env!("CARGO_PKG_VERSION"), "/11");

/// A stored plan as read from the store, not yet decoded.
pub struct Encoded {
    pub(super) format: String,
    pub(super) body: Vec<u8>,
}

impl Encoded {
    /// The plan, compiled, if this build reads its format and its code
    /// still compiles; otherwise the caller checks the recorded source.
    pub fn decode(&self) -> Option<Plan> {
        if self.format != FORMAT {
            return None;
        }
        let mut plan: Plan = postcard::from_bytes(&self.body).ok()?;
        plan.compile().ok()?;
        Some(plan)
    }
}

/// The plan's encoding in [`FORMAT`].
pub fn encode(plan: &Plan) -> Vec<u8> {
    postcard::to_stdvec(plan).expect("plans serialize")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sha2::{Digest, Sha256};

    use super::{encode, Encoded, FORMAT};
    use cairn_lang::source::Source;

    fn checked(name: &str, text: &str) -> cairn_lang::plan::Plan {
        let checked = cairn_engine::stdlib::engine().check(&Source::new(name, text.to_owned()));
        checked.plan.unwrap_or_else(|| panic!("{name} checks"))
    }

    /// Every example and template comes back from its encoding as it was,
    /// code compiled.
    #[test]
    fn plans_decode_to_what_was_encoded() {
        let mut files: Vec<_> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples"))
                .expect("examples")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "plan"))
                .collect();
        files.sort();
        assert!(files.len() >= 4);
        let mut plans: Vec<_> = files
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).expect("reads");
                checked(&p.display().to_string(), &text)
            })
            .collect();
        for template in cairn_lang::templates::TEMPLATES {
            plans.push(checked(template.name, template.text));
        }
        let importing =
            "plan outer \"Outer\"\n  use \"debug-500\" as dbg\n\ntask after \"After\"\n";
        let repeated =
            "plan twice \"Twice\"\n\ntask a \"A\"\n  run: 40 + 2\n\ntask b \"B\"\n  run: 40 + 2\n";
        plans.push(checked("twice.plan", repeated));
        let functions = "plan shared \"Shared\"\n  functions: |\n    fn double(x) { x * 2 }\n\ntask a \"A\"\n  run: double(21)\n  expect: result == double(21)\n";
        plans.push(checked("shared.plan", functions));
        plans.push(checked("outer.plan", importing));
        assert!(!plans.last().expect("pushed").imports.is_empty());
        for plan in plans {
            let stored = Encoded {
                format: FORMAT.to_owned(),
                body: encode(&plan),
            };
            let back = stored.decode().expect("decodes");
            let json = |p: &cairn_lang::plan::Plan| serde_json::to_string(p).expect("serializes");
            assert_eq!(json(&back), json(&plan), "{}", plan.id);
            let compiled = |p: &cairn_lang::plan::Plan| {
                p.tasks
                    .iter()
                    .flat_map(|t| t.run.iter().chain(&t.expect).chain(t.when.as_deref()))
                    .all(|s| s.ast.is_some())
            };
            assert!(compiled(&back), "{}: code left uncompiled", plan.id);
            if plan.id == "shared" {
                // Decoded code is compiled with the plan's functions in.
                let task = &back.tasks[0];
                for script in task.run.iter().chain(&task.expect) {
                    let ast = script.ast.as_ref().expect("compiled");
                    assert!(ast.iter_functions().any(|f| f.name == "double"));
                }
            }
            if plan.id == "twice" {
                let text = |i: usize| &back.tasks[i].run.as_ref().expect("run").text;
                assert!(Arc::ptr_eq(text(0), text(1)), "equal texts are shared");
            }
        }
    }

    /// Another format, or bytes that do not decode, mean "check the source".
    #[test]
    fn other_formats_and_damaged_bytes_are_not_read() {
        let plan = checked("p.plan", "plan p \"P\"\n\ntask a \"A\"\n  run: 1 + 1\n");
        let body = encode(&plan);
        let older = Encoded {
            format: "postcard/0.0.0/1".to_owned(),
            body: body.clone(),
        };
        assert!(older.decode().is_none());
        let cut = Encoded {
            format: FORMAT.to_owned(),
            body: body[..body.len() / 2].to_vec(),
        };
        assert!(cut.decode().is_none());
    }

    /// Pins the encoding of a plan that sets every field. When a type a
    /// plan holds changes shape, runs recorded by earlier builds would be
    /// misread: bump [`FORMAT`]'s last number. Then (or when the checker
    /// only produced other values) update the hash here.
    #[test]
    fn the_encoding_is_pinned_to_its_format() {
        let text = r#"plan every "Every field"
  description: all of it
  owner: ops
  labels: a, b
  max_parallel: 2
  seed: 7
  resources: cpu 2
  allow: sh, http(example.com)
  budget: time 10m, cost 5
  on failure: continue
  param n = 2
  hypothesis h "It holds"
  use "debug-500" as dbg with requests = 5
  functions: |
    fn twice(x) { x * 2 }

task a "A" kind:build using:sh
  input:
    x: params.n
  run: |
    let y = input.x + 1;
    y
  expect: result > 1
  when: params.n > 0
  retry: 2 backoff 1s factor 3 max 10s
  timeout: 5s
  priority: 3
  resources: cpu 1
  compensate: ()
  description: every task field
  owner: qa
  labels: x
  on failure: stop
  on failure -> b
  on success -> c

task b "B"
  run: "fallback"

task e "E"
  needs: a
  needs: b.done, any(a.failed, b.skipped)
  each: [1, 2]
  max_parallel: 1
  run: outputs["a"] + item

task g "G"
  repeat: max 3 until result > 1
  run: iteration.index

decision c "C"
  when outputs["a"] > 2 -> d
  else -> f

gate d "D"
  checks:
    - "looks right"
  timeout: 1h
  input:
    n: int 1..3 = 2
  on reject -> f

task f "F"
  run: ()

task z "Z"
  finally: true
  run: run.status
"#;
        let plan = checked("every.plan", text);
        let hash = format!("{:x}", Sha256::digest(encode(&plan)));
        assert_eq!(
            (FORMAT.rsplit('/').next(), hash.as_str()),
            (
                Some("11"),
                "0f77ee104a25806edc101fe3e7ce2713b2251b8cc281488e5a7399d8b31ea2a2"
            ),
            "the stored plan's encoding changed: if a type changed shape, bump FORMAT's last number; then update this hash"
        );
    }
}
