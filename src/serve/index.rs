//! The retrieval index a gateway holds in memory: every passage of a dataset revision with its
//! vector, searched exactly (one matrix-vector product over all vectors, no approximation) and
//! by BM25 over the passage text, the two rankings fused by reciprocal rank.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::embedding::bert::Parallelism;

use super::bm25::Bm25;
use crate::embedding::bert::matrix_vector;

/// Reciprocal rank fusion's constant (Cormack et al.): ranks past the first few count less.
const RRF_K: f32 = 60.0;
/// Each ranking contributes this many candidates per passage asked for (at least
/// [`MIN_CANDIDATES`]), so a passage ranked well by one method alone still reaches the fusion.
const CANDIDATES_PER_RESULT: usize = 5;
const MIN_CANDIDATES: usize = 50;
/// Below this many values the scan runs on the calling thread: spreading it costs more than
/// it saves.
const PARALLEL_SCAN_VALUES: usize = 2 << 20;

/// One retrievable passage.
#[derive(Debug, Clone)]
pub struct Passage {
    /// The chunk's id (`<document id>-<ordinal>`).
    pub chunk_id: String,
    /// Title of the document it comes from.
    pub title: Option<String>,
    /// Where the document was published.
    pub url: Option<String>,
    /// The passage.
    pub text: String,
}

/// A retrieved passage and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Position of the passage in the index.
    pub passage: usize,
    /// The fused score: the sum of 1/(60 + rank) over the rankings that found it.
    pub score: f32,
    /// Cosine similarity with the question, when the dense ranking found it.
    pub dense: Option<f32>,
    /// BM25 score, when the lexical ranking found it.
    pub lexical: Option<f32>,
}

/// Passages, their vectors (row-major, L2-normalised) and the BM25 index of their text.
pub struct Index {
    passages: Vec<Passage>,
    dimension: usize,
    vectors: Vec<f32>,
    bm25: Bm25,
}

impl Index {
    /// Builds the index; `vectors[i]` is the vector of `passages[i]`.
    pub fn new(passages: Vec<Passage>, vectors: Vec<Vec<f32>>) -> Result<Self, String> {
        if passages.len() != vectors.len() {
            return Err(format!("{} vectors for {} passages", vectors.len(), passages.len()));
        }
        let dimension = vectors.first().map_or(0, Vec::len);
        if let Some(row) = vectors.iter().position(|v| v.len() != dimension) {
            return Err(format!("vector {row} has {} values, not {dimension}", vectors[row].len()));
        }
        let flat: Vec<f32> = vectors.into_iter().flatten().collect();
        let bm25 = Bm25::new(passages.iter().map(|p| p.text.as_str()));
        Ok(Self { passages, dimension, vectors: flat, bm25 })
    }

    /// The passage at a hit's position.
    pub fn passage(&self, index: usize) -> &Passage {
        &self.passages[index]
    }

    /// The L2-normalised vector of the passage at `index`.
    pub fn vector(&self, index: usize) -> &[f32] {
        &self.vectors[index * self.dimension..(index + 1) * self.dimension]
    }

    /// How many passages the index holds.
    pub fn len(&self) -> usize {
        self.passages.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.passages.is_empty()
    }

    /// The dimension of its vectors (0 when empty).
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Approximate heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        let text: usize = self
            .passages
            .iter()
            .map(|p| {
                p.text.len()
                    + p.chunk_id.len()
                    + p.title.as_ref().map_or(0, String::len)
                    + p.url.as_ref().map_or(0, String::len)
            })
            .sum();
        text + self.vectors.len() * 4 + self.bm25.memory_bytes()
    }

    /// The `k` passages most similar to `query` (exact: every vector is scored), best first.
    pub fn dense(&self, query: &[f32], k: usize) -> Vec<(usize, f32)> {
        if self.passages.is_empty() || k == 0 || query.len() != self.dimension {
            return Vec::new();
        }
        let mut scores = vec![0f32; self.passages.len()];
        let threads = if self.vectors.len() >= PARALLEL_SCAN_VALUES { crate::parallel::cores() } else { 1 };
        // The scan is bound by memory bandwidth: each core streams its own share of the rows.
        let rows_per_thread = self.passages.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts =
                scores.chunks_mut(rows_per_thread).zip(self.vectors.chunks(rows_per_thread * self.dimension));
            for (scores, rows) in parts {
                scope.spawn(move || matrix_vector(rows, query, scores, Parallelism::None));
            }
        });
        top_k(scores.into_iter().enumerate(), k)
    }

    /// The `k` passages with the highest BM25 score for `question`, best first.
    pub fn lexical(&self, question: &str, k: usize) -> Vec<(usize, f32)> {
        self.bm25.search(question, k)
    }

    /// Hybrid search: the dense and lexical rankings fused by reciprocal rank, best first.
    pub fn search(&self, query: &[f32], question: &str, k: usize) -> Vec<Hit> {
        if k == 0 {
            return Vec::new();
        }
        let candidates = (k * CANDIDATES_PER_RESULT).max(MIN_CANDIDATES);
        // The two rankings run side by side: on a large index each takes milliseconds.
        let (dense, lexical) = if self.vectors.len() >= PARALLEL_SCAN_VALUES {
            rayon::join(|| self.dense(query, candidates), || self.lexical(question, candidates))
        } else {
            (self.dense(query, candidates), self.lexical(question, candidates))
        };
        fuse(&dense, &lexical, k)
    }
}

