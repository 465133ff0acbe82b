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
    let mut document = Document::default();
    // The whole file in one go is the fast path; only a file with an error
    // is parsed again item by item, to report every broken item at once.
    if tabs.is_empty() {
        if let Ok(mut pairs) = PlanParser::parse(Rule::file, text) {
            let file = pairs.next().expect("file always yields a pair");
            for item in file.into_inner().filter(|p| p.as_rule() == Rule::item) {
                document.items.push(build::item(item, 0, text));
            }
            return (document, diagnostics);
        }
    }
    for chunk in lines::item_chunks(text) {
        let chunk_text = &text[chunk.start..chunk.end];
        match PlanParser::parse(Rule::item_only, chunk_text) {
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
    (document, diagnostics)
}

fn overlaps(a: Span, b: Span) -> bool {
    a.start < b.end && b.start < a.end
}
