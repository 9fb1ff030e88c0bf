//! What an evaluation reads of a dataset revision: its held-out samples (`instruct/test.jsonl`,
//! split by passage, so that no answer was trained on), the author's training answers (their
//! profile), and which chunks of the index each held-out passage came from.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::serve::index::Index;

/// A held-out sample: an instruction and the author's passage that answers it.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct Sample {
    /// The system prompt it was made with.
    pub system: String,
    pub instruction: String,
    /// The author's passage.
    pub answer: String,
}

/// Reads the conversations of an `instruct/*.jsonl` file; a line that is not one is an error
/// naming the line.
pub fn samples(name: &str, bytes: &[u8]) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: Value =
            serde_json::from_slice(line).map_err(|e| format!("{name} line {}: not JSON: {e}", number + 1))?;
        let messages = record["messages"]
            .as_array()
            .ok_or_else(|| format!("{name} line {}: no \"messages\" list", number + 1))?;
        let said = |role: &str| {
            messages
                .iter()
                .rev()
                .find(|m| m["role"] == role)
                .and_then(|m| m["content"].as_str())
                .map(str::to_string)
        };
        let (Some(instruction), Some(answer)) = (said("user"), said("assistant")) else {
            return Err(format!(
                "{name} line {}: a conversation needs a user and an assistant message",
                number + 1
            ));
        };
        samples.push(Sample { system: said("system").unwrap_or_default(), instruction, answer });
    }
    Ok(samples)
}

/// One sample per passage (a passage may answer several instructions), in a seeded order.
pub fn one_per_passage(samples: Vec<Sample>, seed: u64) -> Vec<Sample> {
    let mut seen = HashSet::new();
    let mut distinct: Vec<Sample> = samples.into_iter().filter(|s| seen.insert(s.answer.clone())).collect();
    fastrand::Rng::with_seed(seed).shuffle(&mut distinct);
    distinct
}

/// Words in a shingle: long enough that two passages sharing many are the same text.
const SHINGLE_WORDS: usize = 5;
/// Share of a chunk's shingles (or of the passage's) found in the other for them to be one text.
const SAME_TEXT: f64 = 0.5;

fn shingles(text: &str) -> HashSet<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let words: Vec<String> = super::style::words(text);
    words
        .windows(SHINGLE_WORDS)
        .map(|w| {
            let mut hasher = DefaultHasher::new();
            w.hash(&mut hasher);
            hasher.finish()
        })
        .collect()
}

/// Finds the chunks each passage came from: passages and chunks are cut from the same documents
/// by different rules, so a chunk is a passage's source when at least half of its five-word
/// shingles are in the passage, or half of the passage's are in it.
pub struct Sources {
    by_shingle: HashMap<u64, Vec<usize>>,
    sizes: Vec<usize>,
}

impl Sources {
    /// Indexes the chunks of `index`.
    pub fn new(index: &Index) -> Self {
        let mut by_shingle: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut sizes = Vec::with_capacity(index.len());
        for i in 0..index.len() {
            let set = shingles(&index.passage(i).text);
            sizes.push(set.len());
            for shingle in set {
                by_shingle.entry(shingle).or_default().push(i);
            }
        }
        Self { by_shingle, sizes }
    }

    /// The positions in the index of `passage`'s source chunks (none for a passage under five
    /// words).
    pub fn of(&self, passage: &str) -> Vec<usize> {
        let own = shingles(passage);
        let mut shared: HashMap<usize, usize> = HashMap::new();
        for shingle in &own {
            for &chunk in self.by_shingle.get(shingle).map(Vec::as_slice).unwrap_or_default() {
                *shared.entry(chunk).or_default() += 1;
            }
        }
        let mut found: Vec<usize> = shared
            .into_iter()
            .filter(|&(chunk, n)| {
                n as f64 >= SAME_TEXT * self.sizes[chunk] as f64 || n as f64 >= SAME_TEXT * own.len() as f64
            })
            .map(|(chunk, _)| chunk)
            .collect();
        found.sort_unstable();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::index::Passage;

    fn passage(id: &str, text: &str) -> Passage {
        Passage { chunk_id: id.into(), title: None, url: None, text: text.into() }
    }

    #[test]
    fn samples_are_read_and_a_broken_line_is_named() {
        let text = b"{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\"A\"}]}\n\n";
        let read = samples("test.jsonl", text).unwrap();
        assert_eq!(read, vec![Sample { system: "S".into(), instruction: "Q".into(), answer: "A".into() }]);
        let error = samples("test.jsonl", b"{\"messages\":[]}\nnot json").unwrap_err();
        assert!(error.contains("line 1") && error.contains("user and an assistant"), "{error}");
        assert!(samples("test.jsonl", b"not json").unwrap_err().contains("line 1: not JSON"));
    }

    #[test]
    fn a_passage_finds_the_chunks_it_was_cut_from_and_not_others() {
        let first = "Ownership is a set of rules that govern how a Rust program manages memory and every value has an owner.";
        let second = "When the owner goes out of scope the value will be dropped and its memory is returned to the allocator.";
        let other = "Closures are anonymous functions you can save in a variable or pass as arguments to other functions.";
        let vectors = vec![vec![1.0, 0.0]; 3];
        let index =
            Index::new(vec![passage("a-0", first), passage("a-1", second), passage("b-0", other)], vectors)
                .unwrap();
        let sources = Sources::new(&index);
        assert_eq!(sources.of(&format!("{first} {second}")), vec![0, 1]);
        assert_eq!(sources.of(second), vec![1]);
        assert!(sources.of("Too short.").is_empty());
        let repeated = one_per_passage(
            vec![
                Sample { system: String::new(), instruction: "1".into(), answer: "x".into() },
                Sample { system: String::new(), instruction: "2".into(), answer: "x".into() },
            ],
            3,
        );
        assert_eq!(repeated.len(), 1);
    }
}
