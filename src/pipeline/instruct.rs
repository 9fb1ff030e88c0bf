//! Fine-tuning datasets in the TRL formats: SFT conversations (`messages`) whose answers are the
//! author's own passages (see [`super::passage`]), and a deterministic train/test split by
//! passage, so that no answer is in both.
//!
//! Without a generator, each instruction names its passage's section within its document (and
//! its part, when the section has several), and asks for code when the passage is mostly code;
//! no instruction is given two different answers. With a generator, its instructions are
//! cleaned the same way, and DPO triples pair the author's passage (chosen) with the
//! generator's generic answer (rejected); empty, repeated and refused answers are dropped.
//! Every drop is counted by reason in the [`QualityReport`].

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};

use super::document::Document;
use super::passage::Passage;
use super::title::plain_text;
pub use crate::contract::build_report::QualityReport;
use crate::hashing::sha256_hex;

/// The split a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training.
    Train,
    /// Held out.
    Test,
}

/// One SFT sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SftSample {
    /// Stable id (hash of the passage and the instruction's place).
    pub id: String,
    /// `{"messages": [...]}` in TRL's conversational format.
    pub record: Value,
    /// Train or test.
    pub split: Split,
}

/// The answer of an SFT sample: its assistant message.
pub fn answer_of(sample: &SftSample) -> Option<&str> {
    sample.record["messages"].as_array()?.iter().rev().find(|m| m["role"] == "assistant")?["content"].as_str()
}

/// The split of an id: the first 8 bytes of its hash, as a fraction, against `test_fraction`.
/// The same id always lands in the same split.
pub fn split_of(id: &str, test_fraction: f64) -> Split {
    let digest = sha256_hex(id.as_bytes());
    let fraction = u64::from_str_radix(&digest[..16], 16).expect("hex") as f64 / u64::MAX as f64;
    if fraction < test_fraction { Split::Test } else { Split::Train }
}

/// Why a sample was left out (the keys of [`QualityReport::dropped`]).
pub mod dropped {
    /// The passage had to be cut inside a sentence or a line of code.
    pub const NOT_AT_BOUNDARY: &str = "notAtBoundary";
    /// Every wording of its instruction was already another answer's.
    pub const DUPLICATE_INSTRUCTION: &str = "duplicateInstruction";
    /// The generator's instruction was empty once cleaned.
    pub const EMPTY_INSTRUCTION: &str = "emptyInstruction";
    /// The generator's answer (the rejected side) was empty.
    pub const EMPTY_ANSWER: &str = "emptyAnswer";
    /// The generator's answer was a refusal ("As an AI ...").
    pub const REFUSED_ANSWER: &str = "refusedAnswer";
    /// The generator gave the same answer to another instruction.
    pub const DUPLICATE_ANSWER: &str = "duplicateAnswer";
}

/// The system prompt of every sample.
fn system_prompt(author: &str) -> String {
    format!("You are {author}. Write in {author}'s voice.")
}

/// What a passage is about, for the instructions that ask for it.
struct Topic {
    /// `the section "Heading" of "Title" (part 2 of 3)`, or `"Title"`.
    subject: String,
    /// The heading, or the title.
    name: String,
}

fn topic(passage: &Passage, title: Option<&str>) -> Option<Topic> {
    let part = if passage.parts > 1 {
        format!(" (part {} of {})", passage.part, passage.parts)
    } else {
        String::new()
    };
    match (passage.heading.as_deref(), title) {
        (Some(heading), Some(title)) => Some(Topic {
            subject: format!("the section \"{heading}\" of \"{title}\"{part}"),
            name: heading.to_string(),
        }),
        (Some(only), None) | (None, Some(only)) => {
            Some(Topic { subject: format!("\"{only}\"{part}"), name: only.to_string() })
        }
        (None, None) => None,
    }
}

/// Instruction wordings for a passage, used in order up to `samples_per_passage`.
fn wordings(author: &str, passage: &Passage, topic: &Topic) -> Vec<String> {
    let Topic { subject, name } = topic;
    if passage.is_code() {
        let language = passage.code_language.as_deref().map(|l| format!("{l} ")).unwrap_or_default();
        return vec![
            format!("Show the {language}code for {subject}, as you would in your own writing."),
            format!("{author}, write the {language}code example for {subject}."),
            format!("Write the {language}code that goes with {subject}."),
            format!("What {language}code would you show your readers for {name}? Write it for {subject}."),
        ];
    }
    vec![
        format!("Write {subject} in your own voice."),
        format!("{author}, write {subject} the way you would explain {name} to your readers."),
        format!("How would you write {subject}? Write it as you would for your blog."),
        format!("Draft {subject}."),
    ]
}

