//! Training passages: the author's text cut for fine-tuning rather than for retrieval. No
//! overlap; each passage is whole blocks of one section (paragraphs, lists, code blocks) up to
//! the token budget. A block larger than the budget is cut at sentence boundaries (prose) or
//! line boundaries (code, each piece fenced again), so that an answer never starts or ends in
//! the middle of a sentence or a code block; a passage that could only be cut inside a sentence
//! or a line is marked, and left out of the fine-tuning sets.

use unicode_segmentation::UnicodeSegmentation;

use super::document::Document;
// Whether a block goes on with a sentence begun before it ("which prints 3.", "so that ...",
// ", and then"), as the quality report counts answers that open mid-sentence.
use super::findings::opens_mid_sentence;
use super::title::plain_text;

/// A passage is mostly code when more than this share of its characters is inside code blocks.
pub const CODE_SHARE: f64 = 0.5;

/// One fine-tuning answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// The document it comes from.
    pub document_id: String,
    /// Position in the document, from 0.
    pub ordinal: usize,
    /// The author's text.
    pub text: String,
    /// The heading of its section (plain text), when the section has one.
    pub heading: Option<String>,
    /// Its place among the passages of its section, from 1.
    pub part: usize,
    /// How many passages its section has.
    pub parts: usize,
    /// The share of its characters inside code blocks.
    pub code_share: f64,
    /// The language of its first code block (`rust`), when it has one.
    pub code_language: Option<String>,
    /// False when it had to be cut inside a sentence or a line.
    pub at_boundaries: bool,
}

impl Passage {
    /// Whether it is mostly code.
    pub fn is_code(&self) -> bool {
        self.code_share > CODE_SHARE
    }
}

/// A piece of a document: a heading, a code block or a paragraph (list items included).
#[derive(Debug)]
enum Block {
    Heading(String),
    Code { language: String, lines: Vec<String> },
    Prose(String),
}

/// The blocks of a document's text. Plain text has paragraphs only.
fn blocks(text: &str, markdown: bool) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |paragraph: &mut Vec<&str>, blocks: &mut Vec<Block>| {
        if !paragraph.is_empty() {
            blocks.push(Block::Prose(paragraph.join("\n")));
            paragraph.clear();
        }
    };
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if markdown && (trimmed.starts_with("```") || trimmed.starts_with("~~~")) {
            flush(&mut paragraph, &mut blocks);
            let fence: String = trimmed.chars().take_while(|c| *c == '`' || *c == '~').collect();
            let language =
                trimmed[fence.len()..].split([' ', ',', '{']).next().unwrap_or_default().to_string();
            let mut code = Vec::new();
            for line in lines.by_ref() {
                if line.trim_start().starts_with(&fence) {
                    break;
                }
                code.push(line.to_string());
            }
            blocks.push(Block::Code { language, lines: code });
        } else if markdown && trimmed.starts_with('#') && trimmed.trim_start_matches('#').starts_with(' ') {
            flush(&mut paragraph, &mut blocks);
            blocks.push(Block::Heading(line.to_string()));
        } else if line.trim().is_empty() {
            flush(&mut paragraph, &mut blocks);
        } else {
            paragraph.push(line);
        }
    }
    flush(&mut paragraph, &mut blocks);
    blocks
}

fn fenced(language: &str, lines: &[String]) -> String {
    format!("```{language}\n{}\n```", lines.join("\n"))
}

