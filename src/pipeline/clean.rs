//! Cleaning: plain titles, normalised text, boilerplate and tracking junk removed; exact
//! duplicates, near-duplicates (MinHash over word shingles, with LSH banding) and cross-posts
//! (most of a document's shingles contained in a fuller one) dropped, the fuller copy kept; and
//! documents below a minimum length dropped. Copies are compared by their words alone (markup,
//! link targets, URLs and punctuation gone), so one article reached by two routes is one.

use std::collections::HashMap;

use super::document::Document;
use super::links::closing;
use super::title;
pub use crate::contract::build_report::{CleanStats, RemovedDocument};
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
    // What feeds append to each post ("The post X appeared first on Y.", WordPress's SEO
    // plugins).
    let syndication = lower.starts_with("the post ") && lower.contains(" appeared first on ");
    EXACT.contains(&lower.trim_matches(|c: char| !c.is_alphanumeric() && c != ' '))
        || STARTS.iter().any(|s| lower.starts_with(s))
        || syndication
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

/// A text as its words only, for comparing copies of one article reached by different routes
/// (a crawled page turned into Markdown, a feed, an export's plain text): lower-case words and
/// numbers, with Markdown links and images reduced to their text, link targets, bare URLs,
/// markup and punctuation gone, one space between words.
pub fn canonical_words(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut words = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_word = false;
    let push_break = |words: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(' ');
            *in_word = false;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        // `[text](target "title")` and `[text][ref]`: the text stays, the target goes.
        if c == ']'
            && matches!(chars.get(i + 1), Some('(') | Some('['))
            && let Some(end) = closing(&chars, i + 1)
        {
            push_break(&mut words, &mut in_word);
            i = end;
            continue;
        }
        // Bare URLs and autolinks are no one's words.
        if (c == 'h' || c == 'w') && !in_word {
            let rest: String = chars[i..chars.len().min(i + 8)].iter().collect();
            if rest.starts_with("http://") || rest.starts_with("https://") || rest.starts_with("www.") {
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], ')' | ']' | '>' | '"')
                {
                    i += 1;
                }
                push_break(&mut words, &mut in_word);
                continue;
            }
        }
        if c.is_alphanumeric() {
            words.extend(c.to_lowercase());
            in_word = true;
        } else {
            push_break(&mut words, &mut in_word);
        }
        i += 1;
    }
    words.trim_end().to_string()
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

/// A MinHash signature of a text's hashed 3-word shingles ([`shingles`]): the fraction of equal
/// positions between two signatures estimates the Jaccard similarity of their shingle sets.
fn minhash(shingles: &[u64]) -> [u64; MINHASH_PERMUTATIONS] {
    let mut signature = [u64::MAX; MINHASH_PERMUTATIONS];
    for base in shingles {
        for (i, slot) in signature.iter_mut().enumerate() {
            *slot = (*slot).min(splitmix64(base ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)));
        }
    }
    signature
}

fn similarity(a: &[u64; MINHASH_PERMUTATIONS], b: &[u64; MINHASH_PERMUTATIONS]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / MINHASH_PERMUTATIONS as f64
}

/// Documents at least this share of whose word shingles appear in one fuller document are
/// copies of it (a cross-post with other page chrome around the same body).
pub const CONTAINMENT_THRESHOLD: f64 = 0.8;
/// Shingles found in more kept documents than this are a site's chrome, not the author's
/// writing: they do not count towards containment (and it costs less).
const COMMON_SHINGLE_DOCUMENTS: usize = 50;

/// Lines of fewer words than this are not prose: navigation, titles, labels, list items of
/// links.
const PROSE_LINE_WORDS: usize = 6;

/// How many words of a text are in lines of prose: sentences, at least a few words long and
/// ending as sentences end (navigation, titles and breadcrumbs do not).
fn prose_words(text: &str) -> usize {
    text.lines()
        .filter(|line| line.trim_end().ends_with(['.', '!', '?', ':', ';', '"', '\'', '”', '’', '…']))
        .map(|line| canonical_words(line).split_whitespace().count())
        .filter(|&words| words >= PROSE_LINE_WORDS)
        .sum()
}

/// The distinct 3-word shingles of a canonical text ([`canonical_words`]), hashed.
fn shingles(canonical: &str) -> Vec<u64> {
    use std::hash::{Hash, Hasher};
    let words: Vec<&str> = canonical.split_whitespace().collect();
    let mut set: Vec<u64> = words
        .windows(3.min(words.len()).max(1))
        .map(|shingle| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            shingle.hash(&mut hasher);
            hasher.finish()
        })
        .collect();
    set.sort_unstable();
    set.dedup();
    set
}

/// Where a document came from, to name it in the report.
fn name_of(document: &Document) -> String {
    document.url.clone().unwrap_or_else(|| document.id.clone())
}

