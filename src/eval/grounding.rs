//! Answers from the author's writing: whether retrieval finds each held-out instruction's source
//! passage (recall@k, MRR), and how many sentences of an answer a retrieved passage supports
//! (the best cosine of the sentence to one of the passages the gateway used, against a threshold
//! set on the dataset itself: the one that best tells the held-out passages' own sentences,
//! matched with their source chunks, from the same sentences matched with chunks of other
//! documents).

use serde::Serialize;
use unicode_segmentation::UnicodeSegmentation;

use crate::embedding::Embedder;
use crate::serve::index::Index;

/// The ks of recall@k.
pub const RECALL_AT: [usize; 4] = [1, 3, 5, 10];
/// Words a sentence needs to be checked (shorter ones carry no claim to support).
const SENTENCE_WORDS: usize = 4;
/// Held-out passages whose sentences set the threshold.
const CALIBRATION_PASSAGES: usize = 48;

/// Retrieval of the held-out instructions' sources.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retrieval {
    /// The ks.
    pub k: Vec<usize>,
    /// Share of instructions whose source is in the top k, for each k.
    pub recall: Vec<f64>,
    /// Mean reciprocal rank of the first source chunk (0 when not in the top 10).
    pub mrr: f64,
    /// Instructions measured.
    pub questions: usize,
    /// Held-out samples left out because no chunk of the index is their passage's text.
    pub without_source: usize,
}

/// Searches as the gateway does (hybrid, fused) for each `(instruction, source chunks)`.
pub fn retrieval(
    index: &Index,
    embedder: &Embedder,
    questions: &[(&str, Vec<usize>)],
) -> Result<Retrieval, String> {
    let measured: Vec<&(&str, Vec<usize>)> = questions.iter().filter(|(_, s)| !s.is_empty()).collect();
    let texts: Vec<&str> = measured.iter().map(|(q, _)| *q).collect();
    let vectors = embedder.embed(&texts, 16).map_err(|e| format!("embedding the instructions: {e}"))?;
    let deepest = *RECALL_AT.last().expect("ks");
    let mut found_at = Vec::with_capacity(measured.len());
    for ((question, sources), vector) in measured.iter().zip(&vectors) {
        let hits = index.search(vector, question, deepest);
        found_at.push(hits.iter().position(|h| sources.contains(&h.passage)));
    }
    let n = found_at.len().max(1) as f64;
    let recall = RECALL_AT
        .iter()
        .map(|&k| found_at.iter().filter(|r| r.is_some_and(|r| r < k)).count() as f64 / n)
        .collect();
    let mrr = found_at.iter().map(|r| r.map_or(0.0, |r| 1.0 / (r + 1) as f64)).sum::<f64>() / n;
    Ok(Retrieval {
        k: RECALL_AT.to_vec(),
        recall,
        mrr,
        questions: found_at.len(),
        without_source: questions.len() - found_at.len(),
    })
}

/// The sentences of `text` long enough to check.
pub fn sentences(text: &str) -> Vec<&str> {
    text.unicode_sentences().map(str::trim).filter(|s| s.unicode_words().count() >= SENTENCE_WORDS).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x * y) as f64).sum()
}

/// The best cosine of each sentence vector to any of `passages` (index positions).
fn best_support(sentences: &[Vec<f32>], index: &Index, passages: &[usize]) -> Vec<f64> {
    sentences
        .iter()
        .map(|s| passages.iter().map(|&p| cosine(s, index.vector(p))).fold(f64::NEG_INFINITY, f64::max))
        .collect()
}

/// The support threshold, and how well it separates on the sentences it was set on.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Threshold {
    /// Cosine at or above which a sentence counts as supported.
    pub threshold: f64,
    /// Share of the held-out passages' sentences it counts as supported by their source.
    pub true_positive_rate: f64,
    /// Share of the same sentences it counts as supported by chunks of other documents.
    pub false_positive_rate: f64,
    /// Sentences it was set on.
    pub sentences: usize,
}

