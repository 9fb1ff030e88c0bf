//! One author's articles on nine sites in the markup of common generators (tests/support/
//! sites.rs), crawled as `web` sources, and again through their platforms' feeds and exports
//! (WordPress's, Ghost's and Jekyll's feeds; WordPress's, Ghost's, Substack's and Medium's
//! exports; the Markdown sources in git; pages saved as text), through one build: no answer carries chrome, an anchor, link syntax
//! or the site's own URL; every cross-posted article survives once; no answer starts
//! mid-sentence; and the quality report counts what `scripts/audit-training-data` counts.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::http::header::CONTENT_TYPE;
use axum::http::{StatusCode, Uri};
use serde_json::{Value, json};
use twin_operator::api::TwinDataset;
use twin_operator::pipeline::build;

use crate::pipeline::{Scratch, lines, model_dir, options};
use crate::sources::zip_of;
use crate::support::sites::{self, Article, GENERATORS, Generator, escape};
use crate::support::{git_http, repo};

/// Words and signs that only chrome writes; the author's articles use none of them.
const CHROME: &[&str] = &[
    "¶",
    "\u{200b}",
    "edit this page",
    "suggest changes",
    "show source",
    "page source",
    "previous",
    "next »",
    "« prev",
    "table of contents",
    "on this page",
    "copy",
    "subscribe",
    "sign up",
    "sign in",
    "cookie",
    "share",
    "leave a comment",
    "powered by",
    "made with material",
    "skip to",
    "back to top",
    "quick search",
    "canonical link",
    "exported from medium",
    "appeared first on",
    "related",
    "min read",
    "permalink",
    "direct link",
    "recommended",
    "restack",
    "thanks for reading",
    "documentation overview",
    "posts by email",
    "last update",
];

/// The fixture server: every site's pages, the feeds, robots.txt.
struct Sites {
    addr: SocketAddr,
    articles: HashMap<&'static str, Vec<Article>>,
}

impl Sites {
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn url(&self, generator: Generator, slug: &str) -> String {
        format!("{}{}", self.base(), generator.path(slug))
    }
}

fn rss_item(title: &str, link: &str, body: &str) -> String {
    format!(
        "<item><title><![CDATA[{title}]]></title><link>{link}</link><dc:creator><![CDATA[Paul]]></dc:creator><pubDate>Sun, 01 Mar 2026 08:00:00 +0000</pubDate><guid isPermaLink=\"false\">{link}</guid><description><![CDATA[{title}]]></description><content:encoded><![CDATA[{body}]]></content:encoded></item>"
    )
}

