//! Stage 1, syntax: plan text → [`ast::Document`] with spans, or syntax diagnostics.

pub mod ast;
mod build;
mod error;
pub mod grammar;
mod lines;

use std::sync::Arc;

use pest::Parser;

use crate::diagnostic::{Code, Diagnostic};
use crate::source::Source;
use crate::span::Span;
use ast::Document;
use grammar::{PlanParser, Rule};

/// Parses a whole file. Items are parsed one by one, so one broken item does
/// not hide problems in the others; the document holds the items that parsed.
pub fn parse(source: &Arc<Source>) -> (Document, Vec<Diagnostic>) {
    let text = source.text();
    let mut diagnostics = Vec::new();
    let tabs = lines::tab_indents(text);
    for tab in &tabs {
        diagnostics.push(
            Diagnostic::error(Code::TabIndent, source, "tab used for indentation")
                .label(*tab, "tab here")
                .help("indent with spaces; cairn reads tabs as an error rather than guess their width"),
        );
    }
    let chunks = lines::item_chunks(text);
    let batches = batches(&chunks);
    // Batches are independent, so big files are parsed on every core; the
    // results are joined in file order, so output does not depend on timing.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(batches.len());
    let parts: Vec<(Document, Vec<Diagnostic>)> = if workers > 1 {
        let per_worker = batches.len().div_ceil(workers);
        std::thread::scope(|scope| {
            let handles: Vec<_> = batches
                .chunks(per_worker)
                .map(|group| scope.spawn(|| parse_batches(source, group, &tabs)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("parsing never panics"))
                .collect()
        })
    } else {
        vec![parse_batches(source, &batches, &tabs)]
    };
    let mut document = Document::default();
    for (part, mut part_diagnostics) in parts {
        document.items.extend(part.items);
        diagnostics.append(&mut part_diagnostics);
    }
    (document, diagnostics)
}

/// Groups item chunks into runs of about [`BATCH`] bytes.
fn batches(chunks: &[Span]) -> Vec<&[Span]> {
    let mut out = Vec::new();
    let mut rest = chunks;
    while !rest.is_empty() {
        let mut len = 1;
        while len < rest.len() && rest[len - 1].end - rest[0].start < BATCH {
            len += 1;
        }
        let (batch, tail) = rest.split_at(len);
        out.push(batch);
        rest = tail;
    }
    out
}

/// Parses batches of items with one pest call each: one call per item costs
/// a parser set-up each, one call for a huge file grows a huge token queue.
/// A batch with an error is parsed again item by item, so every broken item
/// is reported.
fn parse_batches(
    source: &Arc<Source>,
    batches: &[&[Span]],
    tabs: &[Span],
) -> (Document, Vec<Diagnostic>) {
    let text = source.text();
    let mut document = Document::default();
    let mut diagnostics = Vec::new();
    for batch in batches {
        let span = Span::new(batch[0].start, batch[batch.len() - 1].end);
        let clean = !tabs.iter().any(|t| overlaps(*t, span));
        match PlanParser::parse(Rule::file, &text[span.start..span.end]) {
            Ok(mut pairs) if clean => {
                let file = pairs.next().expect("file always yields a pair");
                for item in file.into_inner().filter(|p| p.as_rule() == Rule::item) {
                    document.items.push(build::item(item, span.start, text));
                }
            }
            _ => {
                for &chunk in batch.iter() {
                    parse_item(source, chunk, tabs, &mut document, &mut diagnostics);
                }
            }
        }
    }
    (document, diagnostics)
}

/// Bytes of source parsed per pest call.
const BATCH: usize = 64 * 1024;

/// Parses one item chunk on its own, for its diagnostic if it is broken.
fn parse_item(
    source: &Arc<Source>,
    chunk: Span,
    tabs: &[Span],
    document: &mut Document,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let text = source.text();
    match PlanParser::parse(Rule::item_only, &text[chunk.start..chunk.end]) {
        Ok(mut pairs) => {
            let top = pairs.next().expect("item_only always yields a pair");
            if let Some(item) = top.into_inner().find(|p| p.as_rule() == Rule::item) {
                document.items.push(build::item(item, chunk.start, text));
            }
        }
        // The tab diagnostic already explains a chunk that has one.
        Err(_) if tabs.iter().any(|t| overlaps(*t, chunk)) => {}
        Err(err) => diagnostics.push(error::syntax(source, chunk, err)),
    }
}

fn overlaps(a: Span, b: Span) -> bool {
    a.start < b.end && b.start < a.end
}
