//! Line-level scanning done before pest: tabs in indentation, and where items start.

use crate::span::Span;

/// Spans of tabs in the leading whitespace of any line.
pub fn tab_indents(text: &str) -> Vec<Span> {
    let mut tabs = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        for (i, b) in line.bytes().enumerate() {
            match b {
                b'\t' => tabs.push(Span::new(offset + i, offset + i + 1)),
                b' ' => {}
                _ => break,
            }
        }
        offset += line.len();
    }
    tabs
}

/// Splits the text into one chunk per item: each chunk starts at a line that
/// begins at column 0 with something other than a comment. Leading blank and
/// comment lines belong to the first chunk; an item's trailing ones to it.
pub fn item_chunks(text: &str) -> Vec<Span> {
    let mut starts = Vec::new();
    let mut meaningful = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        match line.as_bytes().first() {
            Some(b' ' | b'\t') => {
                meaningful |= !line.trim_start().is_empty() && !line.trim_start().starts_with('#');
            }
            Some(b'#' | b'\r' | b'\n') | None => {}
            Some(_) => {
                starts.push(offset);
                meaningful = true;
            }
        }
        offset += line.len();
    }
    if !meaningful {
        return Vec::new();
    }
    if starts.first() != Some(&0) {
        // Whatever comes before the first item is parsed with it, so stray
        // indented lines at the top are reported rather than dropped.
        if starts.is_empty() {
            starts.push(0);
        } else {
            starts[0] = 0;
        }
    }
    let ends = starts.iter().skip(1).copied().chain([text.len()]);
    starts
        .iter()
        .zip(ends)
        .map(|(&s, e)| Span::new(s, e))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_start_at_column_zero_items() {
        let text = "# intro\nplan p \"P\"\n  seed: 1\n# note\ntask a \"A\"\n  run: 1\n";
        let chunks = item_chunks(text);
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            &text[chunks[0].start..chunks[0].end],
            "# intro\nplan p \"P\"\n  seed: 1\n# note\n"
        );
        assert_eq!(
            &text[chunks[1].start..chunks[1].end],
            "task a \"A\"\n  run: 1\n"
        );
    }

    #[test]
    fn blank_and_comment_only_text_has_no_chunks() {
        assert!(item_chunks("").is_empty());
        assert!(item_chunks("# just a comment\n\n   \n").is_empty());
        assert_eq!(item_chunks("  stray\n").len(), 1);
    }

    #[test]
    fn tabs_are_found_only_in_indentation() {
        let tabs = tab_indents("a\tb\n \tc\n\t\n");
        assert_eq!(tabs, vec![Span::new(5, 6), Span::new(8, 9)]);
    }
}
