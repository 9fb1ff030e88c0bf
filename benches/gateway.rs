//! Benchmark of `twin serve` (run by `benches/gateway.sh`, which installs the peers):
//!
//! (a) overhead with retrieval off, against a local upstream that answers at once: requests/s
//!     and p50/p99 latency at 1, 16 and 64 clients, next to the upstream called directly and
//!     next to LiteLLM's proxy (one worker) in front of the same upstream;
//! (b) embedding plus retrieval per question at 1k, 10k and 100k chunks, next to faiss-cpu's
//!     exact `IndexFlatIP` on the same vectors (and whether the dense top-k agree);
//! (c) the embedded engine's prompt and generation tokens/s at 1 and 8 concurrent requests;
//! (d) the gateway's memory serving a 100k-chunk revision.
//!
//!   benches/gateway.sh                      (all parts)
//!   TWIN_BENCH_PARTS=overhead,retrieval benches/gateway.sh
//!
//! Environment: TWIN_BENCH_TWIN (the `twin` binary, default target/release/twin),
//! TWIN_BENCH_PYTHON_PATH (where litellm and faiss are installed), TWIN_BENCH_SECONDS (per
//! measurement, default 5).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use serde_json::{Value, json};
use twin_operator::embedding::Embedder;
use twin_operator::serve::index::{Index, Passage};

const K: usize = 4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parts() -> Vec<String> {
    std::env::var("TWIN_BENCH_PARTS")
        .unwrap_or_else(|_| "overhead,retrieval,engine,memory".into())
        .split(',')
        .map(str::to_string)
        .collect()
}

