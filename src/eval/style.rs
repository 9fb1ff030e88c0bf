//! How much a text reads like its author, without a model: the cosine of its character
//! 3–5-gram TF-IDF vector to the author's profile (the n-grams of their training text, weighted
//! by how few of their passages use them), and Burrows' Delta over the author's most frequent
//! words (z-scores against the spread of those words across 1,000-word segments of the author's
//! and the control text).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};

use unicode_segmentation::UnicodeSegmentation;

/// Character n-gram lengths of the profile.
const NGRAMS: std::ops::RangeInclusive<usize> = 3..=5;
/// Words of one segment when the spread of word frequencies is measured.
const SEGMENT_WORDS: usize = 1000;
/// Most frequent words Delta compares.
pub const DELTA_WORDS: usize = 150;
/// Pooled words below which Delta is known to be unstable (Eder 2015: about 2,500 words for
/// English prose).
pub const DELTA_STABLE_WORDS: usize = 2500;

/// A map with a fixed hasher: its order, and so the order of the sums over it, is the same in
/// every run (the standard one is seeded per process, and floating-point sums depend on order).
type Grams = HashMap<u64, f64, BuildHasherDefault<DefaultHasher>>;

fn key(gram: &[char]) -> u64 {
    let mut hasher = DefaultHasher::new();
    gram.hash(&mut hasher);
    hasher.finish()
}

/// Counts of the character n-grams of `text` (whitespace runs read as one space).
fn ngram_counts(text: &str) -> Grams {
    let chars: Vec<char> = text.split_whitespace().collect::<Vec<_>>().join(" ").chars().collect();
    let mut counts = Grams::default();
    for n in NGRAMS {
        for gram in chars.windows(n) {
            *counts.entry(key(gram)).or_insert(0.0) += 1.0;
        }
    }
    counts
}

/// The author's character n-gram profile.
pub struct Profile {
    idf: Grams,
    /// The idf of an n-gram none of the author's passages has.
    unseen_idf: f64,
    vector: Grams,
}

impl Profile {
    /// The profile of the author's `passages` (their training text).
    pub fn new<'a>(passages: impl IntoIterator<Item = &'a str>) -> Self {
        let mut document_frequency = Grams::default();
        let mut totals = Grams::default();
        let mut documents = 0usize;
        for passage in passages {
            documents += 1;
            for (gram, count) in ngram_counts(passage) {
                *document_frequency.entry(gram).or_insert(0.0) += 1.0;
                *totals.entry(gram).or_insert(0.0) += count;
            }
        }
        // scikit-learn's smoothed idf: every n-gram weighs at least 1.
        let n = documents as f64;
        let idf: Grams =
            document_frequency.into_iter().map(|(g, df)| (g, ((1.0 + n) / (1.0 + df)).ln() + 1.0)).collect();
        let unseen_idf = (1.0 + n).ln() + 1.0;
        let mut profile = Self { idf, unseen_idf, vector: Grams::default() };
        profile.vector = profile.weigh(totals);
        profile
    }

    fn weigh(&self, counts: Grams) -> Grams {
        let mut vector: Grams = counts
            .into_iter()
            .map(|(g, c)| (g, c * self.idf.get(&g).copied().unwrap_or(self.unseen_idf)))
            .collect();
        let norm = vector.values().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            vector.values_mut().for_each(|v| *v /= norm);
        }
        vector
    }

    /// The cosine of `text`'s TF-IDF vector to the profile: 0 (nothing shared) to 1.
    pub fn likeness(&self, text: &str) -> f64 {
        let vector = self.weigh(ngram_counts(text));
        vector.iter().map(|(g, v)| v * self.vector.get(g).copied().unwrap_or(0.0)).sum()
    }
}

/// Lower-cased words of a text.
pub fn words(text: &str) -> Vec<String> {
    text.unicode_words().map(str::to_lowercase).collect()
}