/// Reciprocal rank fusion of two rankings (best first), keeping the best `k`.
pub fn fuse(dense: &[(usize, f32)], lexical: &[(usize, f32)], k: usize) -> Vec<Hit> {
    let mut hits: Vec<Hit> = Vec::with_capacity(dense.len() + lexical.len());
    let mut position = std::collections::HashMap::with_capacity(hits.capacity());
    for (rank, &(passage, score)) in dense.iter().enumerate() {
        position.insert(passage, hits.len());
        hits.push(Hit {
            passage,
            score: 1.0 / (RRF_K + rank as f32 + 1.0),
            dense: Some(score),
            lexical: None,
        });
    }
    for (rank, &(passage, score)) in lexical.iter().enumerate() {
        let contribution = 1.0 / (RRF_K + rank as f32 + 1.0);
        match position.get(&passage) {
            Some(&i) => {
                hits[i].score += contribution;
                hits[i].lexical = Some(score);
            }
            None => {
                position.insert(passage, hits.len());
                hits.push(Hit { passage, score: contribution, dense: None, lexical: Some(score) });
            }
        }
    }
    // Ties (same fused score) go to the better dense similarity, then to the lower position,
    // so that the order is deterministic.
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.dense.unwrap_or(f32::MIN).total_cmp(&a.dense.unwrap_or(f32::MIN)))
            .then(a.passage.cmp(&b.passage))
    });
    hits.truncate(k);
    hits
}

/// A score in a min-heap: the heap's top is the worst of the best seen so far.
struct Scored(f32, usize);

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    // Reversed, so the standard max-heap keeps the lowest score (then the highest position)
    // on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// The `k` highest scores, best first (ties to the lower position).
pub fn top_k(scores: impl Iterator<Item = (usize, f32)>, k: usize) -> Vec<(usize, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Scored> = BinaryHeap::with_capacity(k + 1);
    for (index, score) in scores {
        if score.is_nan() {
            continue;
        }
        if heap.len() < k {
            heap.push(Scored(score, index));
        } else if let Some(worst) = heap.peek()
            && (score > worst.0 || (score == worst.0 && index < worst.1))
        {
            heap.pop();
            heap.push(Scored(score, index));
        }
    }
    // Ascending by `Ord` is best first, as `Ord` is reversed.
    heap.into_sorted_vec().into_iter().map(|Scored(score, index)| (index, score)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(text: &str) -> Passage {
        Passage { chunk_id: text.into(), title: None, url: None, text: text.into() }
    }

    #[test]
    fn top_k_keeps_the_best_in_order() {
        let scores = [0.1, 0.9, 0.5, 0.9, -1.0, f32::NAN, 0.7];
        assert_eq!(top_k(scores.into_iter().enumerate(), 3), vec![(1, 0.9), (3, 0.9), (6, 0.7)]);
        assert_eq!(top_k(scores.into_iter().enumerate(), 0), vec![]);
        assert_eq!(top_k(scores.into_iter().enumerate(), 100).len(), 6);
    }

    #[test]
    fn dense_search_is_exact() {
        let vectors = vec![vec![1.0, 0.0], vec![0.6, 0.8], vec![0.0, 1.0], vec![-1.0, 0.0]];
        let index = Index::new(["a", "b", "c", "d"].map(passage).to_vec(), vectors).unwrap();
        let hits = index.dense(&[0.0, 1.0], 2);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![2, 1]);
        assert!((hits[1].1 - 0.8).abs() < 1e-6);
    }

    #[test]
    fn fusion_rewards_agreement_and_keeps_lexical_only_hits() {
        let dense = [(0, 0.9), (1, 0.8), (2, 0.7)];
        let lexical = [(2, 7.0), (5, 3.0)];
        let hits = fuse(&dense, &lexical, 4);
        assert_eq!(hits.iter().map(|h| h.passage).collect::<Vec<_>>(), vec![2, 0, 1, 5]);
        assert_eq!(hits[0].lexical, Some(7.0));
        // 1 and 5 tie on rank; the dense similarity breaks the tie.
        assert_eq!(hits[3].dense, None);
    }

    #[test]
    fn mismatched_vectors_are_refused() {
        assert!(Index::new(vec![passage("a")], vec![]).is_err());
        assert!(Index::new(["a", "b"].map(passage).to_vec(), vec![vec![1.0], vec![1.0, 0.0]]).is_err());
    }
}
