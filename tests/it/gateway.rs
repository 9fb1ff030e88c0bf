//! `twin serve` over real sockets: the embedded engine (the real SmolLM2 GGUF) answering from a
//! dataset the real pipeline built; hybrid retrieval finding what only BM25 ranks first; the
//! openai engine against a scripted upstream (plain, streamed, every fault); bad input; the
//! in-flight limit; the API key; a new revision swapped in while requests run; and the official
//! `openai` Python client.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use twin_operator::pipeline::build;
use twin_operator::serve::knowledge::DatasetLocation;
use twin_operator::storage::S3Options;

use super::pipeline::{Scratch, model_dir};
use crate::support::gateway::{Collector, Gateway, Upstream, client};
use crate::support::repo;

pub(crate) const POSTS: [(&str, &str); 5] = [
    (
        "retries.md",
        "# Why my operator retries\n\nWhen a reconcile fails, the operator waits and tries again, doubling the wait each time up to five minutes, with jitter so that a thousand failing objects do not all retry in the same second. A failure that a person must fix is not retried at all: it waits for the spec to change.",
    ),
    (
        "postmortem.md",
        "# The stale cache night\n\nINC-88231 was the night our embedding cache went stale and every twin answered from last month's posts. We now check the revision before serving.",
    ),
    (
        "outage.md",
        "# The worst outage I ran\n\nA certificate expired at three in the morning and every request failed for an hour. What went wrong, what we changed afterwards, and what I tell new on-call engineers about that night.",
    ),
    (
        "voice.md",
        "# Writing in your own voice\n\nI write the way I talk: short sentences, first person, and one idea a paragraph. A twin trained on that sounds like me; a twin trained on press releases sounds like a press release.",
    ),
    (
        "gpus.md",
        "# Renting GPUs\n\nI rent one H100 for a fine-tune and give it back the same afternoon. LoRA on all linear layers, rank 32, three epochs: that is the whole recipe, and it fits in one GPU's memory.",
    ),
];

/// Builds a dataset named `paul` from `posts` with the real pipeline; returns its folder URI.
pub(crate) async fn publish(scratch: &Scratch, posts: &[(&str, &str)]) -> String {
    for (path, text) in posts {
        scratch.write(&format!("corpus/{path}"), text);
    }
    let dataset = serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "paul", "namespace": "twins"},
        "spec": {"author": {"name": "Paul"},
                 "sources": [{"name": "blog", "files": {"uri": format!("file://{}", scratch.0.join("corpus").display()), "include": ["**/*.md"]}}],
                 "chunking": {"maxTokens": 128, "overlapTokens": 8},
                 "embedding": {"model": format!("file://{}", model_dir().display()), "batchSize": 8},
                 "output": {"uri": format!("file://{}", scratch.0.join("out").display())}}
    }))
    .unwrap();
    build(&dataset, &Default::default()).await.expect("the dataset builds");
    format!("file://{}", scratch.0.join("out/datasets/paul").display())
}

fn smollm() -> PathBuf {
    let path = repo::path(".cache/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "the embedded engine's model is missing: run scripts/fetch-models");
    path
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `--engine openai --upstream BASE` and more.
pub(crate) fn openai(base: &str, more: &[&str]) -> Vec<String> {
    args(&[&["--engine", "openai", "--upstream", base][..], more].concat())
}

pub(crate) fn models_dir() -> String {
    repo::path(".cache/models").display().to_string()
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
}

/// The `data:` payloads of an event stream, in order.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(str::to_string).collect()
}

async fn stream(client: &reqwest::Client, url: &str, body: Value) -> (u16, Vec<String>) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, events(&response.text().await.unwrap()))
}

