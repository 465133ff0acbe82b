//! The pest parser generated from `grammar/plan.pest`.
//!
//! The derive also generates the `Rule` enum (one variant per grammar rule,
//! plus `EOI`); that generated code is exempt from `missing_docs`.
#![allow(missing_docs)]

/// The parser for `.plan` text; `PlanParser::parse(Rule::…, text)` parses one rule.
#[derive(pest_derive::Parser)]
#[grammar = "../grammar/plan.pest"]
pub struct PlanParser;

/// One test per rule, each input consumed whole (like tera's lexer tests).
#[cfg(test)]
mod tests {
    use pest::Parser;

    use super::{PlanParser, Rule};

    /// Parses `input` with `rule` and asserts nothing is left over.
    fn parses(rule: Rule, input: &str) {
        match PlanParser::parse(rule, input) {
            Ok(mut pairs) => {
                let pair = pairs.next().expect("a rule yields a pair");
                assert_eq!(pair.as_str(), input, "{rule:?} left input unconsumed");
            }
            Err(err) => panic!("{rule:?} failed on {input:?}:\n{err}"),
        }
    }

    fn fails(rule: Rule, input: &str) {
        let consumed = PlanParser::parse(rule, input)
            .ok()
            .and_then(|mut p| p.next())
            .is_some_and(|p| p.as_str() == input);
        assert!(!consumed, "{rule:?} should not accept {input:?}");
    }

    /// Parses a field rule under an indentation pushed by an enclosing item.
    fn item_with(fields: &str) -> String {
        format!("task t \"T\"\n{fields}")
    }

    #[test]
    fn ids() {
        parses(Rule::id, "repro-matrix");
        parses(Rule::id, "a1_b");
        fails(Rule::id, "Repro");
        fails(Rule::id, "1a");
        parses(Rule::target, "dbg.repro-matrix");
    }

