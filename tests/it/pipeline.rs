//! The dataset pipeline on real files with the real embedding model: embeddings equal
//! sentence-transformers' within 1e-4 cosine, artifacts are complete and reproducible, a
//! refresh embeds only what changed, and a failing source does not stop the others.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use twin_operator::api::TwinDataset;
use twin_operator::embedding::Embedder;
use twin_operator::embedding::revision::read_revision;
use twin_operator::pipeline::{BuildError, BuildOptions, build};
use twin_operator::storage::ObjectStore;

use crate::support::repo;

pub(crate) fn model_dir() -> PathBuf {
    let dir = repo::path(".cache/models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "the embedding model is missing: run scripts/fetch-models"
    );
    dir
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn embeddings_match_sentence_transformers_within_1e_4_cosine() {
    let fixture: Value =
        serde_json::from_str(&repo::read("tests/fixtures/embeddings/all-MiniLM-L6-v2.json")).unwrap();
    let texts: Vec<&str> = fixture["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let expected: Vec<Vec<f32>> = serde_json::from_value(fixture["embeddings"].clone()).unwrap();
    let embedder = Embedder::load(&model_dir()).unwrap();
    assert_eq!(embedder.dimension, 384);
    assert_eq!(embedder.max_seq_length, fixture["max_seq_length"].as_u64().unwrap() as usize);
    // Batched as the reference was, and one at a time: padding must not change a vector.
    for batch_size in [4, 1] {
        let actual = embedder.embed(&texts, batch_size).unwrap();
        for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
            let similarity = cosine(a, e);
            assert!(
                similarity >= 1.0 - 1e-4,
                "text {i} ({:?}...) batch {batch_size}: cosine {similarity}",
                &texts[i].chars().take(30).collect::<String>()
            );
            let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "not normalised: {norm}");
        }
    }
}

/// A scratch folder, removed at the end of the test.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("twin-pipeline-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn write(&self, relative: &str, content: impl AsRef<[u8]>) {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const POSTS: [(&str, &str); 3] = [
    (
        "posts/fine-tuning-data.md",
        "---\ntitle: How much data does a fine-tune need?\n---\n# How much data does a fine-tune need?\n\nMost teams overestimate how much data a fine-tune needs. A few hundred posts in your own voice, cleaned well, beat ten thousand scraped pages.\n\n## Cleaning\n\nFirst I export everything I have written, then I drop the reposts and the link dumps, then I split what is left into passages that each make one point.\n\n## Reading it aloud\n\nFinally I read a random sample of fifty passages aloud, because anything that sounds wrong spoken will sound wrong generated.\n",
    ),
    (
        "posts/operators.md",
        "# Operators are control loops with opinions\n\nThe loop is easy: read the desired state, read the actual state, act on the difference, write what you saw. The opinions are where the work is: which objects you own, which you only read, what you do when a reference is missing, and how you tell a person what to fix without flooding their event stream.\n",
    ),
    (
        "notes/retrieval.txt",
        "Retrieval beats memorisation for facts. A twin should sound like its author from fine-tuning and know what its author wrote from retrieval: the two jobs need different data, and mixing them makes both worse. Keep the index fresh and the adapter stable.\n",
    ),
];

const ARTICLE: &str = r#"<html><head><title>Why I write every day</title><meta property="article:published_time" content="2026-03-01T08:00:00Z"></head>
<body><nav><a href="/">Home</a> <a href="/about">About</a> <a href="/subscribe">Subscribe</a></nav>
<article><h1>Why I write every day</h1><p>Writing every day is less about output than about noticing. When I know I will write tonight, I pay attention all day, and the attention is the point. The words are a receipt.</p>
<p>It also builds a corpus. Ten years of daily notes is the best training set my twin could have: it is in my voice, about my topics, with my mistakes.</p></article>
<footer>© 2026 Paul. All rights reserved. Follow me on LinkedIn.</footer></body></html>"#;

