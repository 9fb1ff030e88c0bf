//! Cleaning: normalised text, boilerplate and tracking junk removed, exact and near-duplicate
//! documents dropped (MinHash over word shingles, with LSH banding), and documents below a minimum length
//! dropped.

use std::collections::HashSet;

use super::document::Document;
pub use crate::contract::build_report::CleanStats;
use crate::hashing::sha256_hex;

/// Documents shorter than this, after cleaning, are dropped.
pub const MIN_DOCUMENT_CHARS: usize = 80;
/// Documents whose word-shingle sets overlap at least this much (Jaccard) are near-duplicates.
const NEAR_DUPLICATE_SIMILARITY: f64 = 0.8;

/// Lines that are never the author's writing.
fn is_boilerplate(line: &str) -> bool {
    let lower = line.trim().to_lowercase();
    const EXACT: &[&str] = &[
        "share",
        "subscribe",
        "subscribe now",
        "share this post",
        "leave a comment",
        "like",
        "comment",
        "restack",
        "read more",
        "sign up",
        "sign in",
        "log in",
        "previous",
        "next",
        "back to top",
        "table of contents",
    ];
    const STARTS: &[&str] = &[
        "all rights reserved",
        "©",
        "copyright ©",
        "thanks for reading",
        "subscribe to ",
        "share this",
        "follow me on",
        "this post is public so feel free to share",
        "cookie",
        "we use cookies",
        "click here to",
    ];
    EXACT.contains(&lower.trim_matches(|c: char| !c.is_alphanumeric() && c != ' '))
        || STARTS.iter().any(|s| lower.starts_with(s))
}

/// Drops `utm_*`, `fbclid`, `gclid`, `mc_*` and `ref` query parameters from every URL.
fn strip_tracking(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("http") {
        out.push_str(&rest[..start]);
        let candidate = &rest[start..];
        let mut end = candidate
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | ']' | '>' | '"' | '\''))
            .unwrap_or(candidate.len());
        // Sentence punctuation after a URL is not part of it.
        while end > 0 && candidate[..end].ends_with(['.', ',', ';', ':', '!', '?']) {
            end -= 1;
        }
        let url = &candidate[..end];
        match url.split_once('?') {
            Some((base, query)) if base.starts_with("http://") || base.starts_with("https://") => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|p| {
                        let key = p.split('=').next().unwrap_or_default().to_ascii_lowercase();
                        !(key.starts_with("utm_")
                            || key.starts_with("mc_")
                            || matches!(key.as_str(), "fbclid" | "gclid" | "ref" | "ref_src"))
                    })
                    .collect();
                out.push_str(base);
                if !kept.is_empty() {
                    out.push('?');
                    out.push_str(&kept.join("&"));
                }
            }
            _ => out.push_str(url),
        }
        rest = &candidate[end..];
    }
    out.push_str(rest);
    out
}

/// Normalises a document's text: line endings, invisible characters, boilerplate lines,
/// tracking parameters, runs of blank lines and trailing spaces.
pub fn normalise(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text: String = text
        .chars()
        .filter(|c| !matches!(c, '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{feff}' | '\u{00ad}'))
        .map(|c| if c == '\u{a0}' { ' ' } else { c })
        .collect();
    let text = strip_tracking(&text);
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && is_boilerplate(line) {
            continue;
        }
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_string()
}

const MINHASH_PERMUTATIONS: usize = 64;
const LSH_BANDS: usize = 16;
const LSH_ROWS: usize = MINHASH_PERMUTATIONS / LSH_BANDS;

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A MinHash signature of the text's 3-word shingles: the fraction of equal positions between
/// two signatures estimates the Jaccard similarity of their shingle sets.
fn minhash(text: &str) -> [u64; MINHASH_PERMUTATIONS] {
    use std::hash::{Hash, Hasher};
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut signature = [u64::MAX; MINHASH_PERMUTATIONS];
    for shingle in words.windows(3.min(words.len()).max(1)) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        shingle.hash(&mut hasher);
        let base = hasher.finish();
        for (i, slot) in signature.iter_mut().enumerate() {
            *slot = (*slot).min(splitmix64(base ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)));
        }
    }
    signature
}