async fn serve_sites() -> Sites {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let mut pages: HashMap<String, (&'static str, String)> = HashMap::new();
    let mut articles = HashMap::new();
    for generator in GENERATORS {
        let site = sites::articles(generator, &base);
        for index in 0..3 {
            pages.insert(
                generator.path(&site[index].slug),
                ("text/html; charset=utf-8", sites::page(generator, &site, index, &base)),
            );
        }
        articles.insert(generator.name(), site);
    }
    let url = |generator: Generator, article: &Article| format!("{base}{}", generator.path(&article.slug));
    // WordPress's feed: the posts' content, and the line an SEO plugin appends to each.
    let wordpress = &articles["wordpress"];
    let items: String = wordpress
        .iter()
        .map(|a| {
            let link = url(Generator::WordPress, a);
            let body = format!(
                "{}<p>The post <a href=\"{link}\">{}</a> appeared first on <a href=\"{base}/wordpress\">Paul at work</a>.</p>",
                sites::body(Generator::WordPress, a, &base),
                a.title
            );
            rss_item(&a.title, &link, &body)
        })
        .collect();
    pages.insert(
        "/wordpress/feed/".into(),
        ("application/rss+xml; charset=UTF-8", format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><rss version=\"2.0\" xmlns:content=\"http://purl.org/rss/1.0/modules/content/\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:atom=\"http://www.w3.org/2005/Atom\"><channel><title>Paul at work</title><atom:link href=\"{base}/wordpress/feed/\" rel=\"self\" type=\"application/rss+xml\" /><link>{base}/wordpress</link><description>Notes on teams and hiring</description><generator>https://wordpress.org/?v=6.7.1</generator>{items}</channel></rss>"
        )),
    );
    // Ghost's feed: the posts' content with its cards.
    let items: String = articles["ghost"]
        .iter()
        .map(|a| rss_item(&a.title, &url(Generator::Ghost, a), &sites::body(Generator::Ghost, a, &base)))
        .collect();
    pages.insert(
        "/ghost/rss/".into(),
        ("application/rss+xml; charset=utf-8", format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><rss xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:content=\"http://purl.org/rss/1.0/modules/content/\" xmlns:atom=\"http://www.w3.org/2005/Atom\" version=\"2.0\"><channel><title><![CDATA[Paul writes]]></title><link>{base}/ghost/</link><generator>Ghost 5.105</generator><atom:link href=\"{base}/ghost/rss/\" rel=\"self\" type=\"application/rss+xml\"/><ttl>60</ttl>{items}</channel></rss>"
        )),
    );
    // jekyll-feed's Atom: the rendered post, its kramdown table of contents included.
    let entries: String = articles["jekyll"]
        .iter()
        .map(|a| {
            let link = url(Generator::Jekyll, a);
            let toc = "<ul id=\"markdown-toc\"><li><a href=\"#where\" id=\"markdown-toc-where\">Where</a></li></ul>";
            let content = escape(&format!("{toc}{}", sites::body(Generator::Jekyll, a, &base)));
            format!(
                "<entry><title type=\"html\">{}</title><link href=\"{link}\" rel=\"alternate\" type=\"text/html\" title=\"{}\" /><published>2026-03-01T08:00:00+00:00</published><updated>2026-03-01T08:00:00+00:00</updated><id>{link}</id><content type=\"html\" xml:base=\"{link}\">{content}</content><author><name>Paul</name></author></entry>",
                a.title, a.title
            )
        })
        .collect();
    pages.insert(
        "/jekyll/feed.xml".into(),
        ("application/xml", format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><feed xmlns=\"http://www.w3.org/2005/Atom\" ><generator uri=\"https://jekyllrb.com/\" version=\"4.3.4\">Jekyll</generator><link href=\"{base}/jekyll/feed.xml\" rel=\"self\" type=\"application/atom+xml\" /><updated>2026-03-01T08:00:00+00:00</updated><id>{base}/jekyll/feed.xml</id><title type=\"html\">Paul pairs</title>{entries}</feed>"
        )),
    );
    pages.insert("/robots.txt".into(), ("text/plain", "User-agent: *\nDisallow:\n".into()));
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let found = pages.get(uri.path()).cloned();
        async move {
            match found {
                Some((kind, body)) => (StatusCode::OK, [(CONTENT_TYPE, kind)], body),
                None => {
                    (StatusCode::NOT_FOUND, [(CONTENT_TYPE, "text/html")], "<h1>Not found</h1>".to_string())
                }
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Sites { addr, articles }
}

/// A Medium export's post: Medium's own markup and footer.
fn medium_post(article: &Article) -> Vec<u8> {
    let mut grafs = format!(
        "<h3 name=\"5f21\" id=\"5f21\" class=\"graf graf--h3 graf--leading graf--title\">{}</h3>",
        article.title
    );
    for (n, block) in article.blocks.iter().enumerate() {
        grafs += &match block {
            sites::Block::Para(text) => {
                format!("<p name=\"p{n}\" id=\"p{n}\" class=\"graf graf--p graf-after--p\">{text}</p>")
            }
            sites::Block::Heading(text) => {
                format!("<h3 name=\"h{n}\" id=\"h{n}\" class=\"graf graf--h3 graf-after--p\">{text}</h3>")
            }
            sites::Block::Code(code) => format!(
                "<pre name=\"c{n}\" id=\"c{n}\" class=\"graf graf--pre graf-after--p graf--preV2\" data-code-block-lang=\"python\"><span class=\"pre--content\">{}</span></pre>",
                escape(code)
            ),
            sites::Block::List(items) => format!(
                "<ul class=\"postList\">{}</ul>",
                items
                    .iter()
                    .map(|i| format!(
                        "<li name=\"l{n}\" id=\"l{n}\" class=\"graf graf--li graf-after--p\">{i}</li>"
                    ))
                    .collect::<String>()
            ),
        };
    }
    format!(
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"><title>{title}</title><style>\n      * {{ font-family: Georgia, Cambria, \"Times New Roman\", Times, serif; }}\n    </style></head><body><article class=\"h-entry\">\n<header><h1 class=\"p-name\">{title}</h1></header>\n<section data-field=\"subtitle\" class=\"p-summary\">\nNotes from the field, as they happened\n</section>\n<section data-field=\"body\" class=\"e-content\">\n<section name=\"8b1c\" class=\"section section--body section--first section--last\"><div class=\"section-divider\"><hr class=\"section-divider\"></div><div class=\"section-content\"><div class=\"section-inner sectionLayout--insetColumn\">{grafs}</div></div></section>\n</section>\n<footer><p>By <a href=\"https://medium.com/@paul\" class=\"p-author h-card\">Paul</a> on <a href=\"https://medium.com/p/1a2b3c\"><time class=\"dt-published\" datetime=\"2026-03-05T08:00:00.000Z\">March 5, 2026</time></a>.</p><p><a href=\"https://medium.com/@paul/{slug}-1a2b3c\" class=\"p-canonical\">Canonical link</a></p><p>Exported from <a href=\"https://medium.com\">Medium</a> on March 20, 2026.</p></footer></article></body></html>",
        title = article.title,
        slug = article.slug,
    )
    .into_bytes()
}

/// The exports: Substack's archive (every post), Medium's (the Hugo blog's first post, cross-
/// posted, and one post of its own), pages of the Sphinx and MkDocs sites saved as text, and
/// two repositories of Markdown sources (the GitHub handbook, the Docusaurus docs).
fn exports(scratch: &Scratch, sites: &Sites) -> Article {
    let base = sites.base();
    let substack = &sites.articles["substack"];
    let mut csv = "post_id,post_date,is_published,email_sent_at,inbox_sent_at,type,audience,title,subtitle,podcast_url\n".to_string();
    let mut entries = Vec::new();
    for (n, article) in substack.iter().enumerate() {
        let id = format!("{}.{}", 101 + n, article.slug);
        csv += &format!(
            "{id},2026-03-0{}T08:00:00.000Z,true,,,newsletter,everyone,{},,\n",
            n + 1,
            article.title
        );
        entries.push((
            format!("posts/{id}.html"),
            sites::body(Generator::Substack, article, &base).into_bytes(),
        ));
    }
    entries.push(("posts.csv".into(), csv.into_bytes()));
    let entries: Vec<(&str, Vec<u8>)> = entries.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    scratch.write("exports/substack.zip", zip_of(&entries));

    // WordPress's export (zipped, as WordPress.com gives it): its posts, a draft, an attachment
    // and a reader's comment; Ghost's: its posts and a draft.
    let wordpress = &sites.articles["wordpress"];
    let items: String = wordpress
        .iter()
        .enumerate()
        .map(|(n, a)| {
            format!(
                "<item><title><![CDATA[{}]]></title><link>{}</link><pubDate>Sun, 01 Mar 2026 08:00:00 +0000</pubDate><dc:creator><![CDATA[paul]]></dc:creator><content:encoded><![CDATA[{}]]></content:encoded><excerpt:encoded><![CDATA[]]></excerpt:encoded><wp:post_id>{}</wp:post_id><wp:post_name><![CDATA[{}]]></wp:post_name><wp:status><![CDATA[publish]]></wp:status><wp:post_type><![CDATA[post]]></wp:post_type><wp:comment><wp:comment_id>7</wp:comment_id><wp:comment_content><![CDATA[Great post, thanks for sharing it with all of us here today!]]></wp:comment_content></wp:comment></item>",
                a.title,
                sites.url(Generator::WordPress, &a.slug),
                sites::body(Generator::WordPress, a, &base),
                40 + n,
                a.slug
            )
        })
        .collect();
    let wxr = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<rss version=\"2.0\" xmlns:excerpt=\"http://wordpress.org/export/1.2/excerpt/\" xmlns:content=\"http://purl.org/rss/1.0/modules/content/\" xmlns:wfw=\"http://wellformedweb.org/CommentAPI/\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:wp=\"http://wordpress.org/export/1.2/\"><channel><title>Paul at work</title><link>{base}/wordpress</link><wp:wxr_version>1.2</wp:wxr_version><wp:base_site_url>{base}/wordpress</wp:base_site_url>{items}<item><title><![CDATA[Half an idea]]></title><content:encoded><![CDATA[<p>Not ready for anyone to read, and never will be at this rate.</p>]]></content:encoded><wp:post_id>99</wp:post_id><wp:status><![CDATA[draft]]></wp:status><wp:post_type><![CDATA[post]]></wp:post_type></item><item><title><![CDATA[team-photo.jpg]]></title><wp:post_id>100</wp:post_id><wp:status><![CDATA[inherit]]></wp:status><wp:post_type><![CDATA[attachment]]></wp:post_type><wp:attachment_url>{base}/wordpress/wp-content/uploads/team-photo.jpg</wp:attachment_url></item></channel></rss>"
    );
    scratch
        .write("exports/wordpress.zip", zip_of(&[("paulatwork.WordPress.2026-03-20.xml", wxr.into_bytes())]));
    let ghost: Vec<Value> = sites.articles["ghost"]
        .iter()
        .map(|a| json!({"id": a.slug, "title": a.title, "slug": a.slug, "type": "post", "status": "published",
                        "published_at": "2026-03-01T08:00:00.000Z", "html": sites::body(Generator::Ghost, a, "__GHOST_URL__")}))
        .chain([json!({"id": "draft", "title": "Half an idea", "slug": "half", "type": "post", "status": "draft",
                       "html": "<p>Not ready for anyone to read, and never will be at this rate.</p>"})])
        .collect();
    scratch.write(
        "exports/ghost.json",
        json!({"db": [{"meta": {"exported_on": 1773993600000u64, "version": "5.105.0"}, "data": {"posts": ghost}}]}).to_string(),
    );

    let own = sites::article(
        "medium",
        "notebooks",
        &sites.url(Generator::Hugo, "tracing"),
        "Tracing in practice",
        &base,
    );
    let hugo = &sites.articles["hugo"][0];
    scratch.write(
        "exports/medium.zip",
        zip_of(&[
            ("posts/2026-03-05_Tracing-in-practice-1a2b3c.html", medium_post(hugo)),
            ("posts/2026-03-12_Notebooks-in-practice-9f8e7d.html", medium_post(&own)),
        ]),
    );

    scratch.write(
        "exports/saved-pages.zip",
        zip_of(&[
            (
                "saved/queues.md",
                sites::saved_as_text(Generator::Sphinx, &sites.articles["sphinx"], 0).into_bytes(),
            ),
            (
                "saved/caching.md",
                sites::saved_as_text(Generator::MkDocs, &sites.articles["mkdocs"], 0).into_bytes(),
            ),
        ]),
    );

    let repository = |name: &str, files: Vec<(String, String)>| {
        let work = scratch.0.join(format!("repo-{name}"));
        for (path, text) in files {
            let path = work.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        git_http::git(&work, &["init", "-q", "-b", "main"]);
        git_http::git(&work, &["add", "."]);
        git_http::git(&work, &["commit", "-q", "-m", "docs"]);
        let served = scratch.0.join("git");
        std::fs::create_dir_all(&served).unwrap();
        git_http::git(
            &scratch.0,
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap(),
                served.join(format!("{name}.git")).to_str().unwrap(),
            ],
        );
    };
    let github = &sites.articles["github"];
    repository(
        "handbook",
        vec![
            ("README.md".into(), sites::markdown(&github[0])),
            ("docs/conventions.md".into(), sites::markdown(&github[1])),
            ("docs/releases.md".into(), sites::markdown(&github[2])),
        ],
    );
    repository(
        "docs-site",
        sites.articles["docusaurus"]
            .iter()
            .enumerate()
            .map(|(n, a)| {
                let source = sites::markdown(a);
                (format!("docs/{}.md", a.slug), format!("---\nsidebar_position: {}\n---\n\n{source}", n + 1))
            })
            .collect(),
    );
    own
}

