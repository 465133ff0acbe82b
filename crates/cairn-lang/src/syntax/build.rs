//! Turns pest pairs into the AST, shifting spans from the item's chunk to the file.

use std::borrow::Cow;

use pest::iterators::Pair;

use super::ast::*;
use super::grammar::Rule;
use crate::span::{Span, Spanned};

/// Builds one item; `base` is the chunk's offset in `file`.
pub fn item(pair: Pair<Rule>, base: usize, file: &str) -> Item {
    let b = Builder { base, file };
    let mut inner = pair.into_inner();
    let keyword_pair = inner.next().expect("item starts with its keyword");
    let keyword = match keyword_pair.as_str() {
        "plan" => ItemKeyword::Plan,
        "task" => ItemKeyword::Task,
        "decision" => ItemKeyword::Decision,
        _ => ItemKeyword::Gate,
    };
    let keyword = Spanned::new(keyword, b.span(&keyword_pair));
    let id = b.text(inner.next().expect("item has an id"));
    let title = b.string(inner.next().expect("item has a title"));
    let mut item = Item {
        header: Span::new(keyword.span.start, title.span.end),
        keyword,
        id,
        title,
        kind: None,
        using: Vec::new(),
        fields: Vec::new(),
    };
    for pair in inner {
        match pair.as_rule() {
            Rule::kind_attr => {
                item.header.end = item.header.end.max(b.span(&pair).end);
                item.kind = pair.into_inner().next().map(|p| b.text(p));
            }
            Rule::using_attr => {
                item.header.end = item.header.end.max(b.span(&pair).end);
                item.using.extend(pair.into_inner().map(|p| b.text(p)));
            }
            _ => item.fields.push(b.field(pair)),
        }
    }
    // A field is over 200 bytes and a vector's first growth makes room for
    // four: most items have one or two fields, and a large plan holds every
    // item at once (a third of checking's peak memory went to the room).
    item.fields.shrink_to_fit();
    item
}

struct Builder<'f> {
    base: usize,
    file: &'f str,
}