fn similarity(a: &[u64; MINHASH_PERMUTATIONS], b: &[u64; MINHASH_PERMUTATIONS]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / MINHASH_PERMUTATIONS as f64
}

/// Cleans documents: normalises each, then drops the too short, the exact duplicates and the
/// near-duplicates (the first in id order stays, so the result does not depend on the order
/// sources were read in).
pub fn clean(mut documents: Vec<Document>) -> (Vec<Document>, CleanStats) {
    let mut stats = CleanStats { input: documents.len(), ..Default::default() };
    documents.sort_by(|a, b| a.id.cmp(&b.id));
    let mut exact = HashSet::new();
    let mut signatures: Vec<[u64; MINHASH_PERMUTATIONS]> = Vec::new();
    // LSH: documents sharing a band of their signature are candidates; only those are compared.
    let mut bands: std::collections::HashMap<(usize, [u64; LSH_ROWS]), Vec<usize>> =
        std::collections::HashMap::new();
    let mut kept = Vec::new();
    for mut document in documents {
        document.text = normalise(&document.text);
        if document.text.chars().count() < MIN_DOCUMENT_CHARS {
            stats.too_short += 1;
            continue;
        }
        let canonical: String = document.text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        if !exact.insert(sha256_hex(canonical.as_bytes())) {
            stats.exact_duplicates += 1;
            continue;
        }
        let signature = minhash(&canonical);
        let keys: Vec<(usize, [u64; LSH_ROWS])> = (0..LSH_BANDS)
            .map(|b| (b, signature[b * LSH_ROWS..(b + 1) * LSH_ROWS].try_into().expect("band")))
            .collect();
        let near = keys
            .iter()
            .filter_map(|k| bands.get(k))
            .flatten()
            .any(|&other| similarity(&signatures[other], &signature) >= NEAR_DUPLICATE_SIMILARITY);
        if near {
            stats.near_duplicates += 1;
            continue;
        }
        for key in keys {
            bands.entry(key).or_default().push(signatures.len());
        }
        signatures.push(signature);
        kept.push(document);
    }
    (kept, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, text: &str) -> Document {
        let mut d = Document::new("s", "files", id, None, text.into(), true);
        d.id = id.into();
        d
    }

    const POST: &str = "Most teams overestimate how much data a fine-tune needs. A few hundred posts in your own voice, cleaned well, beat ten thousand scraped pages. Here is how I prepare them, step by step, with the scripts I use every week. First I export everything I have written, then I drop the reposts and the link dumps, then I split what is left into passages that each make one point. The split matters more than the model: a passage that mixes two ideas teaches the twin to ramble. Finally I read a random sample of fifty passages aloud, because anything that sounds wrong spoken will sound wrong generated.";
    const OTHER: &str = "Kubernetes operators are control loops with opinions. The loop is easy: read the desired state, read the actual state, act on the difference, write what you saw. The opinions are where the work is: which objects you own, which you only read, what you do when a reference is missing, and how you tell a person what to fix without flooding their event stream.";

    #[test]
    fn normalise_removes_junk_and_tracking() {
        let text = format!(
            "{POST}\r\n\r\n\r\nShare this post\nSubscribe\nRead it at https://blog.example.com/p/x?utm_source=feed&id=7&fbclid=abc.\n\u{200b}© 2026 Someone"
        );
        let clean = normalise(&text);
        assert!(clean.starts_with("Most teams"));
        assert!(!clean.contains("Share this post") && !clean.contains("Subscribe") && !clean.contains('©'));
        assert!(clean.contains("https://blog.example.com/p/x?id=7."), "{clean}");
        assert!(!clean.contains("\n\n\n"));
    }

    #[test]
    fn drops_duplicates_near_duplicates_and_short_documents() {
        let near = POST.replace("fifty passages", "forty passages");
        let (kept, stats) = clean(vec![
            doc("a", POST),
            doc("b", &format!("  {POST}  ")),
            doc("c", &near),
            doc("d", "Too short."),
            doc("e", OTHER),
        ]);
        let ids: Vec<&str> = kept.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["a", "e"]);
        assert_eq!((stats.exact_duplicates, stats.near_duplicates, stats.too_short), (1, 1, 1));
    }
}
