//! BM25 over passage text (Okapi, k1 = 1.2, b = 0.75), with an inverted index: what dense
//! retrieval misses (names, version numbers, code identifiers such as `serde_json` or
//! `HashMap::new`) is found by its exact terms.

use std::collections::HashMap;

use super::index::top_k;

const K1: f32 = 1.2;
const B: f32 = 0.75;

/// Words too common to say anything about a passage; left out of the index and of queries.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "how", "i", "in", "is", "it", "of", "on",
    "or", "that", "the", "this", "to", "was", "what", "with", "you", "your", "do", "does",
];

/// An inverted index: per term, the passages holding it and how often.
pub struct Bm25 {
    terms: HashMap<String, u32>,
    postings: Vec<Postings>,
    lengths: Vec<u32>,
    average_length: f32,
}

#[derive(Default)]
struct Postings {
    passages: Vec<u32>,
    counts: Vec<u16>,
}

impl Bm25 {
    /// Indexes the texts; passage `i` is the `i`-th text.
    pub fn new<'a>(texts: impl Iterator<Item = &'a str>) -> Self {
        let mut terms: HashMap<String, u32> = HashMap::new();
        let mut postings: Vec<Postings> = Vec::new();
        let mut lengths = Vec::new();
        let mut counts: HashMap<u32, u16> = HashMap::new();
        for (passage, text) in texts.enumerate() {
            counts.clear();
            let mut length = 0u32;
            for_each_term(text, |term| {
                length += 1;
                let id = match terms.get(term) {
                    Some(&id) => id,
                    None => {
                        let id = postings.len() as u32;
                        terms.insert(term.to_string(), id);
                        postings.push(Postings::default());
                        id
                    }
                };
                let count = counts.entry(id).or_default();
                *count = count.saturating_add(1);
            });
            for (&id, &count) in &counts {
                postings[id as usize].passages.push(passage as u32);
                postings[id as usize].counts.push(count);
            }
            lengths.push(length);
        }
        for list in &mut postings {
            list.passages.shrink_to_fit();
            list.counts.shrink_to_fit();
        }
        let total: u64 = lengths.iter().map(|&l| u64::from(l)).sum();
        let average_length =
            if lengths.is_empty() { 1.0 } else { (total as f32 / lengths.len() as f32).max(1.0) };
        Self { terms, postings, lengths, average_length }
    }

    /// The `k` best passages for `query`, best first; passages sharing no term are left out.
    pub fn search(&self, query: &str, k: usize) -> Vec<(usize, f32)> {
        let mut query_terms: Vec<u32> = Vec::new();
        for_each_term(query, |term| {
            if let Some(&id) = self.terms.get(term)
                && !query_terms.contains(&id)
            {
                query_terms.push(id);
            }
        });
        if query_terms.is_empty() || k == 0 {
            return Vec::new();
        }
        let n = self.lengths.len() as f32;
        // One score per passage in a flat array: common terms have postings as long as the
        // corpus, and a hash map per posting costs more than the arithmetic.
        let mut scores = vec![0f32; self.lengths.len()];
        for id in query_terms {
            let list = &self.postings[id as usize];
            let df = list.passages.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for (&passage, &count) in list.passages.iter().zip(&list.counts) {
                let tf = f32::from(count);
                let norm = K1 * (1.0 - B + B * self.lengths[passage as usize] as f32 / self.average_length);
                scores[passage as usize] += idf * tf * (K1 + 1.0) / (tf + norm);
            }
        }
        top_k(scores.into_iter().enumerate().filter(|(_, s)| *s > 0.0), k)
    }

    /// Approximate heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        let postings: usize =
            self.postings.iter().map(|p| p.passages.capacity() * 4 + p.counts.capacity() * 2 + 48).sum();
        let terms: usize = self.terms.keys().map(|t| t.len() + 32).sum();
        postings + terms + self.lengths.capacity() * 4
    }
}

/// Calls `visit` with each term of `text`, lower-cased: words of letters, digits and `_`, also
/// joined by `.`, `:` or `-` between letters or digits (`serde_json`, `1.75.0`,
/// `hashmap::new`, `x86-64`), then each such compound's parts on their own.
fn for_each_term(text: &str, mut visit: impl FnMut(&str)) {
    let lower = text.to_lowercase();
    let bytes = lower.as_bytes();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut chars = lower.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if !is_word(c) {
            continue;
        }
        let mut end = start + c.len_utf8();
        let mut compound = false;
        while let Some(&(i, c)) = chars.peek() {
            if is_word(c) {
                end = i + c.len_utf8();
                chars.next();
            } else if matches!(c, '.' | ':' | '-')
                && lower[i + 1..].chars().next().is_some_and(|n| is_word(n) || (c == ':' && n == ':'))
            {
                // `::` joins too: skip both colons when a word follows.
                compound = true;
                chars.next();
                if c == ':' && bytes.get(i + 1) == Some(&b':') {
                    chars.next();
                }
            } else {
                break;
            }
        }
        let word = &lower[start..end];
        if compound || word.contains('_') {
            emit(word, &mut visit);
            for part in word.split(|c: char| !c.is_alphanumeric()).filter(|p| !p.is_empty()) {
                emit(part, &mut visit);
            }
        } else {
            emit(word, &mut visit);
        }
    }
}

fn emit(term: &str, visit: &mut impl FnMut(&str)) {
    let term = term.trim_end_matches([':', '.', '-']);
    if !term.is_empty() && !STOP_WORDS.contains(&term) {
        visit(term);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_term(text, |t| out.push(t.to_string()));
        out
    }

    #[test]
    fn identifiers_versions_and_paths_are_terms_with_their_parts() {
        assert_eq!(terms("Use serde_json!"), ["use", "serde_json", "serde", "json"]);
        assert_eq!(
            terms("HashMap::new() in Rust 1.75.0."),
            ["hashmap::new", "hashmap", "new", "rust", "1.75.0", "1", "75", "0"]
        );
        assert_eq!(terms("The end. Next"), ["end", "next"]);
        assert_eq!(terms("Ünïcode wörds"), ["ünïcode", "wörds"]);
    }

    #[test]
    fn rare_exact_terms_rank_first() {
        let texts = [
            "Ownership rules keep memory safe without a garbage collector.",
            "The borrow checker enforces ownership rules at compile time.",
            "Call tokio::spawn_blocking for CPU-heavy work inside async code.",
        ];
        let index = Bm25::new(texts.iter().copied());
        let hits = index.search("when should I use spawn_blocking?", 3);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0, 2);
        let hits = index.search("ownership rules", 3);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>().len(), 2);
        assert!(index.search("the of and", 3).is_empty());
    }
}
