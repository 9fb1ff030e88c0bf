//! Fixture sites in the markup that common generators write (Sphinx with Alabaster, MkDocs
//! Material, Hugo with PaperMod, Jekyll with minima, Docusaurus, WordPress, Ghost with Casper,
//! Substack, GitHub's rendered Markdown) and their platforms' exports (Substack's and Medium's
//! archives, WordPress's, Ghost's and Jekyll's feeds, the Markdown sources in a repository,
//! pages saved as text). One author wrote every article; each site carries its generator's
//! chrome: heading permalinks, "edit this page", breadcrumbs, previous / next, tables of
//! contents, cookie and newsletter boxes, copy-code buttons, share and comment boxes.

/// A block of an article, rendered in each generator's markup.
#[derive(Debug, Clone)]
pub enum Block {
    /// A paragraph; inline HTML (`<a>`, `<code>`) as every generator writes it.
    Para(String),
    /// A second-level heading.
    Heading(String),
    /// A code block.
    Code(String),
    /// A bulleted list.
    List(Vec<String>),
}

/// One article of the author's.
#[derive(Debug, Clone)]
pub struct Article {
    /// The last part of its URL.
    pub slug: String,
    /// Its title.
    pub title: String,
    /// Its body.
    pub blocks: Vec<Block>,
    /// A sentence of its first paragraph, to find it by.
    pub marker: String,
}

/// The generators the fixtures are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    Sphinx,
    MkDocs,
    Hugo,
    Jekyll,
    Docusaurus,
    WordPress,
    Ghost,
    Substack,
    GitHub,
}

pub const GENERATORS: [Generator; 9] = [
    Generator::Sphinx,
    Generator::MkDocs,
    Generator::Hugo,
    Generator::Jekyll,
    Generator::Docusaurus,
    Generator::WordPress,
    Generator::Ghost,
    Generator::Substack,
    Generator::GitHub,
];

/// What the author writes about on each site.
fn topics(generator: Generator) -> [&'static str; 3] {
    match generator {
        Generator::Sphinx => ["queues", "retries", "backoff"],
        Generator::MkDocs => ["caching", "indexes", "migrations"],
        Generator::Hugo => ["tracing", "sampling", "dashboards"],
        Generator::Jekyll => ["pairing", "reviews", "mentoring"],
        Generator::Docusaurus => ["installing", "configuring", "upgrading"],
        Generator::WordPress => ["hiring", "onboarding", "feedback"],
        Generator::Ghost => ["writing", "editing", "publishing"],
        Generator::Substack => ["twins", "evals", "adapters"],
        Generator::GitHub => ["handbook", "conventions", "releases"],
    }
}

impl Generator {
    /// The site's folder on the fixture server.
    pub fn name(self) -> &'static str {
        match self {
            Generator::Sphinx => "sphinx",
            Generator::MkDocs => "mkdocs",
            Generator::Hugo => "hugo",
            Generator::Jekyll => "jekyll",
            Generator::Docusaurus => "docusaurus",
            Generator::WordPress => "wordpress",
            Generator::Ghost => "ghost",
            Generator::Substack => "substack",
            Generator::GitHub => "github",
        }
    }

    /// The path of an article's page under the server's root.
    pub fn path(self, slug: &str) -> String {
        let site = self.name();
        match self {
            Generator::Sphinx => format!("/{site}/{slug}.html"),
            Generator::MkDocs => format!("/{site}/{slug}/"),
            Generator::Hugo => format!("/{site}/posts/{slug}/"),
            Generator::Jekyll => format!("/{site}/2026/03/01/{slug}.html"),
            Generator::Docusaurus => format!("/{site}/docs/{slug}"),
            Generator::WordPress => format!("/{site}/2026/03/01/{slug}/"),
            Generator::Ghost => format!("/{site}/{slug}/"),
            Generator::Substack => format!("/{site}/p/{slug}"),
            Generator::GitHub if slug == "handbook" => format!("/{site}/paul/handbook"),
            Generator::GitHub => format!("/{site}/paul/handbook/blob/main/docs/{slug}.md"),
        }
    }
}

/// Words of the author's prose; none of them is a word of chrome.
const WORDS: [&str; 48] = [
    "value", "owner", "scope", "memory", "reader", "writer", "compiler", "thread", "borrow", "stack", "heap",
    "string", "vector", "closure", "trait", "module", "crate", "test", "error", "result", "pointer",
    "lifetime", "pattern", "match", "loop", "function", "method", "struct", "enum", "field", "type", "macro",
    "channel", "mutex", "future", "task", "buffer", "file", "line", "word", "draft", "essay", "note", "idea",
    "example", "question", "habit", "budget",
];

/// A sentence of its own words: no shingle in common with another sentence's.
fn sentences(seed: &str, count: usize) -> Vec<String> {
    let mut state = seed.bytes().fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        WORDS[(state >> 33) as usize % WORDS.len()]
    };
    (0..count)
        .map(|_| {
            let words: Vec<&str> = (0..10).map(|_| next()).collect();
            let mut sentence = words.join(" ");
            sentence[..1].make_ascii_uppercase();
            sentence + "."
        })
        .collect()
}

fn capitalised(word: &str) -> String {
    let mut word = word.to_string();
    word[..1].make_ascii_uppercase();
    word
}

/// The three articles of a site whose pages are under `base` (`http://host:port`); each links
/// to the next.
pub fn articles(generator: Generator, base: &str) -> Vec<Article> {
    let topics = topics(generator);
    (0..3)
        .map(|index| {
            let other = topics[(index + 1) % 3];
            let link = format!("{base}{}", generator.path(other));
            article(generator.name(), topics[index], &link, &title_of(other), base)
        })
        .collect()
}

fn title_of(topic: &str) -> String {
    format!("{} in practice", capitalised(topic))
}

/// An article on `topic`, written for `site`: paragraphs of its own words, a link to another
/// article, inline code, a code block with the sentence that leads into it and the sentence
/// that goes on after it, a list, and a bare URL of the site.
pub fn article(site: &str, topic: &str, link: &str, link_title: &str, base: &str) -> Article {
    let seed = |n: usize| format!("{site}/{topic}/{n}");
    let paragraph = |n: usize| sentences(&seed(n), 3).join(" ");
    let first = paragraph(0);
    let marker = first.split_inclusive('.').next().unwrap().to_string();
    let blocks = vec![
        Block::Para(first),
        Block::Heading(format!("Where {topic} come from")),
        Block::Para(format!(
            "{} I wrote <a href=\"{link}\">{link_title}</a> a year ago, and <code>{topic}.toml</code> still holds the settings.",
            paragraph(1)
        )),
        Block::Para(format!("{} The whole setup fits in a few lines:", paragraph(2))),
        Block::Code(format!(
            "import requests\n\n# see https://example.org/{topic}/reference\nURL = \"https://example.org/{topic}\"\n\ndef fetch_{topic}():\n    return requests.get(URL).json()\n"
        )),
        Block::Para(format!("which is all the {topic} service needs before it answers. {}", paragraph(3))),
        Block::Heading(format!("What I would change about {topic}")),
        Block::List(sentences(&seed(4), 3)),
        Block::Para(format!(
            "{} The slides are at {base}/slides/{topic}.pdf for anyone who asked.",
            paragraph(5)
        )),
    ];
    Article { slug: topic.to_string(), title: title_of(topic), blocks, marker }
}

/// An HTML-escaped text.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A heading's id, as the generators derive it.
fn id_of(text: &str) -> String {
    text.to_lowercase().split_whitespace().collect::<Vec<_>>().join("-")
}

const SVG: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" aria-hidden="true"><path d="M3.9 12c0-1.71 1.39-3.1 3.1-3.1h4V7H7c-2.76 0-5 2.24-5 5s2.24 5 5 5h4v-1.9H7c-1.71 0-3.1-1.39-3.1-3.1"/></svg>"#;

