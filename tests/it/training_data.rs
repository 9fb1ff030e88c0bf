//! The fine-tuning sets a build writes, checked rule by rule on a fixture corpus in Markdown and
//! HTML: plain instructions (no links, anchors, code marks or site names), one answer per
//! instruction, answers cut at block boundaries with code blocks whole or fenced again, code
//! answers asked for as code, sections over several passages numbered, a cross-post in other
//! chrome removed for its fuller copy, and the quality report in the manifest.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use twin_operator::api::TwinDataset;
use twin_operator::pipeline::build;

use crate::pipeline::{Scratch, lines, model_dir, options};

const SITE: &str = "Ada Writes";

/// A paragraph of its own words (no shingle in common with another paragraph's), three
/// sentences long.
fn paragraph(topic: &str, n: usize) -> String {
    const WORDS: [&str; 48] = [
        "value", "owner", "scope", "memory", "reader", "writer", "compiler", "thread", "borrow", "stack",
        "heap", "string", "vector", "closure", "trait", "module", "crate", "test", "error", "result",
        "pointer", "lifetime", "pattern", "match", "loop", "function", "method", "struct", "enum", "field",
        "type", "macro", "channel", "mutex", "future", "task", "buffer", "file", "line", "word", "page",
        "draft", "essay", "post", "note", "idea", "example", "question",
    ];
    let mut state =
        topic.bytes().fold(n as u64 * 7919 + 17, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        WORDS[(state >> 33) as usize % WORDS.len()]
    };
    let sentence = |next: &mut dyn FnMut() -> &'static str| {
        let words: Vec<&str> = (0..9).map(|_| next()).collect();
        let mut sentence = words.join(" ");
        sentence[..1].make_ascii_uppercase();
        sentence + "."
    };
    (0..3).map(|_| sentence(&mut next)).collect::<Vec<_>>().join(" ")
}

/// The body that the newsletter and the blog both carry.
const CROSS_POST_BODY: [&str; 8] = [
    "I publish every essay twice: once on the blog, where it stays, and once in the newsletter, where it arrives.",
    "The newsletter copy gets a greeting and a sign-off, the blog copy gets a sidebar and links to older posts, and the words in between are the same.",
    "Search engines and readers both see the blog as the home of the essay, so the newsletter links there at the end of every issue.",
    "A twin trained on both copies would learn that essay twice as well as any other, which is exactly the bias I do not want it to have.",
    "Editing happens on the blog first, because corrections there reach everyone who arrives later from a search or a link.",
    "The letter goes out on Sunday mornings, when most of my readers have the time to read something longer than a post.",
    "Some readers only ever see one of the copies, and they should not miss anything by choosing the one they prefer.",
    "Keeping the two in step costs me ten minutes a week, which is far less than answering questions about differences.",
];

fn corpus(scratch: &Scratch) {
    let moves: Vec<String> = (1..=8).map(|n| paragraph("moves", n)).collect();
    let code: Vec<String> =
        (0..40).map(|i| format!("    let value_{i} = compute({i}); // step {i}")).collect();
    scratch.write(
        "corpus/ownership.md",
        format!(
            "---\ntitle: Ownership, explained | {SITE}\n---\n# [Ownership, explained](#ownership-explained)\n\n\
             Ownership is the idea that every value has one owner at a time.\n\n\
             ## [Moves and copies](#moves-and-copies) {{#moves}}\n\n{}\n\n\
             ## Borrowing with `&T`\n\nThis is the whole program, line by line.\n\n```rust\nfn main() {{\n{}\n}}\n```\n\n\
             That is all the code there is.\n",
            moves.join("\n\n"),
            code.join("\n")
        ),
    );
    for (file, title, topic) in
        [("lifetimes.md", "Lifetimes without fear", "lifetimes"), ("errors.md", "Errors as values", "errors")]
    {
        let body: Vec<String> = (1..=3).map(|n| paragraph(topic, n)).collect();
        scratch.write(
            &format!("corpus/{file}"),
            format!("---\ntitle: {title} | {SITE}\n---\n# {title}\n\n{}\n", body.join("\n\n")),
        );
    }
    // The cross-post: the newsletter's copy, and the blog's fuller copy in other chrome.
    scratch.write(
        "corpus/newsletter/issue-7.md",
        format!(
            "# Why I cross-post\n\nHello friends.\n\n{}\n\nReply with your thoughts.\n",
            CROSS_POST_BODY.join("\n\n")
        ),
    );
    let html_body: String = CROSS_POST_BODY.iter().map(|p| format!("<p>{p}</p>")).collect();
    scratch.write(
        "corpus/articles/why-i-cross-post.html",
        format!(
            "<html><head><title>Why I cross-post | {SITE}</title></head><body><nav>Home | Archive</nav><article>\
             <h1>Why I cross-post</h1>\
             <h2 id=\"the-two-copies\"><a class=\"header\" href=\"#the-two-copies\">The two copies</a></h2>{html_body}\
             <h2 id=\"postscript\"><a class=\"header\" href=\"#postscript\">Postscript</a></h2>\
             <p>Older posts on the same theme are listed in the archive, with the year they were written and a line on what changed since.</p>\
             <p>If you arrived from the newsletter, the comments below are open, and I answer every one of them within a week.</p>\
             <p>A reader asked whether the two copies ever drift apart; they did once, in the first year, and that is why the blog is edited first now.</p>\
             </article><footer>Footer</footer></body></html>"
        ),
    );
}