impl Builder<'_> {
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let s = pair.as_span();
        Span::new(s.start() + self.base, s.end() + self.base)
    }

    /// The pair's text, without trailing spaces or `\r`.
    fn text(&self, pair: Pair<Rule>) -> Spanned<String> {
        let span = self.span(&pair);
        let trimmed = pair.as_str().trim_end();
        Spanned::new(
            trimmed.to_owned(),
            Span::new(span.start, span.start + trimmed.len()),
        )
    }

    /// A quoted string's contents with escapes resolved; the span keeps the quotes.
    fn string(&self, pair: Pair<Rule>) -> Spanned<String> {
        let span = self.span(&pair);
        let raw = pair.into_inner().next().map_or("", |p| p.as_str());
        let mut value = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(other) => value.push(other),
                    None => {}
                }
            } else {
                value.push(c);
            }
        }
        Spanned::new(value, span)
    }

    /// One line of code, as written.
    fn expr(&self, pair: Pair<Rule>) -> Code {
        let text = self.text(pair);
        Code {
            line_offsets: vec![text.span.start],
            text: text.value,
            span: text.span,
        }
    }

    /// `with name = value, …` of `use` and `plan:`.
    fn with_args(&self, args: pest::iterators::Pairs<Rule>) -> Vec<(Spanned<String>, Code)> {
        args.map(|arg| {
            let mut parts = arg.into_inner();
            let name = self.text(parts.next().expect("with has a name"));
            let value = self.expr(parts.next().expect("with has a value"));
            (name, value)
        })
        .collect()
    }

    /// The lines under `run: |`, dedented by their smallest indentation.
    fn block(&self, pair: Pair<Rule>) -> Code {
        let bar = self.span(&pair);
        let block_text = pair.into_inner().next().expect("block holds its text");
        let start = self.span(&block_text).start;
        let raw = &self.file[start..self.span(&block_text).end];
        let mut lines: Vec<(usize, &str)> = Vec::new();
        let mut offset = start;
        for line in raw.split_inclusive('\n') {
            let content = line.trim_end_matches('\n').trim_end_matches('\r');
            lines.push((offset, content));
            offset += line.len();
        }
        while lines.last().is_some_and(|(_, l)| l.trim().is_empty()) {
            lines.pop();
        }
        let indent = lines
            .iter()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(_, l)| l.len() - l.trim_start_matches(' ').len())
            .min()
            .unwrap_or(0);
        let mut text = String::with_capacity(raw.len());
        let mut line_offsets = Vec::with_capacity(lines.len());
        for (i, (offset, line)) in lines.iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            // Only leading spaces are cut, so a line indented with other
            // whitespace keeps it rather than being split inside a character.
            let cut = indent.min(line.len() - line.trim_start_matches(' ').len());
            text.push_str(&line[cut..]);
            line_offsets.push(offset + cut);
        }
        let span = match (lines.first(), lines.last()) {
            (Some(&(first, _)), Some(&(last, line))) => {
                Span::new(first + indent, last + line.len())
            }
            _ => Span::new(bar.start, bar.start + 1),
        };
        Code {
            text,
            span,
            line_offsets,
        }
    }

    /// The field's keyword and its span (`needs`, `on failure`).
    fn keyword(&self, span: Span, rule: Rule) -> Spanned<Cow<'static, str>> {
        let name = match rule {
            Rule::param => "param",
            Rule::hypothesis => "hypothesis",
            Rule::use_field => "use",
            Rule::max_parallel => "max_parallel",
            Rule::seed => "seed",
            Rule::resources => "resources",
            Rule::allow => "allow",
            Rule::budget => "budget",
            Rule::failure_policy | Rule::failure_route => "on failure",
            Rule::success_route => "on success",
            Rule::reject_route => "on reject",
            Rule::needs => "needs",
            Rule::finally_field => "finally",
            Rule::input => "input",
            Rule::run => "run",
            Rule::compensate => "compensate",
            Rule::expect => "expect",
            Rule::when_field | Rule::branch => "when",
            Rule::retry => "retry",
            Rule::timeout => "timeout",
            Rule::default_timeout => "default_timeout",
            Rule::output_limit => "output_limit",
            Rule::priority => "priority",
            Rule::else_branch => "else",
            Rule::checks => "checks",
            Rule::functions => "functions",
            Rule::each_field => "each",
            Rule::repeat_field => "repeat",
            Rule::plan_field => "plan",
            Rule::output_field => "output",
            _ => "",
        };
        let text = &self.file[span.start..span.end];
        // `on   failure` may have any number of spaces between its words.
        let end = match name.split_once(' ') {
            Some((_, last)) => text.find(last).map_or(name.len(), |i| i + last.len()),
            None => name.len(),
        };
        Spanned::new(Cow::Borrowed(name), Span::new(span.start, span.start + end))
    }

    fn field(&self, pair: Pair<Rule>) -> Field {
        let mut span = self.span(&pair);
        // Trailing blank lines and the final newline are not part of a field.
        span.end = span.start + self.file[span.start..span.end].trim_end().len();
        let rule = pair.as_rule();
        let mut name = self.keyword(span, rule);
        let mut inner = pair.into_inner();
        let value = match rule {
            Rule::param => {
                let param_name = self.text(inner.next().expect("param has a name"));
                let value = self.expr(inner.next().expect("param has a value"));
                FieldValue::Param {
                    name: param_name,
                    value: Box::new(value),
                }
            }
            Rule::hypothesis => {
                let id = self.text(inner.next().expect("hypothesis has an id"));
                let statement = self.string(inner.next().expect("hypothesis has a statement"));
                FieldValue::Hypothesis {
                    id,
                    statement: Box::new(statement),
                }
            }
            Rule::use_field => {
                let reference = self.string(inner.next().expect("use has a reference"));
                let alias = self.text(inner.next().expect("use has an alias"));
                FieldValue::Use(Box::new(UseSpec {
                    reference,
                    alias,
                    with: self.with_args(inner),
                }))
            }
            Rule::plan_field => {
                let reference = self.string(inner.next().expect("plan: has a reference"));
                FieldValue::Call(Box::new(CallSpec {
                    reference,
                    with: self.with_args(inner),
                }))
            }
            Rule::output_field => {
                FieldValue::Output(self.expr(inner.next().expect("output has a value")))
            }
            Rule::max_parallel => FieldValue::MaxParallel(self.next_text(&mut inner)),
            Rule::seed => FieldValue::Seed(self.next_text(&mut inner)),
            Rule::priority => FieldValue::Priority(self.next_text(&mut inner)),
            Rule::timeout => FieldValue::Timeout(self.next_text(&mut inner)),
            Rule::default_timeout => FieldValue::DefaultTimeout(self.next_text(&mut inner)),
            Rule::output_limit => FieldValue::OutputLimit(self.next_text(&mut inner)),
            Rule::resources => FieldValue::Resources(self.quantities_of(inner)),
            Rule::budget => FieldValue::Budget(self.quantities_of(inner)),
            Rule::allow => FieldValue::Allow(
                inner
                    .map(|grant| {
                        let span = self.span(&grant);
                        let mut parts = grant.into_inner();
                        let capability = self.text(parts.next().expect("grant has a capability"));
                        Grant {
                            capability,
                            scopes: parts.map(|p| self.text(p)).collect(),
                            span,
                        }
                    })
                    .collect(),
            ),
            Rule::failure_policy => FieldValue::FailurePolicy(self.next_text(&mut inner)),
            Rule::needs => {
                // Most `needs:` name one or two ids; see `item`'s fields.
                let mut entries: Vec<_> = inner
                    .map(|p| match p.as_rule() {
                        Rule::need_any => {
                            let span = self.span(&p);
                            let members = p.into_inner().map(|m| self.text(m)).collect();
                            NeedEntry::Any(Spanned::new(members, span))
                        }
                        _ => NeedEntry::One(self.text(p)),
                    })
                    .collect();
                entries.shrink_to_fit();
                FieldValue::Needs(entries)
            }
            Rule::finally_field => FieldValue::Finally(self.next_text(&mut inner)),
            Rule::input => FieldValue::Input(
                inner
                    .map(|entry| {
                        let mut parts = entry.into_inner();
                        let key = self.next_text(&mut parts);
                        let code = self.expr(parts.next().expect("input entry has a value"));
                        (key, code)
                    })
                    .collect(),
            ),
            Rule::run => FieldValue::Run(self.body_of(inner.next().expect("body holds code"))),
            Rule::functions => {
                FieldValue::Functions(self.body_of(inner.next().expect("body holds code")))
            }
            Rule::compensate => {
                FieldValue::Compensate(self.body_of(inner.next().expect("body holds code")))
            }
            Rule::expect => FieldValue::Expect(
                inner
                    .map(|p| match p.as_rule() {
                        Rule::expect_entry => {
                            self.expr(p.into_inner().next().expect("entry holds an expression"))
                        }
                        _ => self.expr(p),
                    })
                    .collect(),
            ),
            Rule::each_field => FieldValue::Each(self.expr(inner.next().expect("each has a list"))),
            Rule::repeat_field => {
                let mut max = None;
                let mut until = None;
                let mut bad = None;
                for part in inner {
                    match part.as_rule() {
                        Rule::repeat_max => max = Some(self.next_text(&mut part.into_inner())),
                        Rule::repeat_until => {
                            until =
                                Some(self.expr(
                                    part.into_inner().next().expect("until holds a condition"),
                                ))
                        }
                        _ => bad = Some(self.text(part)),
                    }
                }
                FieldValue::Repeat(match bad {
                    Some(value) => Err(value),
                    None => Ok(Box::new(RepeatSpec { max, until })),
                })
            }
            Rule::when_field => {
                FieldValue::When(self.expr(inner.next().expect("when has a condition")))
            }
            Rule::retry => {
                let value = inner.next().expect("retry has a value");
                let predicate = inner
                    .next()
                    .map(|p| self.expr(p.into_inner().next().expect("`if` holds a condition")));
                FieldValue::Retry(match value.as_rule() {
                    Rule::retry_spec => {
                        let mut parts = value.into_inner();
                        let count = self.next_text(&mut parts);
                        let mut backoff = None;
                        let mut factor = None;
                        let mut max = None;
                        let mut total = None;
                        for p in parts {
                            // `factor` is a number; the first duration is
                            // `backoff`, the next `max`.
                            match p.as_rule() {
                                Rule::number => factor = Some(self.text(p)),
                                Rule::retry_total => {
                                    total = Some(self.next_text(&mut p.into_inner()))
                                }
                                _ if backoff.is_none() => backoff = Some(self.text(p)),
                                _ => max = Some(self.text(p)),
                            }
                        }
                        Ok(Box::new(RetrySpec {
                            count,
                            backoff,
                            factor,
                            max,
                            total,
                            predicate,
                        }))
                    }
                    _ => Err(self.text(value)),
                })
            }
            Rule::failure_route => FieldValue::FailureRoute(self.next_text(&mut inner)),
            Rule::reject_route => FieldValue::RejectRoute(self.next_text(&mut inner)),
            Rule::success_route => FieldValue::SuccessRoute(self.next_text(&mut inner)),
            Rule::branch => {
                let condition = self.expr(inner.next().expect("branch has a condition"));
                FieldValue::Branch {
                    condition: Box::new(condition),
                    target: self.next_text(&mut inner),
                }
            }
            Rule::else_branch => FieldValue::Else(self.next_text(&mut inner)),
            Rule::checks => FieldValue::Checks(
                inner
                    .map(|entry| {
                        let p = entry.into_inner().next().expect("check has text");
                        match p.as_rule() {
                            Rule::string => self.string(p),
                            _ => self.text(p),
                        }
                    })
                    .collect(),
            ),
            Rule::other_field => {
                let text = self.next_text(&mut inner);
                name = Spanned::new(Cow::Owned(text.value), text.span);
                let mut value = None;
                let mut lines = Vec::new();
                for p in inner {
                    match p.as_rule() {
                        Rule::text => value = Some(self.text(p)),
                        _ => lines.push(self.next_text(&mut p.into_inner())),
                    }
                }
                FieldValue::Other { value, lines }
            }
            other => unreachable!("the grammar has no field rule {other:?}"),
        };
        Field { name, value, span }
    }

    fn next_text(&self, pairs: &mut pest::iterators::Pairs<Rule>) -> Spanned<String> {
        self.text(pairs.next().expect("grammar guarantees this token"))
    }

    fn quantities_of(&self, pairs: pest::iterators::Pairs<Rule>) -> Vec<Quantity> {
        pairs.map(|p| self.quantity(p)).collect()
    }

    fn quantity(&self, pair: Pair<Rule>) -> Quantity {
        // `resource` / `budget_time` / `budget_cost` are each one quantity.
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut parts = pair.into_inner();
        let first = parts.next().expect("quantity has parts");
        match rule {
            Rule::budget_time | Rule::budget_cost => {
                let word = if rule == Rule::budget_time {
                    "time"
                } else {
                    "cost"
                };
                Quantity {
                    name: Spanned::new(
                        word.to_owned(),
                        Span::new(span.start, span.start + word.len()),
                    ),
                    amount: self.text(first),
                }
            }
            _ => Quantity {
                name: self.text(first),
                amount: self.next_text(&mut parts),
            },
        }
    }

    fn body_of(&self, pair: Pair<Rule>) -> Code {
        match pair.as_rule() {
            Rule::block => self.block(pair),
            _ => self.expr(pair),
        }
    }
}