/// An article's body in a generator's markup: headings with their permalinks, code blocks with
/// their buttons, and the boxes each platform puts inside posts.
pub fn body(generator: Generator, article: &Article, base: &str) -> String {
    let mut html = String::new();
    let mut open_section = false;
    for (n, block) in article.blocks.iter().enumerate() {
        match block {
            Block::Para(text) => html += &format!("<p>{text}</p>\n"),
            Block::List(items) => {
                let items: String = items
                    .iter()
                    .map(|i| match generator {
                        Generator::Sphinx => format!("<li><p>{i}</p></li>"),
                        _ => format!("<li>{i}</li>"),
                    })
                    .collect();
                let class = match generator {
                    Generator::Sphinx => " class=\"simple\"",
                    Generator::WordPress => " class=\"wp-block-list\"",
                    _ => "",
                };
                html += &format!("<ul{class}>{items}</ul>\n");
            }
            Block::Heading(text) => {
                let id = id_of(text);
                html += &match generator {
                    Generator::Sphinx => {
                        let close = if open_section { "</section>\n" } else { "" };
                        open_section = true;
                        format!(
                            "{close}<section id=\"{id}\">\n<h2>{text}<a class=\"headerlink\" href=\"#{id}\" title=\"Link to this heading\">¶</a></h2>\n"
                        )
                    }
                    Generator::MkDocs => format!(
                        "<h2 id=\"{id}\">{text}<a class=\"headerlink\" href=\"#{id}\" title=\"Permanent link\">&para;</a></h2>\n"
                    ),
                    Generator::Hugo => format!(
                        "<h2 id=\"{id}\">{text}<a hidden class=\"anchor\" aria-hidden=\"true\" href=\"#{id}\">#</a></h2>\n"
                    ),
                    Generator::Jekyll | Generator::Ghost => format!("<h2 id=\"{id}\">{text}</h2>\n"),
                    Generator::Docusaurus => format!(
                        "<h2 class=\"anchor anchorWithStickyNavbar_LWe7\" id=\"{id}\">{text}<a href=\"#{id}\" class=\"hash-link\" aria-label=\"Direct link to {text}\" title=\"Direct link to {text}\">\u{200b}</a></h2>\n"
                    ),
                    Generator::WordPress => format!(
                        "<h2 class=\"wp-block-heading\"><span class=\"ez-toc-section\" id=\"{id}\"></span>{text}<span class=\"ez-toc-section-end\"></span></h2>\n"
                    ),
                    Generator::Substack => format!(
                        "<h2 class=\"header-anchor-post\">{text}<div class=\"pencraft pc-display-flex pc-alignItems-center pc-position-absolute pc-reset header-anchor-parent\"><div class=\"pencraft pc-display-contents pc-reset pubTheme-yiXxQA\"><div id=\"§{id}\" class=\"pencraft pc-reset header-anchor offset-top\"></div><button tabindex=\"0\" type=\"button\" aria-label=\"Link\" data-href=\"{base}/i/1804/{id}\" class=\"pencraft pc-reset pencraft icon-container\">{SVG}</button></div></div></h2>\n"
                    ),
                    Generator::GitHub => format!(
                        "<div class=\"markdown-heading\" dir=\"auto\"><h2 tabindex=\"-1\" class=\"heading-element\" dir=\"auto\">{text}</h2><a id=\"user-content-{id}\" class=\"anchor\" aria-label=\"Permalink: {text}\" href=\"#{id}\"><svg class=\"octicon octicon-link\" viewBox=\"0 0 16 16\" version=\"1.1\" width=\"16\" height=\"16\" aria-hidden=\"true\"><path d=\"m7.775 3.275 1.25-1.25a3.5 3.5 0 1 1 4.95 4.95\"></path></svg></a></div>\n"
                    ),
                };
            }
            Block::Code(code) => {
                let escaped = escape(code);
                html += &match generator {
                    Generator::Sphinx => format!(
                        "<div class=\"highlight-python notranslate\"><div class=\"highlight\"><pre><span></span>{escaped}</pre></div>\n</div>\n"
                    ),
                    Generator::MkDocs => {
                        let lines: String = code
                            .lines()
                            .enumerate()
                            .map(|(i, line)| {
                                format!(
                                    "<a id=\"__codelineno-{n}-{i}\" name=\"__codelineno-{n}-{i}\" href=\"#__codelineno-{n}-{i}\"></a>{}\n",
                                    escape(line)
                                )
                            })
                            .collect();
                        format!(
                            "<div class=\"language-python highlight\"><pre><span></span><code>{lines}</code></pre></div>\n"
                        )
                    }
                    Generator::Hugo => {
                        let lines: String = code
                            .lines()
                            .map(|l| {
                                format!(
                                    "<span class=\"line\"><span class=\"cl\">{}\n</span></span>",
                                    escape(l)
                                )
                            })
                            .collect();
                        format!(
                            "<div class=\"highlight\"><pre tabindex=\"0\" class=\"chroma\"><code class=\"language-python\" data-lang=\"python\">{lines}</code></pre></div>\n"
                        )
                    }
                    Generator::Jekyll => format!(
                        "<div class=\"language-python highlighter-rouge\"><div class=\"highlight\"><pre class=\"highlight\"><code>{escaped}</code></pre></div></div>\n"
                    ),
                    Generator::Docusaurus => {
                        let lines: String = code
                            .lines()
                            .map(|l| format!("<span class=\"token-line\" style=\"color:#393A34\"><span class=\"token plain\">{}</span><br></span>", escape(l)))
                            .collect();
                        format!(
                            "<div class=\"language-python codeBlockContainer_Ckt0 theme-code-block\" style=\"--prism-color:#393A34;--prism-background-color:#f6f8fa\"><div class=\"codeBlockContent_biex\"><pre tabindex=\"0\" class=\"prism-code language-python codeBlock_bY9V thin-scrollbar\" style=\"color:#393A34;background-color:#f6f8fa\"><code class=\"codeBlockLines_e6Vv\">{lines}</code></pre><div class=\"buttonGroup__atx\"><button type=\"button\" aria-label=\"Copy code to clipboard\" title=\"Copy\" class=\"clean-btn\"><span class=\"copyButtonIcons_eSgA\" aria-hidden=\"true\">{SVG}{SVG}</span></button></div></div></div>\n"
                        )
                    }
                    Generator::WordPress => {
                        format!("<pre class=\"wp-block-code\"><code>{escaped}</code></pre>\n")
                    }
                    Generator::Ghost => {
                        format!("<pre><code class=\"language-python\">{escaped}</code></pre>\n")
                    }
                    Generator::Substack => format!("<pre><code>{escaped}</code></pre>\n"),
                    Generator::GitHub => format!(
                        "<div class=\"highlight highlight-source-python notranslate position-relative overflow-auto\" dir=\"auto\"><pre>{escaped}</pre><div class=\"zeroclipboard-container\"><clipboard-copy aria-label=\"Copy\" class=\"ClipboardButton btn btn-invisible js-clipboard-copy m-2 p-0 d-flex flex-justify-center flex-items-center\" data-copy-feedback=\"Copied!\" data-tooltip-direction=\"w\" value=\"{escaped}\" tabindex=\"0\" role=\"button\"><svg aria-hidden=\"true\" height=\"16\" viewBox=\"0 0 16 16\" version=\"1.1\" width=\"16\" class=\"octicon octicon-copy js-clipboard-copy-icon\"><path d=\"M0 6.75C0 5.784.784 5 1.75 5h1.5\"></path></svg></clipboard-copy></div></div>\n"
                    ),
                };
            }
        }
        // The boxes platforms put inside the post, after its second paragraph.
        if n == 2 {
            html += &match generator {
                Generator::Ghost => format!(
                    "<div class=\"kg-card kg-signup-card kg-width-regular \" data-lexical-signup-form style=\"background-color: #F0F0F0; display: none;\"><div class=\"kg-signup-card-content\"><div class=\"kg-signup-card-text \"><h2 class=\"kg-signup-card-heading\" style=\"color: #000000;\"><span style=\"white-space: pre-wrap;\">Sign up for Paul writes</span></h2><p class=\"kg-signup-card-subheading\" style=\"color: #000000;\"><span style=\"white-space: pre-wrap;\">New essays every other Sunday, straight to your inbox.</span></p><form class=\"kg-signup-card-form\" data-members-form=\"signup\"><div class=\"kg-signup-card-fields\"><input class=\"kg-signup-card-input\" id=\"email\" data-members-email=\"\" type=\"email\" required=\"true\" placeholder=\"Your email\"><button class=\"kg-signup-card-button kg-style-accent\" style=\"color: #FFFFFF;\" type=\"submit\"><span class=\"kg-signup-card-button-default\">Subscribe</span><span class=\"kg-signup-card-button-loading\">{SVG}</span></button></div><div class=\"kg-signup-card-success\" style=\"color: #000000;\">Email sent! Check your inbox to complete your signup.</div><div class=\"kg-signup-card-error\" style=\"color: #000000;\" data-members-error></div></form><p class=\"kg-signup-card-disclaimer\" style=\"color: #000000;\"><span style=\"white-space: pre-wrap;\">No spam. Unsubscribe anytime.</span></p></div></div></div>\n"
                ),
                Generator::Substack => format!(
                    "<div class=\"subscription-widget-wrap-editor\" data-attrs=\"{{&quot;url&quot;:&quot;{base}/subscribe?&quot;,&quot;text&quot;:&quot;Subscribe&quot;,&quot;language&quot;:&quot;en&quot;}}\" data-component-name=\"SubscribeWidgetToDOM\"><div class=\"subscription-widget show-subscribe\"><div class=\"preamble\"><p class=\"cta-caption\">Thanks for reading Paul's letters! Subscribe for free to receive new posts and support my work.</p></div><form class=\"subscription-widget-subscribe\"><input type=\"email\" class=\"email-input\" name=\"email\" placeholder=\"Type your email…\" tabindex=\"-1\"><input type=\"submit\" class=\"button primary\" value=\"Subscribe\"><div class=\"fake-input-wrapper\"><div class=\"fake-input\"></div><div class=\"fake-button\"></div></div></form></div></div>\n"
                ),
                _ => String::new(),
            };
        }
    }
    if open_section {
        html += "</section>\n";
    }
    if generator == Generator::Substack {
        html += &format!(
            "<p class=\"button-wrapper\" data-attrs=\"{{&quot;url&quot;:&quot;{base}/p/{slug}?utm_source=substack&amp;utm_medium=email&amp;utm_content=share&amp;action=share&quot;,&quot;text&quot;:&quot;Share&quot;,&quot;action&quot;:null,&quot;class&quot;:null}}\" data-component-name=\"ButtonCreateButton\"><a class=\"button primary\" href=\"{base}/p/{slug}?utm_source=substack&amp;utm_medium=email&amp;utm_content=share&amp;action=share\"><span>Share</span></a></p>\n",
            slug = article.slug
        );
    }
    html
}