/// The passage's opening words, to tell apart two passages that share a section name.
fn opening(text: &str) -> String {
    let first_prose =
        text.lines().find(|l| !l.trim().is_empty() && !l.trim_start().starts_with(['#', '`', '~']));
    let words: Vec<String> = plain_text(first_prose.unwrap_or(text))
        .split_whitespace()
        .take(8)
        .map(|w| w.trim_matches('"').to_string())
        .collect();
    words.join(" ")
}

/// A refusal rather than an answer.
fn is_refusal(text: &str) -> bool {
    let start: String = text.trim_start().chars().take(80).collect::<String>().to_lowercase();
    const OPENINGS: &[&str] = &[
        "as an ai",
        "as a language model",
        "as an assistant",
        "i'm sorry, but",
        "i am sorry, but",
        "sorry, but i",
        "i cannot help",
        "i can't help",
        "i can't assist",
        "i cannot assist",
        "i'm unable to",
        "i am unable to",
    ];
    OPENINGS.iter().any(|o| start.starts_with(o)) || start.contains("as an ai language model")
}

/// The samples being made: each instruction's answer, the splits, the drops by reason.
struct Samples<'a> {
    author: &'a str,
    test_fraction: f64,
    /// The answer (its hash) that each instruction already has.
    answers: HashMap<String, String>,
    rejected_seen: HashSet<String>,
    sft: Vec<SftSample>,
    preference: Vec<SftSample>,
    dropped: BTreeMap<String, usize>,
    code_answers: usize,
    /// The sum of the samples' answer lengths, each passage counted once.
    answer_tokens: usize,
    tokens_by_answer: HashMap<String, usize>,
    count_tokens: &'a dyn Fn(&str) -> usize,
}

impl<'a> Samples<'a> {
    fn new(author: &'a str, test_fraction: f64, count_tokens: &'a dyn Fn(&str) -> usize) -> Self {
        Self {
            author,
            test_fraction,
            answers: HashMap::new(),
            rejected_seen: HashSet::new(),
            sft: Vec::new(),
            preference: Vec::new(),
            dropped: BTreeMap::new(),
            code_answers: 0,
            answer_tokens: 0,
            tokens_by_answer: HashMap::new(),
            count_tokens,
        }
    }

    fn drop(&mut self, reason: &str) {
        *self.dropped.entry(reason.to_string()).or_default() += 1;
    }

    /// The first of `candidates` that is free or already this answer's; none when all are
    /// another answer's.
    fn claim(&mut self, candidates: &[String], answer_hash: &str) -> Option<String> {
        for candidate in candidates {
            match self.answers.get(candidate) {
                Some(owner) if owner == answer_hash => return None,
                Some(_) => continue,
                None => {
                    self.answers.insert(candidate.clone(), answer_hash.to_string());
                    return Some(candidate.clone());
                }
            }
        }
        None
    }

    /// Adds the sample answering the first free of `candidates` with `passage` (its `index`-th;
    /// `answer_hash` is its text's hash), and the preference triple when a rejected answer is
    /// given.
    fn add(
        &mut self,
        passage: &Passage,
        answer_hash: &str,
        index: usize,
        candidates: &[String],
        rejected: Option<&str>,
    ) {
        let Some(instruction) = self.claim(candidates, answer_hash) else {
            self.drop(dropped::DUPLICATE_INSTRUCTION);
            return;
        };
        let id = sha256_hex(format!("{answer_hash}\n{index}").as_bytes())[..16].to_string();
        // By passage: an answer is never in both splits.
        let split = split_of(answer_hash, self.test_fraction);
        let system = system_prompt(self.author);
        self.sft.push(SftSample {
            id: id.clone(),
            record: json!({"messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": instruction},
                {"role": "assistant", "content": passage.text},
            ]}),
            split,
        });
        if passage.is_code() {
            self.code_answers += 1;
        }
        let count_tokens = self.count_tokens;
        self.answer_tokens += *self
            .tokens_by_answer
            .entry(answer_hash.to_string())
            .or_insert_with(|| count_tokens(&passage.text));
        let Some(rejected) = rejected else { return };
        let rejected = rejected.trim();
        let reason = if rejected.is_empty() {
            Some(dropped::EMPTY_ANSWER)
        } else if is_refusal(rejected) {
            Some(dropped::REFUSED_ANSWER)
        } else if !self.rejected_seen.insert(sha256_hex(rejected.as_bytes())) {
            Some(dropped::DUPLICATE_ANSWER)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.drop(reason);
            return;
        }
        let record = json!({
            "prompt": [{"role": "system", "content": system}, {"role": "user", "content": instruction}],
            "chosen": [{"role": "assistant", "content": passage.text}],
            "rejected": [{"role": "assistant", "content": rejected}],
        });
        self.preference.push(SftSample { id, record, split });
    }

    fn finish(self) -> (Vec<SftSample>, Vec<SftSample>, QualityReport) {
        let report = QualityReport {
            samples: self.sft.len(),
            preference_samples: self.preference.len(),
            dropped: self.dropped,
            distinct_instructions: self.answers.len(),
            code_answer_share: ratio(self.code_answers, self.sft.len()),
            mean_answer_tokens: ratio(self.answer_tokens, self.sft.len()),
            ..Default::default()
        };
        (self.sft, self.preference, report)
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { (part as f64 / whole as f64 * 1000.0).round() / 1000.0 }
}