fn user(question: &str) -> Value {
    json!([{"role": "user", "content": question}])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_engine_answers_from_the_dataset_streamed_and_not() {
    let scratch = Scratch::new("gateway-embedded");
    let dataset = publish(&scratch, &POSTS).await;
    let log = format!("file://{}", scratch.0.join("prompts").display());
    let gateway = Gateway::start(&args(&[
        "--dataset",
        &dataset,
        "--model",
        &smollm().display().to_string(),
        "--models-dir",
        &models_dir(),
        "--prompt-log",
        &log,
        "--prompt-log-flush",
        "100ms",
        "--replica",
        "gw-0",
        "--context-tokens",
        "2048",
    ]));
    gateway.wait_ready();
    let client = client();
    let chat = format!("{}/v1/chat/completions", gateway.url);

    let (status, answer) = post(&client, &chat, json!({"model": "paul", "messages": user("How do you rent GPUs for a fine-tune?"), "max_tokens": 24, "temperature": 0})).await;
    assert_eq!(status, 200, "{answer}");
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.trim().is_empty(), "{answer}");
    assert_eq!(answer["model"], "paul");
    assert!(answer["usage"]["completion_tokens"].as_u64().unwrap() <= 24);
    assert!(
        answer["usage"]["prompt_tokens"].as_u64().unwrap() > 50,
        "the passages are in the prompt: {answer}"
    );
    let sources = answer["sources"].as_array().unwrap();
    assert_eq!(sources[0]["title"], "Renting GPUs", "{answer}");
    assert!(sources[0]["url"].as_str().unwrap().ends_with("corpus/gpus.md"));

    // Greedy decoding is repeatable, and a stop sequence cuts the answer where it begins.
    let (_, again) = post(&client, &chat, json!({"messages": user("How do you rent GPUs for a fine-tune?"), "max_tokens": 24, "temperature": 0})).await;
    assert_eq!(again["choices"][0]["message"]["content"], text);
    let first_word = text.split_whitespace().nth(1).expect("two words");
    let (_, stopped) = post(&client, &chat, json!({"messages": user("How do you rent GPUs for a fine-tune?"), "max_tokens": 24, "temperature": 0, "stop": [first_word]})).await;
    let stopped_text = stopped["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        !stopped_text.contains(first_word) && text.starts_with(stopped_text),
        "{stopped_text:?} vs {text:?}"
    );
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop");

    let (status, events) = stream(&client, &chat, json!({"messages": user("How do you write?"), "max_tokens": 16, "stream": true, "stream_options": {"include_usage": true}})).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(first["sources"][0]["title"], "Writing in your own voice", "{first}");
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let streamed: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert!(!streamed.trim().is_empty());
    let usage = &chunks.last().unwrap()["usage"];
    assert!(
        usage["completion_tokens"].as_u64().unwrap() >= 1
            && usage["completion_tokens"].as_u64().unwrap() <= 16,
        "{usage}"
    );

    // Embeddings come from the dataset's model: the same vector as floats and as base64.
    let embeddings = format!("{}/v1/embeddings", gateway.url);
    let (status, floats) =
        post(&client, &embeddings, json!({"input": ["renting GPUs", "voice"], "model": "paul"})).await;
    assert_eq!(status, 200, "{floats}");
    let vector: Vec<f32> = serde_json::from_value(floats["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(vector.len(), 384);
    let (_, encoded) =
        post(&client, &embeddings, json!({"input": "renting GPUs", "encoding_format": "base64"})).await;
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> =
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(decoded, vector);

    assert_eq!(gateway.stop().code(), Some(0));
    let file = scratch.0.join("prompts/paul").read_dir().unwrap().next().unwrap().unwrap().path();
    let lines: Vec<Value> = std::fs::read_dir(&file)
        .unwrap()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(lines.len(), 4, "one line per answered chat request: {lines:?}");
    let line = &lines[0];
    assert_eq!(line["question"], "How do you rent GPUs for a fine-tune?");
    assert_eq!(line["answer"], text);
    assert_eq!(line["passages"][0]["title"], "Renting GPUs");
    assert_eq!(line["lineage"]["dataset"], "paul");
    assert_eq!(line["lineage"]["engine"], "embedded");
    assert!(line["latencyMs"]["total"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn hybrid_retrieval_finds_an_identifier_that_dense_search_ranks_low() {
    let scratch = Scratch::new("gateway-retrieval");
    let dataset = publish(&scratch, &POSTS).await;
    // A ticket id means nothing to the embedding model: the outage story is closer in meaning.
    let question = "What happened in incident INC-88231?";

    // In-process: dense search alone does not rank the passage first; BM25 does.
    let location = DatasetLocation::open(&dataset, std::path::Path::new("/"), &S3Options::default(), None)
        .await
        .unwrap();
    let folder = location.current().await.unwrap();
    let knowledge = location.load(&folder, None, &Default::default()).await.unwrap();
    let vector = knowledge.embedder.embed_one(question).unwrap();
    let title = |i: usize| knowledge.index.passage(i).title.clone().unwrap_or_default();
    let dense = knowledge.index.dense(&vector, 4);
    let lexical = knowledge.index.lexical(question, 4);
    assert_eq!(title(dense[0].0), "The worst outage I ran", "dense search alone ranks the distractor first");
    assert_eq!(title(lexical[0].0), "The stale cache night");
    assert_eq!(lexical.len(), 1, "only the postmortem holds the id");

    // Through the gateway, with an upstream that echoes the system prompt it was sent, and an
    // OTLP collector receiving the traces.
    let upstream = Upstream::default();
    let base = upstream.start().await;
    let collector = Collector::default();
    let otlp = collector.start().await;
    let gateway = Gateway::start_with_env(
        &args(&[
            "--engine",
            "openai",
            "--upstream",
            &base,
            "--dataset",
            &dataset,
            "--models-dir",
            &models_dir(),
            "--top-k",
            "1",
        ]),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp), ("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    gateway.wait_ready();
    let client = client();
    let chat = format!("{}/v1/chat/completions", gateway.url);
    let (status, answer) =
        post(&client, &chat, json!({"messages": user(question), "scenario": "echo"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["sources"][0]["title"], "The stale cache night", "{answer}");
    assert!(answer["sources"][0]["bm25"].as_f64().unwrap() > 0.0);
    let system = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You are Paul's twin"),
        "the default system prompt names the author: {system}"
    );
    assert!(system.contains("INC-88231 was the night") && system.contains("postmortem.md"), "{system}");
    // rag.topK 0 turns retrieval off for one request.
    let (_, plain) =
        post(&client, &chat, json!({"messages": user(question), "scenario": "echo", "rag": {"topK": 0}}))
            .await;
    assert_eq!(plain["sources"], json!([]));
    assert!(!plain["choices"][0]["message"]["content"].as_str().unwrap().contains("INC-88231 was"));

    // The traces: per request a chat span with retrieve (and embed within it) and generate
    // below it, the token counts on generate.
    assert_eq!(gateway.stop().code(), Some(0));
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;
    let spans: Vec<_> = collector
        .exports
        .lock()
        .unwrap()
        .iter()
        .flat_map(|body| {
            ExportTraceServiceRequest::decode(body.clone()).expect("an OTLP protobuf export").resource_spans
        })
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect();
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    assert_eq!(named("chat").len(), 2, "{:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    assert_eq!(named("retrieve").len(), 1, "retrieval was off for the second request");
    assert_eq!(named("embed")[0].parent_span_id, named("retrieve")[0].span_id);
    let generate = named("generate");
    assert_eq!(generate.len(), 2);
    assert!(named("chat").iter().any(|chat| chat.span_id == generate[0].parent_span_id));
    let attribute = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
            .map(|v| format!("{v:?}"))
    };
    assert_eq!(
        attribute(generate[0], "completion_tokens").as_deref(),
        Some("IntValue(3)"),
        "{:?}",
        generate[0].attributes
    );
    assert_eq!(attribute(generate[0], "prompt_tokens").as_deref(), Some("IntValue(11)"));
    let chat =
        named("chat").into_iter().find(|chat| chat.span_id == named("retrieve")[0].parent_span_id).unwrap();
    assert_eq!(attribute(chat, "passages").as_deref(), Some("IntValue(1)"), "{:?}", chat.attributes);
    assert_eq!(attribute(chat, "finish_reason").as_deref(), Some("StringValue(\"stop\")"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_engine_passes_answers_through_whole_and_streamed() {
    let upstream = Upstream::default();
    let base = upstream.start().await;
    // What the upstream serves, as a TwinEndpoint's gateway is told it, for the lineage.
    let adapter = "s3://twins/models/paul-v1/g2-r2/adapter";
    let gateway = Gateway::start(&openai(
        &base,
        &[
            "--name",
            "paul",
            "--system-prompt",
            "You are Paul.",
            "--upstream-base-model",
            "hf://meta-llama/Llama-3.1-8B-Instruct",
            "--upstream-adapter",
            adapter,
        ],
    ));
    gateway.wait_ready();
    let client = client();
    let chat = format!("{}/v1/chat/completions", gateway.url);
    let (status, answer) = post(&client, &chat, json!({
        "model": "paul", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "temperature": 0.3, "top_p": 0.9, "max_completion_tokens": 40, "stop": "\n\n", "seed": 7, "presence_penalty": 0.5
    })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from upstream");
    assert_eq!(answer["usage"]["total_tokens"], 14);
    assert_eq!(
        answer["lineage"],
        json!({"engine": "openai", "baseModel": "hf://meta-llama/Llama-3.1-8B-Instruct", "adapter": adapter})
    );
    let sent = upstream.last();
    assert_eq!(sent["stream"], true, "a whole answer is asked for streamed, to bound its first token");
    assert_eq!(sent["model"], "scripted-model", "the upstream's first listed model");
    assert_eq!(sent["messages"][0], json!({"role": "system", "content": "You are Paul.\n\nBe brief."}));
    assert_eq!((sent["temperature"].as_f64().unwrap() * 10.0).round(), 3.0);
    assert_eq!(sent["max_tokens"], 40);
    assert_eq!(sent["stop"], json!(["\n\n"]));
    assert_eq!(sent["seed"], 7);
    assert_eq!(sent["presence_penalty"], 0.5);

    let (status, events) = stream(&client, &chat, json!({"messages": user("Hi"), "stream": true})).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["sources"], json!([]));
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Hello from upstream");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()), "no usage chunk unless asked for");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_faults_become_502_or_504_and_never_hang() {
    let upstream = Upstream::default();
    let base = upstream.start().await;
    let gateway = Gateway::start(&openai(
        &base,
        &[
            "--upstream-model",
            "m",
            "--first-token-timeout",
            "1s",
            "--between-tokens-timeout",
            "1s",
            // Far longer than the test waits: a whole answer must end at the first-token timeout.
            "--request-timeout",
            "300s",
            "--upstream-attempts",
            "2",
        ],
    ));
    gateway.wait_ready();
    let client = client();
    let chat = format!("{}/v1/chat/completions", gateway.url);
    for (scenario, stream, status, code) in [
        ("error-500", false, 502, "upstream_unavailable"),
        ("error-400", false, 400, "upstream_rejected"),
        ("garbage", false, 502, "upstream_bad_response"),
        ("garbage", true, 502, "upstream_bad_response"),
        ("hang", false, 504, "upstream_timeout"),
        ("hang", true, 504, "upstream_timeout"),
        ("slow-first-token", false, 504, "upstream_timeout"),
        ("slow-first-token", true, 504, "upstream_timeout"),
    ] {
        let started = std::time::Instant::now();
        let (got, body) =
            post(&client, &chat, json!({"messages": user("Hi"), "scenario": scenario, "stream": stream}))
                .await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{scenario} stream={stream}: {body}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{scenario} took {:?}", started.elapsed());
    }
    // A 500 is retried once (before any answer began); a 400 is not.
    let received = upstream
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["scenario"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(received.iter().filter(|s| *s == "error-500").count(), 2);
    assert_eq!(received.iter().filter(|s| *s == "error-400").count(), 1);

    // A stream the upstream cuts ends with an error event and no [DONE].
    let (status, events) =
        stream(&client, &chat, json!({"messages": user("Hi"), "scenario": "cut", "stream": true})).await;
    assert_eq!(status, 200);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_unavailable", "{events:?}");
    assert!(!events.contains(&"[DONE]".to_string()));
    let text: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "Hello from");

    // An upstream that is down: 502 at once.
    drop(gateway);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gateway = Gateway::start(&args(&[
        "--engine",
        "openai",
        "--upstream",
        &format!("http://{closed}/v1"),
        "--upstream-model",
        "m",
        "--connect-timeout",
        "1s",
    ]));
    gateway.wait_ready();
    let (status, body) =
        post(&client, &format!("{}/v1/chat/completions", gateway.url), json!({"messages": user("Hi")})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (502, Some("upstream_unavailable")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("cannot reach the upstream"), "{body}");
    let metrics = client.get(format!("{}/metrics", gateway.url)).send().await.unwrap().text().await.unwrap();
    let sample = metrics
        .lines()
        .find(|l| l.starts_with("twin_gateway_errors_total{kind=\"upstream_unavailable\"}"))
        .expect("an error counter sample");
    assert_eq!(sample.rsplit(' ').next(), Some("1"), "{sample}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_openai_error_objects() {
    let upstream = Upstream::default();
    let base = upstream.start().await;
    let gateway = Gateway::start(&openai(
        &base,
        &[
            "--upstream-model",
            "m",
            "--name",
            "paul",
            "--max-body-bytes",
            "4096",
            "--context-tokens",
            "300",
            "--answer-tokens",
            "100",
        ],
    ));
    gateway.wait_ready();
    let client = client();
    let chat = format!("{}/v1/chat/completions", gateway.url);
    let raw = |body: &'static str| {
        let client = client.clone();
        let chat = chat.clone();
        async move {
            let response = client
                .post(&chat)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = raw("{\"messages\": [").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_json")), "{body}");
    let (status, body) = raw("{\"messages\": \"hello\"}").await;
    assert_eq!((status, body["error"]["type"].as_str()), (400, Some("invalid_request_error")), "{body}");
    let long = "word ".repeat(2000);
    for (request, status, param) in [
        (json!({"messages": []}), 400, "messages"),
        (json!({"model": "paul"}), 400, "messages"),
        (json!({"messages": [{"role": "wizard", "content": "hi"}]}), 400, "messages[0].role"),
        (json!({"messages": user("")}), 400, "messages[0].content"),
        (json!({"model": "gpt-4o", "messages": user("hi")}), 404, "model"),
        (json!({"messages": user("hi"), "n": 3}), 400, "n"),
        (
            json!({"messages": user("hi"), "tools": [{"type": "function", "function": {"name": "f"}}]}),
            400,
            "tools",
        ),
        (json!({"messages": user(&"word ".repeat(500))}), 400, "messages"),
        (json!({"messages": user("hi"), "max_tokens": 5000}), 400, "max_tokens"),
        (json!({"messages": user(&long)}), 413, ""),
    ] {
        let (got, body) = post(&client, &chat, request.clone()).await;
        assert_eq!(got, status, "{request}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        if !param.is_empty() {
            assert_eq!(body["error"]["param"], param, "{body}");
        }
    }
    let (_, body) = post(&client, &chat, json!({"messages": user(&"word ".repeat(500))})).await;
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    let missing = client.get(format!("{}/v1/nothing", gateway.url)).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"]["code"], "unknown_url");
    let model = client.get(format!("{}/v1/models/gpt-4o", gateway.url)).send().await.unwrap();
    assert_eq!(model.status().as_u16(), 404);
    assert!(upstream.received.lock().unwrap().is_empty(), "no bad request reached the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_in_flight_limit_answers_429_and_the_api_key_401() {
    let scratch = Scratch::new("gateway-key");
    scratch.write("key", "s3cret-key\n");
    let upstream = Upstream::default();
    let base = upstream.start().await;
    let gateway = Gateway::start(&openai(
        &base,
        &[
            "--upstream-model",
            "m",
            "--max-in-flight",
            "1",
            "--api-key-file",
            &scratch.0.join("key").display().to_string(),
            "--request-timeout",
            "3s",
        ],
    ));
    gateway.wait_ready();
    let client = client();
    let chat = format!("{}/v1/chat/completions", gateway.url);
    for header in [None, Some("Bearer wrong"), Some("Bearer s3cret-ke"), Some("s3cret-key")] {
        let mut request = client.post(&chat).json(&json!({"messages": user("hi")}));
        if let Some(value) = header {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{header:?}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "invalid_api_key");
    }
    let models = client.get(format!("{}/v1/models", gateway.url)).send().await.unwrap();
    assert_eq!(models.status().as_u16(), 401, "every /v1 route needs the key");
    assert_eq!(client.get(format!("{}/healthz", gateway.url)).send().await.unwrap().status().as_u16(), 200);

    let authorised = |scenario: &'static str| {
        client
            .post(&chat)
            .bearer_auth("s3cret-key")
            .json(&json!({"messages": user("hi"), "scenario": scenario}))
            .send()
    };
    let hanging = tokio::spawn(authorised("hang"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = authorised("plain").await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers()["retry-after"], "1", "a 429 says when to try again");
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["type"], "rate_limit_error");
    assert_eq!(hanging.await.unwrap().unwrap().status().as_u16(), 504);
    assert_eq!(authorised("plain").await.unwrap().status().as_u16(), 200, "the slot is free again");

    // A client that hangs up mid-stream frees its slot at once, and is counted.
    let mut slow = client
        .post(&chat)
        .bearer_auth("s3cret-key")
        .json(&json!({"messages": user("hi"), "scenario": "slow", "stream": true}))
        .send()
        .await
        .unwrap();
    assert!(slow.chunk().await.unwrap().is_some(), "the stream began");
    drop(slow);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        authorised("plain").await.unwrap().status().as_u16(),
        200,
        "the hung-up stream's slot is free"
    );
    let metrics = client.get(format!("{}/metrics", gateway.url)).send().await.unwrap().text().await.unwrap();
    let sample = |name: &str| {
        metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).map(str::to_string)
    };
    assert_eq!(
        sample("twin_gateway_errors_total{kind=\"client_disconnected\"}").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(sample("twin_gateway_in_flight ").as_deref(), Some("0"));
    assert_eq!(sample("twin_gateway_ready ").as_deref(), Some("1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_revision_is_swapped_in_while_requests_run() {
    let scratch = Scratch::new("gateway-swap");
    let dataset = publish(&scratch, &POSTS[..3]).await;
    let upstream = Upstream::default();
    let base = upstream.start().await;
    // Reloads only on SIGHUP: the interval is long.
    let gateway = Gateway::start(&openai(
        &base,
        &["--dataset", &dataset, "--models-dir", &models_dir(), "--reload-interval", "1h"],
    ));
    gateway.wait_ready();
    let client = client();
    let revision = |client: reqwest::Client, url: String| async move {
        let models: Value =
            client.get(format!("{url}/v1/models")).send().await.unwrap().json().await.unwrap();
        models["data"][0]["twin"]["revision"].as_str().unwrap().to_string()
    };
    let first = revision(client.clone(), gateway.url.clone()).await;
    let chat = format!("{}/v1/chat/completions", gateway.url);
    let load = {
        let client = client.clone();
        let chat = chat.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(6);
            while std::time::Instant::now() < deadline {
                let response = client.post(&chat).json(&json!({"messages": user("How do you rent GPUs?"), "stream": statuses.len() % 2 == 1})).send().await.unwrap();
                let status = response.status().as_u16();
                let body = response.text().await.unwrap();
                statuses.push((status, body.contains("[DONE]") || body.contains("\"chat.completion\"")));
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    publish(&scratch, &POSTS).await;
    std::process::Command::new("kill").args(["-HUP", &gateway.pid().to_string()]).status().unwrap();
    let mut second = first.clone();
    for _ in 0..100 {
        second = revision(client.clone(), gateway.url.clone()).await;
        if second != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(second, first, "SIGHUP loads the new revision:\n{}", gateway.log());
    let statuses = load.await.unwrap();
    assert!(statuses.len() > 10, "{statuses:?}");
    assert!(
        statuses.iter().all(|(status, complete)| *status == 200 && *complete),
        "a request failed during the swap: {statuses:?}"
    );
    let (_, answer) = post(&client, &chat, json!({"messages": user("How do you rent GPUs?")})).await;
    assert_eq!(
        answer["sources"][0]["title"], "Renting GPUs",
        "the new revision's passages are served: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_openai_client_talks_to_the_gateway() {
    let site = repo::path(".cache/python");
    assert!(site.join("openai").is_dir(), "the openai Python package is missing: run scripts/install-tools");
    let upstream = Upstream::default();
    let base = upstream.start().await;
    let scratch = Scratch::new("gateway-openai-client");
    let dataset = publish(&scratch, &POSTS).await;
    scratch.write("key", "client-key");
    let gateway = Gateway::start(&openai(
        &base,
        &[
            "--dataset",
            &dataset,
            "--models-dir",
            &models_dir(),
            "--api-key-file",
            &scratch.0.join("key").display().to_string(),
        ],
    ));
    gateway.wait_ready();
    let script = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="client-key", max_retries=0)
models = [m.id for m in client.models.list()]
assert models == ["paul"], models
answer = client.chat.completions.create(model="paul", messages=[{"role": "user", "content": "How do you rent GPUs?"}], max_tokens=20)
assert answer.choices[0].message.content == "Hello from upstream", answer
assert answer.model_extra["sources"][0]["title"] == "Renting GPUs", answer.model_extra
text, sources, usage = "", None, None
for chunk in client.chat.completions.create(model="paul", messages=[{"role": "user", "content": "How do you write?"}], stream=True, stream_options={"include_usage": True}):
    if sources is None:
        sources = chunk.model_extra["sources"]
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage
assert text == "Hello from upstream", text
assert sources[0]["title"] == "Writing in your own voice", sources
assert usage.total_tokens == 14, usage
try:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    raise SystemExit("a request for another model must fail")
except openai.NotFoundError as error:
    assert error.body["code"] == "model_not_found", error.body
try:
    openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="wrong", max_retries=0).models.list()
    raise SystemExit("a wrong key must fail")
except openai.AuthenticationError:
    pass
print("openai client ok")
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script, &gateway.url])
        .env("PYTHONPATH", &site)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("openai client ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A streamed answer whose tokens come slowly carries keep-alive comments between them, which
/// the gateway's own reader and OpenAI's clients skip, so that no proxy closes an idle answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_stream_carries_keep_alive_comments_between_its_tokens() {
    let upstream = Upstream::default();
    let base = upstream.start().await;
    let gateway = Gateway::start(&openai(&base, &["--upstream-model", "m", "--keep-alive", "50ms"]));
    gateway.wait_ready();
    let mut slow = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .json(&json!({"messages": user("hi"), "scenario": "slow", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status().as_u16(), 200);
    // The scripted upstream sends a word every 200 ms: a second of the answer holds comments
    // between its events.
    let mut received = String::new();
    let until = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(500), slow.chunk()).await {
            Ok(Ok(Some(chunk))) => received.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("the stream stopped early: {other:?}"),
        }
    }
    let comments = received.split("\n\n").filter(|event| event.starts_with(':')).count();
    let words = events(&received).len();
    assert!(comments >= 2 && words >= 3, "{comments} comments, {words} events in:\n{received}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_on_the_embedded_engine_gets_429_at_the_first_token_timeout_not_a_long_wait() {
    // One answer at a time on one thread: most of a burst waits in the queue, and must leave it
    // at the first-token timeout with 429 and Retry-After rather than wait its turn.
    let gateway = Gateway::start(&args(&[
        "--model",
        &smollm().display().to_string(),
        "--models-dir",
        &models_dir(),
        "--parallel",
        "1",
        "--threads",
        "1",
        "--first-token-timeout",
        "2s",
    ]));
    gateway.wait_ready();
    let client = client();
    let chat = format!("{}/v1/chat/completions", gateway.url);
    let burst = (0..24).map(|i| {
        let (client, chat) = (client.clone(), chat.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let body = json!({"messages": user(&format!("Write a long essay on the history of Rome, part {i}.")),
                              "max_tokens": 160, "temperature": 0.8, "seed": i});
            let response = client.post(&chat).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            let body: Value = response.json().await.unwrap();
            (status, retry_after, body, started.elapsed())
        })
    });
    let answers: Vec<_> = futures::future::join_all(burst).await.into_iter().map(Result::unwrap).collect();
    let refused: Vec<_> = answers.iter().filter(|(status, ..)| *status == 429).collect();
    let answered = answers.iter().filter(|(status, ..)| *status == 200).count();
    // A request that got the place as the first-token timeout neared may still write no token
    // before it (on a busy machine, the prompt alone takes a while on one thread): 504.
    let late: Vec<_> = answers.iter().filter(|(status, ..)| *status == 504).collect();
    assert!(answered >= 1, "the engine answered some of the burst: {answers:?}");
    assert!(!refused.is_empty(), "most of the burst could not get a place within 2 s: {answers:?}");
    assert_eq!(
        answered + refused.len() + late.len(),
        answers.len(),
        "every answer is 200, 429 or 504: {answers:?}"
    );
    for (_, _, body, waited) in &late {
        assert_eq!(body["error"]["code"], "upstream_timeout", "{body}");
        assert!(
            *waited >= Duration::from_secs(2) && *waited < Duration::from_secs(10),
            "a request with no token leaves at the first-token timeout: {waited:?}"
        );
    }
    for (_, retry_after, body, waited) in &refused {
        assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
        assert_eq!(body["error"]["code"], "engine_busy", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("in the embedded engine's queue"),
            "{body}"
        );
        assert!(
            *waited >= Duration::from_secs(2) && *waited < Duration::from_secs(10),
            "a queued request leaves at the first-token timeout, not when its turn comes: {waited:?}"
        );
    }
    // The engine is not left holding the refused requests: the next one is answered at once.
    let started = std::time::Instant::now();
    let (status, body) = post(&client, &chat, json!({"messages": user("Hi"), "max_tokens": 8})).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_is_held_while_the_engine_wakes_from_zero_and_gets_503_with_retry_after_at_the_wait() {
    // The engine's address, with nothing listening there yet: an engine scaled to zero.
    let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gateway = Gateway::start(&openai(
        &format!("http://{address}/v1"),
        &["--upstream-model", "m", "--upstream-wait-seconds", "3", "--connect-timeout", "1s"],
    ));
    gateway.wait_ready();
    let client = client();
    let chat = format!("{}/v1/chat/completions", gateway.url);

    // It never comes up: 503 with Retry-After once the wait is over, not a hang and not a 502.
    let started = std::time::Instant::now();
    let response = client.post(&chat).json(&json!({"messages": user("Hi")})).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "30", "a cold start takes a while");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "engine_starting", "{body}");
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(8), "{waited:?}");

    // It comes up 1.5 s into a request (streamed and not): held, then answered.
    drop(gateway);
    for stream in [false, true] {
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let gateway = Gateway::start(&openai(
            &format!("http://{address}/v1"),
            &["--upstream-model", "m", "--upstream-wait-seconds", "30", "--connect-timeout", "1s"],
        ));
        gateway.wait_ready();
        let chat = format!("{}/v1/chat/completions", gateway.url);
        let client = client.clone();
        let asked = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let response = client
                .post(&chat)
                .json(&json!({"messages": user("Hi"), "stream": stream}))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap(), started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let upstream = Upstream::default();
        upstream.start_on(listener).await;
        let (status, text, waited) = asked.await.unwrap();
        assert_eq!(status, 200, "stream={stream}: {text}");
        assert!(text.contains("Hello from") || text.contains("Hello"), "stream={stream}: {text}");
        assert!(waited >= Duration::from_millis(1400), "held until the engine came up: {waited:?}");
        assert_eq!(upstream.received.lock().unwrap().len(), 1, "asked once it was up");
    }
}

/// One `twin serve` serves two twins of SmolLM2 on one port: each with its own adapter (the
/// same bare prompt gets two different greedy answers, and the lineage names it) and its own
/// dataset, picked by `model`; the model is mapped into the process once; the metrics of both
/// come out together, labelled by twin.
#[tokio::test(flavor = "multi_thread")]
async fn one_twin_serve_answers_several_twins_by_model_from_one_copy_of_the_model() {
    let (one, two) = (Scratch::new("gateway-twins-anna"), Scratch::new("gateway-twins-ben"));
    let datasets = [publish(&one, &POSTS[..2]).await, publish(&two, &POSTS[2..]).await];
    let made = std::process::Command::new(repo::path("scripts/make-adapters"))
        .arg(one.0.join("adapters"))
        .arg("2")
        .output()
        .expect("scripts/make-adapters runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let adapter = |i: usize| one.0.join(format!("adapters/twin-{i}.gguf")).display().to_string();
    let twin = |name: &str, i: usize| format!("name={name},adapter={},dataset={}", adapter(i), datasets[i]);
    let gateway = Gateway::start(&args(&[
        "--model",
        &smollm().display().to_string(),
        "--models-dir",
        &models_dir(),
        "--twin",
        &twin("anna", 0),
        "--twin",
        &twin("ben", 1),
    ]));
    gateway.wait_ready();
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", gateway.pid())).unwrap();
    let model = smollm().display().to_string();
    assert_eq!(maps.lines().filter(|l| l.ends_with(&model)).count(), 1, "the model is mapped once");
    let client = client();
    let chat = format!("{}/v1/chat/completions", gateway.url);
    let titles = |posts: &[(&str, &str)]| -> Vec<String> {
        posts
            .iter()
            .map(|(_, text)| text.lines().next().unwrap().trim_start_matches("# ").to_string())
            .collect()
    };
    let mut greedy = std::collections::BTreeSet::new();
    for (i, (name, posts)) in [("anna", &POSTS[..2]), ("ben", &POSTS[2..])].into_iter().enumerate() {
        let (status, bare) = post(
            &client,
            &chat,
            json!({"model": name, "messages": user("What do you write about?"),
            "max_tokens": 16, "temperature": 0, "rag": {"topK": 0}}),
        )
        .await;
        assert_eq!(status, 200, "{bare}");
        assert_eq!(bare["model"], name);
        assert_eq!(bare["lineage"]["adapter"], adapter(i), "{bare}");
        greedy.insert(bare["choices"][0]["message"]["content"].as_str().unwrap().to_string());
        let (status, grounded) = post(
            &client,
            &chat,
            json!({"model": name, "messages": user("What went wrong that night?"), "max_tokens": 4}),
        )
        .await;
        assert_eq!(status, 200, "{grounded}");
        let own = titles(posts);
        let sources = grounded["sources"].as_array().unwrap();
        assert!(
            !sources.is_empty()
                && sources.iter().all(|s| own.contains(&s["title"].as_str().unwrap().to_string())),
            "{name}: {grounded}"
        );
    }
    assert_eq!(greedy.len(), 2, "each twin answers with its own adapter: {greedy:?}");
    let (status, body) = post(&client, &chat, json!({"messages": user("Hi")})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("model_required")), "{body}");
    let (status, body) = post(&client, &chat, json!({"model": "cleo", "messages": user("Hi")})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("model_not_found")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("anna, ben"), "{body}");
    let models: Value =
        client.get(format!("{}/v1/models", gateway.url)).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["anna", "ben"]);
    let metrics = client.get(format!("{}/metrics", gateway.url)).send().await.unwrap().text().await.unwrap();
    for name in ["anna", "ben"] {
        let series = format!(
            "twin_gateway_requests_total{{twin=\"{name}\",route=\"/v1/chat/completions\",status=\"200\"}} 2"
        );
        assert!(metrics.lines().any(|l| l == series), "{series} in:\n{metrics}");
    }
    assert_eq!(metrics.matches("# TYPE twin_gateway_requests counter").count(), 1, "each family once");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lineage_file_moves_what_answers_name_and_the_revision_retrieved_without_a_restart() {
    let scratch = Scratch::new("gateway-lineage");
    let dataset = publish(&scratch, &POSTS[..3]).await;
    let latest =
        || std::fs::read_to_string(scratch.0.join("out/datasets/paul/LATEST")).unwrap().trim().to_string();
    let first = latest();
    publish(&scratch, &POSTS).await;
    let second = latest();
    assert_ne!(first, second);
    let upstream = Upstream::default();
    let base = upstream.start().await;
    // What a TwinEndpoint on a shared engine is told through its ConfigMap: the older revision,
    // although the dataset's LATEST names the newer one.
    let file = scratch.0.join("lineage/model.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let served = |adapter: &str, revision: &str| {
        json!({"baseModel": "hf://meta-llama/Llama-3.1-8B", "adapterUri": adapter, "adapterRevision": revision,
               "datasetRevision": revision})
        .to_string()
    };
    std::fs::write(&file, served("s3://twins/adapters/paul-v1", &first)).unwrap();
    let gateway = Gateway::start(&openai(
        &base,
        &[
            "--name",
            "paul",
            "--dataset",
            &dataset,
            "--models-dir",
            &models_dir(),
            "--lineage-file",
            &file.display().to_string(),
            "--reload-interval",
            "1h",
        ],
    ));
    gateway.wait_ready();
    let client = client();
    let chat = format!("{}/v1/chat/completions", gateway.url);
    let ask = || post(&client, &chat, json!({"messages": user("How do you rent GPUs?")}));
    let (status, answer) = ask().await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["lineage"],
        json!({"dataset": "paul", "revision": first, "engine": "openai", "baseModel": "hf://meta-llama/Llama-3.1-8B",
               "adapter": "s3://twins/adapters/paul-v1", "adapterRevision": first}),
        "the pinned revision, not the dataset's newest"
    );
    assert_ne!(
        answer["sources"][0]["title"], "Renting GPUs",
        "the older revision has no such post: {answer}"
    );

    // A retrained adapter on the newer revision: the same process names it and retrieves from it.
    std::fs::write(&file, served("s3://twins/adapters/paul-v2", &second)).unwrap();
    let mut moved = Value::Null;
    for _ in 0..100 {
        moved = ask().await.1;
        if moved["lineage"]["revision"] == second.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(moved["lineage"]["adapter"], "s3://twins/adapters/paul-v2", "{moved}\n{}", gateway.log());
    assert_eq!(moved["lineage"]["adapterRevision"], second.as_str());
    assert_eq!(moved["lineage"]["revision"], second.as_str());
    assert_eq!(moved["sources"][0]["title"], "Renting GPUs", "the newer revision's passages: {moved}");
    let models: Value =
        client.get(format!("{}/v1/models", gateway.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["twin"]["adapter"], "s3://twins/adapters/paul-v2");
    assert_eq!(models["data"][0]["root"], "hf://meta-llama/Llama-3.1-8B");

    // A file that is not a served model changes nothing, and says why.
    std::fs::write(&file, "{\"baseModel\": ").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, kept) = ask().await;
    assert_eq!((status, &kept["lineage"]["adapter"]), (200, &json!("s3://twins/adapters/paul-v2")));
    assert!(gateway.log().contains("is not a served model"), "{}", gateway.log());
    assert_eq!(gateway.log().matches("is not a served model").count(), 1, "said once, not every second");
}
