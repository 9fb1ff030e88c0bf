//! The faults the quality report counts in the answers a twin learns from, so that a user sees
//! them before training: link syntax, heading anchors, URLs of the author's own sites, answers
//! that open mid-sentence. Code is the author's verbatim and is not looked at.
//! `scripts/audit-training-data` counts the same with its own code, from the revision's files;
//! a test holds the two to the same figures.

/// Signs of Markdown or HTML links.
const LINK_SYNTAX: &[&str] = &["](", "][", "<a "];
/// Signs of heading anchors: a pilcrow, a link emoji, a zero-width space, a `{#id}` attribute.
const ANCHOR_SIGNS: &[&str] = &["¶", "🔗", "\u{200b}", "{#"];
/// A heading's anchor left as the last word of its line.
const TRAILING_ANCHORS: &[&str] = &["#", "§"];
/// What an answer may not open with: the rest of a sentence.
const CONTINUATION_STARTS: &str = ",.;:)]}";

/// The faults of a set of answers, each answer counted once per kind of fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Answers whose prose has Markdown or HTML link syntax.
    pub link_syntax: usize,
    /// Answers whose prose has a heading anchor.
    pub anchors: usize,
    /// Answers whose prose has a URL of one of the author's own sites.
    pub site_urls: usize,
    /// Answers that open mid-sentence.
    pub mid_sentence: usize,
}

impl Faults {
    /// Counts the faults of `answers`; `own_hosts` are the author's sites' hosts, lower-case.
    pub fn of<'a>(answers: impl IntoIterator<Item = &'a str>, own_hosts: &[String]) -> Self {
        let schemes: Vec<String> = own_hosts.iter().map(|host| format!("://{host}")).collect();
        let mut faults = Faults::default();
        for answer in answers {
            let prose = prose_of(answer);
            let lower = prose.to_lowercase();
            faults.link_syntax += usize::from(LINK_SYNTAX.iter().any(|s| lower.contains(s)));
            faults.anchors += usize::from(
                ANCHOR_SIGNS.iter().any(|s| prose.contains(s))
                    || prose.lines().any(|line| {
                        let words: Vec<&str> = line.split_whitespace().collect();
                        words.len() > 1 && TRAILING_ANCHORS.contains(words.last().expect("two words"))
                    }),
            );
            faults.site_urls += usize::from(schemes.iter().any(|s| lower.contains(s)));
            faults.mid_sentence += usize::from(opens_mid_sentence(answer));
        }
        faults
    }
}

/// Whether a text opens with the rest of a sentence: a lower-case letter or punctuation that
/// closes or continues one.
pub fn opens_mid_sentence(text: &str) -> bool {
    text.trim_start().chars().next().is_some_and(|c| c.is_lowercase() || CONTINUATION_STARTS.contains(c))
}

/// An answer's prose: fenced code blocks and inline code spans taken out.
fn prose_of(answer: &str) -> String {
    let mut prose = String::with_capacity(answer.len());
    let mut in_code = false;
    for line in answer.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // What lies between a pair of backticks is code.
        prose.extend(line.split('`').step_by(2));
        prose.push('\n');
    }
    prose
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fault_is_counted_in_prose_and_not_in_code() {
        let hosts = vec!["docs.example.com".to_string()];
        let answers = [
            "See [the guide](http://docs.example.com/guide) first.",
            "## Sorting ¶\n\nSorted.",
            "## Sorting #\n\nSorted.",
            "Read it at https://Docs.Example.com/faq today.",
            "which prints 3.",
            "Code keeps them as they are:\n\n```\nlet s = \"[a](http://docs.example.com) ¶\";\n```\n\nAnd `[x](y)` too.",
            "C# and F# are fine, and so is issue #12 here.",
        ];
        let faults = Faults::of(answers, &hosts);
        assert_eq!(faults, Faults { link_syntax: 1, anchors: 2, site_urls: 2, mid_sentence: 1 });
    }
}