/// Passages fit to train on; the others are counted as dropped.
fn usable<'p>(passages: &'p [Passage], samples: &mut Samples) -> Vec<&'p Passage> {
    let mut kept = Vec::new();
    for passage in passages {
        if passage.at_boundaries {
            kept.push(passage);
        } else {
            samples.drop(dropped::NOT_AT_BOUNDARY);
        }
    }
    kept
}

/// SFT samples from passages, instructions from their sections and documents' titles.
pub fn derive_sft(
    author: &str,
    documents: &[Document],
    passages: &[Passage],
    samples_per_passage: usize,
    test_fraction: f64,
    count_tokens: &dyn Fn(&str) -> usize,
) -> (Vec<SftSample>, QualityReport) {
    let titles: HashMap<&str, Option<&str>> =
        documents.iter().map(|d| (d.id.as_str(), d.title.as_deref())).collect();
    let mut samples = Samples::new(author, test_fraction, count_tokens);
    for passage in usable(passages, &mut samples) {
        let title = titles.get(passage.document_id.as_str()).copied().flatten();
        let Some(topic) = topic(passage, title) else { continue };
        let opening = opening(&passage.text);
        let answer_hash = sha256_hex(passage.text.as_bytes());
        for (index, wording) in
            wordings(author, passage, &topic).into_iter().take(samples_per_passage).enumerate()
        {
            // Two sections may share a name: the passage's opening words tell them apart.
            let distinct = format!("{} It begins: \"{opening}\".", wording);
            samples.add(passage, &answer_hash, index, &[wording, distinct], None);
        }
    }
    let (sft, _, report) = samples.finish();
    (sft, report)
}