fn seconds() -> Duration {
    Duration::from_secs_f64(
        std::env::var("TWIN_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0),
    )
}

fn twin_binary() -> PathBuf {
    std::env::var_os("TWIN_BENCH_TWIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/twin"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn wait_ok(url: &str, limit: Duration) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    while started.elapsed() < limit {
        if client.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not answer within {limit:?}");
}

fn twin_serve(args: &[&str]) -> (Process, String) {
    let port = free_port();
    let child = Command::new(twin_binary())
        .arg("serve")
        .args(args)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-format", "text"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("twin serve starts (build it: cargo build --release)");
    (Process(child), format!("http://127.0.0.1:{port}"))
}

/// The upstream that answers at once.
async fn instant_upstream() -> String {
    let answer = serde_json::to_vec(&json!({
        "id": "up", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from upstream"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    }))
    .unwrap();
    let answer = axum::body::Bytes::from(answer);
    let app = Router::new()
        .route(
            "/v1/models",
            get(|| async { axum::Json(json!({"object": "list", "data": [{"id": "m", "object": "model"}]})) }),
        )
        .route(
            "/v1/chat/completions",
            post(move |_body: axum::body::Bytes| {
                let answer = answer.clone();
                async move { ([("content-type", "application/json")], answer) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    format!("http://{addr}/v1")
}

struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

/// `clients` connections sending `body` back to back for the bench's seconds (after a second
/// of warm-up).
async fn load(url: &str, body: &Value, clients: usize, headers: &[(&str, &str)]) -> Load {
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(clients).tcp_nodelay(true).build().unwrap();
    let body = Arc::new(serde_json::to_vec(body).unwrap());
    let run = |duration: Duration| {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let client = client.clone();
            let url = url.to_string();
            let body = body.clone();
            let headers: Vec<(String, String)> =
                headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let deadline = Instant::now() + duration;
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let mut request = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.as_ref().clone());
                    for (k, v) in &headers {
                        request = request.header(k.as_str(), v.as_str());
                    }
                    match request.send().await {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.bytes().await;
                            latencies.push(started.elapsed());
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            }));
        }
        tasks
    };
    for task in run(Duration::from_secs(1)) {
        task.await.unwrap();
    }
    let measured = seconds();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in run(measured) {
        let (l, e) = task.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    Load { rps: latencies.len() as f64 / measured.as_secs_f64(), p50_ms: at(0.5), p99_ms: at(0.99), errors }
}

async fn overhead() {
    println!(
        "\n## (a) gateway overhead, retrieval off, upstream answering at once ({}s per row)",
        seconds().as_secs_f64()
    );
    let upstream = instant_upstream().await;
    let (_gateway, gateway_url) = twin_serve(&[
        "--engine",
        "openai",
        "--upstream",
        &upstream,
        "--upstream-model",
        "m",
        "--max-in-flight",
        "100000",
        "--name",
        "twin",
    ]);
    wait_ok(&format!("{gateway_url}/readyz"), Duration::from_secs(30)).await;
    let python_path = std::env::var("TWIN_BENCH_PYTHON_PATH")
        .unwrap_or_else(|_| root().join(".cache/bench-python").display().to_string());
    let litellm_port = free_port();
    let litellm_log = root().join(".cache/bench/litellm.log");
    std::fs::create_dir_all(litellm_log.parent().unwrap()).unwrap();
    let litellm = Command::new("python3")
        .args([
            "-m",
            "litellm.proxy.proxy_cli",
            "--model",
            "openai/m",
            "--api_base",
            &upstream,
            "--port",
            &litellm_port.to_string(),
            "--host",
            "127.0.0.1",
            "--num_workers",
            "1",
        ])
        .env("PYTHONPATH", &python_path)
        .env("OPENAI_API_KEY", "unused")
        .env("LITELLM_MASTER_KEY", "sk-bench")
        .env("LITELLM_LOG", "ERROR")
        // No network here: the bundled model-cost map instead of fetching it.
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&litellm_log).unwrap())
        .stderr(std::fs::File::create(litellm_log.with_extension("err")).unwrap())
        .spawn()
        .ok()
        .map(Process);
    let litellm_url = format!("http://127.0.0.1:{litellm_port}");
    let litellm_up = if litellm.is_some() {
        let client = reqwest::Client::new();
        let started = Instant::now();
        let mut up = false;
        while started.elapsed() < Duration::from_secs(120) {
            if client
                .get(format!("{litellm_url}/health/liveliness"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        up
    } else {
        false
    };
    if !litellm_up {
        println!(
            "(LiteLLM did not start: see {}; install it with benches/gateway.sh)",
            litellm_log.with_extension("err").display()
        );
    }
    let body = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "Hello, who are you?"}], "max_tokens": 16});
    println!(
        "| clients | direct req/s | direct p50 / p99 ms | twin serve req/s | twin p50 / p99 ms | added p50 / p99 ms | LiteLLM req/s | LiteLLM p50 / p99 ms | twin / LiteLLM |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for clients in [1, 16, 64] {
        let direct = load(&format!("{upstream}/chat/completions"), &body("m"), clients, &[]).await;
        let twin = load(&format!("{gateway_url}/v1/chat/completions"), &body("twin"), clients, &[]).await;
        let lite = if litellm_up {
            Some(
                load(
                    &format!("{litellm_url}/v1/chat/completions"),
                    &body("openai/m"),
                    clients,
                    &[("authorization", "Bearer sk-bench")],
                )
                .await,
            )
        } else {
            None
        };
        let errors = direct.errors + twin.errors + lite.as_ref().map_or(0, |l| l.errors);
        println!(
            "| {clients} | {:.0} | {:.3} / {:.3} | {:.0} | {:.3} / {:.3} | {:.3} / {:.3} | {} | {} | {} |{}",
            direct.rps,
            direct.p50_ms,
            direct.p99_ms,
            twin.rps,
            twin.p50_ms,
            twin.p99_ms,
            twin.p50_ms - direct.p50_ms,
            twin.p99_ms - direct.p99_ms,
            lite.as_ref().map_or("-".into(), |l| format!("{:.0}", l.rps)),
            lite.as_ref().map_or("-".into(), |l| format!("{:.1} / {:.1}", l.p50_ms, l.p99_ms)),
            lite.as_ref().map_or("-".into(), |l| format!("{:.0}x", twin.rps / l.rps)),
            if errors > 0 { format!(" ({errors} errors)") } else { String::new() },
        );
    }
    drop(litellm);
}

/// Words of the Rust book (HTML that ships with the toolchain), for passages with a real
/// vocabulary; a fixed list when the docs are missing.
fn words() -> Vec<String> {
    let book = PathBuf::from(
        String::from_utf8(Command::new("rustc").args(["--print", "sysroot"]).output().unwrap().stdout)
            .unwrap()
            .trim(),
    )
    .join("share/doc/rust/html/book");
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(&book) {
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "html"))
            .collect();
        paths.sort();
        for path in paths.iter().take(60) {
            let html = std::fs::read_to_string(path).unwrap_or_default();
            let mut inside = false;
            for c in html.chars() {
                match c {
                    '<' => inside = true,
                    '>' => {
                        inside = false;
                        text.push(' ');
                    }
                    _ if !inside => text.push(c),
                    _ => {}
                }
            }
        }
    }
    let words: Vec<String> = text.split_whitespace().filter(|w| w.len() < 30).map(str::to_string).collect();
    if words.len() > 1000 {
        words
    } else {
        "the borrow checker ensures references are valid ownership moves values"
            .split(' ')
            .map(str::to_string)
            .collect()
    }
}

fn passages(words: &[String], n: usize, rng: &mut fastrand::Rng) -> Vec<Passage> {
    (0..n)
        .map(|i| {
            let start = rng.usize(..words.len() - 200);
            Passage {
                chunk_id: format!("doc{}-{}", i / 20, i % 20),
                title: Some(format!("Post {}", i / 20)),
                url: None,
                text: words[start..start + 180].join(" "),
            }
        })
        .collect()
}

fn unit_vectors(n: usize, dimension: usize, rng: &mut fastrand::Rng) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            let v: Vec<f32> = (0..dimension).map(|_| rng.f32() * 2.0 - 1.0).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn write_f32(path: &Path, rows: &[Vec<f32>]) {
    let bytes: Vec<u8> = rows.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 * q) as usize).min(values.len() - 1)]
}

