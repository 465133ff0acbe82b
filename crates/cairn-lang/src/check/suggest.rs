//! "Did you mean …?" for misspelt ids, fields and capabilities.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

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

/// Plans with at most this many ids compare every id with a misspelt one
/// (as [`closest`] does).
const SCAN_ALL: usize = 256;
/// The most ids compared with one misspelt id in a larger plan.
const MAX_CANDIDATES: usize = 256;

/// A plan's ids, for "did you mean" on each of many misspelt references.
///
/// Comparing every id with every misspelt one costs ids × misses: 8,000
/// unknown `needs:` in an 8,000-step plan was 64 million comparisons. In a
/// plan with more than [`SCAN_ALL`] ids, only ids that share a one-deletion
/// variant with the word (the word or an id with one character left out:
/// one insertion, deletion, substitution or swap of neighbours apart) are
/// compared, at most [`MAX_CANDIDATES`] of them, found through an index
/// built once, on the first miss.
pub struct Ids<'a> {
    ids: Vec<&'a str>,
    /// Hash of each one-deletion variant → the ids that have it.
    index: Option<HashMap<u64, Vec<u32>>>,
}

impl<'a> Ids<'a> {
    pub fn new(ids: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            ids: ids.into_iter().collect(),
            index: None,
        }
    }

    /// The id closest to `word`, if one is close enough to be a typo.
    pub fn closest(&mut self, word: &str) -> Option<&'a str> {
        if self.ids.len() <= SCAN_ALL {
            return closest(word, self.ids.iter().copied());
        }
        let ids = &self.ids;
        let index = self.index.get_or_insert_with(|| {
            let mut index: HashMap<u64, Vec<u32>> = HashMap::with_capacity(ids.len() * 8);
            for (i, id) in ids.iter().enumerate() {
                deletions(id, |key| index.entry(key).or_default().push(i as u32));
            }
            index
        });
        let mut candidates = Vec::new();
        deletions(word, |key| {
            if let Some(found) = index.get(&key) {
                candidates.extend_from_slice(found);
            }
        });
        candidates.sort_unstable();
        candidates.dedup();
        candidates.truncate(MAX_CANDIDATES);
        closest(word, candidates.into_iter().map(|i| ids[i as usize]))
    }

    /// `Some("did you mean `x`?")` when there is a close id.
    pub fn did_you_mean(&mut self, word: &str, wrap: impl Fn(&str) -> String) -> Option<String> {
        self.closest(word)
            .map(|c| format!("did you mean {}?", wrap(c)))
    }
}

/// Calls `f` with the hash of `word` and of `word` with each one character
/// left out.
fn deletions(word: &str, mut f: impl FnMut(u64)) {
    let hash = |s: &str| {
        let mut h = DefaultHasher::new();
        s.hash(&mut h);
        h.finish()
    };
    f(hash(word));
    let mut variant = String::with_capacity(word.len());
    for (at, c) in word.char_indices() {
        variant.clear();
        variant.push_str(&word[..at]);
        variant.push_str(&word[at + c.len_utf8()..]);
        f(hash(&variant));
    }
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

    #[test]
    fn large_plans_find_typos_through_the_index() {
        let names: Vec<String> = (0..5_000).map(|i| format!("step-{i}")).collect();
        let mut ids = Ids::new(names.iter().map(String::as_str));
        assert_eq!(ids.closest("stpe-42"), Some("step-42"));
        assert_eq!(ids.closest("step-4x2"), Some("step-42"));
        assert_eq!(ids.closest("sep-4999"), Some("step-4999"));
        assert_eq!(ids.closest("zzzzzzzz"), None);
        let small = ["check-db", "fix-pool"];
        assert_eq!(Ids::new(small).closest("chek-db"), Some("check-db"));
    }
}