/// SFT samples whose instructions the generator wrote (cleaned as titles are), and DPO
/// triples (TRL's conversational preference format) where it also wrote rejected answers.
/// `generated` is keyed by the passage's text hash.
pub fn from_generated(
    author: &str,
    passages: &[Passage],
    generated: &BTreeMap<String, super::generate::Generated>,
    test_fraction: f64,
    count_tokens: &dyn Fn(&str) -> usize,
) -> (Vec<SftSample>, Vec<SftSample>, QualityReport) {
    let mut samples = Samples::new(author, test_fraction, count_tokens);
    for passage in usable(passages, &mut samples) {
        let answer_hash = sha256_hex(passage.text.as_bytes());
        let Some(written) = generated.get(&answer_hash) else { continue };
        for (index, instruction) in written.instructions.iter().enumerate() {
            let instruction = plain_text(instruction);
            if instruction.is_empty() {
                samples.drop(dropped::EMPTY_INSTRUCTION);
                continue;
            }
            let rejected = if written.rejected.is_empty() {
                None
            } else {
                Some(written.rejected.get(index).map_or("", String::as_str))
            };
            samples.add(passage, &answer_hash, index, &[instruction], rejected);
        }
    }
    samples.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_deterministic_and_close_to_the_fraction() {
        let ids: Vec<String> = (0..2000).map(|i| format!("sample-{i}")).collect();
        let test = ids.iter().filter(|id| split_of(id, 0.1) == Split::Test).count();
        assert!((150..250).contains(&test), "{test} of 2000 in test");
        assert!(ids.iter().all(|id| split_of(id, 0.1) == split_of(id, 0.1)));
        assert!(ids.iter().all(|id| split_of(id, 0.0) == Split::Train));
    }

    fn passage(text: &str, heading: Option<&str>, part: usize, parts: usize) -> Passage {
        Passage {
            document_id: "d".into(),
            ordinal: 0,
            text: text.into(),
            heading: heading.map(str::to_string),
            part,
            parts,
            code_share: 0.0,
            code_language: None,
            at_boundaries: true,
        }
    }

    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    #[test]
    fn every_instruction_has_one_answer_and_names_its_section_and_part() {
        let document = Document::new("blog", "files", "a.md", Some("Ownership".into()), "text".into(), true);
        let mut passages = vec![
            passage("Ownership is Rust's most unique feature.", Some("What Is Ownership?"), 1, 2),
            passage("It enables memory safety without a collector.", Some("What Is Ownership?"), 2, 2),
            // Another section of the same name.
            passage("Summary of the first part.", Some("Summary"), 1, 1),
            passage("Summary of the second part.", Some("Summary"), 1, 1),
            passage("Cut in the middle of a senten", Some("Broken"), 1, 1),
        ];
        passages.iter_mut().for_each(|p| p.document_id = document.id.clone());
        passages[4].at_boundaries = false;
        let (samples, report) = derive_sft("Ada", &[document], &passages, 2, 0.0, &words);
        assert_eq!(samples.len(), 8);
        let mut answers: HashMap<String, HashSet<String>> = HashMap::new();
        for sample in &samples {
            let messages = sample.record["messages"].as_array().unwrap();
            answers
                .entry(messages[1]["content"].as_str().unwrap().to_string())
                .or_default()
                .insert(messages[2]["content"].as_str().unwrap().to_string());
        }
        assert!(answers.values().all(|a| a.len() == 1), "{answers:#?}");
        assert!(answers.contains_key(
            "Write the section \"What Is Ownership?\" of \"Ownership\" (part 2 of 2) in your own voice."
        ));
        assert!(
            answers.keys().any(|i| i.contains("It begins: \"Summary of the second part.\"")),
            "{answers:#?}"
        );
        assert_eq!(report.dropped.get(dropped::NOT_AT_BOUNDARY), Some(&1));
        assert_eq!((report.samples, report.distinct_instructions), (8, 8));
    }

    #[test]
    fn code_passages_ask_for_code() {
        let mut code = passage("```rust\nfn main() {}\n```", Some("Hello"), 1, 1);
        code.code_share = 0.9;
        code.code_language = Some("rust".into());
        let (samples, report) = derive_sft("Ada", &[], &[code], 4, 0.0, &words);
        for sample in &samples {
            let instruction = sample.record["messages"][1]["content"].as_str().unwrap();
            assert!(instruction.contains("rust code") && !instruction.contains("explain"), "{instruction}");
        }
        assert_eq!(report.code_answer_share, 1.0);
    }

    #[test]
    fn generated_instructions_are_cleaned_and_bad_answers_dropped() {
        let passages = [passage("A passage.", None, 1, 1), passage("Another passage.", None, 1, 1)];
        let generated = BTreeMap::from([
            (
                sha256_hex(b"A passage."),
                super::super::generate::Generated {
                    instructions: vec![
                        "Explain [the thing](#thing)".into(),
                        "  ".into(),
                        "Why **this**?".into(),
                    ],
                    rejected: vec![
                        "Generic.".into(),
                        "x".into(),
                        "As an AI language model, I cannot.".into(),
                    ],
                },
            ),
            (
                sha256_hex(b"Another passage."),
                super::super::generate::Generated {
                    instructions: vec!["Explain the thing".into(), "Tell me more".into()],
                    rejected: vec!["Other.".into(), "Generic.".into()],
                },
            ),
        ]);
        let (sft, preference, report) = from_generated("Ada", &passages, &generated, 0.0, &words);
        let instructions: Vec<&str> =
            sft.iter().map(|s| s.record["messages"][1]["content"].as_str().unwrap()).collect();
        assert_eq!(instructions, ["Explain the thing", "Why this?", "Tell me more"]);
        assert_eq!(preference.len(), 1);
        assert_eq!(report.dropped.get(dropped::EMPTY_INSTRUCTION), Some(&1));
        assert_eq!(report.dropped.get(dropped::REFUSED_ANSWER), Some(&1));
        assert_eq!(report.dropped.get(dropped::DUPLICATE_INSTRUCTION), Some(&1));
        assert_eq!(report.dropped.get(dropped::DUPLICATE_ANSWER), Some(&1));
    }
}
