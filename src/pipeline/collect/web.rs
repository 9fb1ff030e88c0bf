//! Web pages: start pages and the links they lead to on the same host, breadth first, up to
//! `maxDepth` links deep and `maxPages` pages, each page's article text extracted; robots.txt is
//! read once per site and obeyed, its `Crawl-delay` too (up to 30 s).

use std::collections::{HashMap, HashSet, VecDeque};

use reqwest::Url;

use super::html::{ensure_html, extract_article};
use crate::api::dataset::WebSource;
use crate::net::http::{FetchError, Fetcher};
use crate::net::robots::Robots;
use crate::pipeline::document::Document;

/// Links to these are not pages; they are not fetched.
const NOT_PAGES: &[&str] = &[
    ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".zip", ".gz", ".tar", ".mp3", ".mp4",
    ".mov", ".avi", ".css", ".js", ".json", ".xml", ".woff", ".woff2", ".ttf", ".exe", ".dmg", ".epub",
];

/// The crawler's product token for robots.txt: the User-Agent up to its first `/` or space.
fn product_token(user_agent: &str) -> &str {
    user_agent.split(['/', ' ']).next().unwrap_or(user_agent)
}

/// The page a URL names: without its fragment.
fn page_url(mut url: Url) -> Url {
    url.set_fragment(None);
    url
}

/// The site a URL belongs to, as robots.txt scopes it.
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Links of a page that stay on its host and look like pages.
fn same_host_links(html: &str, base: &Url) -> Vec<Url> {
    let document = dom_query::Document::from(html);
    let mut links = Vec::new();
    for anchor in document.select("a[href]").iter() {
        let Some(href) = anchor.attr("href") else { continue };
        let Ok(url) = base.join(href.trim()) else { continue };
        if !matches!(url.scheme(), "http" | "https") || url.host_str() != base.host_str() {
            continue;
        }
        let path = url.path().to_ascii_lowercase();
        if NOT_PAGES.iter().any(|ext| path.ends_with(ext)) {
            continue;
        }
        links.push(page_url(url));
    }
    links
}

/// What a site's robots.txt allows, or why the site is not crawled at all.
enum SiteRules {
    /// The rules robots.txt gives (everything, when it is missing).
    Robots(Robots),
    /// The site is not crawled: its address is refused by the crawler guard, or its
    /// robots.txt cannot be read (RFC 9309 asks to assume everything disallowed). Says why.
    NotCrawled(String),
}

/// Reads a site's robots.txt: missing (4xx) allows everything; unreachable or 5xx refuses
/// everything, as RFC 9309 asks; a site on an address the guard refuses is not crawled, and the
/// error says so (not "disallowed by robots.txt", which would hide the cause).
async fn robots_for(url: &Url, fetcher: &Fetcher) -> SiteRules {
    let Ok(robots_url) = url.join("/robots.txt") else { return SiteRules::Robots(Robots::allow_all()) };
    let agent = product_token(&fetcher.options().user_agent).to_string();
    match fetcher.get_limited(robots_url.as_str(), 512 * 1024).await {
        Ok(fetched) => SiteRules::Robots(Robots::parse(&String::from_utf8_lossy(&fetched.body), &agent)),
        Err(FetchError::Status { status, .. }) if (400..500).contains(&status) => {
            SiteRules::Robots(Robots::allow_all())
        }
        Err(FetchError::TooLarge { .. }) => SiteRules::Robots(Robots::allow_all()),
        Err(FetchError::Refused(reason)) => SiteRules::NotCrawled(format!("{}: {reason}", origin(url))),
        Err(error) => SiteRules::NotCrawled(format!(
            "{}: robots.txt cannot be read ({error}), so the site is not crawled",
            origin(url)
        )),
    }
}

/// A `web` source.
pub async fn collect_web(source: &str, spec: &WebSource, fetcher: &Fetcher) -> Result<Vec<Document>, String> {
    let mut queue = VecDeque::new();
    let mut seen = HashSet::new();
    for start in &spec.urls {
        let url = Url::parse(&start.0).map_err(|e| format!("invalid URL {:?}: {e}", start.0))?;
        let url = page_url(url);
        if seen.insert(url.clone()) {
            queue.push_back((url, 0u32));
        }
    }
    let mut robots: HashMap<String, SiteRules> = HashMap::new();
    let mut documents = Vec::new();
    let mut failures = Vec::new();
    let mut fetched_pages = 0u32;
    let mut kept_texts = HashSet::new();
    let mut last_fetch: HashMap<String, std::time::Instant> = HashMap::new();
    while let Some((url, depth)) = queue.pop_front() {
        if fetched_pages >= spec.max_pages {
            break;
        }
        let site = origin(&url);
        if !robots.contains_key(&site) {
            let rules = robots_for(&url, fetcher).await;
            robots.insert(site.clone(), rules);
        }
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        let rules = match &robots[&site] {
            SiteRules::Robots(rules) => rules,
            SiteRules::NotCrawled(reason) => {
                // Said once per site, not once per page.
                if !failures.contains(reason) {
                    failures.push(reason.clone());
                }
                continue;
            }
        };
        if !rules.allows(&path) {
            failures.push(format!("{url}: disallowed by robots.txt"));
            continue;
        }
        // The pace the site asks for, between two pages of it.
        if let Some(delay) = rules.crawl_delay
            && last_fetch.get(&site).is_some_and(|at: &std::time::Instant| at.elapsed() < delay)
        {
            tokio::time::sleep(delay.saturating_sub(last_fetch[&site].elapsed())).await;
        }
        last_fetch.insert(site.clone(), std::time::Instant::now());
        fetched_pages += 1;
        let page = match fetcher.get(url.as_str()).await.map_err(|e| e.to_string()).and_then(ensure_html) {
            Ok(page) => page,
            Err(error) => {
                failures.push(error);
                continue;
            }
        };
        let html = String::from_utf8_lossy(&page.body);
        let final_url = Url::parse(&page.url).unwrap_or_else(|_| url.clone());
        if depth < spec.max_depth {
            for link in same_host_links(&html, &final_url) {
                if seen.insert(link.clone()) {
                    queue.push_back((link, depth + 1));
                }
            }
        }
        match extract_article(&html, Some(final_url.as_str())) {
            // The same article under two URLs (a redirect, a trailing slash) is kept once.
            Ok(article) if kept_texts.insert(article.markdown.clone()) => {
                let mut document =
                    Document::new(source, "web", final_url.as_str(), article.title, article.markdown, true);
                document.published = article.published;
                documents.push(document);
            }
            Ok(_) => {}
            Err(error) => failures.push(format!("{url}: {error}")),
        }
    }
    for failure in &failures {
        tracing::warn!(source, "web page skipped: {failure}");
    }
    if documents.is_empty() {
        return Err(if failures.is_empty() {
            "no page with an article was found".to_string()
        } else {
            format!("no page could be read: {}", failures.join("; "))
        });
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_same_host_page_links_only() {
        let base = Url::parse("https://blog.example.com/posts/").unwrap();
        let html = r##"<a href="one.html#top">1</a><a href="/two">2</a><a href="https://other.example.com/x">x</a>
            <a href="paper.PDF">pdf</a><a href="mailto:a@b.c">m</a><a href="#local">l</a>"##;
        let links: Vec<String> = same_host_links(html, &base).iter().map(|u| u.to_string()).collect();
        assert_eq!(
            links,
            [
                "https://blog.example.com/posts/one.html",
                "https://blog.example.com/two",
                "https://blog.example.com/posts/"
            ]
        );
        assert_eq!(product_token("twin-operator/0.1.0 (+https://x)"), "twin-operator");
    }
}