fn dataset(scratch: &Scratch, sites: &Sites, git: SocketAddr) -> TwinDataset {
    let base = sites.base();
    let file = |name: &str| format!("file://{}", scratch.0.join("exports").join(name).display());
    let mut sources: Vec<Value> = GENERATORS
        .iter()
        .map(|g| {
            let start = sites.url(*g, &sites.articles[g.name()][0].slug);
            json!({"name": g.name(), "web": {"urls": [start], "maxDepth": 2, "maxPages": 40}})
        })
        .collect();
    sources.extend([
        json!({"name": "wordpress-feed", "feed": {"url": format!("{base}/wordpress/feed/")}}),
        json!({"name": "ghost-feed", "feed": {"url": format!("{base}/ghost/rss/")}}),
        json!({"name": "jekyll-feed", "feed": {"url": format!("{base}/jekyll/feed.xml")}}),
        json!({"name": "wordpress-export", "archive": {"uri": file("wordpress.zip"), "format": "wordpress"}}),
        json!({"name": "ghost-export", "archive": {"uri": file("ghost.json"), "format": "ghost"}}),
        json!({"name": "substack-export", "archive": {"uri": file("substack.zip"), "format": "substack"}}),
        json!({"name": "medium-export", "archive": {"uri": file("medium.zip"), "format": "medium"}}),
        json!({"name": "saved-pages", "archive": {"uri": file("saved-pages.zip"), "format": "markdown"}}),
        json!({"name": "handbook-repo", "git": {"url": format!("http://{git}/handbook.git"), "ref": "main"}}),
        json!({"name": "docs-repo", "git": {"url": format!("http://{git}/docs-site.git"), "ref": "main"}}),
    ]);
    serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "sites"},
        "spec": {"author": {"name": "Paul"}, "sources": sources,
                 "chunking": {"maxTokens": 128, "overlapTokens": 16},
                 "embedding": {"model": format!("file://{}", model_dir().display())},
                 "instruct": {"samplesPerChunk": 2, "testFraction": 0.2},
                 "output": {"uri": format!("file://{}", scratch.0.join("out").display())}}
    }))
    .unwrap()
}