pub(crate) fn corpus(scratch: &Scratch) {
    for (path, text) in POSTS {
        scratch.write(&format!("corpus/{path}"), text);
    }
    scratch.write("corpus/articles/why-i-write.html", ARTICLE);
    scratch.write("corpus/posts/copy-of-operators.md", POSTS[1].1);
    scratch.write("corpus/posts/stub.md", "# TODO\n\nSoon.");
    scratch.write("corpus/assets/logo.png", [0x89u8, b'P', b'N', b'G', 0, 0, 0, 13, 0, 1, 2]);
    scratch.write("corpus/posts/draft.md", "Not included by the globs.");
    scratch.write("configmaps/notes/standup.md", "# Stand-up habits\n\nI keep stand-ups to what changed since yesterday and what is blocked. Anything else goes to a thread, where the people who care can read it when they want to.");
    scratch.write("configmaps/notes/..data", "");
}

pub(crate) fn dataset(scratch: &Scratch, extra_source: Option<Value>) -> TwinDataset {
    let mut sources = vec![
        json!({"name": "blog", "files": {"uri": format!("file://{}", scratch.0.join("corpus").display()), "include": ["**/*.md", "**/*.txt", "**/*.html", "**/*.png"], "exclude": ["**/draft.md"]}}),
        json!({"name": "notes", "configMap": {"name": "notes"}}),
    ];
    sources.extend(extra_source);
    serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "paul", "namespace": "twins"},
        "spec": {"author": {"name": "Paul"}, "sources": sources,
                 "chunking": {"maxTokens": 64, "overlapTokens": 8},
                 "embedding": {"model": format!("file://{}", model_dir().display()), "batchSize": 8},
                 "instruct": {"samplesPerChunk": 2, "testFraction": 0.25},
                 "output": {"uri": format!("file://{}", scratch.0.join("out").display())}}
    }))
    .unwrap()
}

pub(crate) fn options(scratch: &Scratch) -> BuildOptions {
    let mut options = BuildOptions::default();
    options.collect.configmap_root = scratch.0.join("configmaps");
    options
}

