//! Every source kind served from 127.0.0.1 (a crawled site with robots.txt, a git repository
//! over smart HTTP, LinkedIn / Medium / Substack exports, a zip of Markdown, feeds, a
//! ConfigMap) through one build, and the archive attacks (`../` paths, zip bombs).

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use serde_json::{Value, json};
use twin_operator::api::TwinDataset;
use twin_operator::pipeline::build;
use zip::write::SimpleFileOptions;

use super::pipeline::{Scratch, corpus, feed_server, lines, model_dir, options};
use crate::support::git_http;
use crate::support::serve::serve;

/// A paragraph on its own topic, long enough to survive cleaning and unlike the others.
fn prose(topic: &str, detail: &str) -> String {
    format!(
        "{topic} is something I have written about for years. {detail} When I explain {topic} to a new \
         colleague I start from the problem it solves, not from the tool, because the tool changes every \
         other year and the problem stays."
    )
}

fn page(title: &str, body: &str, links: &str) -> String {
    format!(
        "<html><head><title>{title}</title></head><body><nav><a href=\"/\">Home</a> <a href=\"/about\">About</a></nav>\
         <main><article><h1>{title}</h1><p>{body}</p>{links}</article></main><footer>© 2026 Paul</footer></body></html>"
    )
}

/// A zip made of `(name, bytes)` entries, deflated.
pub(crate) fn zip_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// The crawled site: robots.txt keeps `/private/` out; the index links to two posts (one of
/// which links one level deeper), a private page, a PDF and another host.
async fn site_server(markdown_zip: Vec<u8>) -> SocketAddr {
    let index = page(
        "Paul's notes",
        &prose("Platform engineering", "I keep an index of my longer posts here, newest first."),
        "<ul><li><a href=\"/posts/one.html\">One</a></li><li><a href=\"posts/two.html#comments\">Two</a></li>\
         <li><a href=\"/private/secret.html\">Secret</a></li><li><a href=\"/files/talk.pdf\">Talk</a></li><li><a href=\"/files/slides.html\">Slides</a></li>\
         <li><a href=\"https://elsewhere.example/x\">Elsewhere</a></li></ul>",
    );
    let one =
        page("Post one", &prose("Capacity planning", "Queues tell you more than CPU graphs ever will."), "");
    let two = page(
        "Post two",
        &prose("Incident reviews", "The best reviews name the decision, not the person."),
        "<a href=\"/posts/three.html\">Three</a>",
    );
    let three = page("Post three", &prose("Deep links", "This page is two links from the start."), "");
    let secret = page("Secret", &prose("Private drafts", "Robots.txt keeps crawlers out of here."), "");
    let app = axum::Router::new()
        .route("/robots.txt", get(|| async { "User-agent: *\nDisallow: /private/\n" }))
        .route("/", get(move || async move { ([(CONTENT_TYPE, "text/html")], index) }))
        .route("/posts/one.html", get(move || async move { ([(CONTENT_TYPE, "text/html")], one) }))
        .route("/posts/two.html", get(move || async move { ([(CONTENT_TYPE, "text/html")], two) }))
        .route("/posts/three.html", get(move || async move { ([(CONTENT_TYPE, "text/html")], three) }))
        // A "page" that is really a PDF: skipped, the crawl goes on.
        .route(
            "/files/slides.html",
            get(|| async {
                ([(CONTENT_TYPE, "application/pdf")], b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec())
            }),
        )
        .route("/private/secret.html", get(move || async move { ([(CONTENT_TYPE, "text/html")], secret) }))
        .route(
            "/exports/notes.zip",
            get(move || async move { ([(CONTENT_TYPE, "application/zip")], markdown_zip) }),
        );
    serve(app).await
}