/// The answers of both splits.
fn answers(root: &std::path::Path) -> Vec<String> {
    ["train", "test"]
        .iter()
        .flat_map(|split| lines(&root.join(format!("instruct/{split}.jsonl"))))
        .map(|sample| sample["messages"][2]["content"].as_str().unwrap().to_string())
        .collect()
}

/// `scripts/audit-training-data --json` on a revision.
fn audit(root: &std::path::Path) -> Value {
    let output = std::process::Command::new(repo::path("scripts/audit-training-data"))
        .arg(root)
        .arg("--json")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The counts the quality report and the audit share, from each.
fn shared_counts(quality: &Value, audit: &Value) -> (Vec<Value>, Vec<Value>) {
    const SHARED: [&str; 5] = [
        "answersWithLinkSyntax",
        "answersWithAnchors",
        "answersWithSiteUrls",
        "answersStartingMidSentence",
        "crossPosts",
    ];
    (SHARED.iter().map(|k| quality[k].clone()).collect(), SHARED.iter().map(|k| audit[k].clone()).collect())
}

/// The chrome words a text carries.
fn chrome_in(text: &str) -> Vec<&'static str> {
    let lower = text.to_lowercase();
    CHROME.iter().copied().filter(|c| lower.contains(c)).collect()
}

#[tokio::test]
async fn nine_generators_sites_and_their_exports_give_clean_answers_and_one_copy_of_each_article() {
    let scratch = Scratch::new("site-chrome");
    let sites = serve_sites().await;
    let medium_only = exports(&scratch, &sites);
    let git = git_http::serve(scratch.0.join("git")).await;
    let mut options = options(&scratch);
    options.fetch.guard = twin_operator::net::NetworkGuard::new("127.0.0.1/32").unwrap();
    let result = build(&dataset(&scratch, &sites, git), &options).await.unwrap();
    for source in &result.sources {
        assert!(source.error.is_none(), "{source:?}");
    }
    let root = scratch.0.join(format!("out/datasets/sites/{}", result.revision));
    let documents = lines(&root.join("documents.jsonl"));
    if let Ok(dump) = std::env::var("SITES_DUMP") {
        // The revision and the pages, to read or to run other extractors on.
        let _ = std::fs::remove_dir_all(&dump);
        std::process::Command::new("cp").arg("-r").arg(&root).arg(&dump).status().unwrap();
        for g in GENERATORS {
            for (i, a) in sites.articles[g.name()].iter().enumerate() {
                let page = sites::page(g, &sites.articles[g.name()], i, &sites.base());
                std::fs::write(format!("{dump}/{}-{}.html", g.name(), a.slug), page).unwrap();
            }
        }
    }

    // Every article survives once, whichever routes brought it.
    let mut all: Vec<&Article> = sites.articles.values().flatten().collect();
    all.push(&medium_only);
    for article in &all {
        let copies: Vec<&str> = documents
            .iter()
            .filter(|d| d["text"].as_str().unwrap().contains(&article.marker))
            .map(|d| d["url"].as_str().unwrap())
            .collect();
        assert_eq!(copies.len(), 1, "{}: {copies:?}", article.title);
    }
    assert_eq!(documents.len(), all.len(), "{:#?}", documents.iter().map(|d| &d["url"]).collect::<Vec<_>>());
    // The copies that went, each named with the copy kept: three by feed (WordPress, Ghost,
    // Jekyll), three by export (WordPress, Ghost, Substack), three by git (GitHub, Docusaurus),
    // one by Medium's export, two saved pages.
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap()).unwrap();
    let removed = manifest["removedDocuments"].as_array().unwrap();
    assert_eq!(removed.len(), 3 * 3 + 3 * 3 + 2 * 3 + 1 + 2, "{removed:#?}");

    // Documents and chunks keep no chrome; answers keep no chrome, no link syntax, no anchor,
    // no URL of the crawled site, and do not start mid-sentence. Code keeps its URLs.
    for document in &documents {
        let text = document["text"].as_str().unwrap();
        assert!(chrome_in(text).is_empty(), "{}: {:?}\n{text}", document["url"], chrome_in(text));
    }
    for chunk in lines(&root.join("chunks.jsonl")) {
        let text = chunk["text"].as_str().unwrap();
        assert!(chrome_in(text).is_empty(), "{:?}\n{text}", chrome_in(text));
    }
    let answers = answers(&root);
    assert!(answers.len() > 100, "{} answers", answers.len());
    let site_url = sites.base();
    for answer in &answers {
        assert!(chrome_in(answer).is_empty(), "{:?}\n{answer}", chrome_in(answer));
        for sign in ["](", "<a ", "🔗", "{#"] {
            assert!(!answer.contains(sign), "{sign}\n{answer}");
        }
        assert!(!answer.contains(&site_url), "{answer}");
        let first = answer.trim_start().chars().next().unwrap();
        assert!(!first.is_lowercase() && !",.;:)]}".contains(first), "starts mid-sentence:\n{answer}");
    }
    assert!(answers.iter().any(|a| a.contains("# see https://example.org/queues/reference")));

    // The report counts what the audit counts, by its own code: no faults here, and the copies
    // removed by route; the audit finds no cross-post left.
    let audited = audit(&root);
    let (reported, expected) = shared_counts(&manifest["quality"], &audited);
    assert_eq!(reported, expected, "{:#}", manifest["quality"]);
    assert_eq!(&reported[..4], &[json!(0), json!(0), json!(0), json!(0)]);
    let routes: u64 =
        manifest["quality"]["crossPosts"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(routes as usize, removed.len());
    for pair in manifest["quality"]["crossPosts"].as_object().unwrap().keys() {
        let routes: Vec<&str> = pair.split("->").collect();
        assert!(routes.iter().all(|r| ["web", "feed", "archive", "git"].contains(r)), "{pair}");
    }
    assert_eq!(audited["crossPostsLeft"], 0);
}

