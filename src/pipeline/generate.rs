//! The generator: any OpenAI-compatible chat completions API writes, for each training passage, the
//! instructions the author's passage answers, and (for DPO) a generic answer to each of them
//! that becomes the rejected side while the author's passage is the chosen one. What it wrote
//! is cached in the output store by passage content, so a refresh asks only about new passages.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::title::plain_text;
use crate::api::dataset::Generator;
use crate::contract::env;
use crate::hashing::sha256_hex;
use crate::net::http::Fetcher;
use crate::storage::ObjectStore;

/// Requests in flight at once.
const CONCURRENCY: usize = 4;

/// Time limit of one completion (generation is slow on busy servers).
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(180);

/// What the generator wrote for one passage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    /// Instructions the passage answers.
    pub instructions: Vec<String>,
    /// A generic answer to each instruction, in order (empty without preference pairs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,
}

/// A client of the generator API.
pub struct GeneratorClient {
    fetcher: Fetcher,
    endpoint: String,
    model: String,
    api_key: Option<String>,
}

impl GeneratorClient {
    /// A client for `spec`; the API key, when the spec names a Secret, comes from
    /// [`env::GENERATOR_API_KEY`](crate::contract::env::GENERATOR_API_KEY).
    pub fn new(spec: &Generator, fetcher: Fetcher) -> Result<Self, String> {
        let api_key = std::env::var(env::GENERATOR_API_KEY).ok().filter(|k| !k.is_empty());
        if spec.api_key_secret_ref.is_some() && api_key.is_none() {
            return Err(format!("the generator's API key is not in {}", env::GENERATOR_API_KEY));
        }
        Ok(Self {
            fetcher,
            endpoint: format!("{}/chat/completions", spec.url.trim_end_matches('/')),
            model: spec.model.clone(),
            api_key,
        })
    }

    /// One chat completion: the first choice's text.
    async fn complete(&self, system: &str, user: &str, temperature: f64) -> Result<String, String> {
        let body = json!({
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": temperature,
        });
        let answer = self
            .fetcher
            .post_json(&self.endpoint, &body, self.api_key.as_deref(), COMPLETION_TIMEOUT)
            .await
            .map_err(|e| format!("generator: {e}"))?;
        answer["choices"][0]["message"]["content"]
            .as_str()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("generator: {} gave no message content: {answer}", self.endpoint))
    }

    /// Instructions a reader could give that `passage` answers.
    pub async fn instructions(
        &self,
        author: &str,
        passage: &str,
        count: usize,
    ) -> Result<Vec<String>, String> {
        let system = "You build fine-tuning datasets. Given a passage, you write the requests a reader could \
                      make to which the passage is the ideal answer. Reply with a JSON array of strings only.";
        let user = format!(
            "The passage below was written by {author}. Write {count} distinct, self-contained requests \
             (questions or writing instructions) that this passage answers well. Do not mention the passage \
             itself.\n\nPassage:\n\"\"\"\n{passage}\n\"\"\""
        );
        let text = self.complete(system, &user, 0.7).await?;
        let instructions = parse_list(&text).into_iter().take(count).collect::<Vec<_>>();
        if instructions.is_empty() {
            return Err(format!("generator: no instruction could be read from {text:?}"));
        }
        Ok(instructions)
    }

    /// A plain, generic answer to an instruction: the rejected side of a preference pair.
    pub async fn generic_answer(&self, instruction: &str) -> Result<String, String> {
        let system = "You are a helpful assistant. Answer in a neutral, generic style.";
        self.complete(system, instruction, 0.7).await
    }
}

