//! Titles and headings as plain text: the words a reader sees, without Markdown or HTML markup,
//! anchor links, or the site's name that a source's pages repeat around their titles.

use std::collections::HashMap;

use super::document::Document;

/// The separators between a page's own title and its site's name (`Post - Blog`, `Blog | Post`).
const SEPARATORS: &[&str] = &[" - ", " | ", " — ", " – ", " · ", " :: ", " » "];

/// A prefix or suffix is the site's name when at least this share of the titles that use its
/// separator carry it ...
const AFFIX_SHARE_OF_SEPARATED: f64 = 0.5;
/// ... and at least this share of all the source's titles (pages titled from their first
/// heading carry no site name), and at least [`MIN_TITLES_FOR_AFFIX`] titles.
const AFFIX_SHARE_OF_ALL: f64 = 0.1;
/// Fewer titles than this teach nothing about a site's name.
const MIN_TITLES_FOR_AFFIX: usize = 3;

/// `text` as plain words: Markdown links and images give their text, HTML tags and inline
/// code, emphasis and heading marks are dropped, common entities decoded, anchor markers
/// (`{#id}`, `¶`, a trailing `#`) removed and whitespace collapsed.
pub fn plain_text(text: &str) -> String {
    let text = unescape(&strip_links(text));
    let text = strip_tags(&text);
    let text = decode_entities(&text);
    // A word of only `#` is a heading mark (`C#` is a word).
    let words: Vec<&str> = text.split_whitespace().filter(|w| !w.chars().all(|c| c == '#')).collect();
    let mut out = words.join(" ");
    // Heading marks, anchors and pilcrows around the words.
    loop {
        let before = out.len();
        out = out.trim_start_matches('#').trim().to_string();
        if let Some(start) = out.rfind("{#")
            && out.ends_with('}')
        {
            out.truncate(start);
        }
        out = out.trim_end_matches(['¶', '§']).trim().to_string();
        // A lone `#` after the words is an anchor mark; `C#` is a word.
        if let Some(stripped) = out.strip_suffix(" #") {
            out = stripped.trim().to_string();
        }
        if out.len() == before {
            break;
        }
    }
    strip_emphasis(&out)
}

/// Markdown's backslash escapes (`\\_`, `\\*`) as the characters they stand for.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek().is_some_and(|n| n.is_ascii_punctuation()) {
            continue;
        }
        out.push(c);
    }
    out
}