/// The headings of an article, for tables of contents.
fn headings(article: &Article) -> Vec<&str> {
    article
        .blocks
        .iter()
        .filter_map(|b| match b {
            Block::Heading(text) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// A crawled page: the article in its site's whole page.
pub fn page(generator: Generator, articles: &[Article], index: usize, base: &str) -> String {
    let article = &articles[index];
    let prev = &articles[(index + 2) % 3];
    let next = &articles[(index + 1) % 3];
    let url = |a: &Article| format!("{base}{}", generator.path(&a.slug));
    let (title, slug) = (&article.title, &article.slug);
    let body = body(generator, article, base);
    let toc = |item: &dyn Fn(&str, &str) -> String| -> String {
        headings(article).iter().map(|h| item(&id_of(h), h)).collect()
    };
    let site = format!("{base}/{}", generator.name());
    let (prev_title, next_title, prev_slug, next_slug) = (&prev.title, &next.title, &prev.slug, &next.slug);
    let (prev_url, next_url, url) = (url(prev), url(next), url(article));
    match generator {
        Generator::Sphinx => {
            let nav: String = articles
                .iter()
                .map(|a| format!("<li class=\"toctree-l1\"><a class=\"reference internal\" href=\"{}.html\">{}</a></li>", a.slug, a.title))
                .collect();
            format!(
                r##"<!DOCTYPE html>
<html lang="en" data-content_root="./">
  <head>
    <meta charset="utf-8" /><meta name="viewport" content="width=device-width, initial-scale=1.0" />
    <title>{title} &#8212; Paul’s handbook 1.0 documentation</title>
    <link rel="stylesheet" type="text/css" href="_static/pygments.css?v=d1102ebc" />
    <link rel="stylesheet" type="text/css" href="_static/alabaster.css?v=12dfc556" />
    <script src="_static/documentation_options.js?v=f2a433a1"></script>
    <script src="_static/doctools.js?v=9a2dae69"></script>
    <link rel="index" title="Index" href="genindex.html" />
    <link rel="next" title="{next_title}" href="{next_slug}.html" />
    <link rel="prev" title="{prev_title}" href="{prev_slug}.html" />
  </head><body>
    <div class="related" role="navigation" aria-label="Related">
      <h3>Navigation</h3>
      <ul>
        <li class="right" style="margin-right: 10px"><a href="genindex.html" title="General Index" accesskey="I">index</a></li>
        <li class="right"><a href="{next_slug}.html" title="{next_title}" accesskey="N">next</a> |</li>
        <li class="right"><a href="{prev_slug}.html" title="{prev_title}" accesskey="P">previous</a> |</li>
        <li class="nav-item nav-item-0"><a href="index.html">Paul’s handbook 1.0 documentation</a> &#187;</li>
        <li class="nav-item nav-item-this"><a href="">{title}</a></li>
      </ul>
    </div>
    <div class="document">
      <div class="documentwrapper">
        <div class="bodywrapper">
          <div class="body" role="main">
  <section id="{slug}">
<h1>{title}<a class="headerlink" href="#{slug}" title="Link to this heading">¶</a></h1>
{body}</section>
          </div>
        </div>
      </div>
      <div class="sphinxsidebar" role="navigation" aria-label="Main">
        <div class="sphinxsidebarwrapper">
<h1 class="logo"><a href="index.html">Paul’s handbook</a></h1>
<h3>Navigation</h3>
<ul class="current">{nav}</ul>
<div class="relations">
<h3>Related Topics</h3>
<ul>
  <li><a href="index.html">Documentation overview</a><ul>
      <li>Previous: <a href="{prev_slug}.html" title="previous chapter">{prev_title}</a></li>
      <li>Next: <a href="{next_slug}.html" title="next chapter">{next_title}</a></li>
  </ul></li>
</ul>
</div>
<div role="note" aria-label="source link">
  <h3>This Page</h3>
  <ul class="this-page-menu"><li><a href="_sources/{slug}.rst.txt" rel="nofollow">Show Source</a></li></ul>
</div>
<search id="searchbox" style="display: none" role="search">
  <h3 id="searchlabel">Quick search</h3>
    <div class="searchformwrapper">
    <form class="search" action="search.html" method="get">
      <input type="text" name="q" aria-labelledby="searchlabel" autocomplete="off" autocorrect="off" autocapitalize="off" spellcheck="false"/>
      <input type="submit" value="Go" />
    </form>
    </div>
</search>
<script>document.getElementById('searchbox').style.display = "block"</script>
        </div>
      </div>
      <div class="clearer"></div>
    </div>
    <div class="footer">
      &#169;2026, Paul.
      |
      Powered by <a href="https://www.sphinx-doc.org/">Sphinx 8.1.3</a>
      &amp; <a href="https://alabaster.readthedocs.io">Alabaster 1.0.0</a>
      |
      <a href="_sources/{slug}.rst.txt" rel="nofollow">Page source</a>
    </div>
  </body>
</html>"##,
            )
        }
        Generator::MkDocs => {
            let nav: String = articles
                .iter()
                .map(|a| format!("<li class=\"md-nav__item\"><a href=\"../{}/\" class=\"md-nav__link\"><span class=\"md-ellipsis\">{}</span></a></li>", a.slug, a.title))
                .collect();
            let toc = toc(&|id, text| {
                format!(
                    "<li class=\"md-nav__item\"><a href=\"#{id}\" class=\"md-nav__link\"><span class=\"md-ellipsis\">{text}</span></a></li>"
                )
            });
            format!(
                r##"<!doctype html>
<html lang="en" class="no-js">
  <head>
      <meta charset="utf-8">
      <meta name="viewport" content="width=device-width,initial-scale=1">
      <link rel="prev" href="../{prev_slug}/">
      <link rel="next" href="../{next_slug}/">
      <meta name="generator" content="mkdocs-1.6.1, mkdocs-material-9.5.44">
      <title>{title} - Paul's field notes</title>
      <link rel="stylesheet" href="../assets/stylesheets/main.0253249f.min.css">
  </head>
  <body dir="ltr">
    <input class="md-toggle" data-md-toggle="drawer" type="checkbox" id="__drawer" autocomplete="off">
    <input class="md-toggle" data-md-toggle="search" type="checkbox" id="__search" autocomplete="off">
    <label class="md-overlay" for="__drawer"></label>
    <div data-md-component="skip"><a href="#{slug}" class="md-skip">Skip to content</a></div>
    <div data-md-component="announce"></div>
    <header class="md-header md-header--shadow" data-md-component="header">
      <nav class="md-header__inner md-grid" aria-label="Header">
        <a href=".." title="Paul's field notes" class="md-header__button md-logo" aria-label="Paul's field notes" data-md-component="logo">{SVG}</a>
        <div class="md-header__title" data-md-component="header-title"><div class="md-header__ellipsis"><div class="md-header__topic"><span class="md-ellipsis">Paul's field notes</span></div><div class="md-header__topic" data-md-component="header-topic"><span class="md-ellipsis">{title}</span></div></div></div>
        <div class="md-search" data-md-component="search" role="dialog"><label class="md-search__overlay" for="__search"></label><div class="md-search__inner" role="search"><form class="md-search__form" name="search"><input type="text" class="md-search__input" name="query" aria-label="Search" placeholder="Search" autocapitalize="off" autocorrect="off" autocomplete="off" spellcheck="false" data-md-component="search-query" required></form></div></div>
      </nav>
    </header>
    <div class="md-container" data-md-component="container">
      <main class="md-main" data-md-component="main">
        <div class="md-main__inner md-grid">
          <div class="md-sidebar md-sidebar--primary" data-md-component="sidebar" data-md-type="navigation">
            <div class="md-sidebar__scrollwrap"><div class="md-sidebar__inner">
              <nav class="md-nav md-nav--primary" aria-label="Navigation" data-md-level="0">
                <label class="md-nav__title" for="__drawer">Paul's field notes</label>
                <ul class="md-nav__list" data-md-scrollfix>{nav}</ul>
              </nav>
            </div></div>
          </div>
          <div class="md-sidebar md-sidebar--secondary" data-md-component="sidebar" data-md-type="toc">
            <div class="md-sidebar__scrollwrap"><div class="md-sidebar__inner">
              <nav class="md-nav md-nav--secondary" aria-label="Table of contents">
                <label class="md-nav__title" for="__toc"><span class="md-nav__icon md-icon"></span>Table of contents</label>
                <ul class="md-nav__list" data-md-component="toc" data-md-scrollfix>{toc}</ul>
              </nav>
            </div></div>
          </div>
          <div class="md-content" data-md-component="content">
            <article class="md-content__inner md-typeset">
              <a href="https://github.com/paul/field-notes/edit/main/docs/{slug}.md" title="Edit this page" class="md-content__button md-icon">{SVG}</a>
              <h1 id="{slug}">{title}<a class="headerlink" href="#{slug}" title="Permanent link">&para;</a></h1>
{body}
              <aside class="md-source-file"><span class="md-source-file__fact"><span class="md-icon" title="Last update">{SVG}</span><span class="git-revision-date-localized-plugin git-revision-date-localized-plugin-date">March 3, 2026</span></span></aside>
            </article>
          </div>
        </div>
        <button type="button" class="md-top md-icon" data-md-component="top" hidden>{SVG} Back to top</button>
      </main>
      <footer class="md-footer">
        <nav class="md-footer__inner md-grid" aria-label="Footer">
          <a href="../{prev_slug}/" class="md-footer__link md-footer__link--prev" aria-label="Previous: {prev_title}"><div class="md-footer__button md-icon">{SVG}</div><div class="md-footer__title"><span class="md-footer__direction">Previous</span><div class="md-ellipsis">{prev_title}</div></div></a>
          <a href="../{next_slug}/" class="md-footer__link md-footer__link--next" aria-label="Next: {next_title}"><div class="md-footer__title"><span class="md-footer__direction">Next</span><div class="md-ellipsis">{next_title}</div></div><div class="md-footer__button md-icon">{SVG}</div></a>
        </nav>
        <div class="md-footer-meta md-typeset"><div class="md-footer-meta__inner md-grid"><div class="md-copyright">Made with <a href="https://squidfunk.github.io/mkdocs-material/" target="_blank" rel="noopener">Material for MkDocs</a></div></div></div>
      </footer>
    </div>
    <div class="md-dialog" data-md-component="dialog"><div class="md-dialog__inner md-typeset"></div></div>
    <script id="__config" type="application/json">{{"base": "..", "features": ["content.code.copy"], "translations": {{"clipboard.copy": "Copy to clipboard", "clipboard.copied": "Copied to clipboard"}}}}</script>
    <script src="../assets/javascripts/bundle.83f73b43.min.js"></script>
  </body>
</html>"##,
            )
        }
        Generator::Hugo => {
            let toc = toc(&|id, text| format!("<li><a href=\"#{id}\" aria-label=\"{text}\">{text}</a></li>"));
            format!(
                r##"<!DOCTYPE html>
<html lang="en" dir="auto">
<head><meta name="generator" content="Hugo 0.140.2">
<meta charset="utf-8">
<meta http-equiv="X-UA-Compatible" content="IE=edge">
<meta name="viewport" content="width=device-width, initial-scale=1, shrink-to-fit=no">
<meta name="robots" content="index, follow">
<title>{title} | Paul's traces</title>
<meta property="og:title" content="{title}">
<meta property="article:published_time" content="2026-03-01T08:00:00+00:00">
<link crossorigin="anonymous" href="/hugo/assets/css/stylesheet.min.css" rel="preload stylesheet" as="style">
<script type="application/ld+json">{{"@context": "https://schema.org","@type": "BlogPosting","headline": "{title}","datePublished": "2026-03-01T08:00:00+00:00","author":[{{"@type": "Person","name": "Paul"}}]}}</script>
</head>
<body class=" dark" id="top">
<header class="header">
    <nav class="nav">
        <div class="logo">
            <a href="{site}/" accesskey="h" title="Paul's traces (Alt + H)">Paul's traces</a>
            <div class="logo-switches"><button id="theme-toggle" accesskey="t" title="(Alt + T)" aria-label="Toggle theme">{SVG}</button></div>
        </div>
        <ul id="menu">
            <li><a href="{site}/archives/" title="Archive"><span>Archive</span></a></li>
            <li><a href="{site}/tags/" title="Tags"><span>Tags</span></a></li>
            <li><a href="{site}/search/" title="Search (Alt + /)" accesskey=/><span>Search</span></a></li>
        </ul>
    </nav>
</header>
<main class="main">
<article class="post-single">
  <header class="post-header">
    <div class="breadcrumbs"><a href="{site}/">Home</a>&nbsp;»&nbsp;<a href="{site}/posts/">Posts</a></div>
    <h1 class="post-title entry-hint-parent">{title}</h1>
    <div class="post-meta"><span title='2026-03-01 08:00:00 +0000 UTC'>March 1, 2026</span>&nbsp;·&nbsp;4 min&nbsp;·&nbsp;Paul&nbsp;|&nbsp;<a href="https://github.com/paul/traces/tree/main/content/posts/{slug}.md" rel="noopener noreferrer" target="_blank">Suggest Changes</a></div>
  </header>
  <div class="toc">
    <details  open>
        <summary accesskey="c" title="(Alt + C)"><span class="details">Table of Contents</span></summary>
        <div class="inner"><ul>{toc}</ul></div>
    </details>
  </div>
  <div class="post-content">{body}</div>
  <footer class="post-footer">
    <ul class="post-tags"><li><a href="{site}/tags/observability/">Observability</a></li></ul>
<nav class="paginav">
  <a class="prev" href="{prev_url}"><span class="title">« Prev</span><br><span>{prev_title}</span></a>
  <a class="next" href="{next_url}"><span class="title">Next »</span><br><span>{next_title}</span></a>
</nav>
<ul class="share-buttons">
    <li><a target="_blank" rel="noopener noreferrer" aria-label="share {title} on x" href="https://x.com/intent/tweet/?text={title}&amp;url={url}">{SVG}</a></li>
    <li><a target="_blank" rel="noopener noreferrer" aria-label="share {title} on linkedin" href="https://www.linkedin.com/shareArticle?mini=true&amp;url={url}">{SVG}</a></li>
</ul>
  </footer>
</article>
    </main>
<footer class="footer">
        <span>&copy; 2026 <a href="{site}/">Paul's traces</a></span> ·
        <span>Powered by <a href="https://gohugo.io/" rel="noopener noreferrer" target="_blank">Hugo</a> &amp; <a href="https://github.com/adityatelange/hugo-PaperMod/" rel="noopener" target="_blank">PaperMod</a></span>
</footer>
<a href="#top" aria-label="go to top" title="Go to Top (Alt + G)" class="top-link" id="top-link" accesskey="g">{SVG}</a>
<script>
    document.querySelectorAll('pre > code').forEach((codeblock) => {{
        const copybutton = document.createElement('button');
        copybutton.classList.add('copy-code');
        copybutton.innerHTML = 'copy';
    }});
</script>
</body>
</html>"##,
            )
        }
        Generator::Jekyll => {
            let toc =
                toc(&|id, text| format!("<li><a href=\"#{id}\" id=\"markdown-toc-{id}\">{text}</a></li>"));
            format!(
                r##"<!DOCTYPE html>
<html lang="en"><head>
  <meta charset="utf-8">
  <meta http-equiv="X-UA-Compatible" content="IE=edge">
  <meta name="viewport" content="width=device-width, initial-scale=1"><!-- Begin Jekyll SEO tag v2.8.0 -->
<title>{title} | Paul pairs</title>
<meta name="generator" content="Jekyll v4.3.4" />
<meta property="og:title" content="{title}" />
<meta property="article:published_time" content="2026-03-01T08:00:00+00:00" />
<link rel="canonical" href="{url}" />
<!-- End Jekyll SEO tag -->
<link rel="stylesheet" href="/jekyll/assets/main.css"><link type="application/atom+xml" rel="alternate" href="{site}/feed.xml" title="Paul pairs" /></head>
<body><header class="site-header" role="banner">
  <div class="wrapper"><a class="site-title" rel="author" href="/jekyll/">Paul pairs</a><nav class="site-nav">
        <input type="checkbox" id="nav-trigger" class="nav-trigger" />
        <label for="nav-trigger"><span class="menu-icon">{SVG}</span></label>
        <div class="trigger"><a class="page-link" href="/jekyll/about/">About</a></div>
      </nav></div>
</header>
<main class="page-content" aria-label="Content">
      <div class="wrapper">
        <article class="post h-entry" itemscope itemtype="http://schema.org/BlogPosting">
  <header class="post-header">
    <h1 class="post-title p-name" itemprop="name headline">{title}</h1>
    <p class="post-meta"><time class="dt-published" datetime="2026-03-01T08:00:00+00:00" itemprop="datePublished">Mar 1, 2026
      </time></p>
  </header>
  <div class="post-content e-content" itemprop="articleBody">
    <ul id="markdown-toc">{toc}</ul>
{body}
  </div>
  <div class="newsletter-signup">
    <h3>Get new posts by email</h3>
    <form action="https://buttondown.com/api/emails/embed-subscribe/paul" method="post" target="popupwindow" class="embeddable-buttondown-form">
      <label for="bd-email">Enter your email</label>
      <input type="email" name="email" id="bd-email" />
      <input type="submit" value="Subscribe" />
    </form>
  </div>
  <div class="PageNavigation">
    <a class="prev" href="{prev_url}">&laquo; {prev_title}</a>
    <a class="next" href="{next_url}">{next_title} &raquo;</a>
  </div>
  <a class="u-url" href="{url}" hidden></a>
</article>
      </div>
    </main><footer class="site-footer h-card">
  <data class="u-url" href="/jekyll/"></data>
  <div class="wrapper">
    <h2 class="footer-heading">Paul pairs</h2>
    <div class="footer-col-wrapper">
      <div class="footer-col footer-col-1"><ul class="contact-list"><li class="p-name">Paul</li><li><a class="u-email" href="mailto:paul@example.org">paul@example.org</a></li></ul></div>
      <div class="footer-col footer-col-2"><ul class="social-media-list"><li><a href="https://github.com/paul">{SVG} <span class="username">paul</span></a></li></ul></div>
      <div class="footer-col footer-col-3"><p>Notes from a decade of pairing, reviewing and mentoring.</p></div>
    </div>
  </div>
</footer>
</body>
</html>"##,
            )
        }
        Generator::Docusaurus => {
            let nav: String = articles
                .iter()
                .map(|a| format!("<li class=\"theme-doc-sidebar-item-link theme-doc-sidebar-item-link-level-1 menu__list-item\"><a class=\"menu__link\" href=\"/docusaurus/docs/{}\">{}</a></li>", a.slug, a.title))
                .collect();
            let toc = toc(&|id, text| {
                format!(
                    "<li><a href=\"#{id}\" class=\"table-of-contents__link toc-highlight\">{text}</a></li>"
                )
            });
            format!(
                r##"<!doctype html>
<html lang="en" dir="ltr" class="docs-wrapper plugin-docs plugin-id-default docs-version-current docs-doc-page" data-has-hydrated="false">
<head>
<meta charset="UTF-8">
<meta name="generator" content="Docusaurus v3.7.0">
<title data-rh="true">{title} | Paul's tool</title><meta data-rh="true" property="og:title" content="{title} | Paul's tool"><link data-rh="true" rel="canonical" href="{url}">
<link rel="stylesheet" href="/docusaurus/assets/css/styles.4f5a1c2e.css">
<script src="/docusaurus/assets/js/runtime~main.9c2bd6d8.js" defer="defer"></script>
</head>
<body class="navigation-with-keyboard">
<script>!function(){{var t=window.localStorage.getItem("theme");document.documentElement.setAttribute("data-theme",t||"light")}}()</script><div id="__docusaurus"><div role="region" aria-label="Skip to main content"><a class="skipToContent_fXgn" href="#__docusaurus_skipToContent_fallback">Skip to main content</a></div><nav aria-label="Main" class="navbar navbar--fixed-top"><div class="navbar__inner"><div class="navbar__items"><button aria-label="Toggle navigation bar" aria-expanded="false" class="navbar__toggle clean-btn" type="button">{SVG}</button><a class="navbar__brand" href="/docusaurus/"><b class="navbar__title text--truncate">Paul's tool</b></a><a aria-current="page" class="navbar__item navbar__link navbar__link--active" href="/docusaurus/docs/installing">Tutorial</a><a class="navbar__item navbar__link" href="/docusaurus/blog">Blog</a></div><div class="navbar__items navbar__items--right"><a href="https://github.com/paul/tool" target="_blank" rel="noopener noreferrer" class="navbar__item navbar__link">GitHub</a><div class="navbarSearchContainer_Bca1"></div></div></div><div role="presentation" class="navbar-sidebar__backdrop"></div></nav><div id="__docusaurus_skipToContent_fallback" class="main-wrapper mainWrapper_z2l0"><div class="docsWrapper_hBAB"><button aria-label="Scroll back to top" class="clean-btn theme-back-to-top-button backToTopButton_sjWU" type="button"></button><div class="docRoot_UBD9"><aside class="theme-doc-sidebar-container docSidebarContainer_YfHR"><div class="sidebarViewport_aRkj"><div class="sidebar_njMd"><nav aria-label="Docs sidebar" class="menu thin-scrollbar menu_SIkG"><ul class="theme-doc-sidebar-menu menu__list">{nav}</ul></nav></div></div></aside><main class="docMainContainer_TBSr"><div class="container padding-top--md padding-bottom--lg"><div class="row"><div class="col docItemCol_VOVn"><div class="docItemContainer_Djhp"><article><nav class="theme-doc-breadcrumbs breadcrumbsContainer_Z_bl" aria-label="Breadcrumbs"><ul class="breadcrumbs" itemscope="" itemtype="https://schema.org/BreadcrumbList"><li class="breadcrumbs__item"><a aria-label="Home page" class="breadcrumbs__link" href="/docusaurus/">{SVG}</a></li><li itemscope="" itemprop="itemListElement" itemtype="https://schema.org/ListItem" class="breadcrumbs__item"><span class="breadcrumbs__link">Tutorial</span><meta itemprop="position" content="1"></li><li itemscope="" itemprop="itemListElement" itemtype="https://schema.org/ListItem" class="breadcrumbs__item breadcrumbs__item--active"><span class="breadcrumbs__link" itemprop="name">{title}</span><meta itemprop="position" content="2"></li></ul></nav><div class="tocCollapsible_ETCw theme-doc-toc-mobile tocMobile_ITEo"><button type="button" class="clean-btn tocCollapsibleButton_TO0P">On this page</button></div><div class="theme-doc-markdown markdown"><header><h1>{title}</h1></header>
{body}</div><footer class="theme-doc-footer docusaurus-mt-lg"><div class="row margin-top--sm theme-doc-footer-edit-meta-row"><div class="col"><a href="https://github.com/paul/tool/tree/main/website/docs/{slug}.md" target="_blank" rel="noopener noreferrer" class="theme-edit-this-page">{SVG}Edit this page</a></div><div class="col lastUpdated_JAkA"></div></div></footer></article><nav class="pagination-nav docusaurus-mt-lg" aria-label="Docs pages"><a class="pagination-nav__link pagination-nav__link--prev" href="{prev_url}"><div class="pagination-nav__sublabel">Previous</div><div class="pagination-nav__label">{prev_title}</div></a><a class="pagination-nav__link pagination-nav__link--next" href="{next_url}"><div class="pagination-nav__sublabel">Next</div><div class="pagination-nav__label">{next_title}</div></a></nav></div></div><div class="col col--3"><div class="tableOfContents_bqdL thin-scrollbar theme-doc-toc-desktop"><ul class="table-of-contents table-of-contents__left-border">{toc}</ul></div></div></div></div></main></div></div></div><footer class="footer footer--dark"><div class="container container-fluid"><div class="row footer__links"><div class="col footer__col"><div class="footer__title">Docs</div><ul class="footer__items clean-list"><li class="footer__item"><a class="footer__link-item" href="/docusaurus/docs/installing">Tutorial</a></li></ul></div><div class="col footer__col"><div class="footer__title">Community</div><ul class="footer__items clean-list"><li class="footer__item"><a href="https://discord.gg/paul" target="_blank" rel="noopener noreferrer" class="footer__link-item">Discord</a></li></ul></div></div><div class="footer__bottom text--center"><div class="footer__copyright">Copyright © 2026 Paul's tool. Built with Docusaurus.</div></div></div></footer></div>
</body>
</html>"##,
            )
        }
        Generator::WordPress => {
            let toc = toc(&|id, text| {
                format!(
                    "<li class='ez-toc-page-1 ez-toc-heading-level-2'><a class=\"ez-toc-link ez-toc-heading-1\" href=\"#{id}\" title=\"{text}\">{text}</a></li>"
                )
            });
            format!(
                r##"<!doctype html>
<html lang="en-US" >
<head>
	<meta charset="UTF-8" />
	<meta name="viewport" content="width=device-width, initial-scale=1.0" />
<title>{title} &#8211; Paul at work</title>
<meta property="article:published_time" content="2026-03-01T08:00:00+00:00" />
<link rel='stylesheet' id='twenty-twenty-one-style-css' href='{site}/wp-content/themes/twentytwentyone/style.css?ver=2.4' media='all' />
<meta name="generator" content="WordPress 6.7.1" />
</head>
<body class="post-template-default single single-post postid-42 single-format-standard wp-embed-responsive is-light-theme no-js singular">
<div id="page" class="site">
	<a class="skip-link screen-reader-text" href="#content">Skip to content</a>
<header id="masthead" class="site-header has-title-and-tagline" role="banner">
<div class="site-branding"><p class="site-title"><a href="{site}/" rel="home">Paul at work</a></p><p class="site-description">Notes on teams and hiring</p></div>
<nav id="site-navigation" class="primary-navigation" aria-label="Primary menu"><div class="primary-menu-container"><ul id="primary-menu-list" class="menu-wrapper"><li id="menu-item-9" class="menu-item menu-item-type-post_type menu-item-object-page menu-item-9"><a href="{site}/about/">About</a></li><li id="menu-item-10" class="menu-item menu-item-type-post_type menu-item-object-page menu-item-10"><a href="{site}/contact/">Contact</a></li></ul></div></nav>
</header>
	<div id="content" class="site-content">
		<div id="primary" class="content-area">
			<main id="main" class="site-main">
<article id="post-42" class="post-42 post type-post status-publish format-standard hentry category-teams entry">
	<header class="entry-header alignwide">
		<h1 class="entry-title">{title}</h1>
	</header>
	<div class="entry-content">
<div id="ez-toc-container" class="ez-toc-v2_0_69_1 counter-hierarchy ez-toc-counter ez-toc-grey ez-toc-container-direction">
<div class="ez-toc-title-container"><p class="ez-toc-title" style="cursor:inherit">Table of Contents</p><span class="ez-toc-title-toggle"><a href="#" class="ez-toc-pull-right ez-toc-btn ez-toc-btn-xs ez-toc-btn-default ez-toc-toggle" aria-label="Toggle Table of Content"><span class="ez-toc-js-icon-con"><span class="ez-toc-icon-toggle-span">{SVG}</span></span></a></span></div>
<nav><ul class='ez-toc-list ez-toc-list-level-1 ' >{toc}</ul></nav></div>
{body}
<div class="sharedaddy sd-sharing-enabled"><div class="robots-nocontent sd-block sd-social sd-social-icon-text sd-sharing"><h3 class="sd-title">Share this:</h3><div class="sd-content"><ul><li class="share-twitter"><a rel="nofollow noopener noreferrer" data-shared="sharing-twitter-42" class="share-twitter sd-button share-icon" href="{url}?share=twitter" target="_blank" title="Click to share on X"><span>X</span></a></li><li class="share-facebook"><a rel="nofollow noopener noreferrer" data-shared="sharing-facebook-42" class="share-facebook sd-button share-icon" href="{url}?share=facebook" target="_blank" title="Click to share on Facebook"><span>Facebook</span></a></li><li class="share-end"></li></ul></div></div></div>
<div id='jp-relatedposts' class='jp-relatedposts' ><h3 class="jp-relatedposts-headline"><em>Related</em></h3></div>
	</div>
	<footer class="entry-footer default-max-width"><div class="posted-by"><span class="posted-on">Published <time class="entry-date published updated" datetime="2026-03-01T08:00:00+00:00">March 1, 2026</time></span><span class="byline">By <a href="{site}/author/paul/" rel="author">Paul</a></span></div><div class="post-taxonomies"><span class="cat-links">Categorized as <a href="{site}/category/teams/" rel="category tag">Teams</a></span></div></footer>
	<div class="author-bio show-avatars"><div class="author-bio-content"><h2 class="author-title">By Paul</h2><p class="author-description">Paul leads a platform team.</p><a class="author-link" href="{site}/author/paul/" rel="author">View all of Paul's posts.</a></div></div>
</article>
<div id="comments" class="comments-area default-max-width show-avatars">
	<div id="respond" class="comment-respond">
		<h2 id="reply-title" class="comment-reply-title">Leave a comment <small><a rel="nofollow" id="cancel-comment-reply-link" href="{url}#respond" style="display:none;">Cancel reply</a></small></h2><form action="{site}/wp-comments-post.php" method="post" id="commentform" class="comment-form" novalidate><p class="comment-notes"><span id="email-notes">Your email address will not be published.</span> Required fields are marked <span class="required">*</span></p><p class="comment-form-comment"><label for="comment">Comment <span class="required">*</span></label> <textarea id="comment" name="comment" cols="45" rows="5" maxlength="65525" required></textarea></p><p class="form-submit"><input name="submit" type="submit" id="submit" class="submit" value="Post Comment" /></p></form>
	</div>
</div>
	<nav class="navigation post-navigation" aria-label="Posts">
		<h2 class="screen-reader-text">Post navigation</h2>
		<div class="nav-links"><div class="nav-previous"><a href="{prev_url}" rel="prev"><p class="meta-nav">{SVG}Previous post</p><p class="post-title">{prev_title}</p></a></div><div class="nav-next"><a href="{next_url}" rel="next"><p class="meta-nav">Next post{SVG}</p><p class="post-title">{next_title}</p></a></div></div>
	</nav>
			</main>
		</div>
	</div>
	<footer id="colophon" class="site-footer" role="contentinfo">
		<div class="site-info"><div class="site-name"><a href="{site}/">Paul at work</a></div><div class="powered-by">Proudly powered by <a href="https://wordpress.org/">WordPress</a>.</div></div>
	</footer>
</div>
<div id="cookie-law-info-bar" data-nosnippet="true" data-cli-style="cli-style-v2" style="background-color:#fff;color:#333;bottom:0px;position:fixed;"><span><div class="cli-bar-container cli-style-v2"><div class="cli-bar-message">We use cookies on our website to give you the most relevant experience by remembering your preferences and repeat visits. By clicking “Accept”, you consent to the use of ALL the cookies.</div><div class="cli-bar-btn_container"><a role='button' class="cli_settings_button" style="margin:0px 10px 0px 5px">Cookie settings</a><a role='button' data-cli_action="accept" id="cookie_action_close_header" class="medium cli-plugin-button cli-plugin-main-button cookie_action_close_header cli_action_button wt-cli-accept-btn">ACCEPT</a></div></div></span></div>
</body>
</html>"##,
            )
        }
        Generator::Ghost => format!(
            r##"<!DOCTYPE html>
<html lang="en">
<head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>{title}</title>
    <link rel="stylesheet" type="text/css" href="{site}/assets/built/screen.css?v=8a9c3b1e5d">
    <meta property="og:type" content="article">
    <meta property="article:published_time" content="2026-03-01T08:00:00.000Z">
    <meta name="generator" content="Ghost 5.105">
</head>
<body class="post-template is-head-left-logo has-cover">
<div class="viewport">
    <header id="gh-head" class="gh-head outer">
        <div class="gh-head-inner inner">
            <div class="gh-head-brand"><a class="gh-head-logo no-image" href="{site}/">Paul writes</a><button class="gh-search gh-icon-btn" aria-label="Search this site" data-ghost-search>{SVG}</button><button class="gh-burger" aria-label="Main Menu"></button></div>
            <nav class="gh-head-menu"><ul class="nav"><li class="nav-home"><a href="{site}/">Home</a></li><li class="nav-about"><a href="{site}/about/">About</a></li></ul></nav>
            <div class="gh-head-actions"><a class="gh-head-link" href="#/portal/signin" data-portal="signin">Sign in</a><a class="gh-head-button" href="#/portal/signup" data-portal="signup">Subscribe</a></div>
        </div>
    </header>
    <div class="site-content">
<main id="site-main" class="site-main">
<article class="article post tag-writing no-image">
    <header class="article-header gh-canvas">
        <div class="article-tag post-card-tags"><span class="post-card-primary-tag"><a href="{site}/tag/writing/">Writing</a></span></div>
        <h1 class="article-title">{title}</h1>
        <div class="article-byline">
        <section class="article-byline-content">
            <ul class="author-list instapaper_ignore"><li class="author-list-item"><a href="{site}/author/paul/" class="author-avatar author-profile-image">{SVG}</a></li></ul>
            <div class="article-byline-meta">
                <h4 class="author-name"><a href="{site}/author/paul/">Paul</a></h4>
                <div class="byline-meta-content"><time class="byline-meta-date" datetime="2026-03-01">Mar 1, 2026</time><span class="byline-reading-time"><span class="bull">&bull;</span> 4 min read</span></div>
            </div>
        </section>
        </div>
    </header>
    <section class="gh-content gh-canvas">
{body}
    </section>
</article>
</main>
<section class="footer-cta outer">
    <div class="inner">
        <h2 class="footer-cta-title">Sign up for more like this.</h2>
        <a class="footer-cta-button" href="#/portal" data-portal><div class="footer-cta-input">Enter your email</div><span>Subscribe</span></a>
    </div>
</section>
<aside class="read-more-wrap outer">
    <div class="read-more inner">
        <article class="post-card post"><a class="post-card-image-link" href="{prev_url}"></a><div class="post-card-content"><a class="post-card-content-link" href="{prev_url}"><header class="post-card-header"><h2 class="post-card-title">{prev_title}</h2></header></a><footer class="post-card-meta"><time class="post-card-meta-date" datetime="2026-02-01">Feb 1, 2026</time><span class="post-card-meta-length">3 min read</span></footer></div></article>
        <article class="post-card post"><a class="post-card-image-link" href="{next_url}"></a><div class="post-card-content"><a class="post-card-content-link" href="{next_url}"><header class="post-card-header"><h2 class="post-card-title">{next_title}</h2></header></a><footer class="post-card-meta"><time class="post-card-meta-date" datetime="2026-01-01">Jan 1, 2026</time><span class="post-card-meta-length">5 min read</span></footer></div></article>
    </div>
</aside>
    </div>
    <footer class="site-footer outer">
        <div class="inner">
            <section class="copyright"><a href="{site}/">Paul writes</a> &copy; 2026</section>
            <nav class="site-footer-nav"><ul class="nav"><li class="nav-sign-up nav-current"><a href="#/portal/">Sign up</a></li></ul></nav>
            <div class="gh-powered-by"><a href="https://ghost.org/" target="_blank" rel="noopener">Powered by Ghost</a></div>
        </div>
    </footer>
</div>
</body>
</html>"##,
        ),
        Generator::Substack => format!(
            r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - by Paul - Paul's letters</title>
<meta property="og:title" content="{title}">
<meta property="article:published_time" content="2026-03-01T08:00:00.000Z">
<link rel="canonical" href="{url}">
</head>
<body class="pc-root">
<div id="entry"><div id="main" class="main typography use-theme-bg"><div class="pencraft pc-display-contents pc-reset pubTheme-yiXxQA">
<div data-testid="navbar" class="main-menu"><div class="topBar-pIF0J1"><div class="navbar-left"><a href="{site}/" class="navbar-title-link">Paul's letters</a></div><div class="navbar-buttons"><button tabindex="0" type="button" class="pencraft pc-reset pencraft buttonBase-GK1x3M buttonStyle-r7yGCK priority_primary-RfbeYt size_sm-G3LciD">Subscribe</button><a href="https://substack.com/sign-in?redirect=%2Fp%2F{slug}" class="pencraft pc-reset sign-in-link">Sign in</a></div></div></div>
<div class="single-post-container"><div class="container"><div class="single-post"><article class="typography newsletter-post post">
<div class="post-header" role="region" aria-label="Post header"><h1 dir="auto" class="post-title published title-X77sOw">{title}</h1>
<div class="pencraft pc-display-flex pc-gap-12 pc-alignItems-center pc-reset post-meta"><div class="profile-hover-card-target profileHoverCardTarget-PBxvGm"><a href="https://substack.com/@paul" class="pencraft pc-reset link-LIBpto">Paul</a></div><div class="pencraft pc-reset color-pub-secondary-text-hGQ02T meta-EgzBVA">Mar 01, 2026</div></div>
<div class="post-ufi style-large"><div class="like-button-container post-ufi-button style-large"><button tabindex="0" type="button" aria-label="Like (12)" aria-pressed="false" class="pencraft pc-reset post-ufi-button style-large has-label">{SVG}<div class="label">12</div></button></div><a role="button" href="{url}/comments" class="post-ufi-button style-large post-ufi-comment-button has-label">{SVG}<div class="label">3</div></a><button tabindex="0" type="button" class="pencraft pc-reset post-ufi-button style-large restack-button">{SVG}Restack</button><button tabindex="0" type="button" class="pencraft pc-reset post-ufi-button style-large share-button">{SVG}Share</button></div>
</div>
<div class="available-content"><div dir="auto" class="body markup">{body}</div></div>
<div class="visibility-check"></div>
<div class="subscribe-footer"><p class="cta-caption">Thanks for reading Paul's letters! Subscribe for free to receive new posts and support my work.</p><form class="form subscription-widget-subscribe" action="/api/v1/free?nojs=true" method="post"><input type="email" name="email" placeholder="Type your email…"><button type="submit">Subscribe</button></form></div>
<div class="post-footer use-separators"><div class="post-ufi style-large"><button tabindex="0" type="button" aria-label="Like (12)" class="pencraft pc-reset post-ufi-button style-large has-label">{SVG}<div class="label">12</div></button><a role="button" href="{url}/comments" class="post-ufi-button style-large post-ufi-comment-button has-label">{SVG}<div class="label">3</div></a></div></div>
</article></div></div></div>
<div class="post-page-recommendations"><h4 class="recommendations-header">Recommended</h4><div class="post-preview"><a href="{prev_url}" class="post-preview-title">{prev_title}</a></div><div class="post-preview"><a href="{next_url}" class="post-preview-title">{next_title}</a></div></div>
<div class="footer-wrap publication-footer"><div class="footer footer-slim"><div class="container"><div class="footer-terms"><span class="copyright">© 2026 Paul</span> · <a href="https://substack.com/privacy" target="_blank" rel="noopener">Privacy</a> ∙ <a href="https://substack.com/tos" target="_blank" rel="noopener">Terms</a> ∙ <a href="https://substack.com/ccpa#personal-data-collected" target="_blank" rel="noopener">Collection notice</a></div><a href="https://substack.com/signup?utm_source=substack&amp;utm_medium=web&amp;utm_content=footer" class="footer-substack-cta">Start writing</a></div></div></div>
</div></div></div>
</body>
</html>"##,
        ),
        Generator::GitHub => {
            let file =
                if article.slug == "handbook" { "README.md".to_string() } else { format!("docs/{slug}.md") };
            format!(
                r##"<!DOCTYPE html>
<html lang="en" data-color-mode="auto" data-light-theme="light" data-dark-theme="dark">
  <head>
    <meta charset="utf-8">
    <title>handbook/{file} at main · paul/handbook · GitHub</title>
    <meta name="description" content="How our team works. Contribute to paul/handbook development by creating an account on GitHub.">
    <link crossorigin="anonymous" media="all" rel="stylesheet" href="https://github.githubassets.com/assets/primer-3f2c8b7e.css" />
  </head>
  <body class="logged-out env-production page-responsive" style="word-wrap: break-word;">
    <div class="position-relative header-wrapper js-header-wrapper"><a href="#start-of-content" data-skip-target-assigned="false" class="px-2 py-4 color-bg-accent-emphasis color-fg-on-emphasis show-on-focus js-skip-to-content">Skip to content</a>
    <header class="HeaderMktg header-logged-out js-details-container js-header Details f4 py-3" role="banner" data-color-mode=light data-light-theme=light data-dark-theme=dark>
      <div class="container-xl d-flex flex-column flex-lg-row flex-items-center p-responsive height-full position-relative z-1">
        <a class="mr-lg-3 color-fg-inherit flex-order-2" href="https://github.com/" aria-label="Homepage">{SVG}</a>
        <nav aria-label="Global"><ul class="d-lg-flex list-style-none"><li class="HeaderMenu-item"><button type="button" class="HeaderMenu-link border-0 width-full width-lg-auto px-0 px-lg-2 py-lg-2 no-wrap d-flex flex-items-center flex-justify-between js-details-target" aria-expanded="false">Product</button></li><li class="HeaderMenu-item"><a class="HeaderMenu-link no-underline px-0 px-lg-2 py-3 py-lg-2 d-block d-lg-inline-block" href="https://github.com/pricing">Pricing</a></li></ul></nav>
        <a href="/login?return_to=https%3A%2F%2Fgithub.com%2Fpaul%2Fhandbook" class="HeaderMenu-link HeaderMenu-link--sign-in flex-shrink-0 no-underline d-block d-lg-inline-block border border-lg-0 rounded rounded-lg-0 p-2 p-lg-0">Sign in</a>
        <a href="/signup?ref_cta=Sign+up&amp;source=header-repo" class="HeaderMenu-link HeaderMenu-link--sign-up flex-shrink-0 d-flex d-lg-inline-block no-underline border color-border-default rounded px-2 py-1">Sign up</a>
      </div>
    </header>
    </div>
  <div id="start-of-content" class="show-on-focus"></div>
  <div class="application-main " data-commit-hovercards-enabled data-discussion-hovercards-enabled data-issue-and-pr-hovercards-enabled>
    <main id="js-repo-pjax-container">
  <div id="repository-container-header" class="pt-3 hide-full-screen" style="background-color: var(--page-header-bgColor, var(--color-page-header-bg));" data-turbo-replace>
      <div class="d-flex flex-nowrap flex-justify-end mb-3 px-3 px-lg-5" style="gap: 1rem;">
        <div class="flex-auto min-width-0 width-fit"><div class="d-flex flex-wrap flex-items-center wb-break-word f3 text-normal"><svg class="octicon octicon-repo color-fg-muted mr-2" aria-hidden="true" height="16" width="16"></svg><span class="author flex-self-stretch" itemprop="author"><a class="url fn" rel="author" data-hovercard-type="user" href="/github/paul">paul</a></span><span class="mx-1 flex-self-stretch color-fg-muted">/</span><strong itemprop="name" class="mr-2 flex-self-stretch"><a data-pjax="#repo-content-pjax-container" href="/github/paul/handbook">handbook</a></strong><span class="Label Label--secondary v-align-middle mr-1">Public</span></div></div>
        <div id="repository-details-container" class="flex-shrink-0" data-turbo-replace style="max-width: 70%;"><ul class="pagehead-actions flex-shrink-0 d-none d-md-inline" style="padding: 2px 0;"><li><a href="/login?return_to=%2Fpaul%2Fhandbook" rel="nofollow" class="btn-sm btn">{SVG}Notifications</a></li><li><a icon="repo-forked" id="fork-button" href="/login?return_to=%2Fpaul%2Fhandbook" rel="nofollow" class="btn-sm btn">{SVG}Fork <span id="repo-network-counter" class="Counter">3</span></a></li><li><a href="/login?return_to=%2Fpaul%2Fhandbook" rel="nofollow" class="btn-sm btn">{SVG}<span data-view-component="true" class="d-inline">Star</span> <span id="repo-stars-counter-star" class="Counter js-social-count">41</span></a></li></ul></div>
      </div>
        <nav data-pjax="#js-repo-pjax-container" aria-label="Repository" class="js-repo-nav js-sidenav-container-pjax js-responsive-underlinenav overflow-hidden UnderlineNav px-3 px-md-4 px-lg-5"><ul class="UnderlineNav-body list-style-none"><li class="d-inline-flex"><a id="code-tab" href="/github/paul/handbook" class="UnderlineNav-item no-wrap js-responsive-underlinenav-item js-selected-navigation-item selected">{SVG}<span data-content="Code">Code</span></a></li><li class="d-inline-flex"><a id="issues-tab" href="/github/paul/handbook/issues" class="UnderlineNav-item no-wrap js-responsive-underlinenav-item js-selected-navigation-item">{SVG}<span data-content="Issues">Issues</span><span id="issues-repo-tab-count" class="Counter">2</span></a></li><li class="d-inline-flex"><a id="pull-requests-tab" href="/github/paul/handbook/pulls" class="UnderlineNav-item no-wrap js-responsive-underlinenav-item js-selected-navigation-item">{SVG}<span data-content="Pull requests">Pull requests</span></a></li></ul></nav>
  </div>
  <turbo-frame id="repo-content-turbo-frame" target="_top" data-turbo-action="advance" class="">
    <div id="repo-content-pjax-container" class="repository-content ">
      <div class="Layout Layout--flowRow-until-md react-repos-overview-margin Layout--sidebarPosition-end Layout--sidebarPosition-flowRow-end">
        <div class="Layout-main">
          <table aria-labelledby="folders-and-files" class="Table__StyledTable-sc-2s0w3p-0">
            <tbody><tr class="react-directory-row undefined" id="folder-row-0"><td class="react-directory-row-name-cell-large-screen" colspan="1"><div class="react-directory-filename-column"><a title="docs" aria-label="docs, (Directory)" class="Link--primary" href="/github/paul/handbook/tree/main/docs">docs</a></div></td><td class="react-directory-row-commit-cell"><div><a data-pjax="true" title="Add the release checklist" class="Link--secondary" href="/github/paul/handbook/commit/4f2a9c1">Add the release checklist</a></div></td><td><div class="react-directory-commit-age">3 weeks ago</div></td></tr></tbody>
          </table>
          <div id="readme" class="Box MD js-code-block-container js-code-nav-container js-tagsearch-file Box--responsive" data-tagsearch-path="{file}" data-tagsearch-lang="Markdown">
            <div class="Box-header d-flex border-bottom-0 flex-items-center flex-justify-between color-bg-default rounded-top-2"><div class="d-flex flex-items-center"><h2 class="Box-title">{file}</h2></div></div>
            <div data-target="readme-toc.content" class="Box-body px-5 pb-5">
              <article class="markdown-body entry-content container-lg" itemprop="text"><div class="markdown-heading" dir="auto"><h1 tabindex="-1" class="heading-element" dir="auto">{title}</h1><a id="user-content-{slug}" class="anchor" aria-label="Permalink: {title}" href="#{slug}"><svg class="octicon octicon-link" viewBox="0 0 16 16" version="1.1" width="16" height="16" aria-hidden="true"><path d="m7.775 3.275 1.25-1.25a3.5 3.5 0 1 1 4.95 4.95"></path></svg></a></div>
{body}</article>
            </div>
          </div>
        </div>
        <div class="Layout-sidebar">
          <div class="BorderGrid BorderGrid--spacious" data-pjax>
            <div class="BorderGrid-row hide-sm hide-md"><div class="BorderGrid-cell"><h2 class="mb-3 h4">About</h2><p class="f4 my-3">How our team works</p><h3 class="sr-only">Resources</h3><div class="mt-2"><a class="Link--muted" href="#readme-ov-file">{SVG} Readme</a></div><h3 class="sr-only">Stars</h3><div class="mt-2"><a href="/github/paul/handbook/stargazers" class="Link Link--muted">{SVG} <strong>41</strong> stars</a></div></div></div>
            <div class="BorderGrid-row"><div class="BorderGrid-cell"><h2 class="h4 mb-3">Languages</h2><ul class="list-style-none"><li class="d-inline"><span class="color-fg-default text-bold mr-1">Python</span><span>100.0%</span></li></ul></div></div>
          </div>
        </div>
      </div>
    </div>
  </turbo-frame>
    </main>
  </div>
  <footer class="footer pt-8 pb-6 f6 color-fg-muted p-responsive" role="contentinfo"><h2 class='sr-only'>Footer</h2><div class="d-flex flex-justify-center flex-items-center flex-column-reverse flex-lg-row flex-wrap flex-lg-nowrap"><div class="d-flex flex-items-center flex-shrink-0 mx-2"><span>&copy; 2026 GitHub,&nbsp;Inc.</span></div><nav aria-label="Footer"><h3 class="sr-only" id="sr-footer-heading">Footer navigation</h3><ul class="list-style-none d-flex flex-justify-center flex-wrap mb-2 mb-lg-0" aria-labelledby="sr-footer-heading"><li class="mx-2"><a href="https://docs.github.com/site-policy/github-terms/github-terms-of-service">Terms</a></li><li class="mx-2"><a href="https://docs.github.com/site-policy/privacy-policies/github-privacy-statement">Privacy</a></li></ul></nav></div></footer>
  <div class="js-cookie-consent-banner" hidden><div class="hx_cookie-banner p-2 p-sm-3 p-md-4"><div class="Box hx_cookie-banner-box box-shadow-medium mx-auto"><div class="Box-body border-0 py-0 px-3 px-md-4"><div class="js-main-cookie-banner hx_cookie-banner-main"><div class="d-md-flex flex-items-center py-3"><p class="f5 flex-1 mb-3 mb-md-0">We use optional cookies to improve your experience on our websites and to display personalized advertising based on your online activity. If you reject optional cookies, only cookies necessary to provide you the services listed above will be used.</p><div class="d-flex flex-items-center flex-justify-end"><button class="btn js-cookie-consent-accept mr-2">Accept</button><button class="btn js-cookie-consent-reject mr-2">Reject</button></div></div></div></div></div></div></div>
  </body>
</html>"##
            )
        }
    }
}

/// The article in Markdown, as its source file in a repository or an export holds it.
pub fn markdown(article: &Article) -> String {
    let inline = |html: &str| -> String {
        // `<a href="u">t</a>` → `[t](u)`, `<code>c</code>` → `` `c` ``.
        let mut text = html.replace("<code>", "`").replace("</code>", "`");
        while let Some(start) = text.find("<a href=\"") {
            let href_end = start + 9 + text[start + 9..].find('"').unwrap();
            let href = text[start + 9..href_end].to_string();
            let text_start = href_end + 2;
            let text_end = text_start + text[text_start..].find("</a>").unwrap();
            let words = text[text_start..text_end].to_string();
            text.replace_range(start..text_end + 4, &format!("[{words}]({href})"));
        }
        text
    };
    let mut out = format!("# {}\n\n", article.title);
    for block in &article.blocks {
        match block {
            Block::Para(text) => out += &format!("{}\n\n", inline(text)),
            Block::Heading(text) => out += &format!("## {text}\n\n"),
            Block::Code(code) => out += &format!("```python\n{code}```\n\n"),
            Block::List(items) => {
                out += &items.iter().map(|i| format!("- {i}\n")).collect::<String>();
                out += "\n";
            }
        }
    }
    out
}

/// The article's page saved as text (a browser's "save as text", a copy of the page): the
/// site's navigation, the title line and the heading permalinks come along.
pub fn saved_as_text(generator: Generator, articles: &[Article], index: usize) -> String {
    let article = &articles[index];
    let prev = &articles[(index + 2) % 3];
    let next = &articles[(index + 1) % 3];
    let pilcrow = match generator {
        Generator::Sphinx | Generator::MkDocs => "¶",
        _ => "",
    };
    let mut text = match generator {
        Generator::Sphinx => format!(
            "Navigation\n\nindex\nnext |\nprevious |\nPaul’s handbook 1.0 documentation »\n{}\n\n",
            article.title
        ),
        _ => format!("Skip to content\nPaul's field notes\n{}\nSearch\n\n", article.title),
    };
    text += &format!("{}{pilcrow}\n\n", article.title);
    for block in &article.blocks {
        match block {
            Block::Para(html) => {
                let plain = html.replace("<code>", "").replace("</code>", "");
                let mut plain_text = String::new();
                let mut in_tag = false;
                for c in plain.chars() {
                    match c {
                        '<' => in_tag = true,
                        '>' => in_tag = false,
                        c if !in_tag => plain_text.push(c),
                        _ => {}
                    }
                }
                text += &format!("{plain_text}\n\n");
            }
            Block::Heading(heading) => text += &format!("{heading}{pilcrow}\n\n"),
            Block::Code(code) => text += &format!("{code}\n"),
            Block::List(items) => text += &items.iter().map(|i| format!("    {i}\n")).collect::<String>(),
        }
    }
    text += &match generator {
        Generator::Sphinx => format!(
            "\nPaul’s handbook\nNavigation\n\n{}\n\nRelated Topics\n\nDocumentation overview\n    Previous: {}\n    Next: {}\n\nThis Page\n\n    Show Source\n\nQuick search\n\n©2026, Paul. | Powered by Sphinx 8.1.3 & Alabaster 1.0.0 | Page source\n",
            articles.iter().map(|a| a.title.as_str()).collect::<Vec<_>>().join("\n"),
            prev.title,
            next.title
        ),
        _ => format!(
            "\nMarch 3, 2026\nBack to top\nPrevious\n{}\nNext\n{}\nMade with Material for MkDocs\n",
            prev.title, next.title
        ),
    };
    text
}