/// A repository made with `git`: three documents, and files the collector must leave out.
fn make_repository(scratch: &Scratch) {
    let work = scratch.0.join("repo-work");
    std::fs::create_dir_all(&work).unwrap();
    let write = |relative: &str, bytes: &[u8]| {
        let path = work.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    write(
        "README.md",
        format!("# Talks\n\n{}\n", prose("Public speaking", "Slides are notes for me.")).as_bytes(),
    );
    write(
        "docs/voice.md",
        format!("# Voice\n\n{}\n", prose("Writing style", "Short sentences win.")).as_bytes(),
    );
    write("notes/ideas.txt", prose("Side projects", "Most of mine are abandoned on purpose.").as_bytes());
    write(
        "vendor/lib/README.md",
        prose("Someone else's library", "Vendored code is not my writing.").as_bytes(),
    );
    write("node_modules/pkg/readme.md", prose("A dependency", "Not mine either.").as_bytes());
    write("src/main.rs", b"fn main() { println!(\"not in the include globs\"); }\n");
    write("docs/diagram.md", b"\x89PNG\r\n\x1a\n\0\0\0binary behind a .md name");
    git_http::git(&work, &["init", "-q", "-b", "main"]);
    git_http::git(&work, &["add", "."]);
    git_http::git(&work, &["commit", "-q", "-m", "posts"]);
    // A second commit: the clone must read the ref's latest tree.
    write(
        "docs/voice.md",
        format!("# Voice\n\n{} Revised: fewer adverbs.\n", prose("Writing style", "Short sentences win."))
            .as_bytes(),
    );
    git_http::git(&work, &["commit", "-q", "-am", "revise voice"]);
    let served = scratch.0.join("git");
    std::fs::create_dir_all(&served).unwrap();
    git_http::git(
        &scratch.0,
        &["clone", "-q", "--bare", work.to_str().unwrap(), served.join("talks.git").to_str().unwrap()],
    );
}

fn exports(scratch: &Scratch) {
    let shares = format!(
        "Date,ShareLink,ShareCommentary,SharedUrl,MediaUrl,Visibility\n\
         2026-10-01 08:00:00,https://www.linkedin.com/feed/update/urn:li:share:1,\"{}\n\nSecond paragraph, with \"\"quotes\"\".\",,,MEMBER_NETWORK\n\
         2026-10-02 08:00:00,https://www.linkedin.com/feed/update/urn:li:share:2,\"{}\",,,MEMBER_NETWORK\n\
         2026-10-03 08:00:00,https://www.linkedin.com/feed/update/urn:li:share:3,,https://example.com,,MEMBER_NETWORK\n",
        prose("Hiring", "I read every cover letter myself."),
        prose("Remote work", "Writing things down is the whole trick."),
    );
    let article = page("On mentoring", &prose("Mentoring", "Ask what they tried before you answer."), "");
    scratch.write(
        "exports/linkedin.zip",
        zip_of(&[
            ("Shares.csv", shares.into_bytes()),
            ("Articles/Articles/On mentoring.html", article.into_bytes()),
            ("Profile.csv", b"First Name,Last Name\nPaul,Example\n".to_vec()),
        ]),
    );
    let medium_post = |title: &str, topic: &str, detail: &str| {
        format!(
            "<!DOCTYPE html><html><head><title>{title}</title></head><body><article class=\"h-entry\">\
             <header><h1 class=\"p-name\">{title}</h1></header><section data-field=\"body\" class=\"e-content\">\
             <p>{}</p></section><footer><p>By Paul on <time class=\"dt-published\" datetime=\"2026-09-01T10:00:00Z\">September 1, 2026</time></p></footer></article></body></html>",
            prose(topic, detail)
        )
        .into_bytes()
    };
    scratch.write(
        "exports/medium.zip",
        zip_of(&[
            (
                "posts/2026-09-01_Observability-1a2b.html",
                medium_post("Observability", "Observability", "Logs are for people."),
            ),
            (
                "posts/2026-09-08_Testing-3c4d.html",
                medium_post("Testing", "Integration testing", "Fake servers beat mocks."),
            ),
            ("posts/draft_Unfinished-5e6f.html", medium_post("Unfinished", "Drafts", "Never published.")),
            ("profile/profile.html", b"<html><body>Paul</body></html>".to_vec()),
        ]),
    );
    let substack_csv = "post_id,post_date,is_published,email_sent_at,inbox_sent_at,type,audience,title,subtitle,podcast_url\n\
        101.why-twins,2026-08-01T07:00:00.000Z,true,,,newsletter,everyone,Why twins,What a twin is for,\n\
        102.evals,2026-08-08T07:00:00.000Z,true,,,newsletter,everyone,Evals first,,\n\
        103.draft,,false,,,newsletter,everyone,Draft,,\n";
    let body = |topic: &str, detail: &str| {
        format!("<p>{}</p><p>Thanks for reading!</p>", prose(topic, detail)).into_bytes()
    };
    scratch.write(
        "exports/substack.zip",
        zip_of(&[
            ("posts.csv", substack_csv.as_bytes().to_vec()),
            ("posts/101.why-twins.html", body("Language model twins", "A twin answers in your voice.")),
            ("posts/102.evals.html", body("Evaluation sets", "Write the questions before the model.")),
            ("posts/103.draft.html", body("Unpublished drafts", "Not for the dataset.")),
        ]),
    );
}

fn markdown_zip() -> Vec<u8> {
    zip_of(&[
        (
            "notes/kubernetes.md",
            format!("# Kubernetes\n\n{}\n", prose("Kubernetes operators", "Reconcile, do not script."))
                .into_bytes(),
        ),
        (
            "notes/rust.markdown",
            format!("# Rust\n\n{}\n", prose("Rust", "The borrow checker is a reviewer.")).into_bytes(),
        ),
        ("images/photo.jpg", vec![0xff, 0xd8, 0xff, 0xe0, 0, 0x10]),
    ])
}

fn all_sources_dataset(
    scratch: &Scratch,
    site: SocketAddr,
    git: SocketAddr,
    feeds: SocketAddr,
) -> TwinDataset {
    let file = |name: &str| format!("file://{}", scratch.0.join("exports").join(name).display());
    serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "everything"},
        "spec": {"author": {"name": "Paul"}, "sources": [
                    {"name": "site", "web": {"urls": [format!("http://{site}/")], "maxDepth": 1, "maxPages": 20}},
                    {"name": "talks", "git": {"url": format!("http://{git}/talks.git"), "ref": "main"}},
                    {"name": "linkedin", "archive": {"uri": file("linkedin.zip"), "format": "linkedin"}},
                    {"name": "medium", "archive": {"uri": file("medium.zip"), "format": "medium"}},
                    {"name": "substack", "archive": {"uri": file("substack.zip"), "format": "substack"}},
                    {"name": "notes-zip", "archive": {"uri": format!("http://{site}/exports/notes.zip"), "format": "markdown"}},
                    {"name": "newsletter", "feed": {"url": format!("http://{feeds}/feed.xml")}},
                    {"name": "medium-feed", "feed": {"url": format!("http://{feeds}/atom.xml")}},
                    {"name": "notes", "configMap": {"name": "notes"}}],
                 "chunking": {"maxTokens": 128, "overlapTokens": 16},
                 "embedding": {"model": format!("file://{}", model_dir().display())},
                 "output": {"uri": format!("file://{}", scratch.0.join("out").display())}}
    }))
    .unwrap()
}