fn retrieval() {
    println!(
        "\n## (b) embedding + retrieval per question (one at a time), top-{K}, next to faiss IndexFlatIP"
    );
    let work = root().join(".cache/bench");
    std::fs::create_dir_all(&work).unwrap();
    let embedder =
        Embedder::load(&root().join(".cache/models/all-MiniLM-L6-v2")).expect("run scripts/fetch-models");
    let words = words();
    let mut rng = fastrand::Rng::with_seed(7);
    let questions: Vec<String> = (0..200)
        .map(|_| {
            let start = rng.usize(..words.len() - 20);
            words[start..start + 12].join(" ")
        })
        .collect();
    let mut embed_ms = Vec::new();
    let queries: Vec<Vec<f32>> = questions
        .iter()
        .map(|q| {
            let started = Instant::now();
            let v = embedder.embed_one(q).unwrap();
            embed_ms.push(started.elapsed().as_secs_f64() * 1e3);
            v
        })
        .collect();
    write_f32(&work.join("queries.f32"), &queries);
    println!(
        "embedding a question (all-MiniLM-L6-v2, one thread): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&mut embed_ms.clone(), 0.5),
        percentile(&mut embed_ms, 0.99)
    );
    println!(
        "| chunks | twin dense p50 / p99 ms | twin hybrid (dense + BM25 + RRF) p50 / p99 ms | faiss IndexFlatIP p50 / p99 ms | same dense top-{K} | build (BM25 index) s |"
    );
    println!("|---|---|---|---|---|---|");
    let python_path = std::env::var("TWIN_BENCH_PYTHON_PATH")
        .unwrap_or_else(|_| root().join(".cache/bench-python").display().to_string());
    for n in [1_000, 10_000, 100_000] {
        let mut rng = fastrand::Rng::with_seed(n as u64);
        let vectors = unit_vectors(n, 384, &mut rng);
        write_f32(&work.join("vectors.f32"), &vectors);
        let started = Instant::now();
        let index = Index::new(passages(&words, n, &mut rng), vectors).unwrap();
        let build_s = started.elapsed().as_secs_f64();
        let mut dense_ms = Vec::new();
        let mut hybrid_ms = Vec::new();
        let mut ours = Vec::new();
        for (query, question) in queries.iter().zip(&questions) {
            let started = Instant::now();
            let hits = index.dense(query, K);
            dense_ms.push(started.elapsed().as_secs_f64() * 1e3);
            ours.push(hits.iter().map(|h| h.0).collect::<Vec<_>>());
            let started = Instant::now();
            std::hint::black_box(index.search(query, question, K));
            hybrid_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let faiss = Command::new("python3")
            .args([
                root().join("benches/faiss_search.py").to_str().unwrap(),
                work.to_str().unwrap(),
                "384",
                &K.to_string(),
            ])
            .env("PYTHONPATH", &python_path)
            .output()
            .unwrap();
        let (faiss_cell, same) = if faiss.status.success() {
            let report: Value = serde_json::from_slice(&faiss.stdout).unwrap();
            let theirs: Vec<Vec<usize>> = serde_json::from_value(report["ids"].clone()).unwrap();
            let same = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
            (
                format!(
                    "{:.3} / {:.3}",
                    report["p50_ms"].as_f64().unwrap(),
                    report["p99_ms"].as_f64().unwrap()
                ),
                format!("{same}/{}", ours.len()),
            )
        } else {
            (
                format!(
                    "faiss failed: {}",
                    String::from_utf8_lossy(&faiss.stderr).lines().last().unwrap_or_default()
                ),
                "-".into(),
            )
        };
        println!(
            "| {n} | {:.3} / {:.3} | {:.3} / {:.3} | {faiss_cell} | {same} | {build_s:.2} |",
            percentile(&mut dense_ms.clone(), 0.5),
            percentile(&mut dense_ms, 0.99),
            percentile(&mut hybrid_ms.clone(), 0.5),
            percentile(&mut hybrid_ms, 0.99),
        );
    }
}

/// One streamed answer: (prompt tokens, answer tokens, seconds to the first token, seconds to
/// the last).
async fn streamed(
    client: &reqwest::Client,
    chat: &str,
    body: &Value,
    started: Instant,
) -> (u64, u64, f64, f64) {
    let mut response = client.post(chat).json(body).send().await.unwrap();
    let mut first = None;
    let mut buffer = String::new();
    let mut usage = (0, 0);
    while let Some(bytes) = response.chunk().await.unwrap() {
        buffer.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data: ") else { continue };
            let Ok(chunk) = serde_json::from_str::<Value>(data) else { continue };
            if first.is_none()
                && chunk["choices"][0]["delta"]["content"].as_str().is_some_and(|c| !c.is_empty())
            {
                first = Some(started.elapsed().as_secs_f64());
            }
            if chunk["usage"].is_object() {
                usage = (
                    chunk["usage"]["prompt_tokens"].as_u64().unwrap(),
                    chunk["usage"]["completion_tokens"].as_u64().unwrap(),
                );
            }
        }
    }
    let last = started.elapsed().as_secs_f64();
    (usage.0, usage.1, first.unwrap_or(last), last)
}

