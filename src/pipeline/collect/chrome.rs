//! Site chrome taken out of an HTML page before its article is extracted: heading permalinks,
//! "edit this page", breadcrumbs, previous / next, tables of contents, cookie and newsletter
//! boxes, share and comment boxes, copy-code buttons. Readability finds the article; these
//! rules take out what generators put inside it, where Readability keeps it.
//!
//! An element is chrome by what it is (a button, a form), by its role, or by the words of its
//! class and id as the common generators write them (Sphinx, MkDocs Material, Hugo, Jekyll,
//! Docusaurus, WordPress, Ghost, Substack, GitHub, Medium's export). Those rules work inside
//! the article's container (`<article>`, `<main>`, `role=main`), and never take out the element
//! that holds the article: one that holds an `<article>`, `<main>` or most of the page's text
//! stays, whatever its class says. Links (permalinks, edit links) and elements that never hold
//! words (buttons, forms) go wherever they are.

use dom_query::{Document, NodeRef};

/// Elements that never hold the author's words.
const NEVER_TEXT: &[&str] = &[
    "button",
    "form",
    "input",
    "select",
    "textarea",
    "label",
    "dialog",
    "template",
    "iframe",
    "svg",
    "clipboard-copy",
    "search",
];

/// Roles of landmarks that are not the article.
const CHROME_ROLES: &[&str] = &["navigation", "banner", "contentinfo", "search", "dialog", "alertdialog"];

/// Class or id words (or their parts between `-` and `_`) that name chrome.
const CHROME_WORDS: &[&str] = &[
    // Tables of contents and sidebars.
    "toc",
    "sidebar",
    "sphinxsidebar",
    "sphinxsidebarwrapper",
    // Breadcrumbs and previous / next.
    "breadcrumb",
    "breadcrumbs",
    "pagination",
    "paginav",
    "pager",
    "prev",
    "previous",
    "nav",
    "navigation",
    "navbar",
    "related",
    "relatedposts",
    "recommendations",
    "PageNavigation",
    // Edit this page, source links.
    "edit",
    // Cookie banners.
    "cookie",
    "cookies",
    "consent",
    "gdpr",
    // Newsletters and sign-ups.
    "newsletter",
    "subscribe",
    "subscription",
    "signup",
    "cta",
    "upgrade",
    "buttondown",
    "mailchimp",
    // Sharing, reactions and comments.
    "share",
    "sharing",
    "sharedaddy",
    "social",
    "ufi",
    "restack",
    "comments",
    "respond",
    // Copy-code buttons.
    "copybtn",
    "clipboard",
    "zeroclipboard",
    "copy",
    // Meta around the article: bylines, author boxes, tags, reading time, skip links, "read
    // more" lists.
    "byline",
    "bio",
    "read-more",
    "read-more-wrap",
    "meta",
    "tag",
    "tags",
    "taxonomies",
    "skip",
    // Heading anchors (Substack's header-anchor-parent, Sphinx's headerlink).
    "headerlink",
    "anchor",
    // Call-to-action buttons (Substack's button-wrapper, Ghost's button card).
    "button",
    // Text for screen readers only ("Post navigation", "Resources").
    "sr-only",
    "screen-reader-text",
    "visually-hidden",
    "visuallyhidden",
    // Material's "last update" box.
    "md-source-file",
];

/// Words of a link's class, title or label that make a link to an anchor of its page a
/// heading's permalink (mdBook's `header` wraps the heading's words).
const PERMALINK_HINTS: &[&str] = &[
    "permalink",
    "headerlink",
    "header",
    "anchor",
    "hash-link",
    "link to this",
    "direct link",
    "permanent link",
];

/// Words of a link's text that make it an "edit this page" link.
const EDIT_LINKS: &[&str] = &[
    "edit this page",
    "edit on github",
    "edit on gitlab",
    "view page source",
    "view source",
    "show source",
    "page source",
    "suggest changes",
    "suggest an edit",
    "improve this page",
];

/// Removes the page's chrome, in place.
pub fn remove_chrome(document: &Document) {
    let Some(body) = document.select("body").nodes().first().cloned() else { return };
    let page_chars = body.text().chars().filter(|c| !c.is_whitespace()).count().max(1);
    let mut doomed: Vec<NodeRef> = Vec::new();
    let mut unwrapped: Vec<NodeRef> = Vec::new();
    for node in body.descendants() {
        if !node.is_element() || doomed.iter().any(|d| node.ancestors_it(None).any(|a| a.id == d.id)) {
            continue;
        }
        if is_heading(&node) {
            // A heading's class is styling (Substack's `header-anchor-post`), which Readability
            // would take for a page header and drop with the heading.
            node.remove_attr("class");
        }
        match verdict(&node, page_chars) {
            Verdict::Keep => {}
            Verdict::Remove => doomed.push(node),
            Verdict::KeepWords => unwrapped.push(node),
        }
    }
    for link in unwrapped {
        // `unwrap_node` takes out the parent of the node it is called on: called on the
        // link's first child, it takes out the link and keeps what it held.
        match link.first_child() {
            Some(child) => child.unwrap_node(),
            None => link.remove_from_parent(),
        }
    }
    for node in doomed {
        node.remove_from_parent();
    }
}

