//! The generator: an OpenAI-compatible chat API on 127.0.0.1 writes the instructions and the
//! rejected answers; the author's passages are the chosen answers; its output is cached so a
//! refresh asks only about new passages; refusals are dropped and counted; a generator that is
//! down publishes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};
use twin_operator::api::TwinDataset;
use twin_operator::pipeline::{BuildError, build};

use super::pipeline::{Scratch, corpus, dataset, lines, options};
use crate::support::serve::serve;

/// Requests seen by the fake API, and the bearer tokens they carried.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    unauthorised: AtomicUsize,
}

/// A chat completions API that answers like a model would: a fenced JSON list of requests when
/// asked for instructions, a bland answer otherwise.
async fn fake_openai(seen: Arc<Seen>) -> std::net::SocketAddr {
    let handler = move |headers: HeaderMap, Json(body): Json<Value>| {
        let seen = seen.clone();
        async move {
            seen.requests.fetch_add(1, Ordering::SeqCst);
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk-test") {
                seen.unauthorised.fetch_add(1, Ordering::SeqCst);
            }
            assert_eq!(body["model"], "writer-1");
            let system = body["messages"][0]["content"].as_str().unwrap_or_default();
            let user = body["messages"][1]["content"].as_str().unwrap_or_default();
            let content = if system.contains("fine-tuning datasets") {
                let passage = user.split("\"\"\"").nth(1).unwrap_or_default().trim();
                let words: Vec<&str> = passage.split_whitespace().take(4).collect();
                format!(
                    "Here you go:\n```json\n[\"What do you think about {0}?\", \"Write a post on {0}.\", \"Summarise {0}.\"]\n```",
                    words.join(" ")
                )
            } else if user.starts_with("Write a post on") {
                // A refusal, which the pipeline must drop and count.
                "As an AI language model, I cannot write posts.".to_string()
            } else {
                format!("Here is a generic answer to: {user}")
            };
            Json(json!({"id": "x", "object": "chat.completion", "model": "writer-1",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}))
        }
    };
    let app = axum::Router::new().route("/v1/chat/completions", post(handler));
    serve(app).await
}

fn with_generator(scratch: &Scratch, url: String) -> TwinDataset {
    let mut spec = dataset(scratch, None);
    spec.spec.instruct = Some(
        serde_json::from_value(json!({"samplesPerChunk": 2, "testFraction": 0.25, "preference": true,
            "generator": {"url": url, "model": "writer-1", "apiKeySecretRef": {"name": "openai", "key": "api-key"}}}))
        .unwrap(),
    );
    spec
}