pub(crate) fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn a_build_publishes_complete_reproducible_artifacts_and_refreshes_incrementally() {
    let scratch = Scratch::new("build");
    corpus(&scratch);
    let result = build(&dataset(&scratch, None), &options(&scratch)).await.unwrap();
    assert!(!result.unchanged);
    assert_eq!(result.clean.exact_duplicates, 1, "copy-of-operators.md");
    assert_eq!(result.clean.too_short, 1, "stub.md");
    assert_eq!(result.stats.documents, 5, "3 posts + 1 article + 1 ConfigMap key: {result:?}");
    let blog = result.sources.iter().find(|s| s.name == "blog").unwrap();
    assert_eq!((blog.documents, blog.error.as_deref()), (4, None));
    let root = scratch.0.join(format!("out/datasets/paul/{}", result.revision));
    assert_eq!(result.artifacts.root, format!("file://{}", root.display()));
    let documents = lines(&root.join("documents.jsonl"));
    assert_eq!(documents.len(), 5);
    let article =
        documents.iter().find(|d| d["url"].as_str().unwrap().ends_with("why-i-write.html")).unwrap();
    assert_eq!(article["title"], "Why I write every day");
    assert_eq!(article["published"], "2026-03-01T08:00:00Z");
    let text = article["text"].as_str().unwrap();
    assert!(
        text.contains("the attention is the point")
            && !text.contains("All rights reserved")
            && !text.contains("Subscribe"),
        "{text}"
    );
    let chunks = lines(&root.join("chunks.jsonl"));
    assert_eq!(chunks.len() as u64, result.stats.chunks);
    assert!(chunks.len() > documents.len(), "64-token chunks split the longer posts");
    // The gateway's reader sees the same revision: every passage with its vector.
    let store = ObjectStore::open(
        &format!("file://{}", scratch.0.join("out").display()).parse().unwrap(),
        std::path::Path::new("/"),
        &Default::default(),
    )
    .await
    .unwrap();
    let revision = read_revision(&store, &format!("datasets/paul/{}", result.revision))
        .await
        .unwrap()
        .expect("published");
    assert_eq!((revision.embeddings.len(), revision.embeddings[0].len()), (chunks.len(), 384));
    assert_eq!(revision.chunks[0].text, chunks[0]["text"].as_str().unwrap());
    assert_eq!(revision.manifest["revision"], result.revision.as_str());
    assert!(read_revision(&store, "datasets/paul/unpublished").await.unwrap().is_none());
    let train = lines(&root.join("instruct/train.jsonl"));
    let test = lines(&root.join("instruct/test.jsonl"));
    assert_eq!((train.len() + test.len()) as u64, result.stats.instruct_samples);
    assert_eq!(result.quality.samples as u64, result.stats.instruct_samples);
    assert!(!test.is_empty() && !train.is_empty());
    let sample = &train[0]["messages"];
    assert_eq!(sample[2]["role"], "assistant");
    let answer = sample[2]["content"].as_str().unwrap();
    assert!(
        documents.iter().any(|d| d["text"].as_str().unwrap().contains(answer)),
        "answers are the author's own passages: {answer:?}"
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["revision"], result.revision.as_str());
    assert_eq!(manifest["stats"]["chunks"], result.stats.chunks);

    // The same inputs give the same revision, and nothing is rewritten.
    let again = build(&dataset(&scratch, None), &options(&scratch)).await.unwrap();
    assert_eq!(again.revision, result.revision);
    assert!(again.unchanged);
    assert_eq!(again.stats, result.stats);

    // One new post: a new revision, and only its chunks are embedded.
    scratch.write("corpus/posts/new-post.md", "# Evaluation before fine-tuning\n\nBefore I fine-tune anything I write twenty questions my readers actually asked and the answers I actually gave. If the base model with retrieval already answers them in my voice, I stop there.");
    let refreshed = build(&dataset(&scratch, None), &options(&scratch)).await.unwrap();
    assert_ne!(refreshed.revision, result.revision);
    assert_eq!(refreshed.stats.documents, 6);
    assert!(
        refreshed.embedded_chunks >= 1 && refreshed.embedded_chunks <= 2,
        "embedded {} of {}",
        refreshed.embedded_chunks,
        refreshed.stats.chunks
    );
}

#[tokio::test]
async fn a_failing_source_is_reported_and_the_others_still_land() {
    let scratch = Scratch::new("failing");
    corpus(&scratch);
    let missing = json!({"name": "drafts", "files": {"uri": "file:///nonexistent/twin/drafts"}});
    let result = build(&dataset(&scratch, Some(missing)), &options(&scratch)).await.unwrap();
    let drafts = result.sources.iter().find(|s| s.name == "drafts").unwrap();
    assert_eq!(drafts.documents, 0);
    assert!(drafts.error.as_deref().unwrap().contains("file:///nonexistent/twin/drafts is not a folder"));
    assert_eq!(result.stats.documents, 5);
}

#[tokio::test]
async fn a_build_with_nothing_usable_fails_and_publishes_nothing() {
    let scratch = Scratch::new("empty");
    scratch.write("corpus/stub.md", "Too short.");
    let spec: TwinDataset = serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "empty"},
        "spec": {"author": {"name": "Nobody"}, "sources": [
                    {"name": "blog", "files": {"uri": format!("file://{}", scratch.0.join("corpus").display())}},
                    {"name": "notes", "configMap": {"name": "absent"}}],
                 "embedding": {"model": format!("file://{}", model_dir().display())},
                 "output": {"uri": format!("file://{}", scratch.0.join("out").display())}}
    }))
    .unwrap();
    match build(&spec, &options(&scratch)).await {
        Err(BuildError::NoDocuments { sources }) => {
            assert_eq!(sources.len(), 2);
            assert!(sources[1].error.as_deref().unwrap().contains("ConfigMap \"absent\" is not mounted"));
        }
        other => panic!("expected NoDocuments, got {other:?}"),
    }
    assert!(!scratch.0.join("out/datasets").exists(), "nothing is published");
}

