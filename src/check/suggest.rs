//! "Did you mean …?" for misspelt ids, fields and capabilities.

/// The closest candidate to `word`, if one is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `Some("did you mean `x`?")` when there is a close candidate.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    wrap: impl Fn(&str) -> String,
) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean {}?", wrap(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_only() {
        assert_eq!(closest("need", ["needs", "input", "run"]), Some("needs"));
        assert_eq!(
            closest("chek-db", ["check-db", "fix-pool"]),
            Some("check-db")
        );
        assert_eq!(closest("zzz", ["needs", "input"]), None);
    }
}