/// `[text](url)` → `text`, `![alt](url)` → `alt`, `[text][ref]` → `text`, `<https://…>` → the URL.
fn strip_links(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let image = chars[i] == '!' && chars.get(i + 1) == Some(&'[');
        let start = if image { i + 1 } else { i };
        if chars[start] == '['
            && let Some(close) = matching(&chars, start, '[', ']')
            && matches!(chars.get(close + 1), Some('(') | Some('['))
        {
            let (open, end) = (chars[close + 1], if chars[close + 1] == '(' { ')' } else { ']' });
            if let Some(after) = matching(&chars, close + 1, open, end) {
                out.extend(&chars[start + 1..close]);
                i = after + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// The index of the bracket closing the one at `open_at`, nesting counted.
fn matching(chars: &[char], open_at: usize, open: char, close: char) -> Option<usize> {
    let mut depth = 0usize;
    for (offset, c) in chars[open_at..].iter().enumerate() {
        if *c == open {
            depth += 1;
        } else if *c == close {
            depth -= 1;
            if depth == 0 {
                return Some(open_at + offset);
            }
        }
    }
    None
}

/// Drops HTML tags (`<a href=…>`, `</code>`), keeping their text; a `<` that opens no tag
/// (`Vec<T>`, `a < b`) stays.
fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let candidate = &rest[start + 1..];
        let is_tag = candidate.starts_with('/')
            && candidate[1..].starts_with(|c: char| c.is_ascii_alphabetic())
            || candidate.starts_with(|c: char| c.is_ascii_alphabetic()) && tag_name_is_html(candidate);
        match (is_tag, candidate.find('>')) {
            (true, Some(end)) => rest = &candidate[end + 1..],
            _ => {
                out.push('<');
                rest = candidate;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether `candidate` (after a `<`) opens an HTML element rather than a generic like `Vec<T>`.
fn tag_name_is_html(candidate: &str) -> bool {
    const ELEMENTS: &[&str] = &[
        "a", "abbr", "b", "br", "code", "del", "em", "i", "img", "ins", "kbd", "mark", "q", "s", "samp",
        "small", "span", "strong", "sub", "sup", "time", "u", "var", "wbr",
    ];
    let name: String = candidate.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let follows = candidate[name.len()..].chars().next();
    ELEMENTS.contains(&name.to_ascii_lowercase().as_str()) && matches!(follows, Some('>' | ' ' | '/'))
}

fn decode_entities(text: &str) -> String {
    const ENTITIES: &[(&str, &str)] = &[
        ("&amp;", "&"),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&#x27;", "'"),
        ("&apos;", "'"),
        ("&nbsp;", " "),
        ("&mdash;", "—"),
        ("&ndash;", "–"),
        ("&hellip;", "…"),
    ];
    let mut out = text.to_string();
    for (entity, plain) in ENTITIES {
        if out.contains(entity) {
            out = out.replace(entity, plain);
        }
    }
    out
}

/// Drops inline-code backticks and `*`/`**` emphasis: an opening run of stars before a word,
/// closed by a run as long after one. Underscores stay: in titles they are far more often part
/// of identifiers (`snake_case`, `__init__`) than emphasis.
fn strip_emphasis(text: &str) -> String {
    let chars: Vec<char> = text.chars().filter(|c| *c != '`').collect();
    let run_at = |at: usize| chars[at..].iter().take_while(|c| **c == '*').count();
    let mut removed = vec![false; chars.len()];
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '*' {
            i += 1;
            continue;
        }
        let run = run_at(i);
        let opens = chars.get(i + run).is_some_and(|c| !c.is_whitespace())
            && (i == 0 || !chars[i - 1].is_alphanumeric());
        let mut closing = None;
        let mut j = i + run;
        while opens && j < chars.len() {
            if chars[j] != '*' {
                j += 1;
                continue;
            }
            let close = run_at(j);
            if close == run
                && !chars[j - 1].is_whitespace()
                && chars.get(j + run).is_none_or(|c| !c.is_alphanumeric())
            {
                closing = Some(j);
                break;
            }
            j += close;
        }
        match closing {
            Some(j) => {
                removed[i..i + run].iter_mut().for_each(|r| *r = true);
                removed[j..j + run].iter_mut().for_each(|r| *r = true);
                i = j + run;
            }
            None => i += run,
        }
    }
    let kept: String = chars.iter().zip(&removed).filter(|(_, r)| !**r).map(|(c, _)| c).collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The site names that a source's titles carry: each title's first and last part around a
/// separator, counted; a part that at least half of the source's titles share is the site's.
/// Returns the prefixes and the suffixes, separator included (`" - Blog"`, `"Blog | "`).
fn learned_affixes(titles: &[&str]) -> (Vec<String>, Vec<String>) {
    if titles.len() < MIN_TITLES_FOR_AFFIX {
        return (Vec::new(), Vec::new());
    }
    let mut prefixes: HashMap<(&str, String), usize> = HashMap::new();
    let mut suffixes: HashMap<(&str, String), usize> = HashMap::new();
    let mut separated: HashMap<&str, usize> = HashMap::new();
    for title in titles {
        for separator in SEPARATORS {
            if let (Some((head, _)), Some((_, tail))) =
                (title.split_once(separator), title.rsplit_once(separator))
            {
                *separated.entry(separator).or_default() += 1;
                *prefixes.entry((separator, format!("{head}{separator}"))).or_default() += 1;
                *suffixes.entry((separator, format!("{separator}{tail}"))).or_default() += 1;
            }
        }
    }
    let of_all = ((titles.len() as f64) * AFFIX_SHARE_OF_ALL).ceil() as usize;
    let frequent = |counts: HashMap<(&str, String), usize>| {
        let mut found: Vec<String> = counts
            .into_iter()
            .filter(|((separator, _), n)| {
                *n >= MIN_TITLES_FOR_AFFIX.max(of_all)
                    && *n as f64 >= separated[separator] as f64 * AFFIX_SHARE_OF_SEPARATED
            })
            .map(|((_, affix), _)| affix)
            .collect();
        // Longest first, so that `" - The Book - Site"` goes before `" - Site"`.
        found.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        found
    };
    (frequent(prefixes), frequent(suffixes))
}

/// `title` without the learned site affixes (never down to nothing).
fn without_affixes(title: &str, prefixes: &[String], suffixes: &[String]) -> String {
    let mut title = title.to_string();
    for suffix in suffixes {
        if let Some(stripped) = title.strip_suffix(suffix.as_str())
            && !stripped.trim().is_empty()
        {
            title = stripped.trim().to_string();
            break;
        }
    }
    for prefix in prefixes {
        if let Some(stripped) = title.strip_prefix(prefix.as_str())
            && !stripped.trim().is_empty()
        {
            title = stripped.trim().to_string();
            break;
        }
    }
    title
}

/// Makes every document's title plain text without its site's name, learned per source from
/// what repeats across that source's titles. Returns the site names removed, by source.
pub fn clean_titles(documents: &mut [Document]) -> Vec<(String, String)> {
    for document in documents.iter_mut() {
        document.title = document.title.as_deref().map(plain_text).filter(|t| !t.is_empty());
    }
    let mut by_source: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, document) in documents.iter().enumerate() {
        if document.title.is_some() {
            by_source.entry(document.source.clone()).or_default().push(index);
        }
    }
    let mut removed = Vec::new();
    let mut sources: Vec<_> = by_source.into_iter().collect();
    sources.sort();
    for (source, members) in sources {
        let titles: Vec<&str> = members.iter().filter_map(|i| documents[*i].title.as_deref()).collect();
        let (prefixes, suffixes) = learned_affixes(&titles);
        for affix in prefixes.iter().chain(&suffixes) {
            removed.push((source.clone(), affix.trim_matches(|c: char| c.is_whitespace()).to_string()));
        }
        if prefixes.is_empty() && suffixes.is_empty() {
            continue;
        }
        for index in members {
            let title = documents[index].title.take().unwrap_or_default();
            documents[index].title = Some(without_affixes(&title, &prefixes, &suffixes));
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_anchors_become_plain_words() {
        let cases = [
            (
                "## [The Pin Type and the Unpin Trait](#the-pin-type-and-the-unpin-trait)",
                "The Pin Type and the Unpin Trait",
            ),
            ("Using `Box<T>` to Point to Data on the Heap", "Using Box<T> to Point to Data on the Heap"),
            ("<a class=\"header\" href=\"#x\">Storing <code>String</code>s</a>", "Storing Strings"),
            ("**Bold** and *em* words, *args and 2 * 3", "Bold and em words, *args and 2 * 3"),
            ("Why **this**?", "Why this?"),
            ("What about ## Setup here", "What about Setup here"),
            ("An Entire Value with \\_", "An Entire Value with _"),
            ("Install it {#install}", "Install it"),
            ("Anchors ¶", "Anchors"),
            ("Learning C# #", "Learning C#"),
            ("  spaced\n\tout   title ", "spaced out title"),
            ("Rust &amp; WebAssembly", "Rust & WebAssembly"),
            ("![logo](logo.png) Release notes", "logo Release notes"),
            ("snake_case names and __init__", "snake_case names and __init__"),
            ("Comparing a < b and Vec<String>", "Comparing a < b and Vec<String>"),
        ];
        for (input, expected) in cases {
            assert_eq!(plain_text(input), expected, "{input}");
        }
    }

    fn titled(source: &str, title: &str) -> Document {
        Document::new(source, "files", title, Some(title.into()), "text".into(), true)
    }

    #[test]
    fn a_site_name_that_repeats_across_a_source_is_removed() {
        let mut documents = vec![
            titled("book", "What is Ownership? - The Rust Programming Language"),
            titled("book", "Defining an Enum - The Rust Programming Language"),
            titled("book", "Foreword - The Rust Programming Language"),
            titled("blog", "Notes | Ada's blog"),
            titled("blog", "Why I write | Ada's blog"),
            titled("blog", "Tools | Ada's blog"),
            titled("blog", "Ada's blog"),
            titled("blog", "On - and | in titles"),
            titled("talks", "Rust - a retrospective"),
        ];
        let removed = clean_titles(&mut documents);
        let titles: Vec<&str> = documents.iter().map(|d| d.title.as_deref().unwrap()).collect();
        assert_eq!(
            titles,
            [
                "What is Ownership?",
                "Defining an Enum",
                "Foreword",
                "Notes",
                "Why I write",
                "Tools",
                "Ada's blog",
                "On - and | in titles",
                // One title teaches nothing: kept whole.
                "Rust - a retrospective",
            ]
        );
        assert!(removed.contains(&("book".into(), "- The Rust Programming Language".into())), "{removed:?}");
        assert!(removed.contains(&("blog".into(), "| Ada's blog".into())), "{removed:?}");
    }
}