#[tokio::test]
async fn the_generator_writes_instructions_and_rejected_answers_and_is_asked_only_about_new_passages() {
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("TWIN_GENERATOR_API_KEY", "sk-test") };
    let scratch = Scratch::new("generator");
    corpus(&scratch);
    let seen = Arc::new(Seen::default());
    let addr = fake_openai(seen.clone()).await;
    let mut options = options(&scratch);
    options.fetch.guard = twin_operator::net::NetworkGuard::new("127.0.0.1/32").unwrap();
    let spec = with_generator(&scratch, format!("http://{addr}/v1"));
    let result = build(&spec, &options).await.unwrap();
    let chunks = result.stats.chunks;
    // One instructions request per training passage, and one rejected answer per instruction.
    let requests = seen.requests.load(Ordering::SeqCst);
    assert_eq!(requests % 3, 0);
    let passages = requests / 3;
    assert!(passages >= result.stats.documents as usize, "{passages} passages");
    assert_eq!(seen.unauthorised.load(Ordering::SeqCst), 0, "the API key is sent as a bearer token");
    let quality = &result.quality;
    let duplicates = quality.dropped.get("duplicateInstruction").copied().unwrap_or(0);
    assert_eq!(quality.samples + duplicates, passages * 2, "{quality:?}");
    let refused = quality.dropped.get("refusedAnswer").copied().unwrap_or(0);
    assert!(refused > 0 && quality.preference_samples > 0, "{quality:?}");
    assert_eq!(quality.preference_samples + refused, quality.samples, "{quality:?}");
    assert_eq!(
        (result.stats.instruct_samples, result.stats.preference_samples),
        (quality.samples as u64, quality.preference_samples as u64)
    );
    let root = scratch.0.join(format!("out/datasets/paul/{}", result.revision));
    assert_eq!(
        result.artifacts.preference.as_deref(),
        Some(format!("file://{}/preference", root.display()).as_str())
    );
    let texts: Vec<String> = lines(&root.join("documents.jsonl"))
        .iter()
        .map(|d| d["text"].as_str().unwrap().to_string())
        .collect();
    let in_documents = |answer: &str| texts.iter().any(|t| t.contains(answer));
    let sft = [lines(&root.join("instruct/train.jsonl")), lines(&root.join("instruct/test.jsonl"))].concat();
    let dpo =
        [lines(&root.join("preference/train.jsonl")), lines(&root.join("preference/test.jsonl"))].concat();
    assert_eq!((sft.len(), dpo.len()), (quality.samples, quality.preference_samples));
    for sample in &sft {
        let messages = sample["messages"].as_array().unwrap();
        let instruction = messages[1]["content"].as_str().unwrap();
        assert!(
            instruction.starts_with("What do you think about") || instruction.starts_with("Write a post on"),
            "{instruction}"
        );
        assert!(!instruction.contains(" # ") && !instruction.contains("```"), "cleaned: {instruction}");
        assert!(in_documents(messages[2]["content"].as_str().unwrap()), "the author's own passage");
    }
    for triple in &dpo {
        assert_eq!(triple["prompt"][0]["role"], "system");
        assert!(in_documents(triple["chosen"][0]["content"].as_str().unwrap()));
        let instruction = triple["prompt"][1]["content"].as_str().unwrap();
        let rejected = triple["rejected"][0]["content"].as_str().unwrap();
        assert!(
            rejected.starts_with("Here is a generic answer") && rejected.contains(instruction),
            "{rejected}"
        );
    }
    // A new post: the generator is asked about its passage only.
    let before = seen.requests.load(Ordering::SeqCst);
    scratch.write("corpus/posts/new.md", "# Batch sizes\n\nI pick the batch size last, after the sequence length and the learning rate, because it is the knob that matters least once gradient accumulation exists and the one people argue about most.\n");
    let refreshed = build(&spec, &options).await.unwrap();
    let asked = seen.requests.load(Ordering::SeqCst) - before;
    assert_eq!(refreshed.stats.chunks, chunks + 1);
    assert_eq!(asked, 3, "one new passage: one instructions request and two rejected answers");
    assert_eq!(refreshed.quality.preference_samples, quality.preference_samples + 1, "one kept, one refused");
}

#[tokio::test]
async fn a_generator_that_is_down_fails_the_build_and_publishes_nothing() {
    let scratch = Scratch::new("generator-down");
    corpus(&scratch);
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut options = options(&scratch);
    options.fetch.guard = twin_operator::net::NetworkGuard::new("127.0.0.1/32").unwrap();
    options.fetch.attempts = 1;
    let mut spec = with_generator(&scratch, format!("http://{closed}/v1"));
    spec.spec.instruct.as_mut().unwrap().generator.as_mut().unwrap().api_key_secret_ref = None;
    let error = build(&spec, &options).await.unwrap_err();
    assert!(matches!(error, BuildError::Generator(_)), "{error}");
    assert_eq!(error.reason(), "GeneratorFailed");
    assert!(error.to_string().contains(&closed.to_string()), "{error}");
    let published = walk_manifests(&scratch.0.join("out"));
    assert!(published.is_empty(), "nothing is published: {published:?}");
}

fn walk_manifests(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else if entry.file_name() == "manifest.json" {
                found.push(entry.path());
            }
        }
    }
    found
}