fn dataset(scratch: &Scratch) -> TwinDataset {
    serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "ada", "namespace": "twins"},
        "spec": {"author": {"name": "Ada"},
                 "sources": [{"name": "blog", "files": {"uri": format!("file://{}", scratch.0.join("corpus").display()), "include": ["**/*.md", "**/*.html"]}}],
                 "chunking": {"maxTokens": 64, "overlapTokens": 8},
                 "embedding": {"model": format!("file://{}", model_dir().display()), "batchSize": 8},
                 "instruct": {"samplesPerChunk": 2, "testFraction": 0.25},
                 "output": {"uri": format!("file://{}", scratch.0.join("out").display())}}
    }))
    .unwrap()
}

fn instruction_and_answer(sample: &Value) -> (String, String) {
    let messages = &sample["messages"];
    (
        messages[1]["content"].as_str().unwrap().to_string(),
        messages[2]["content"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn the_fine_tuning_sets_follow_every_rule_on_a_markdown_and_html_corpus() {
    let scratch = Scratch::new("training-data");
    corpus(&scratch);
    let result = build(&dataset(&scratch), &options(&scratch)).await.unwrap();
    let root = scratch.0.join(format!("out/datasets/ada/{}", result.revision));
    let documents = lines(&root.join("documents.jsonl"));
    let samples: Vec<Value> = lines(&root.join("instruct/train.jsonl"))
        .into_iter()
        .chain(lines(&root.join("instruct/test.jsonl")))
        .collect();
    let pairs: Vec<(String, String)> = samples.iter().map(instruction_and_answer).collect();
    assert!(pairs.len() > 10, "{pairs:#?}");

    // Titles and instructions are plain text without the site's name.
    let titles: Vec<&str> = documents.iter().map(|d| d["title"].as_str().unwrap()).collect();
    assert!(titles.contains(&"Ownership, explained") && titles.contains(&"Why I cross-post"), "{titles:?}");
    for text in titles.iter().copied().chain(pairs.iter().map(|(i, _)| i.as_str())) {
        for markup in ["](", "[", "<a", "`", "#", "{", SITE] {
            assert!(!text.contains(markup), "{markup:?} in {text:?}");
        }
    }

    // One answer per instruction, across both splits; an answer is in one split only.
    let mut answers: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (instruction, answer) in &pairs {
        answers.entry(instruction).or_default().insert(answer);
    }
    assert!(answers.values().all(|a| a.len() == 1), "{answers:#?}");
    let train: HashSet<String> =
        lines(&root.join("instruct/train.jsonl")).iter().map(|s| instruction_and_answer(s).1).collect();
    let test: HashSet<String> =
        lines(&root.join("instruct/test.jsonl")).iter().map(|s| instruction_and_answer(s).1).collect();
    assert!(train.is_disjoint(&test));

    // Answers are the author's text cut at block boundaries, its links as their words (the
    // documents keep the targets, for citations): verbatim so, or a piece of a long code block
    // cut between lines and fenced again.
    let texts: Vec<String> = documents
        .iter()
        .map(|d| {
            let site = d["url"].as_str().and_then(twin_operator::pipeline::links::host_of);
            twin_operator::pipeline::links::as_words(d["text"].as_str().unwrap(), &Vec::from_iter(site))
        })
        .collect();
    let document_lines: HashSet<&str> = texts.iter().flat_map(|t| t.lines()).collect();
    for (_, answer) in &pairs {
        let verbatim = texts.iter().any(|t| t.contains(answer.as_str()));
        let refenced = answer.starts_with("```rust\n")
            && answer.ends_with("\n```")
            && answer.lines().filter(|l| !l.starts_with("```")).all(|l| document_lines.contains(l));
        assert!(verbatim || refenced, "not cut at a boundary: {answer:?}");
        let prose: String = answer.split("```").step_by(2).collect();
        for chrome in ["](", "¶", SITE] {
            assert!(!prose.contains(chrome), "{chrome:?} in an answer: {answer:?}");
        }
        assert_eq!(answer.matches("```").count() % 2, 0, "a code fence left open: {answer:?}");
        assert!(answer.ends_with(['.', '`']), "ends mid-sentence: {answer:?}");
    }
    let all_answers: String = pairs.iter().map(|(_, a)| a.as_str()).collect::<Vec<_>>().join("\n");
    for i in 0..40 {
        assert!(
            all_answers.contains(&format!("let value_{i} = compute({i});")),
            "line {i} of the code is lost"
        );
    }

    // Mostly-code answers are asked for as code, never "explain".
    let code_pairs: Vec<&(String, String)> =
        pairs.iter().filter(|(_, a)| a.starts_with("```") && a.ends_with("```")).collect();
    assert!(code_pairs.len() >= 2, "the 40-line block is over the 64-token budget: {pairs:#?}");
    for (instruction, _) in &code_pairs {
        assert!(
            instruction.contains("rust code") && !instruction.split_whitespace().any(|w| w == "explain"),
            "{instruction}"
        );
    }

    // The section over several passages is numbered part by part.
    let parts: Vec<&str> = answers
        .keys()
        .copied()
        .filter(|i| i.contains("the section \"Moves and copies\" of \"Ownership, explained\" (part"))
        .collect();
    let count =
        parts.iter().filter_map(|i| i.split(" of ").nth(2)).next().and_then(|n| n.split(')').next()).unwrap();
    let count: usize = count.parse().unwrap();
    assert!(count >= 2, "{parts:?}");
    for part in 1..=count {
        assert!(
            parts.iter().any(|i| i.contains(&format!("(part {part} of {count})"))),
            "part {part}: {parts:?}"
        );
    }

    // The cross-post: the newsletter's copy is contained in the blog's, which is kept.
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap()).unwrap();
    let removed = manifest["removedDocuments"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0]["kind"], "contained");
    assert!(removed[0]["document"].as_str().unwrap().ends_with("issue-7.md"), "{removed:?}");
    assert!(removed[0]["kept"].as_str().unwrap().ends_with("why-i-cross-post.html"), "{removed:?}");
    assert!(removed[0]["score"].as_f64().unwrap() >= 0.8);
    assert!(titles.iter().filter(|t| **t == "Why I cross-post").count() == 1);

    // The quality report, in the manifest and in the build's result.
    let quality = &manifest["quality"];
    assert_eq!(serde_json::to_value(&result.quality).unwrap(), *quality);
    assert_eq!(result.quality.samples, pairs.len());
    assert_eq!(result.quality.distinct_instructions, answers.len());
    assert_eq!(result.quality.duplicates.contained, 1);
    let code_share = code_pairs.len() as f64 / pairs.len() as f64;
    assert!((result.quality.code_answer_share - code_share).abs() < 0.01, "{quality}");
    assert!(
        result.quality.mean_answer_tokens > 10.0 && result.quality.mean_answer_tokens <= 64.0,
        "{quality}"
    );
    for key in ["dropped", "duplicates", "distinctInstructions", "codeAnswerShare", "meanAnswerTokens"] {
        assert!(quality.get(key).is_some(), "{key} in {quality}");
    }

    // Unchanged sources: the same revision, its report read back.
    let again = build(&dataset(&scratch), &options(&scratch)).await.unwrap();
    assert!(again.unchanged);
    assert_eq!((again.revision, again.quality), (result.revision, result.quality));
}