fn count(documents: &[Value], source: &str) -> usize {
    documents.iter().filter(|d| d["source"] == source).count()
}

#[tokio::test]
async fn every_source_kind_lands_with_the_expected_counts_and_a_reproducible_revision() {
    let scratch = Scratch::new("all-sources");
    corpus(&scratch);
    exports(&scratch);
    make_repository(&scratch);
    let site = site_server(markdown_zip()).await;
    let git = git_http::serve(scratch.0.join("git")).await;
    let feeds = feed_server().await;
    let mut options = options(&scratch);
    options.fetch.guard = twin_operator::net::NetworkGuard::new("127.0.0.1/32").unwrap();
    let spec = all_sources_dataset(&scratch, site, git, feeds);
    let result = build(&spec, &options).await.unwrap();
    let expected = [
        ("site", 3),
        ("talks", 3),
        ("linkedin", 3),
        ("medium", 2),
        ("substack", 2),
        ("notes-zip", 2),
        ("newsletter", 2),
        ("medium-feed", 1),
        ("notes", 1),
    ];
    let reported: Vec<(String, u64, Option<String>)> =
        result.sources.iter().map(|s| (s.name.clone(), s.documents, s.error.clone())).collect();
    let wanted: Vec<(String, u64, Option<String>)> =
        expected.iter().map(|(n, c)| (n.to_string(), *c as u64, None)).collect();
    assert_eq!(reported, wanted);
    assert_eq!(result.stats.documents, 19);
    let root = scratch.0.join(format!("out/datasets/everything/{}", result.revision));
    let documents = lines(&root.join("documents.jsonl"));
    for (source, number) in expected {
        assert_eq!(count(&documents, source), number, "{source}");
    }
    let by_title = |title: &str| documents.iter().find(|d| d["title"] == title).cloned();
    // The crawl: robots.txt obeyed, depth respected, article text without navigation.
    assert!(by_title("Secret").is_none() && by_title("Post three").is_none() && by_title("Slides").is_none());
    let one = by_title("Post one").unwrap();
    assert_eq!(one["url"], format!("http://{site}/posts/one.html"));
    assert!(!one["text"].as_str().unwrap().contains("About"), "{}", one["text"]);
    // The repository: vendored, binary and unselected files left out.
    let talks: Vec<&str> =
        documents.iter().filter(|d| d["source"] == "talks").map(|d| d["url"].as_str().unwrap()).collect();
    assert!(talks.iter().all(|u| u.starts_with(&format!("http://{git}/talks/blob/main/"))), "{talks:?}");
    assert!(talks.iter().any(|u| u.ends_with("notes/ideas.txt")), "{talks:?}");
    let voice = documents.iter().find(|d| d["url"].as_str().unwrap().ends_with("docs/voice.md")).unwrap();
    assert!(voice["text"].as_str().unwrap().contains("Revised: fewer adverbs."), "{}", voice["text"]);
    // The exports: shares with commentary, articles, published posts only.
    let share =
        documents.iter().find(|d| d["url"] == "https://www.linkedin.com/feed/update/urn:li:share:1").unwrap();
    assert!(share["text"].as_str().unwrap().contains("with \"quotes\""), "{}", share["text"]);
    assert_eq!(share["published"], "2026-10-01 08:00:00");
    assert!(
        by_title("On mentoring").is_some() && by_title("Unfinished").is_none() && by_title("Draft").is_none()
    );
    let why = by_title("Why twins").unwrap();
    assert!(why["text"].as_str().unwrap().starts_with("*What a twin is for*"), "{}", why["text"]);
    assert_eq!(why["published"], "2026-08-01T07:00:00.000Z");
    for file in ["manifest.json", "chunks.jsonl", "embeddings.safetensors", "instruct/train.jsonl"] {
        assert!(root.join(file).is_file(), "{file}");
    }
    // The same inputs again: the same revision, nothing rewritten.
    let again = build(&spec, &options).await.unwrap();
    assert_eq!(again.revision, result.revision);
    assert_eq!(again.stats.documents, 19);
}