/// Cuts documents into passages of at most `max_tokens` tokens as `count` counts them.
pub fn passages(
    document: &Document,
    own_hosts: &[String],
    max_tokens: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<Passage> {
    let title = document.title.clone();
    let mut out: Vec<Passage> = Vec::new();
    // The pieces of the current section, each (text, at boundaries).
    let mut heading: Option<String> = None;
    let mut current: Vec<String> = Vec::new();
    let mut current_tokens = 0usize;
    let mut section: Vec<(String, bool)> = Vec::new();
    let emit_section =
        |heading: &Option<String>, section: &mut Vec<(String, bool)>, out: &mut Vec<Passage>| {
            // A piece that is only its heading says nothing.
            section.retain(|(text, _)| !only_headings(text));
            let parts = section.len();
            for (part, (text, at_boundaries)) in section.drain(..).enumerate() {
                let (code_share, code_language) = code_of(&text);
                out.push(Passage {
                    document_id: document.id.clone(),
                    ordinal: out.len(),
                    text,
                    heading: heading.clone().filter(|h| Some(h) != title.as_ref()),
                    part: part + 1,
                    parts,
                    code_share,
                    code_language,
                    at_boundaries,
                });
            }
        };
    let close = |current: &mut Vec<String>, tokens: &mut usize, section: &mut Vec<(String, bool)>| {
        if !current.is_empty() {
            section.push((current.join("\n\n"), true));
            current.clear();
            *tokens = 0;
        }
    };
    // What the twin learns keeps a link's words, not its target (retrieval's chunks keep them).
    // The bare URLs of the author's own sites go, the page's own site included.
    let mut hosts = own_hosts.to_vec();
    hosts.extend(document.url.as_deref().and_then(super::links::host_of));
    let as_words = |text: &str| super::links::as_words(text, &hosts);
    for block in blocks(&document.text, document.markdown) {
        let block = match block {
            Block::Heading(line) => Block::Heading(as_words(&line)),
            Block::Prose(text) => match as_words(&text) {
                words if words.trim().is_empty() => continue,
                words => Block::Prose(words),
            },
            code => code,
        };
        let text = match block {
            Block::Heading(line) => {
                close(&mut current, &mut current_tokens, &mut section);
                emit_section(&heading, &mut section, &mut out);
                heading = Some(plain_text(&line)).filter(|h| !h.is_empty());
                // The heading opens its section's first passage.
                current.push(line.trim().to_string());
                current_tokens = count(&line) + 1;
                continue;
            }
            Block::Code { language, lines } => {
                let whole = fenced(&language, &lines);
                if count(&whole) <= max_tokens {
                    whole
                } else {
                    close(&mut current, &mut current_tokens, &mut section);
                    section.extend(split_code(&language, &lines, max_tokens, count));
                    continue;
                }
            }
            Block::Prose(text) => {
                if count(&text) <= max_tokens {
                    text
                } else {
                    close(&mut current, &mut current_tokens, &mut section);
                    section.extend(split_prose(&text, max_tokens, count));
                    continue;
                }
            }
        };
        let tokens = count(&text);
        // Blocks are joined by a blank line: about 1 token.
        if current_tokens + tokens + 1 > max_tokens {
            if current.len() == 1 && only_headings(&current[0]) {
                // The heading does not fit with its first block: the instruction names it.
                current.clear();
                current_tokens = 0;
            } else {
                // A sentence interrupted by a code block goes on after it: the block and the
                // words that lead into it move on with the continuation, so that no passage
                // opens mid-sentence.
                let carried = carried_into(&current, &text);
                let carry: Vec<String> = current.split_off(current.len() - carried);
                let carry_tokens: usize = carry.iter().map(|t| count(t) + 1).sum();
                if carried > 0 && !current.is_empty() && carry_tokens + tokens < max_tokens {
                    close(&mut current, &mut current_tokens, &mut section);
                    current = carry;
                    current_tokens = carry_tokens;
                } else {
                    current.extend(carry);
                    if carried > 0 && opens_mid_sentence(&text) {
                        // The sentence and its beginning do not fit in one passage together with
                        // the rest of its paragraph: the sentence ends this passage (a little over
                        // the budget rather than cut), the next sentences open the next.
                        let (sentence, rest) = first_sentence(&text);
                        current.push(sentence.trim_end().to_string());
                        close(&mut current, &mut current_tokens, &mut section);
                        let rest = rest.trim_start().to_string();
                        if !rest.is_empty() {
                            current_tokens = count(&rest) + 1;
                            current.push(rest);
                        }
                        continue;
                    }
                    close(&mut current, &mut current_tokens, &mut section);
                }
            }
        }
        current_tokens += tokens + 1;
        current.push(text);
    }
    close(&mut current, &mut current_tokens, &mut section);
    emit_section(&heading, &mut section, &mut out);
    out
}

/// How many of a passage's last blocks belong with the block that comes next: with a code
/// block, the prose leading into it when that stops without ending its sentence ("Here is the
/// call:"); with a continuation after a code block, that block and its lead-in too.
fn carried_into(blocks: &[String], next: &str) -> usize {
    let is_code = |text: &str| text.starts_with("```") || text.starts_with("~~~");
    let lead_in = |text: &str| !is_code(text) && !text.trim_end().ends_with(['.', '!', '?', '"', '\'', ')']);
    let n = blocks.len();
    if is_code(next) {
        usize::from(n >= 1 && lead_in(&blocks[n - 1]))
    } else if opens_mid_sentence(next) && n >= 1 && is_code(&blocks[n - 1]) {
        1 + usize::from(n >= 2 && lead_in(&blocks[n - 2]))
    } else {
        0
    }
}

/// A text's first sentence, and the rest.
fn first_sentence(text: &str) -> (&str, &str) {
    let end = text.split_sentence_bounds().next().map_or(text.len(), str::len);
    text.split_at(end)
}

/// Whether every line of `text` is a Markdown heading.
fn only_headings(text: &str) -> bool {
    text.lines().all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
}

/// A code block larger than the budget, cut at line boundaries, each piece fenced again.
fn split_code(
    language: &str,
    lines: &[String],
    max_tokens: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<(String, bool)> {
    let mut pieces = Vec::new();
    let mut piece: Vec<String> = Vec::new();
    // The fences cost a few tokens.
    let budget = max_tokens.saturating_sub(count(&fenced(language, &[])) + 1).max(1);
    let mut tokens = 0;
    for line in lines {
        let line_tokens = count(line) + 1;
        if tokens + line_tokens > budget && !piece.is_empty() {
            pieces.push((fenced(language, &piece), true));
            piece.clear();
            tokens = 0;
        }
        if line_tokens > budget {
            // One line longer than a passage: cut inside it, and say so.
            for part in split_words(line, budget, count) {
                pieces.push((fenced(language, &[part]), false));
            }
            continue;
        }
        tokens += line_tokens;
        piece.push(line.clone());
    }
    if !piece.is_empty() {
        pieces.push((fenced(language, &piece), true));
    }
    pieces
}

/// A paragraph larger than the budget, cut at sentence boundaries; a sentence larger than the
/// budget is cut between words, and its pieces are marked.
fn split_prose(text: &str, max_tokens: usize, count: &dyn Fn(&str) -> usize) -> Vec<(String, bool)> {
    pack(text.split_sentence_bounds(), max_tokens, count, &|sentence| {
        split_words(sentence, max_tokens, count)
    })
}

/// Text cut between words into pieces of at most about `max_tokens`.
fn split_words(text: &str, max_tokens: usize, count: &dyn Fn(&str) -> usize) -> Vec<String> {
    pack(text.split_word_bounds(), max_tokens, count, &|word| vec![word.to_string()])
        .into_iter()
        .map(|(piece, _)| piece)
        .collect()
}

/// Packs `units` (sentences, words) in order into pieces of at most about `max_tokens`, their
/// counts summed (so that a hostile megabyte-long line costs one pass). A unit larger than the
/// budget goes to `too_large`, whose pieces are marked as cut inside a unit.
fn pack<'a>(
    units: impl Iterator<Item = &'a str>,
    max_tokens: usize,
    count: &dyn Fn(&str) -> usize,
    too_large: &dyn Fn(&str) -> Vec<String>,
) -> Vec<(String, bool)> {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    let mut tokens = 0;
    for unit in units {
        let unit_tokens = count(unit);
        if tokens + unit_tokens > max_tokens && !piece.trim().is_empty() {
            pieces.push((piece.trim().to_string(), true));
            piece.clear();
            tokens = 0;
        }
        if unit_tokens > max_tokens {
            pieces.extend(too_large(unit).into_iter().map(|part| (part, false)));
            continue;
        }
        tokens += unit_tokens;
        piece.push_str(unit);
    }
    if !piece.trim().is_empty() {
        pieces.push((piece.trim().to_string(), true));
    }
    pieces
}

/// The share of `text` inside code fences, and the first fence's language.
fn code_of(text: &str) -> (f64, Option<String>) {
    let (mut in_code, mut code_chars, mut language) = (false, 0usize, None);
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            if !in_code && language.is_none() {
                let name =
                    trimmed.trim_start_matches(['`', '~']).split([' ', ',', '{']).next().unwrap_or_default();
                language = Some(name.to_string()).filter(|l| !l.is_empty());
            }
            in_code = !in_code;
        } else if in_code {
            code_chars += line.chars().count() + 1;
        }
    }
    let total = text.chars().count().max(1);
    (code_chars as f64 / total as f64, language)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    fn document(text: &str) -> Document {
        Document::new("s", "files", "a.md", Some("Guide".into()), text.into(), true)
    }

    #[test]
    fn a_crawled_pages_links_anchors_and_urls_become_words_and_its_code_stays_verbatim() {
        let text = "# Sorting [¶](#sorting \"Permalink to this heading\")\n\nUse [`list.sort()`](http://docs.example.com/library/stdtypes.html#list.sort \"list.sort\") to sort in place; see http://docs.example.com/howto/sorting.html.\n\n![chart](img/a.png)\n\n```python\n# from http://docs.example.com/howto/sorting.html\n[x](y)\n```";
        let mut page = document(text);
        page.url = Some("http://docs.example.com/tutorial/sorting.html".into());
        let texts: Vec<String> = passages(&page, &[], 200, &words).into_iter().map(|p| p.text).collect();
        let joined = texts.join("\n\n");
        assert!(
            joined.starts_with("# Sorting\n\nUse `list.sort()` to sort in place; see.\n\n```python"),
            "{joined}"
        );
        assert!(
            joined.contains("# from http://docs.example.com/howto/sorting.html\n[x](y)"),
            "code stays verbatim: {joined}"
        );
        assert!(!joined.contains('¶') && !joined.contains("chart"), "{joined}");
    }

    #[test]
    fn a_sentence_that_goes_on_after_a_code_block_keeps_its_beginning() {
        let text = "# Timing\n\nThe first paragraph sets the scene with quite a few words in it.\n\nTo time a call, wrap it like this:\n\n```rust\nlet t = Instant::now();\n```\n\nwhich prints the elapsed time with the milliseconds tacked on at the end.";
        let passages = passages(&document(text), &[], 30, &words);
        let texts: Vec<&str> = passages.iter().map(|p| p.text.as_str()).collect();
        assert!(texts.iter().all(|t| !opens_mid_sentence(t)), "a passage opens mid-sentence: {texts:#?}");
        let tail = texts.iter().find(|t| t.contains("which prints")).unwrap();
        assert!(tail.starts_with("To time a call, wrap it like this:\n\n```rust"), "{texts:#?}");
        assert!(passages.iter().all(|p| p.at_boundaries && words(&p.text) <= 30));
    }

    #[test]
    fn a_long_paragraph_going_on_after_a_code_block_gives_its_first_sentence_to_the_code() {
        let text = "# Timing\n\nTo time a call, wrap it like this:\n\n```rust\nlet t = Instant::now();\nlet elapsed = t.elapsed();\n```\n\nwhich prints the elapsed time. Then the paragraph goes on for a while. It says more things. And more again.";
        let passages = passages(&document(text), &[], 30, &words);
        let texts: Vec<&str> = passages.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts.len(), 2, "{texts:#?}");
        assert!(
            texts[0].starts_with("# Timing\n\nTo time a call")
                && texts[0].ends_with("which prints the elapsed time.")
        );
        assert_eq!(texts[1], "Then the paragraph goes on for a while. It says more things. And more again.");
    }

    #[test]
    fn sections_are_cut_at_paragraphs_and_counted_in_parts() {
        let paragraph = |n: usize| format!("Sentence {n} says one thing. It ends here.");
        let text = format!(
            "# Guide\n\nIntro text that opens the guide.\n\n## [Setup](#setup)\n\n{}\n\n{}\n\n{}\n\n## Use\n\nShort.",
            paragraph(1),
            paragraph(2),
            paragraph(3)
        );
        let passages = passages(&document(&text), &[], 20, &words);
        let setup: Vec<&Passage> =
            passages.iter().filter(|p| p.heading.as_deref() == Some("Setup")).collect();
        assert!(setup.len() >= 2, "{passages:#?}");
        assert!(setup.iter().enumerate().all(|(i, p)| p.part == i + 1 && p.parts == setup.len()));
        assert!(setup[0].text.starts_with("## Setup\n"), "the heading opens its section, as its words");
        // The document's own title is not a section heading.
        assert_eq!(passages[0].heading, None);
        assert!(passages.iter().all(|p| p.at_boundaries && words(&p.text) <= 20));
        assert!(passages.iter().all(|p| !p.text.contains("Sentence 1") || !p.text.contains("## Use")));
    }

    #[test]
    fn long_code_is_cut_at_lines_and_fenced_again() {
        let code: Vec<String> = (0..40).map(|i| format!("let x{i} = {i};")).collect();
        let text = format!("Some prose first.\n\n```rust\n{}\n```\n\nAfter.", code.join("\n"));
        let passages = passages(&document(&text), &[], 30, &words);
        let code_passages: Vec<&Passage> = passages.iter().filter(|p| p.is_code()).collect();
        assert!(code_passages.len() >= 3, "{passages:#?}");
        for passage in &code_passages {
            assert!(
                passage.text.starts_with("```rust\n") && passage.text.ends_with("\n```"),
                "{}",
                passage.text
            );
            assert_eq!(passage.code_language.as_deref(), Some("rust"));
            assert!(passage.text.lines().skip(1).all(|l| l == "```" || l.starts_with("let x")));
        }
        let all: String = code_passages.iter().map(|p| p.text.as_str()).collect();
        assert!(code.iter().all(|line| all.contains(line.as_str())), "no line is lost");
    }

    #[test]
    fn a_long_paragraph_is_cut_at_sentences_and_an_endless_sentence_is_marked() {
        let text = "One short sentence. Another short sentence here. A third one ends it. ".repeat(6);
        let passages = passages(&document(&text), &[], 16, &words);
        assert!(passages.len() > 2);
        assert!(passages.iter().all(|p| p.at_boundaries && p.text.ends_with('.')), "{passages:#?}");
        let endless = "word ".repeat(50);
        let passages = super::passages(&document(&endless), &[], 16, &words);
        assert!(passages.iter().all(|p| !p.at_boundaries));
        // A minified line of 200,000 words in a code block: cut in one pass, none lost.
        let minified = format!("```js\n{}\n```", "x=1; ".repeat(200_000));
        let passages = super::passages(&document(&minified), &[], 64, &words);
        assert!(passages.iter().all(|p| !p.at_boundaries && words(&p.text) <= 64 + 2));
        let kept: String = passages
            .iter()
            .flat_map(|p| p.text.lines().filter(|l| !l.starts_with("```")))
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect();
        assert_eq!(kept, "x=1;".repeat(200_000));
    }
}