    #[test]
    fn strings() {
        parses(Rule::string, "\"Investigate intermittent 500s\"");
        parses(Rule::string, r#""with \"quotes\" and \\""#);
        fails(Rule::string, "\"unclosed");
    }

    #[test]
    fn numbers_durations_sizes() {
        parses(Rule::number, "42");
        parses(Rule::number, "-3.5");
        parses(Rule::duration, "250ms");
        parses(Rule::duration, "1.5h");
        parses(Rule::size, "512M");
        parses(Rule::size, "2GiB");
        fails(Rule::duration, "ms");
    }

    #[test]
    fn capabilities_and_names() {
        parses(Rule::capability, "fs.write");
        parses(Rule::capability, "sh");
        parses(Rule::name, "implement");
    }

    #[test]
    fn expressions_run_to_the_end_of_the_line() {
        parses(Rule::expr, "#{ errors: errors } // not a comment for cairn");
        parses(Rule::condition, "outputs[\"a->b\"] == 1");
    }

    #[test]
    fn item_headers() {
        parses(Rule::item, "plan debug-500 \"Investigate\"\n");
        parses(
            Rule::item,
            "task repro \"Reproduce\" kind:debug using:http,sh\n",
        );
        parses(
            Rule::item,
            "task repro \"Reproduce\" kind: debug using: http, sh   # note\n",
        );
        parses(Rule::item, "decision pick \"Which?\"\n");
        parses(Rule::item, "gate ship \"Approve\"");
        fails(Rule::item, "task repro\n");
        fails(Rule::item, "step repro \"R\"\n");
    }

    #[test]
    fn kind_and_using_attributes() {
        parses(Rule::kind_attr, "kind:debug");
        parses(Rule::kind_attr, "kind:load-test");
        parses(Rule::using_attr, "using:sh,fs.read");
        parses(Rule::using_attr, "using:sh, fs.write");
    }

    #[test]
    fn plan_settings() {
        for line in [
            "  param url = \"http://127.0.0.1:8080/\"\n",
            "  max_parallel: 3\n",
            "  resources: cpu 4, mem 8G\n",
            "  allow: sh, fs.read, fs.write(config/*), http(127.0.0.1, example.com)\n",
            "  budget: time 10m, cost 25\n",
            "  on failure: stop\n",
            "  seed: 42\n",
            "  owner: alice\n",
            "  labels: ops, incident\n",
        ] {
            parses(Rule::item, &format!("plan p \"P\"\n{line}"));
        }
    }

    #[test]
    fn allow_grants() {
        parses(
            Rule::allow,
            "allow: sh, fs.write(config/*), http(127.0.0.1, localhost:8080)",
        );
        parses(Rule::grant, "http(127.0.0.1)");
    }

    #[test]
    fn budgets_and_resources() {
        parses(Rule::budget, "budget: time 10m");
        parses(Rule::budget, "budget: time 1h, cost 12.5");
        parses(Rule::resources, "resources: cpu 2, mem 512M");
        parses(Rule::resource, "gpu 1");
    }

    #[test]
    fn needs_with_commas_or_spaces() {
        parses(Rule::needs, "needs: a, b");
        parses(Rule::needs, "needs: a b c");
        parses(Rule::needs, "needs: dbg.postmortem, b   # why");
    }

    #[test]
    fn single_line_fields() {
        parses(Rule::when_field, "when: params.deploy");
        parses(Rule::retry, "retry: 2 backoff 1s factor 2 max 10s");
        parses(Rule::retry, "retry: 3");
        parses(Rule::retry, "retry: three");
        parses(Rule::timeout, "timeout: 2m");
        parses(Rule::timeout, "timeout: soon");
        parses(Rule::failure_route, "on failure -> widen-matrix");
        parses(Rule::failure_policy, "on failure: compensate");
        parses(Rule::success_route, "on success -> notify");
        parses(Rule::priority, "priority: -5");
        parses(Rule::branch, "when outputs[\"check-db\"] -> fix-pool");
        parses(Rule::else_branch, "else -> escalate");
        // `other_field` reads nested lines, so it needs an enclosing item.
        parses(Rule::item, &item_with("  owner: alice\n"));
        parses(Rule::item, &item_with("  need: b\n"));
        parses(Rule::param, "param requests = 200");
    }

    #[test]
    fn run_inline_and_blocks() {
        parses(Rule::item, &item_with("  run: sh(\"make\")\n"));
        let block = "  run: |\n    let errors = 0;\n\n    for i in 0..3 {\n      errors += 1;\n    }\n    #{ errors: errors }\n";
        parses(Rule::item, &item_with(block));
        parses(
            Rule::item,
            &item_with("  compensate: |\n    restore_file(\"config/pool.toml\")\n"),
        );
    }

    #[test]
    fn nested_lists() {
        parses(
            Rule::item,
            &item_with("  input:\n    rounds: 3\n    url: params.url\n"),
        );
        parses(
            Rule::item,
            &item_with("  expect:\n    - result.errors > 0\n\n    - result.ok\n"),
        );
        parses(Rule::item, &item_with("  expect: result > 0\n"));
        parses(
            Rule::item,
            &item_with("  checks:\n    - \"regression test added\"\n    - load test is green\n"),
        );
        parses(
            Rule::item,
            &item_with("  labels:\n    - ops\n    - incident\n"),
        );
    }

    #[test]
    fn blocks_end_at_the_field_indentation() {
        let text = item_with("  run: |\n    1\n  timeout: 5s\n");
        parses(Rule::item, &text);
    }

    #[test]
    fn comments_and_blank_lines() {
        parses(Rule::file, "# header\n\nplan p \"P\" # trailing\n  # inside\n  seed: 1\n\n# between\ntask a \"A\"\n  run: 1\n");
    }

    #[test]
    fn crlf_files() {
        parses(
            Rule::file,
            "plan p \"P\"\r\n  seed: 1\r\n\r\ntask a \"A\"\r\n  run: |\r\n    1\r\n",
        );
    }

    #[test]
    fn files_without_a_final_newline() {
        parses(Rule::file, "plan p \"P\"\ntask a \"A\"\n  run: 1");
        parses(Rule::file, "");
    }

    #[test]
    fn tabs_are_not_indentation() {
        fails(Rule::file, "plan p \"P\"\n\tseed: 1\n");
    }
}