/// Archives crafted to escape their folder or to exhaust memory fail their own source only.
#[tokio::test]
async fn archives_with_escaping_paths_or_bombs_fail_alone() {
    let scratch = Scratch::new("bad-archives");
    corpus(&scratch);
    let entry = |text: &str| format!("# Note\n\n{}\n", prose(text, "Fine on its own.")).into_bytes();
    scratch.write(
        "exports/escape.zip",
        zip_of(&[("notes/ok.md", entry("Safe notes")), ("../../etc/evil.md", entry("Escapes"))]),
    );
    // One entry that inflates far past the per-entry limit (about 1000:1).
    scratch.write("exports/bomb.zip", zip_of(&[("notes/bomb.md", vec![b'a'; 24 * 1024 * 1024])]));
    // Many small entries that together exceed the archive's uncompressed budget.
    let parts: Vec<(String, Vec<u8>)> =
        (0..40).map(|i| (format!("notes/part-{i}.md"), vec![b'b'; 1024 * 1024])).collect();
    let parts: Vec<(&str, Vec<u8>)> = parts.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    scratch.write("exports/wide.zip", zip_of(&parts));
    scratch.write("exports/not-a-zip.zip", b"PK\x03\x04 this is not really a zip");
    let file = |name: &str| format!("file://{}", scratch.0.join("exports").join(name).display());
    let spec: TwinDataset = serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "attacks"},
        "spec": {"author": {"name": "Paul"}, "sources": [
                    {"name": "escape", "archive": {"uri": file("escape.zip"), "format": "markdown"}},
                    {"name": "bomb", "archive": {"uri": file("bomb.zip"), "format": "markdown"}},
                    {"name": "wide", "archive": {"uri": file("wide.zip"), "format": "markdown"}},
                    {"name": "broken", "archive": {"uri": file("not-a-zip.zip"), "format": "markdown"}},
                    {"name": "missing", "archive": {"uri": file("missing.zip"), "format": "medium"}},
                    {"name": "notes", "configMap": {"name": "notes"}}],
                 "embedding": {"model": format!("file://{}", model_dir().display())},
                 "output": {"uri": format!("file://{}", scratch.0.join("out").display())}}
    }))
    .unwrap();
    let mut options = options(&scratch);
    options.collect.max_document_bytes = 4 * 1024 * 1024;
    options.collect.archive.max_uncompressed_bytes = 16 * 1024 * 1024;
    let result = build(&spec, &options).await.unwrap();
    let error = |name: &str| {
        result.sources.iter().find(|s| s.name == name).unwrap().error.clone().unwrap_or_default()
    };
    assert!(error("escape").contains("leaves the archive's folder"), "{}", error("escape"));
    assert!(error("bomb").contains("zip bomb"), "{}", error("bomb"));
    assert!(error("wide").contains("zip bomb"), "{}", error("wide"));
    assert!(error("broken").contains("is not a zip archive"), "{}", error("broken"));
    assert!(error("missing").contains("cannot read"), "{}", error("missing"));
    assert_eq!(result.stats.documents, 1, "the ConfigMap still lands");
    assert!(!Path::new("/etc/evil.md").exists());
}