enum Verdict {
    Keep,
    Remove,
    /// A permalink that wraps the heading's own words: the words stay, the link goes.
    KeepWords,
}

fn verdict(node: &NodeRef, page_chars: usize) -> Verdict {
    let name = node.node_name().map(|n| n.to_ascii_lowercase()).unwrap_or_default();
    if name == "a" {
        return link_verdict(node);
    }
    // Code is kept whole; headings are the article's own words, whatever their class says
    // (Docusaurus's `anchor`, Substack's `header-anchor-post`).
    if inside_code(node) || is_heading(node) {
        return Verdict::Keep;
    }
    if NEVER_TEXT.contains(&name.as_str()) || node.has_attr("hidden") {
        return Verdict::Remove;
    }
    if name == "script" || name == "style" || name == "noscript" {
        // Readability reads JSON-LD metadata from scripts and drops them itself.
        return Verdict::Keep;
    }
    // Outside the article's container, the page's own navigation, footers and boxes are left
    // to Readability, which weighs them against the article: taking them out first can tip it
    // towards a smaller candidate on a page whose text sits right in its body.
    if !node.ancestors_it(None).any(|a| a.is("article, main, [role=main]")) {
        return Verdict::Keep;
    }
    let holds_article = || {
        node.is("article, main, [role=main], :has(article), :has(main), :has([role=main])")
            || node.text().chars().filter(|c| !c.is_whitespace()).count() * 2 > page_chars
    };
    if name == "nav" || (name == "aside" && is_chrome_by_name(node)) {
        return if holds_article() { Verdict::Keep } else { Verdict::Remove };
    }
    if name == "footer" && !node.is("blockquote footer, figure footer") {
        return if holds_article() { Verdict::Keep } else { Verdict::Remove };
    }
    let role = node.attr("role").map(|r| r.to_ascii_lowercase()).unwrap_or_default();
    if CHROME_ROLES.contains(&role.as_str()) || node.attr("aria-hidden").as_deref() == Some("true") {
        return if holds_article() { Verdict::Keep } else { Verdict::Remove };
    }
    if is_chrome_by_name(node) && !holds_article() {
        return Verdict::Remove;
    }
    Verdict::Keep
}

/// Whether an element's class or id names chrome: one of [`CHROME_WORDS`] as the whole name
/// or as a part of it between `-` and `_` (`md-sidebar`, `theme-doc-toc-desktop`).
fn is_chrome_by_name(node: &NodeRef) -> bool {
    let names = format!("{} {}", node.attr("class").unwrap_or_default(), node.attr("id").unwrap_or_default());
    names.split_whitespace().any(|name| {
        let lower = name.to_ascii_lowercase();
        let mut parts = lower.split(['-', '_']).filter(|p| !p.is_empty());
        parts.any(|p| CHROME_WORDS.iter().any(|w| w.eq_ignore_ascii_case(p)))
            || CHROME_WORDS.iter().any(|w| w.eq_ignore_ascii_case(&lower))
            || lower.contains("cookie")
            || lower.contains("table-of-contents")
            || lower.contains("tableofcontents")
    })
}

fn is_heading(node: &NodeRef) -> bool {
    node.node_name()
        .is_some_and(|n| matches!(n.to_ascii_lowercase().as_str(), "h1" | "h2" | "h3" | "h4" | "h5" | "h6"))
}

fn inside_code(node: &NodeRef) -> bool {
    node.ancestors_it(None).any(|a| {
        a.node_name().is_some_and(|n| n.eq_ignore_ascii_case("pre") || n.eq_ignore_ascii_case("code"))
    })
}