async fn engine() {
    println!("\n## (c) embedded engine (SmolLM2-135M-Instruct Q4_1, llama.cpp on this CPU), retrieval off");
    let (_gateway, url) = twin_serve(&[
        "--models-dir",
        root().join(".cache/models").to_str().unwrap(),
        "--parallel",
        "8",
        "--context-tokens",
        "2048",
    ]);
    wait_ok(&format!("{url}/readyz"), Duration::from_secs(60)).await;
    let client = reqwest::Client::new();
    let chat = format!("{url}/v1/chat/completions");
    let long_prompt = "Summarise this: ".to_string()
        + &"Ownership is a set of rules that govern how a Rust program manages memory. ".repeat(25);
    let ask = |content: String, max_tokens: u32, seed: usize| {
        json!({
        "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0.7, "seed": seed,
        "stream": true, "stream_options": {"include_usage": true}})
    };
    let _ = streamed(&client, &chat, &ask("warm up".into(), 4, 0), Instant::now()).await;
    println!(
        "| concurrent requests | prompt tokens/s (aggregate) | generation tokens/s, aggregate (first to last token) | per request | generation tokens/s wall clock (prefill included) |"
    );
    println!("|---|---|---|---|---|");
    let mut single = 0.0;
    for concurrent in [1usize, 8] {
        let run = |content: String, max_tokens: u32| {
            let started = Instant::now();
            let tasks: Vec<_> = (0..concurrent)
                .map(|i| {
                    let client = client.clone();
                    let chat = chat.clone();
                    let body = ask(content.clone(), max_tokens, i);
                    tokio::spawn(async move { streamed(&client, &chat, &body, started).await })
                })
                .collect();
            async move {
                let mut results = Vec::new();
                for task in tasks {
                    results.push(task.await.unwrap());
                }
                results
            }
        };
        // Prefill: a long prompt, one token out.
        let prefill = run(long_prompt.clone(), 1).await;
        let prompt: u64 = prefill.iter().map(|r| r.0).sum();
        let prefill_s = prefill.iter().map(|r| r.3).fold(0.0, f64::max);
        // Generation: a short prompt, 128 tokens out at most, three rounds.
        let (mut decoded, mut decode_s, mut answered, mut wall_s) = (0u64, 0.0, 0u64, 0.0);
        for round in 0..3 {
            let results =
                run(format!("Write a long story about a crab who learns Rust, part {round}."), 128).await;
            let first = results.iter().map(|r| r.2).fold(f64::MAX, f64::min);
            let last = results.iter().map(|r| r.3).fold(0.0, f64::max);
            decoded += results.iter().map(|r| r.1.saturating_sub(1)).sum::<u64>();
            answered += results.iter().map(|r| r.1).sum::<u64>();
            decode_s += last - first;
            wall_s += last;
        }
        let rate = decoded as f64 / decode_s;
        if concurrent == 1 {
            single = rate;
        }
        println!(
            "| {concurrent} | {:.0} | {rate:.1}{} | {:.1} | {:.1} |",
            prompt as f64 / prefill_s,
            if concurrent > 1 { format!(" ({:.2}x one request's)", rate / single) } else { String::new() },
            rate / concurrent as f64,
            answered as f64 / wall_s,
        );
    }
}