/// Sets the threshold on held-out passages and their source chunks: each sentence's best cosine
/// with its sources (supported) and with three chunks of other documents (not), and the
/// threshold that maximises the difference of the two rates (Youden's J).
pub fn calibrate(
    index: &Index,
    embedder: &Embedder,
    passages: &[(&str, Vec<usize>)],
    seed: u64,
) -> Result<Option<Threshold>, String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let document = |i: usize| index.passage(i).chunk_id.rsplit_once('-').map_or("", |(d, _)| d).to_string();
    let mut positives = Vec::new();
    let mut negatives = Vec::new();
    for (text, sources) in passages.iter().filter(|(_, s)| !s.is_empty()).take(CALIBRATION_PASSAGES) {
        let own: Vec<String> = sources.iter().map(|&s| document(s)).collect();
        let others: Vec<usize> = (0..64)
            .map(|_| rng.usize(..index.len()))
            .filter(|&i| !own.contains(&document(i)))
            .take(3)
            .collect();
        let said = sentences(text);
        if said.is_empty() || others.is_empty() {
            continue;
        }
        let vectors = embedder.embed(&said, 16).map_err(|e| format!("embedding sentences: {e}"))?;
        positives.extend(best_support(&vectors, index, sources));
        negatives.extend(best_support(&vectors, index, &others));
    }
    if positives.is_empty() || negatives.is_empty() {
        return Ok(None);
    }
    let rate =
        |values: &[f64], t: f64| values.iter().filter(|&&v| v >= t).count() as f64 / values.len() as f64;
    let mut best: Option<Threshold> = None;
    for step in 0..=100 {
        let t = step as f64 / 100.0;
        let (tpr, fpr) = (rate(&positives, t), rate(&negatives, t));
        if best.as_ref().is_none_or(|b| tpr - fpr > b.true_positive_rate - b.false_positive_rate) {
            best = Some(Threshold {
                threshold: t,
                true_positive_rate: tpr,
                false_positive_rate: fpr,
                sentences: positives.len(),
            });
        }
    }
    Ok(best)
}

/// The share of `answer`'s sentences supported by `passages`; `None` for an answer with no
/// sentence to check or no passage.
pub fn supported_share(
    answer: &str,
    passages: &[usize],
    index: &Index,
    embedder: &Embedder,
    threshold: f64,
) -> Result<Option<f64>, String> {
    let said = sentences(answer);
    if said.is_empty() || passages.is_empty() {
        return Ok(None);
    }
    let vectors = embedder.embed(&said, 16).map_err(|e| format!("embedding an answer's sentences: {e}"))?;
    let support = best_support(&vectors, index, passages);
    Ok(Some(support.iter().filter(|&&s| s >= threshold).count() as f64 / support.len() as f64))
}

/// The cosine of each text to the mean vector of `passages` (the author's writing, as the
/// dataset's embedding model sees it).
pub fn centroid_similarity(
    texts: &[&str],
    passages: impl Iterator<Item = usize>,
    index: &Index,
    embedder: &Embedder,
) -> Result<Vec<f64>, String> {
    let mut centroid = vec![0f64; index.dimension()];
    for p in passages {
        for (c, v) in centroid.iter_mut().zip(index.vector(p)) {
            *c += *v as f64;
        }
    }
    let norm = centroid.iter().map(|c| c * c).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
    let vectors = embedder.embed(texts, 16).map_err(|e| format!("embedding the answers: {e}"))?;
    Ok(vectors
        .iter()
        .map(|v| v.iter().zip(&centroid).map(|(a, c)| *a as f64 * c).sum::<f64>() / norm)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_too_short_to_claim_anything_are_not_checked() {
        let text = "Yes. Ownership moves the value into the function. Done! The borrow checker then rejects the use.";
        assert_eq!(
            sentences(text),
            vec!["Ownership moves the value into the function.", "The borrow checker then rejects the use."]
        );
    }
}