#[test]
fn twin_dataset_build_prints_the_result_and_writes_the_termination_message() {
    let scratch = Scratch::new("cli");
    corpus(&scratch);
    let spec = serde_json::to_string(&dataset(&scratch, None)).unwrap();
    scratch.write("spec.json", &spec);
    let message = scratch.0.join("termination-log");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_twin"))
        .args(["dataset", "build", "-f"])
        .arg(scratch.0.join("spec.json"))
        .arg("--configmap-root")
        .arg(scratch.0.join("configmaps"))
        .arg("--termination-message-path")
        .arg(&message)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&message).unwrap()).unwrap();
    assert_eq!(printed["revision"], written["revision"]);
    assert_eq!(written["stats"]["documents"], 5);
    assert!(std::fs::read(&message).unwrap().len() <= 4096);
    // A bad file is a usage error with a clear message.
    scratch.write("bad.yaml", "kind: Nothing\n");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_twin"))
        .args(["dataset", "build", "-f"])
        .arg(scratch.0.join("bad.yaml"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not hold a TwinDataset"));
}

/// Feeds, pages and a broken feed served from 127.0.0.1, as fixtures.
pub(crate) async fn feed_server() -> std::net::SocketAddr {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;
    let long_post = "<p>Shipping a twin means shipping two things that age differently: the adapter, which captures a voice and changes rarely, and the index, which captures what was said and changes every week.</p><p>Treat them as two artifacts with two release trains. Retrain the adapter when your style drifts, which is rarely; rebuild the index nightly, which is cheap, because only new posts need embedding.</p><p>The operator encodes exactly this split: datasets refresh on a schedule, training jobs pin a revision, endpoints roll when either moves.</p>";
    let rss = format!(
        r#"<?xml version="1.0"?><rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>Paul's newsletter</title><link>http://twin.test/</link>
        <item><title>Two release trains</title><link>http://twin.test/posts/a</link><pubDate>Mon, 02 Nov 2026 08:00:00 GMT</pubDate><content:encoded><![CDATA[{long_post}]]></content:encoded></item>
        <item><title>Teaser only</title><link>LINK_B</link><pubDate>Sun, 01 Nov 2026 08:00:00 GMT</pubDate><description>Read the full post on the site.</description></item>
        <item><title>Slides</title><link>LINK_PDF</link><pubDate>Sat, 31 Oct 2026 08:00:00 GMT</pubDate><description>Slides.</description></item>
        </channel></rss>"#
    );
    let atom = r#"<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Paul on Medium</title><id>urn:medium:paul</id><updated>2026-10-01T00:00:00Z</updated>
        <entry><title>Evaluate before you fine-tune</title><id>urn:medium:1</id><updated>2026-10-01T00:00:00Z</updated><link href="http://twin.test/medium/1"/>
        <content type="html">&lt;p&gt;Before I fine-tune anything I write twenty questions my readers actually asked and the answers I actually gave. If the base model with retrieval already answers them in my voice, I stop there and save the GPU hours for something that needs them. It usually does not, and the list of questions becomes the evaluation set of the first adapter, which makes the second one honest.&lt;/p&gt;&lt;p&gt;The list lives next to the dataset spec, in git, where it is reviewed like code.&lt;/p&gt;</content></entry></feed>"#;
    let page_b = "<html><head><title>Teaser only</title></head><body><nav>Home | Archive | Subscribe</nav><article><h1>Teaser only</h1><p>The full post lives on the site: feeds that carry only a teaser are common on Medium and on self-hosted blogs, so the collector follows the link and extracts the article from the page itself.</p><p>Menus, footers and subscribe boxes are left behind; headings and paragraphs become Markdown the chunker understands.</p></article><footer>© Paul</footer></body></html>";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rss = rss
        .replace("LINK_B", &format!("http://{addr}/posts/b.html"))
        .replace("LINK_PDF", &format!("http://{addr}/posts/slides.html"));
    let app = axum::Router::new()
        .route("/feed.xml", get(move || async move { ([(CONTENT_TYPE, "application/rss+xml")], rss) }))
        .route("/atom.xml", get(move || async move { ([(CONTENT_TYPE, "application/atom+xml")], atom) }))
        .route(
            "/broken.xml",
            get(|| async {
                ([(CONTENT_TYPE, "application/rss+xml")], "<rss><channel><item><title>unclosed")
            }),
        )
        .route("/posts/b.html", get(move || async move { ([(CONTENT_TYPE, "text/html")], page_b) }))
        // A page that is really a PDF, whatever its name says.
        .route(
            "/posts/slides.html",
            get(|| async {
                ([(CONTENT_TYPE, "application/pdf")], b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj".to_vec())
            }),
        )
        // A server that never answers, and a page larger than any limit a test sets.
        .route(
            "/hang.xml",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(120)).await;
                "late"
            }),
        )
        .route("/huge.xml", get(|| async { "x".repeat(256 * 1024) }));
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    addr
}