async fn memory() {
    println!("\n## (d) gateway memory serving 100,000 chunks (384-dim vectors, BM25 over the text)");
    let n = 100_000;
    let folder = root().join(".cache/bench/dataset/datasets/big/r100k");
    std::fs::create_dir_all(&folder).unwrap();
    let words = words();
    let mut rng = fastrand::Rng::with_seed(11);
    let passages = passages(&words, n, &mut rng);
    let vectors = unit_vectors(n, 384, &mut rng);
    let mut chunks = Vec::new();
    let mut documents = Vec::new();
    for (i, p) in passages.iter().enumerate() {
        chunks.extend(serde_json::to_vec(&json!({"id": p.chunk_id, "document_id": format!("doc{}", i / 20), "ordinal": i % 20, "text": p.text})).unwrap());
        chunks.push(b'\n');
        if i % 20 == 0 {
            documents.extend(serde_json::to_vec(&json!({"id": format!("doc{}", i / 20), "title": p.title, "url": format!("https://example.com/{}", i / 20), "text": ""})).unwrap());
            documents.push(b'\n');
        }
    }
    std::fs::write(folder.join("chunks.jsonl"), chunks).unwrap();
    std::fs::write(folder.join("documents.jsonl"), documents).unwrap();
    let tensor = twin_operator::embedding::revision::embeddings_safetensors(
        "embeddings",
        &vectors,
        384,
        Default::default(),
    );
    std::fs::write(folder.join("embeddings.safetensors"), tensor).unwrap();
    let model = format!("file://{}", root().join(".cache/models/all-MiniLM-L6-v2").display());
    std::fs::write(folder.join("manifest.json"), serde_json::to_vec(&json!({"revision": "r100k", "dataset": "big", "author": "Bench", "params": {"embedding": {"model": model}}})).unwrap()).unwrap();
    let on_disk: u64 =
        std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let upstream = instant_upstream().await;
    let (gateway, url) = twin_serve(&[
        "--engine",
        "openai",
        "--upstream",
        &upstream,
        "--upstream-model",
        "m",
        "--dataset",
        &format!("file://{}", folder.display()),
    ]);
    let started = Instant::now();
    wait_ok(&format!("{url}/readyz"), Duration::from_secs(300)).await;
    let load_s = started.elapsed().as_secs_f64();
    let client = reqwest::Client::new();
    for i in 0..200 {
        let start = (i * 37) % (words.len() - 20);
        let body = json!({"messages": [{"role": "user", "content": words[start..start + 12].join(" ")}]});
        let response = client.post(format!("{url}/v1/chat/completions")).json(&body).send().await.unwrap();
        assert!(response.status().is_success());
    }
    let pid = gateway.0.id();
    println!(
        "revision on disk {:.0} MiB; loaded in {load_s:.1} s; after 200 questions: resident {:.0} MiB, peak {:.0} MiB",
        on_disk as f64 / 1048576.0,
        status_kib(pid, "VmRSS:") as f64 / 1024.0,
        status_kib(pid, "VmHWM:") as f64 / 1024.0
    );
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let parts = parts();
    println!("# twin serve benchmark ({} cores)", twin_operator::parallel::cores());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if parts.iter().any(|p| p == "overhead") {
        runtime.block_on(overhead());
    }
    if parts.iter().any(|p| p == "retrieval") {
        retrieval();
    }
    if parts.iter().any(|p| p == "engine") {
        runtime.block_on(engine());
    }
    if parts.iter().any(|p| p == "memory") {
        runtime.block_on(memory());
    }
}