/// Cleans documents: plain titles without the site's name, normalised text, then drops the too
/// short, the exact duplicates, the near-duplicates and the documents mostly contained in
/// another. Fuller documents are kept first (more prose, then less that is not prose, then by
/// id), so the fuller clean copy of a cross-post stays and the result does not depend on the
/// order sources were read in. Returns what was kept, the counts, and each copy removed with
/// the document kept instead.
pub fn clean(mut documents: Vec<Document>) -> (Vec<Document>, CleanStats, Vec<RemovedDocument>) {
    let mut stats = CleanStats { input: documents.len(), ..Default::default() };
    for (source, site) in title::clean_titles(&mut documents) {
        tracing::info!(%source, %site, "removed the site's name from the source's titles");
    }
    let mut prepared: Vec<(Document, String, usize)> = Vec::new();
    for mut document in documents {
        document.text = normalise(&document.text);
        if document.text.chars().count() < MIN_DOCUMENT_CHARS {
            stats.too_short += 1;
            continue;
        }
        // Copies are compared by their words, whatever route and markup brought them.
        let canonical = canonical_words(&document.text);
        let prose = prose_words(&document.text);
        prepared.push((document, canonical, prose));
    }
    // The fuller clean copy first: more prose, then less of what is not prose (navigation, a
    // title line, a page's lists of links), so that a page saved with its navigation does not
    // win over the article alone.
    prepared.sort_by(|(a, ca, pa), (b, cb, pb)| {
        pb.cmp(pa).then_with(|| ca.len().cmp(&cb.len())).then_with(|| a.id.cmp(&b.id))
    });
    let mut removed = Vec::new();
    let mut exact: HashMap<String, usize> = HashMap::new();
    let mut signatures: Vec<[u64; MINHASH_PERMUTATIONS]> = Vec::new();
    // LSH: documents sharing a band of their signature are candidates; only those are compared.
    let mut bands: HashMap<(usize, [u64; LSH_ROWS]), Vec<usize>> = HashMap::new();
    // Containment: each kept document's shingles, and which kept documents hold each shingle.
    let mut holders: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut kept: Vec<Document> = Vec::new();
    for (document, canonical, _) in prepared {
        let mut remove = |kind: &str, kept_as: &Document, score: f64, stats: &mut CleanStats| {
            match kind {
                "exact" => stats.exact_duplicates += 1,
                "near" => stats.near_duplicates += 1,
                _ => stats.contained_duplicates += 1,
            }
            removed.push(RemovedDocument {
                document: name_of(&document),
                kind: kind.to_string(),
                route: document.kind.clone(),
                kept: name_of(kept_as),
                kept_route: kept_as.kind.clone(),
                score: (score * 1000.0).round() / 1000.0,
            });
        };
        if let Some(&other) = exact.get(&sha256_hex(canonical.as_bytes())) {
            remove("exact", &kept[other], 1.0, &mut stats);
            continue;
        }
        let own = shingles(&canonical);
        let signature = minhash(&own);
        let keys: Vec<(usize, [u64; LSH_ROWS])> = (0..LSH_BANDS)
            .map(|b| (b, signature[b * LSH_ROWS..(b + 1) * LSH_ROWS].try_into().expect("band")))
            .collect();
        let near = keys
            .iter()
            .filter_map(|k| bands.get(k))
            .flatten()
            .map(|&other| (other, similarity(&signatures[other], &signature)))
            .filter(|(_, score)| *score >= NEAR_DUPLICATE_SIMILARITY)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        if let Some((other, score)) = near {
            remove("near", &kept[other], score, &mut stats);
            continue;
        }
        let mut shared: HashMap<u32, usize> = HashMap::new();
        for shingle in &own {
            if let Some(holding) = holders.get(shingle).filter(|h| h.len() <= COMMON_SHINGLE_DOCUMENTS) {
                for &other in holding {
                    *shared.entry(other).or_default() += 1;
                }
            }
        }
        let contained = shared
            .into_iter()
            .map(|(other, count)| (other as usize, count as f64 / own.len().max(1) as f64))
            .filter(|(_, share)| *share >= CONTAINMENT_THRESHOLD)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        if let Some((other, share)) = contained {
            remove("contained", &kept[other], share, &mut stats);
            continue;
        }
        let index = kept.len();
        exact.insert(sha256_hex(canonical.as_bytes()), index);
        for key in keys {
            bands.entry(key).or_default().push(index);
        }
        signatures.push(signature);
        for shingle in own {
            holders.entry(shingle).or_default().push(index as u32);
        }
        kept.push(document);
    }
    (kept, stats, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, text: &str) -> Document {
        let mut d = Document::new("s", "files", id, None, text.into(), true);
        d.id = id.into();
        d.url = Some(id.into());
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
        let (kept, stats, removed) = clean(vec![
            doc("a", POST),
            doc("b", &format!("  {POST}  ")),
            doc("c", &near),
            doc("d", "Too short."),
            doc("e", OTHER),
        ]);
        let ids: Vec<&str> = kept.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["a", "e"]);
        assert_eq!((stats.exact_duplicates, stats.near_duplicates, stats.too_short), (1, 1, 1));
        assert_eq!(
            removed
                .iter()
                .map(|r| (r.document.as_str(), r.kind.as_str(), r.kept.as_str()))
                .collect::<Vec<_>>(),
            [("b", "exact", "a"), ("c", "near", "a")]
        );
    }

    #[test]
    fn canonical_words_keep_the_words_of_links_and_drop_targets_urls_and_markup() {
        let crawled = "## Sorting [¶](#sorting \"Permalink to this heading\")\n\nUse [`list.sort()`](http://docs.example.com/library/stdtypes.html#list.sort \"list.sort\") \
            (or ![a chart](img/sort.png)), see https://docs.example.com/faq?x=1, *don’t* copy [the guide][guide].";
        assert_eq!(canonical_words(crawled), "sorting use list sort or a chart see don t copy the guide");
        assert_eq!(
            canonical_words("Use list.sort() (or a chart), see; DON'T copy the guide"),
            "use list sort or a chart see don t copy the guide"
        );
        // A bracket that is no link keeps its words; an unclosed one too.
        assert_eq!(canonical_words("[draft] notes (v2) [unclosed"), "draft notes v2 unclosed");
    }

    /// The share of `a`'s shingles found in `b`.
    fn containment(a: &str, b: &str) -> f64 {
        let (a, b) = (shingles(a), shingles(b));
        a.iter().filter(|s| b.binary_search(s).is_ok()).count() as f64 / a.len() as f64
    }

    #[test]
    fn an_article_crawled_as_markdown_and_exported_as_text_is_one_document() {
        // The crawled page: heading permalinks, and every fifth word a link to the site's own
        // pages (a reference documentation page's density).
        let linked = |text: &str| -> String {
            let words: Vec<&str> = text.split(' ').collect();
            let linked: Vec<String> = words
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if i % 5 == 2 {
                        format!("[{w}](http://docs.example.com/glossary.html#{i} \"{w}\")")
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            linked.join(" ")
        };
        let crawled = format!(
            "# Preparing data [¶](#preparing-data \"Permalink to this heading\")\n\n{}\n\n## Operators [¶](#operators \"Permalink to this heading\")\n\n{}",
            linked(POST),
            linked(OTHER)
        );
        // The export: the page's text with its navigation and title line.
        let exported = format!(
            "Home › Guides › Preparing data\nPreparing data — Example Docs 2.1\n\nPreparing data\n\n{POST}\n\nOperators\n\n{OTHER}\n\n« Setup | Chunking »"
        );
        let old_canonical = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        assert!(
            containment(&old_canonical(&crawled), &old_canonical(&exported)) < CONTAINMENT_THRESHOLD,
            "by its markup, the crawled copy is not found in the export"
        );
        let (kept, stats, removed) = clean(vec![
            doc("https://docs.example.com/guide/preparing.html", &crawled),
            doc("export/preparing.txt", &exported),
        ]);
        assert_eq!(kept.len(), 1, "{removed:?}");
        assert_eq!(stats.near_duplicates + stats.contained_duplicates, 1, "{stats:?}");
        assert!(removed[0].score >= CONTAINMENT_THRESHOLD.min(NEAR_DUPLICATE_SIMILARITY), "{removed:?}");
    }

    #[test]
    fn a_cross_post_in_other_chrome_is_dropped_for_the_fuller_copy() {
        let body = format!("{POST}\n\n{OTHER}");
        let newsletter = format!(
            "Issue 42 of my newsletter. Reply to this email to tell me what you think of it.\n\n{body}"
        );
        let blog_chrome: String =
            (0..20).map(|i| format!("Archive link number {i} in the sidebar. ")).collect();
        let blog = format!("{body}\n\n{blog_chrome}");
        let signatures =
            (minhash(&shingles(&canonical_words(&newsletter))), minhash(&shingles(&canonical_words(&blog))));
        assert!(similarity(&signatures.0, &signatures.1) < NEAR_DUPLICATE_SIMILARITY, "not a near-duplicate");
        let (kept, stats, removed) =
            clean(vec![doc("newsletter", &newsletter), doc("blog", &blog), doc("other", OTHER)]);
        let ids: Vec<&str> = kept.iter().map(|d| d.id.as_str()).collect();
        // The other post is all inside the blog's copy too.
        assert_eq!(ids, ["blog"], "{removed:?}");
        assert_eq!(stats.contained_duplicates, 2);
        assert_eq!(
            (removed[0].document.as_str(), removed[0].kind.as_str(), removed[0].kept.as_str()),
            ("newsletter", "contained", "blog")
        );
        assert!(removed[0].score >= CONTAINMENT_THRESHOLD);
    }
}