fn feed_dataset(scratch: &Scratch, addr: std::net::SocketAddr) -> TwinDataset {
    serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "feeds"},
        "spec": {"author": {"name": "Paul"}, "sources": [
                    {"name": "newsletter", "feed": {"url": format!("http://{addr}/feed.xml")}},
                    {"name": "medium", "feed": {"url": format!("http://{addr}/atom.xml")}},
                    {"name": "broken", "feed": {"url": format!("http://{addr}/broken.xml")}},
                    {"name": "notes", "configMap": {"name": "notes"}}],
                 "chunking": {"maxTokens": 128, "overlapTokens": 16},
                 "embedding": {"model": format!("file://{}", model_dir().display())},
                 "output": {"uri": format!("file://{}", scratch.0.join("out").display())}}
    }))
    .unwrap()
}

#[tokio::test]
async fn feeds_yield_full_content_or_the_linked_article_and_a_broken_feed_fails_alone() {
    let scratch = Scratch::new("feeds");
    corpus(&scratch);
    let addr = feed_server().await;
    let mut options = options(&scratch);
    options.fetch.guard = twin_operator::net::NetworkGuard::new("127.0.0.1/32").unwrap();
    let result = build(&feed_dataset(&scratch, addr), &options).await.unwrap();
    let by_name = |name: &str| result.sources.iter().find(|s| s.name == name).unwrap().clone();
    assert_eq!((by_name("newsletter").documents, by_name("newsletter").error), (2, None));
    assert_eq!(by_name("medium").documents, 1);
    assert!(by_name("broken").error.unwrap().contains("is not an RSS or Atom feed"));
    assert_eq!(by_name("notes").documents, 1);
    let documents = lines(&scratch.0.join(format!("out/datasets/feeds/{}/documents.jsonl", result.revision)));
    let teaser = documents.iter().find(|d| d["title"] == "Teaser only").unwrap();
    let text = teaser["text"].as_str().unwrap();
    assert!(text.contains("the collector follows the link") && !text.contains("Subscribe"), "{text}");
    let full = documents.iter().find(|d| d["title"] == "Two release trains").unwrap();
    assert_eq!(full["url"], "http://twin.test/posts/a");
    assert!(full["published"].as_str().unwrap().starts_with("2026-11-02T08:00:00"));
}