/// Relative frequencies of `vocabulary` in `words`.
fn frequencies(words: &[String], vocabulary: &[String]) -> Vec<f64> {
    let mut counts: HashMap<&str, f64> = HashMap::new();
    for word in words {
        *counts.entry(word.as_str()).or_insert(0.0) += 1.0;
    }
    let total = words.len().max(1) as f64;
    vocabulary.iter().map(|w| counts.get(w.as_str()).copied().unwrap_or(0.0) / total).collect()
}

/// Burrows' Delta to the author: the author's most frequent words, and their spread.
pub struct Delta {
    vocabulary: Vec<String>,
    author: Vec<f64>,
    mean: Vec<f64>,
    spread: Vec<f64>,
}

impl Delta {
    /// From the author's training text and the control text (both give the segments whose
    /// spread scales each word).
    pub fn new(author: &str, control: &str) -> Option<Self> {
        let author_words = words(author);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for word in &author_words {
            *counts.entry(word.as_str()).or_default() += 1;
        }
        let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let vocabulary: Vec<String> = ranked.iter().take(DELTA_WORDS).map(|(w, _)| w.to_string()).collect();
        let control_words = words(control);
        let segments: Vec<Vec<f64>> = author_words
            .chunks(SEGMENT_WORDS)
            .chain(control_words.chunks(SEGMENT_WORDS))
            .filter(|s| s.len() == SEGMENT_WORDS)
            .map(|s| frequencies(s, &vocabulary))
            .collect();
        if segments.len() < 3 || vocabulary.is_empty() {
            return None;
        }
        let n = segments.len() as f64;
        let mean: Vec<f64> =
            (0..vocabulary.len()).map(|i| segments.iter().map(|s| s[i]).sum::<f64>() / n).collect();
        let spread: Vec<f64> = (0..vocabulary.len())
            .map(|i| (segments.iter().map(|s| (s[i] - mean[i]).powi(2)).sum::<f64>() / (n - 1.0)).sqrt())
            .collect();
        let author = frequencies(&author_words, &vocabulary);
        Some(Self { vocabulary, author, mean, spread })
    }

    /// Delta of `text` to the author: the mean absolute difference of z-scores (lower is closer;
    /// two texts of one author are typically below 1).
    pub fn distance(&self, text: &str) -> f64 {
        let found = frequencies(&words(text), &self.vocabulary);
        let used: Vec<f64> = (0..self.vocabulary.len())
            .filter(|&i| self.spread[i] > 0.0)
            .map(|i| {
                ((found[i] - self.mean[i]) / self.spread[i]
                    - (self.author[i] - self.mean[i]) / self.spread[i])
                    .abs()
            })
            .collect();
        used.iter().sum::<f64>() / used.len().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTHOR: [&str; 3] = [
        "The borrow checker makes sure that references never outlive the data they point to.",
        "Ownership is Rust's most unique feature, and it enables Rust to make memory safety guarantees.",
        "Each value in Rust has an owner; when the owner goes out of scope, the value is dropped.",
    ];
    const OTHER: &str = "It is a truth universally acknowledged, that a single man in possession of a good \
        fortune, must be in want of a wife.";

    #[test]
    fn the_authors_own_kind_of_sentence_is_closer_to_the_profile_than_another_writers() {
        let profile = Profile::new(AUTHOR);
        let own =
            profile.likeness("When a reference outlives its owner, the borrow checker rejects the program.");
        let other = profile.likeness(OTHER);
        assert!(own > other + 0.05, "own {own}, other {other}");
        assert!((0.0..=1.0).contains(&own));
        assert_eq!(profile.likeness(""), 0.0);
    }

    #[test]
    fn delta_is_smaller_for_the_authors_text_than_for_the_control() {
        let author: String = (0..400).map(|i| AUTHOR[i % 3]).collect::<Vec<_>>().join(" ");
        let control: String = (0..400).map(|_| OTHER).collect::<Vec<_>>().join(" ");
        let delta = Delta::new(&author, &control).expect("enough segments");
        let own = delta.distance(&AUTHOR.join(" "));
        let other = delta.distance(&control[..2000]);
        assert!(own < other, "own {own}, other {other}");
        assert!(Delta::new("too short", "also short").is_none());
    }
}