/// Writing the pipeline leaves as it is, so that the report has faults to count: a raw HTML
/// link, kramdown heading ids, a heading's trailing anchor, a note that opens in lower case, a
/// URL of the crawled site in another scheme than http(s). The report and the audit count the same, none of them zero.
#[tokio::test]
async fn the_quality_report_counts_faults_as_the_audit_script_does() {
    let scratch = Scratch::new("site-faults");
    let sites = serve_sites().await;
    let base = sites.base();
    scratch.write(
        "notes/links.md",
        format!(
            "# Links I keep\n\nThe queue post lives at <a href=\"{base}/sphinx/queues.html\">my handbook</a>, and I link to it from every talk I give about backpressure and retries.\n\n## Reading list {{#reading}}\n\nThese are the three essays I send to every new colleague who asks about operating queues in production.\n"
        ),
    );
    scratch.write(
        "notes/npm.md",
        format!("npm install takes longer than the build on most of my projects, which says more about the dependency tree than about npm itself. The mirror is at rsync://{}/npm for anyone who wants it.\n\n## Lockfiles #\n\nI commit the lockfile and review its diff like code, because it is code that someone else wrote and I run.\n", sites.addr.ip()),
    );
    let notes = format!("file://{}", scratch.0.join("notes").display());
    let start = sites.url(Generator::Sphinx, "queues");
    let spec: TwinDataset = serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "faults"},
        "spec": {"author": {"name": "Paul"}, "sources": [
                    {"name": "handbook", "web": {"urls": [start], "maxDepth": 0}},
                    {"name": "notes", "files": {"uri": notes, "include": ["*.md"]}}],
                 "chunking": {"maxTokens": 128, "overlapTokens": 16},
                 "embedding": {"model": format!("file://{}", model_dir().display())},
                 "output": {"uri": format!("file://{}", scratch.0.join("out").display())}}
    }))
    .unwrap();
    let mut options = options(&scratch);
    options.fetch.guard = twin_operator::net::NetworkGuard::new("127.0.0.1/32").unwrap();
    let result = build(&spec, &options).await.unwrap();
    let root = scratch.0.join(format!("out/datasets/faults/{}", result.revision));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap()).unwrap();
    let (reported, audited) = shared_counts(&manifest["quality"], &audit(&root));
    assert_eq!(reported, audited, "{:#}", manifest["quality"]);
    for (name, count) in ["link syntax", "anchors", "site URLs", "mid-sentence"].iter().zip(&reported) {
        assert!(count.as_u64().unwrap() >= 1, "{name}: {:#}", manifest["quality"]);
    }
    assert_eq!(result.quality.answers_with_site_urls, reported[2].as_u64().unwrap() as usize);
}