/// A link is chrome when it is a permalink (to an anchor of the page, with only a symbol for
/// text, or named one by its class, title or label), an "edit this page" link, a previous /
/// next link, or a skip link. A permalink that carries words keeps them.
fn link_verdict(link: &NodeRef) -> Verdict {
    let text = link.text();
    let words: String = text.chars().filter(|c| c.is_alphanumeric()).collect();
    let href = link.attr("href").unwrap_or_default();
    let hints = format!(
        "{} {} {} {}",
        link.attr("class").unwrap_or_default(),
        link.attr("title").unwrap_or_default(),
        link.attr("aria-label").unwrap_or_default(),
        link.attr("id").unwrap_or_default()
    )
    .to_lowercase();
    let rel = link.attr("rel").unwrap_or_default().to_ascii_lowercase();
    let lower_text = text.trim().to_lowercase();
    if rel.split_whitespace().any(|r| r == "prev" || r == "next")
        || EDIT_LINKS.iter().any(|e| lower_text.starts_with(e))
        || lower_text.starts_with("skip to ")
        || hints.contains("edit this page")
        || hints.split_whitespace().any(|h| h.contains("skip-link") || h.contains("skip-to-content"))
    {
        return Verdict::Remove;
    }
    // A link with no words (a symbol, an icon, nothing) is never the author's: `¶`, `#`, `🔗`,
    // a zero-width space, an octicon. A linked image keeps its link.
    if words.is_empty() && !link.is("a:has(img)") {
        return Verdict::Remove;
    }
    let to_anchor = href.starts_with('#');
    let named_permalink = PERMALINK_HINTS.iter().any(|h| hints.contains(h));
    if named_permalink && to_anchor {
        return Verdict::KeepWords;
    }
    Verdict::Keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(html: &str) -> String {
        let document = Document::from(html);
        remove_chrome(&document);
        document.select("body").text().split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn heading_permalinks_go_and_their_headings_stay() {
        let html = r##"<body><article>
            <h1>Logging<a class="headerlink" href="#logging" title="Link to this heading">¶</a></h1>
            <h2 id="why">Why<a hidden class="anchor" aria-hidden="true" href="#why">#</a></h2>
            <h2 id="how">How<a href="#how" class="hash-link" aria-label="Direct link to How">&#8203;</a></h2>
            <div class="markdown-heading"><h2 class="heading-element">Where</h2><a id="user-content-where" class="anchor" aria-label="Permalink: Where" href="#where"><svg class="octicon octicon-link"></svg></a></div>
            <h2 id="when"><a class="header-anchor" href="#when">When</a></h2>
            <p>See <a href="#why">why</a> above and <a href="/other.html">the other page</a>.</p>
            </article></body>"##;
        assert_eq!(cleaned(html), "Logging Why How Where When See why above and the other page.");
        let document = Document::from(html);
        remove_chrome(&document);
        assert_eq!(document.select("h1, h2").length(), 5, "{}", document.html());
        assert_eq!(document.select("h2#when").html().to_string(), r#"<h2 id="when">When</h2>"#);
        assert_eq!(document.select("a").length(), 2, "{}", document.html());
    }

    #[test]
    fn navigation_boxes_and_buttons_go_and_the_article_stays() {
        let html = r##"<body><div class="md-container"><main class="md-main"><div class="md-sidebar md-sidebar--secondary"><nav aria-label="Table of contents"><a href="#a">A</a></nav></div>
            <div class="md-content"><article class="md-content__inner md-typeset">
            <a href="https://github.com/x/edit/main/docs/a.md" title="Edit this page" class="md-content__button md-icon"><svg></svg></a>
            <nav class="theme-doc-breadcrumbs" aria-label="Breadcrumbs"><a href="/">Home</a> Docs</nav>
            <p>The author's words.</p>
            <div class="highlight"><pre><code><a id="__codelineno-0-1" href="#__codelineno-0-1"></a>print("https://example.org")</code></pre>
            <div class="buttonGroup__atx"><button type="button" aria-label="Copy code to clipboard" class="clean-btn">Copy</button></div></div>
            <div class="subscription-widget-wrap-editor"><p class="cta-caption">Thanks for reading! Subscribe for free.</p></div>
            <div class="kg-card kg-signup-card"><h2>Sign up for Paul writes</h2></div>
            <footer class="theme-doc-footer"><a class="theme-edit-this-page" href="x">Edit this page</a></footer>
            <blockquote><p>A quote.</p><footer>Someone</footer></blockquote>
            </article></div></main>
            <footer class="md-footer"><a href="../prev/" class="md-footer__link md-footer__link--prev">Previous</a></footer></div>
            <div id="cookie-law-info-bar"><span>We use cookies.</span></div></body>"##;
        // The footer and the banner outside `<main>` are left to Readability.
        assert_eq!(
            cleaned(html),
            r#"The author's words. print("https://example.org") A quote.Someone Previous We use cookies."#
        );
    }

    #[test]
    fn a_container_named_like_chrome_that_holds_the_article_stays() {
        let html = r#"<body><main><div class="content-with-sidebar layout-nav"><div><p>Every word of the article is in here, and it is the whole page.</p></div></div>
            <div class="sidebar"><a href="/">Home</a></div></main></body>"#;
        assert_eq!(cleaned(html), "Every word of the article is in here, and it is the whole page.");
    }
}
