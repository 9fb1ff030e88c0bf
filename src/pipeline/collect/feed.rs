//! RSS and Atom feeds (Substack, Medium, any blog): the entries, newest first, with their full
//! content when the feed carries it, else the article page fetched and its text extracted.

use super::html::{ensure_html, extract_article, fragment_to_markdown};
use crate::api::dataset::FeedSource;
use crate::net::http::Fetcher;
use crate::pipeline::document::Document;

/// Feed content shorter than this (as text) is a teaser: the article page is fetched instead.
const FULL_CONTENT_CHARS: usize = 400;

/// A `feed` source.
pub async fn collect_feed(
    source: &str,
    spec: &FeedSource,
    fetcher: &Fetcher,
) -> Result<Vec<Document>, String> {
    let fetched = fetcher.get(&spec.url).await.map_err(|e| e.to_string())?;
    let feed = feed_rs::parser::parse(&fetched.body[..])
        .map_err(|e| format!("{} is not an RSS or Atom feed: {e}", spec.url))?;
    let mut entries = feed.entries;
    entries.sort_by_key(|e| std::cmp::Reverse(e.published.or(e.updated)));
    entries.truncate(spec.max_items as usize);
    let mut documents = Vec::new();
    let mut failures = Vec::new();
    for entry in entries {
        let link = entry.links.first().map(|l| l.href.clone());
        let title = entry.title.as_ref().map(|t| t.content.trim().to_string()).filter(|t| !t.is_empty());
        let location = link.clone().unwrap_or_else(|| format!("{}#{}", spec.url, entry.id));
        let inline = entry
            .content
            .as_ref()
            .and_then(|c| c.body.clone())
            .or_else(|| entry.summary.as_ref().map(|s| s.content.clone()))
            .and_then(|html| fragment_to_markdown(&html, link.as_deref()));
        let text = match (inline, &link) {
            (Some(text), _) if text.chars().count() >= FULL_CONTENT_CHARS => text,
            (inline, Some(link)) => {
                match fetcher.get(link).await.map_err(|e| e.to_string()).and_then(ensure_html) {
                    Ok(page) => {
                        match extract_article(&String::from_utf8_lossy(&page.body), Some(&page.url)) {
                            Ok(article) => article.markdown,
                            Err(error) => {
                                failures.push(format!("{link}: {error}"));
                                match inline {
                                    Some(text) => text,
                                    None => continue,
                                }
                            }
                        }
                    }
                    Err(error) => {
                        failures.push(error);
                        match inline {
                            Some(text) => text,
                            None => continue,
                        }
                    }
                }
            }
            (Some(text), None) => text,
            (None, None) => continue,
        };
        let mut document = Document::new(source, "feed", &location, title, text, true);
        document.published = entry.published.or(entry.updated).map(|t| t.to_rfc3339());
        documents.push(document);
    }
    for failure in &failures {
        tracing::warn!(source, "feed entry: {failure}");
    }
    if documents.is_empty() && !failures.is_empty() {
        return Err(format!("no entry of {} could be read: {}", spec.url, failures.join("; ")));
    }
    Ok(documents)
}
