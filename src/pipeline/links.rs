//! Markdown links in the author's prose, as a reader hears them: what the twin learns keeps a
//! link's words and drops its target, a link that is only a symbol (a heading's ¶ or # anchor)
//! and the bare URLs of the author's own sites (those the dataset crawls or reads feeds from).
//! Inline code keeps everything verbatim.

/// The end (exclusive) of the bracketed run that opens at `start` (`[`…`]` or `(`…`)`, nested
/// ones included), if it closes before the paragraph ends.
pub(super) fn closing(chars: &[char], start: usize) -> Option<usize> {
    let (open, close) = (chars[start], if chars[start] == '[' { ']' } else { ')' });
    let mut depth = 0;
    for (i, &c) in chars.iter().enumerate().skip(start) {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(i + 1);
            }
        } else if c == '\n' && chars.get(i + 1) == Some(&'\n') {
            return None;
        }
    }
    None
}

/// The host of an `http(s)://` URL, lower-cased.
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?.split(':').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The length of the bare URL starting at `i`, if one does.
fn url_at(chars: &[char], i: usize) -> Option<usize> {
    let starts = |prefix: &str| prefix.chars().enumerate().all(|(k, p)| chars.get(i + k) == Some(&p));
    if !(starts("http://") || starts("https://")) {
        return None;
    }
    let mut end = i;
    while end < chars.len()
        && !chars[end].is_whitespace()
        && !matches!(chars[end], ')' | ']' | '>' | '"' | '\'')
    {
        end += 1;
    }
    // Sentence punctuation after a URL is not part of it.
    while end > i && matches!(chars[end - 1], '.' | ',' | ';' | ':' | '!' | '?') {
        end -= 1;
    }
    Some(end - i)
}

/// `text` with its links as their words (see the module). `own_hosts` are the author's sites'
/// hosts (lower-case): their bare URLs go; other URLs stay, as text.
pub fn as_words(text: &str, own_hosts: &[String]) -> String {
    let is_own = |url: &str| host_of(url).is_some_and(|host| own_hosts.contains(&host));
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            // Inline code: verbatim, up to the same run of backticks.
            '`' => {
                let run = chars[i..].iter().take_while(|&&b| b == '`').count();
                let close = (i + run..chars.len()).find(|&j| {
                    chars[j..].iter().take_while(|&&b| b == '`').count() == run
                        && (j == 0 || chars[j - 1] != '`')
                });
                let end = close.map_or(chars.len(), |j| j + run);
                out.extend(&chars[i..end]);
                i = end;
            }
            '[' | '!' if c == '[' || chars.get(i + 1) == Some(&'[') => {
                let image = c == '!';
                let open = if image { i + 1 } else { i };
                let Some(label_end) = closing(&chars, open) else {
                    out.push(c);
                    i += 1;
                    continue;
                };
                let target_end = match chars.get(label_end) {
                    Some('(') | Some('[') => closing(&chars, label_end),
                    _ => None,
                };
                let Some(target_end) = target_end else {
                    // Brackets that are no link keep their words.
                    out.push(c);
                    i += 1;
                    continue;
                };
                let label: String = chars[open + 1..label_end - 1].iter().collect();
                let words = as_words(&label, own_hosts);
                // An image is no one's words; a link that is only a symbol is an anchor.
                if !image && words.chars().any(char::is_alphanumeric) {
                    out.push_str(&words);
                } else {
                    while out.ends_with(' ') {
                        out.pop();
                    }
                }
                i = target_end;
            }
            '<' if url_at(&chars, i + 1).is_some() => {
                let length = url_at(&chars, i + 1).unwrap();
                let url: String = chars[i + 1..i + 1 + length].iter().collect();
                let end =
                    if chars.get(i + 1 + length) == Some(&'>') { i + 2 + length } else { i + 1 + length };
                if !is_own(&url) {
                    out.push_str(&url);
                }
                i = end;
            }
            'h' if url_at(&chars, i).is_some() && (i == 0 || !chars[i - 1].is_alphanumeric()) => {
                let length = url_at(&chars, i).unwrap();
                let url: String = chars[i..i + length].iter().collect();
                if is_own(&url) {
                    while out.ends_with(' ') {
                        out.pop();
                    }
                } else {
                    out.push_str(&url);
                }
                i += length;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Reference definitions (`[1]: https://…`) are targets only.
    let lines: Vec<&str> = out
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            !(line.starts_with('[') && line.split_once("]:").is_some_and(|(label, _)| !label.contains(']')))
        })
        .map(str::trim_end)
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Vec<String> {
        vec!["docs.example.com".to_string()]
    }

    #[test]
    fn links_keep_their_words_and_lose_their_targets() {
        let text = "Use [`list.sort()`](http://docs.example.com/library/stdtypes.html#list.sort \"list.sort\") or \
            [the *key* function](https://other.example.org/key) ([source][1]).";
        assert_eq!(as_words(text, &site()), "Use `list.sort()` or the *key* function (source).");
    }

    #[test]
    fn anchors_images_reference_definitions_and_the_sites_urls_go() {
        let text = "## Sorting [¶](#sorting \"Permalink to this heading\")\n\n![A chart](img/sort.png)\nSee http://docs.example.com/faq.html, or https://other.example.org/faq.\n[1]: http://docs.example.com/x\nRead <http://docs.example.com/y> [#](#here) now.";
        assert_eq!(
            as_words(text, &site()),
            "## Sorting\n\n\nSee, or https://other.example.org/faq.\nRead now."
        );
    }

    #[test]
    fn inline_code_and_brackets_that_are_no_link_stay_verbatim() {
        let text = "Call `[a](b)` with [draft] notes, `` `x` `` and [unclosed";
        assert_eq!(as_words(text, &site()), text);
        assert_eq!(host_of("https://user@Docs.Example.com:8443/p?q"), Some("docs.example.com".into()));
        assert_eq!(host_of("mailto:me@example.com"), None);
    }
}