#[tokio::test]
async fn crawlers_refuse_private_addresses_unless_the_operator_allows_them() {
    let scratch = Scratch::new("guard");
    corpus(&scratch);
    let addr = feed_server().await;
    // No allow-list: 127.0.0.1 is loopback, refused; the ConfigMap source still lands.
    let result = build(&feed_dataset(&scratch, addr), &options(&scratch)).await.unwrap();
    let newsletter = result.sources.iter().find(|s| s.name == "newsletter").unwrap();
    let error = newsletter.error.as_deref().unwrap();
    assert!(error.contains("refusing to connect to 127.0.0.1") && error.contains("loopback"), "{error}");
    assert_eq!(result.stats.documents, 1);
    // A name that resolves to a private address is refused after resolution too.
    let fetcher = twin_operator::net::http::Fetcher::new(Default::default()).unwrap();
    let refused =
        fetcher.get(&format!("http://localhost:{}/feed.xml", addr.port())).await.unwrap_err().to_string();
    assert!(refused.contains("refusing to connect"), "{refused}");
    let metadata = fetcher.get("http://169.254.169.254/latest/meta-data/").await.unwrap_err().to_string();
    assert!(metadata.contains("cloud metadata endpoint"), "{metadata}");
    // A web source on a refused address says so, not "disallowed by robots.txt": its robots.txt
    // request was refused by the same guard, and that is the cause to fix.
    let mut web = feed_dataset(&scratch, addr);
    web.spec.sources = serde_json::from_value(json!([
        {"name": "site", "web": {"urls": [format!("http://localhost:{}/posts/a.html", addr.port())]}},
        {"name": "notes", "configMap": {"name": "notes"}}]))
    .unwrap();
    let result = build(&web, &options(&scratch)).await.unwrap();
    let site = result.sources.iter().find(|s| s.name == "site").unwrap();
    let error = site.error.as_deref().unwrap();
    assert!(
        error.contains("refusing to connect to")
            && error.contains("loopback")
            && error.contains("crawler.allowNetworks")
            && !error.contains("robots.txt"),
        "{error}"
    );
}

#[tokio::test]
async fn binary_pages_hanging_servers_and_oversized_bodies_fail_their_source_alone() {
    let scratch = Scratch::new("bad-inputs");
    corpus(&scratch);
    let addr = feed_server().await;
    let mut options = options(&scratch);
    options.fetch.guard = twin_operator::net::NetworkGuard::new("127.0.0.1/32").unwrap();
    options.fetch.timeout = Duration::from_secs(1);
    options.fetch.attempts = 1;
    options.fetch.max_bytes = 64 * 1024;
    let mut spec = feed_dataset(&scratch, addr);
    let extra: Vec<twin_operator::api::dataset::DataSource> = serde_json::from_value(json!([
        {"name": "hanging", "feed": {"url": format!("http://{addr}/hang.xml")}},
        {"name": "huge", "feed": {"url": format!("http://{addr}/huge.xml")}}]))
    .unwrap();
    spec.spec.sources.extend(extra);
    let started = std::time::Instant::now();
    let result = build(&spec, &options).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "a hanging server must not hang the build");
    let error = |name: &str| {
        result.sources.iter().find(|s| s.name == name).unwrap().error.clone().unwrap_or_default()
    };
    assert!(error("hanging").contains("timed out"), "{}", error("hanging"));
    assert!(error("huge").contains("larger than the 65536-byte limit"), "{}", error("huge"));
    // The PDF entry is skipped; the feed's other entries land.
    let newsletter = result.sources.iter().find(|s| s.name == "newsletter").unwrap();
    assert_eq!((newsletter.documents, newsletter.error.as_deref()), (2, None));
    let documents = lines(&scratch.0.join(format!("out/datasets/feeds/{}/documents.jsonl", result.revision)));
    assert!(!documents.iter().any(|d| d["title"] == "Slides"));
    assert_eq!(result.stats.documents, 4, "2 newsletter + 1 medium + 1 ConfigMap key");
}
