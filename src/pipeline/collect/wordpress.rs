//! WordPress's export (WXR: RSS with WordPress's own elements): each published post and page,
//! its body as the editor saved it. Drafts, revisions, attachments, menu items and reusable
//! blocks are left out, and so are comments (other people's words).

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::archive::ExportedPost;

/// The fields of an `<item>` that make a post.
#[derive(Default)]
struct Item {
    title: String,
    link: String,
    published: String,
    content: String,
    status: String,
    post_type: String,
    post_id: String,
}

impl Item {
    fn field(&mut self, element: &str) -> Option<&mut String> {
        Some(match element {
            "title" => &mut self.title,
            "link" => &mut self.link,
            "pubDate" => &mut self.published,
            "content:encoded" => &mut self.content,
            "wp:status" => &mut self.status,
            "wp:post_type" => &mut self.post_type,
            "wp:post_id" => &mut self.post_id,
            _ => return None,
        })
    }
}

/// The published posts and pages of a WXR file.
pub(super) fn posts(xml: &str) -> Result<Vec<ExportedPost>, String> {
    let mut reader = Reader::from_str(xml);
    let mut items = Vec::new();
    let mut item: Option<Item> = None;
    // The element whose text is being read, as a direct child of the item.
    let mut depth_in_item = 0usize;
    let mut reading: Option<String> = None;
    let mut is_wxr = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("not a WordPress export (WXR): at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(start) => {
                let name = start.name().as_ref().to_string();
                is_wxr |= name.starts_with("wp:");
                if name == "item" && item.is_none() {
                    item = Some(Item::default());
                    depth_in_item = 0;
                } else if item.is_some() {
                    depth_in_item += 1;
                    reading = (depth_in_item == 1).then_some(name);
                }
            }
            Event::End(end) => {
                if end.name().as_ref() == "item" && depth_in_item == 0 {
                    items.extend(item.take());
                } else if item.is_some() {
                    depth_in_item = depth_in_item.saturating_sub(1);
                    reading = None;
                }
            }
            Event::Text(text) => append(&mut item, &reading, &text.xml10_content()),
            Event::CData(data) => append(&mut item, &reading, &data),
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => match &*reference.xml10_content() {
                        "amp" => "&".into(),
                        "lt" => "<".into(),
                        "gt" => ">".into(),
                        "quot" => "\"".into(),
                        "apos" => "'".into(),
                        other => format!("&{other};"),
                    },
                };
                append(&mut item, &reading, &resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !is_wxr {
        return Err("not a WordPress export (WXR): no wp: elements".into());
    }
    Ok(items
        .into_iter()
        .filter(|i| i.status.trim() == "publish" && matches!(i.post_type.trim(), "post" | "page"))
        .map(|i| ExportedPost {
            url: Some(i.link.trim().to_string()).filter(|l| l.starts_with("http")),
            key: format!("post-{}", i.post_id.trim()),
            title: Some(i.title.trim().to_string()).filter(|t| !t.is_empty()),
            published: Some(i.published.trim().to_string()).filter(|p| !p.is_empty()),
            html: paragraphs(&i.content),
        })
        .collect())
}

fn append(item: &mut Option<Item>, reading: &Option<String>, text: &str) {
    if let (Some(item), Some(element)) = (item.as_mut(), reading.as_deref())
        && let Some(field) = item.field(element)
    {
        field.push_str(text);
    }
}

/// A post as WordPress shows it: the classic editor saves paragraphs as blank-line-separated
/// text, which WordPress wraps in `<p>` only when it renders the page.
fn paragraphs(content: &str) -> String {
    if content.contains("<p") || content.contains("<!-- wp:") {
        return content.to_string();
    }
    content
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("<p>{}</p>", p.replace('\n', "<br>\n")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const WXR: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<rss version="2.0" xmlns:excerpt="http://wordpress.org/export/1.2/excerpt/" xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:wp="http://wordpress.org/export/1.2/">
<channel><title>Paul at work</title><wp:wxr_version>1.2</wp:wxr_version>
<item><title><![CDATA[Hiring & growing]]></title><link>https://paul.example/2026/03/01/hiring/</link><pubDate>Sun, 01 Mar 2026 08:00:00 +0000</pubDate>
<content:encoded><![CDATA[<!-- wp:paragraph --><p>I read every cover letter.</p><!-- /wp:paragraph -->]]></content:encoded>
<wp:post_id>42</wp:post_id><wp:status><![CDATA[publish]]></wp:status><wp:post_type><![CDATA[post]]></wp:post_type>
<wp:comment><wp:comment_content><![CDATA[Someone else's words.]]></wp:comment_content></wp:comment></item>
<item><title>About &amp; me</title><link>https://paul.example/about/</link><content:encoded><![CDATA[First line of the page.

Second paragraph &amp; more.]]></content:encoded><wp:post_id>2</wp:post_id><wp:status>publish</wp:status><wp:post_type>page</wp:post_type></item>
<item><title>Draft</title><content:encoded><![CDATA[<p>Unfinished.</p>]]></content:encoded><wp:status>draft</wp:status><wp:post_type>post</wp:post_type></item>
<item><title>photo.jpg</title><wp:status>inherit</wp:status><wp:post_type>attachment</wp:post_type></item>
</channel></rss>"#;

    #[test]
    fn published_posts_and_pages_are_read_and_drafts_attachments_and_comments_are_not() {
        let posts = posts(WXR).unwrap();
        let titles: Vec<_> = posts.iter().map(|p| p.title.clone().unwrap()).collect();
        assert_eq!(titles, ["Hiring & growing", "About & me"]);
        assert_eq!(posts[0].url.as_deref(), Some("https://paul.example/2026/03/01/hiring/"));
        assert!(posts[0].html.contains("I read every cover letter.") && !posts[0].html.contains("Someone"));
        assert_eq!(posts[1].html, "<p>First line of the page.</p>\n<p>Second paragraph &amp; more.</p>");
        assert_eq!(posts[0].published.as_deref(), Some("Sun, 01 Mar 2026 08:00:00 +0000"));
    }

    #[test]
    fn what_is_not_wxr_is_refused() {
        assert!(
            posts("<rss><channel><item><title>x</title></item></channel></rss>")
                .unwrap_err()
                .contains("no wp: elements")
        );
        assert!(posts("<rss><channel><item><title>x</item>").is_err());
    }
}