/// The items of a list the model wrote: a JSON array (possibly inside prose or a code fence),
/// an object with an `instructions` array, or else numbered or bulleted lines.
pub fn parse_list(text: &str) -> Vec<String> {
    let strings = |value: &Value| -> Option<Vec<String>> {
        let array = value.as_array().or_else(|| value["instructions"].as_array())?;
        Some(
            array
                .iter()
                .filter_map(|v| v.as_str())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    };
    for (open, close) in [('[', ']'), ('{', '}')] {
        if let (Some(start), Some(end)) = (text.find(open), text.rfind(close))
            && start < end
            && let Ok(value) = serde_json::from_str::<Value>(&text[start..=end])
            && let Some(items) = strings(&value)
        {
            return items;
        }
    }
    text.lines()
        .map(|line| {
            line.trim()
                .trim_start_matches(|c: char| c.is_ascii_digit() || matches!(c, '.' | ')' | '-' | '*' | '•'))
                .trim()
                .trim_matches('"')
                .to_string()
        })
        .filter(|line| line.len() > 3 && !line.starts_with("```"))
        .collect()
}

/// Where generated text is cached: one file per generator, model and sample settings.
pub fn cache_key(dataset: &str, spec: &Generator, count: usize, preference: bool) -> String {
    // The pipeline's version too: what is asked, and how replies are cleaned, follow it.
    let settings =
        format!("{}\n{}\n{count}\n{preference}\n{}", spec.url, spec.model, super::PIPELINE_VERSION);
    format!("datasets/{dataset}/cache/generated-{}.json", &sha256_hex(settings.as_bytes())[..12])
}

/// What the generator wrote for each passage, by its text hash: cached answers reused, the
/// rest asked for (a few requests at a time). Returns the map and how many passages were asked.
pub async fn generate(
    client: &GeneratorClient,
    store: &ObjectStore,
    cache_key: &str,
    author: &str,
    answers: &[&str],
    count: usize,
    preference: bool,
) -> Result<(BTreeMap<String, Generated>, usize), String> {
    let mut cache: BTreeMap<String, Generated> = match store.read(cache_key).await {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
        _ => BTreeMap::new(),
    };
    let mut wanted: Vec<(String, &str)> = Vec::new();
    let hashes: Vec<String> = answers.iter().map(|a| sha256_hex(a.as_bytes())).collect();
    let mut asking = std::collections::HashSet::new();
    for (hash, answer) in hashes.iter().zip(answers) {
        if !cache.contains_key(hash) && asking.insert(hash.clone()) {
            wanted.push((hash.clone(), answer));
        }
    }
    let asked = wanted.len();
    if asked > 0 {
        tracing::info!(passages = asked, cached = answers.len() - asked, "asking the generator");
    }
    let fresh: Vec<(String, Generated)> = futures::stream::iter(wanted)
        .map(|(hash, text)| async move {
            // Cleaned as titles are, so that the rejected answer answers the instruction kept;
            // an empty one stays, for the dataset's report to count.
            let instructions: Vec<String> =
                client.instructions(author, text, count).await?.iter().map(|i| plain_text(i)).collect();
            let mut rejected = Vec::new();
            if preference {
                for instruction in &instructions {
                    rejected.push(match instruction.is_empty() {
                        true => String::new(),
                        false => client.generic_answer(instruction).await?,
                    });
                }
            }
            Ok::<_, String>((hash, Generated { instructions, rejected }))
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    cache.extend(fresh);
    // Keep only this revision's passages: the cache follows the corpus, not its history.
    let hashes: std::collections::HashSet<String> = hashes.into_iter().collect();
    cache.retain(|hash, _| hashes.contains(hash));
    let bytes = serde_json::to_vec(&cache).expect("the cache serialises");
    store.write(cache_key, &bytes).await.map_err(|e| format!("cannot write the generator cache: {e}"))?;
    Ok((cache, asked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_read_from_json_fences_objects_or_lines() {
        assert_eq!(parse_list("```json\n[\"One?\", \" Two? \"]\n```"), ["One?", "Two?"]);
        assert_eq!(parse_list("Sure: {\"instructions\": [\"Why?\"]}"), ["Why?"]);
        assert_eq!(
            parse_list("1. First request\n2) Second request\n- Third request"),
            ["First request", "Second request", "Third request"]
        );
    }
}
