//! Fine-tuning datasets in the TRL formats: SFT conversations (`messages`) whose answers are the
//! author's own passages, and a deterministic train/test split.
//!
//! With a generator, its instructions are used, and DPO triples pair the author's passage
//! (chosen) with the generator's generic answer (rejected). Without one, instructions are
//! derived from each passage's heading and the document's title, so the pipeline still yields
//! a usable SFT set.

use serde_json::{Value, json};

use super::chunk::Chunk;
use super::document::Document;
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
    /// Stable id (hash of the chunk and the template).
    pub id: String,
    /// `{"messages": [...]}` in TRL's conversational format.
    pub record: Value,
    /// Train or test.
    pub split: Split,
}

/// The split of a sample id: the first 8 bytes of its hash, as a fraction, against
/// `test_fraction`. The same id always lands in the same split.
pub fn split_of(id: &str, test_fraction: f64) -> Split {
    let digest = sha256_hex(id.as_bytes());
    let fraction = u64::from_str_radix(&digest[..16], 16).expect("hex") as f64 / u64::MAX as f64;
    if fraction < test_fraction { Split::Test } else { Split::Train }
}

/// The system prompt of every sample.
fn system_prompt(author: &str) -> String {
    format!("You are {author}. Write in {author}'s voice.")
}

/// The id of the `index`-th sample made from a chunk.
fn sample_id(chunk: &Chunk, index: usize) -> String {
    sha256_hex(format!("{}\n{index}", chunk.content_hash()).as_bytes())[..16].to_string()
}

/// An SFT conversation: the instruction, answered by the author's passage.
fn sft_record(author: &str, instruction: &str, answer: &str) -> Value {
    json!({"messages": [
        {"role": "system", "content": system_prompt(author)},
        {"role": "user", "content": instruction},
        {"role": "assistant", "content": answer},
    ]})
}

/// SFT samples whose instructions the generator wrote, and DPO triples (TRL's conversational
/// preference format) where it also wrote the rejected answers. Each sample's split follows
/// its id, so an SFT sample and its DPO triple land in the same split.
pub fn from_generated(
    author: &str,
    chunks: &[Chunk],
    generated: &std::collections::BTreeMap<String, super::generate::Generated>,
    test_fraction: f64,
) -> (Vec<SftSample>, Vec<SftSample>) {
    let mut sft = Vec::new();
    let mut preference = Vec::new();
    for chunk in chunks {
        let Some(written) = generated.get(&chunk.content_hash()) else { continue };
        for (index, instruction) in written.instructions.iter().enumerate() {
            let id = sample_id(chunk, index);
            let split = split_of(&id, test_fraction);
            sft.push(SftSample {
                id: id.clone(),
                record: sft_record(author, instruction, &chunk.text),
                split,
            });
            if let Some(rejected) = written.rejected.get(index) {
                let record = json!({
                    "prompt": [{"role": "system", "content": system_prompt(author)}, {"role": "user", "content": instruction}],
                    "chosen": [{"role": "assistant", "content": chunk.text}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                });
                preference.push(SftSample { id, record, split });
            }
        }
    }
    (sft, preference)
}

/// Instruction templates, used in order up to `samples_per_chunk`.
fn instructions(author: &str, topic: &str) -> Vec<String> {
    vec![
        format!("Write a passage about \"{topic}\" in your own voice."),
        format!("{author}, explain {topic} to your readers."),
        format!("How would you write about {topic}? Write it as you would for your blog."),
        format!("Draft a post section on {topic}."),
    ]
}

/// SFT samples from chunks, instructions from headings and titles.
pub fn derive_sft(
    author: &str,
    documents: &[Document],
    chunks: &[Chunk],
    samples_per_chunk: usize,
    test_fraction: f64,
) -> Vec<SftSample> {
    let titles: std::collections::HashMap<&str, Option<&str>> =
        documents.iter().map(|d| (d.id.as_str(), d.title.as_deref())).collect();
    let mut samples = Vec::new();
    for chunk in chunks {
        let topic = chunk
            .heading
            .as_deref()
            .or_else(|| titles.get(chunk.document_id.as_str()).copied().flatten())
            .map(|t| t.trim_matches(|c: char| c == '#' || c.is_whitespace()).to_string())
            .filter(|t| !t.is_empty());
        let Some(topic) = topic else { continue };
        for (index, instruction) in
            instructions(author, &topic).into_iter().take(samples_per_chunk).enumerate()
        {
            let id = sample_id(chunk, index);
            let record = sft_record(author, &instruction, &chunk.text);
            samples.push(SftSample { split: split_of(&id, test_fraction), id, record });
        }
    }
    samples
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

    #[test]
    fn answers_are_the_authors_passages() {
        let document = Document::new("blog", "files", "a.md", Some("Ownership".into()), "text".into(), true);
        let chunk = Chunk {
            id: "x-0".into(),
            document_id: document.id.clone(),
            ordinal: 0,
            text: "Ownership is Rust's most unique feature.".into(),
            heading: Some("What Is Ownership?".into()),
        };
        let samples = derive_sft("Ada", &[document], &[chunk], 2, 0.0);
        assert_eq!(samples.len(), 2);
        let messages = samples[0].record["messages"].as_array().unwrap();
        assert_eq!(messages[2]["role"], "assistant");
        assert_eq!(messages[2]["content"], "Ownership is Rust's most unique feature.");
        assert!(messages[1]["content"].as_str().unwrap().contains("What Is Ownership?"));
        assert_ne!(samples[0].id, samples[1].id);
    }
}
