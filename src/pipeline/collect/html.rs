//! Article text from HTML: the readable part of a page (not menus, sidebars and footers),
//! as Markdown, with its title: the site's chrome taken out by [`super::chrome`], then the
//! article found by a Readability implementation.

use dom_smoothie::{Config, Readability, TextMode};

use super::chrome::remove_chrome;

use crate::net::http::Fetched;

/// The readable article of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    /// The page's title.
    pub title: Option<String>,
    /// The article as Markdown.
    pub markdown: String,
    /// Publication time, when the page says.
    pub published: Option<String>,
}

/// Extracts the article of an HTML page; `url` resolves its relative links.
pub fn extract_article(html: &str, url: Option<&str>) -> Result<Article, String> {
    let config = Config { text_mode: TextMode::Markdown, ..Default::default() };
    let document = dom_query::Document::from(html);
    remove_chrome(&document);
    let mut readability = Readability::with_document(document, url, Some(config))
        .map_err(|e| format!("unreadable HTML: {e}"))?;
    let article = readability.parse().map_err(|e| format!("no article found in the page: {e}"))?;
    let title = Some(article.title.trim().to_string()).filter(|t| !t.is_empty());
    Ok(Article {
        title,
        markdown: article.text_content.to_string(),
        published: article.published_time.map(|t| t.to_string()),
    })
}

/// An HTML fragment (a feed entry's content, a post body from an export) as Markdown, through
/// the same article extraction as pages; `None` when it holds no text.
pub fn fragment_to_markdown(html: &str, url: Option<&str>) -> Option<String> {
    let page = format!("<html><body><article>{html}</article></body></html>");
    extract_article(&page, url).ok().map(|a| a.markdown).filter(|m| !m.trim().is_empty())
}

/// Refuses what is not an HTML page, whatever the link promised: a PDF, an image, a binary.
pub fn ensure_html(page: Fetched) -> Result<Fetched, String> {
    let declared = page.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let binary = page.body.starts_with(b"%PDF") || page.body.iter().take(4096).any(|b| *b == 0);
    if binary || !(declared.is_empty() || declared.contains("html") || declared.starts_with("text/")) {
        let kind = if declared.is_empty() { "binary content".to_string() } else { declared };
        return Err(format!("{} is not an HTML page ({kind})", page.url));
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_article_and_drops_navigation() {
        let html = r#"<html><head><title>Ownership | The Book</title></head><body>
            <nav><a href="/">Home</a><a href="/about">About</a><a href="/subscribe">Subscribe</a></nav>
            <main><article><h1>Understanding Ownership</h1>
            <p>Ownership is Rust's most unique feature and has deep implications for the rest of the language.
            It enables Rust to make memory safety guarantees without needing a garbage collector.</p>
            <p>In this chapter, we'll talk about ownership as well as several related features: borrowing,
            slices, and how Rust lays data out in memory.</p></article></main>
            <footer>Copyright 2026. All rights reserved.</footer></body></html>"#;
        let article = extract_article(html, Some("https://example.com/ch04")).unwrap();
        assert!(article.markdown.contains("Ownership is Rust's most unique feature"), "{}", article.markdown);
        assert!(!article.markdown.contains("All rights reserved"), "{}", article.markdown);
        assert!(!article.markdown.contains("Subscribe"), "{}", article.markdown);
        assert!(article.title.unwrap().contains("Ownership"));
    }
}
