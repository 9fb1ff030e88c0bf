//! Ghost's export (a JSON dump of its database, `{"db": [{"data": {"posts": [...]}}]}`, or
//! without the `db` wrapper): each published post and page, its body as HTML.

use serde_json::Value;

use super::archive::ExportedPost;

/// Where Ghost writes its own origin in an export, so that it can be restored elsewhere.
const URL_PLACEHOLDER: &str = "__GHOST_URL__";

/// A post's field as trimmed, non-empty text.
fn text<'a>(post: &'a Value, key: &str) -> Option<&'a str> {
    post.get(key).and_then(Value::as_str).map(str::trim).filter(|t| !t.is_empty())
}

/// The published posts and pages of a Ghost export.
pub(super) fn posts(json: &str) -> Result<Vec<ExportedPost>, String> {
    let root: Value = serde_json::from_str(json).map_err(|e| format!("not a Ghost export (JSON): {e}"))?;
    let data = root.pointer("/db/0/data").or_else(|| root.get("data"));
    let Some(posts) = data.and_then(|d| d.get("posts")).and_then(Value::as_array) else {
        return Err("not a Ghost export: no db[0].data.posts".into());
    };
    Ok(posts
        .iter()
        .filter(|post| text(post, "status") == Some("published"))
        // `type` since Ghost 2; `page` (a flag) before.
        .filter(|post| matches!(text(post, "type"), None | Some("post") | Some("page")))
        .filter_map(|post| {
            let html = text(post, "html")?.replace(URL_PLACEHOLDER, "");
            Some(ExportedPost {
                url: None,
                key: format!("posts/{}", text(post, "slug").or(text(post, "id")).unwrap_or("post")),
                title: text(post, "title").map(str::to_string),
                published: text(post, "published_at").map(str::to_string),
                html,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_posts_and_pages_are_read_with_or_without_the_db_wrapper() {
        let posts_json = r#"[
            {"id": "1", "title": "Editing in practice", "slug": "editing", "type": "post", "status": "published",
             "published_at": "2026-03-01T08:00:00.000Z", "html": "<p>Cut the first paragraph. See <a href=\"__GHOST_URL__/writing/\">writing</a>.</p>"},
            {"id": "2", "title": "About", "slug": "about", "type": "page", "status": "published", "html": "<p>Paul writes.</p>"},
            {"id": "3", "title": "Next week", "slug": "next", "type": "post", "status": "draft", "html": "<p>Unfinished.</p>"},
            {"id": "4", "title": "Empty", "slug": "empty", "type": "post", "status": "published", "html": null}]"#;
        for export in [
            format!(r#"{{"db": [{{"meta": {{"version": "5.105.0"}}, "data": {{"posts": {posts_json}}}}}]}}"#),
            format!(r#"{{"meta": {{}}, "data": {{"posts": {posts_json}}}}}"#),
        ] {
            let posts = posts(&export).unwrap();
            let titles: Vec<_> = posts.iter().map(|p| p.title.clone().unwrap()).collect();
            assert_eq!(titles, ["Editing in practice", "About"]);
            assert_eq!(posts[0].key, "posts/editing");
            assert!(posts[0].html.contains("href=\"/writing/\""), "{}", posts[0].html);
            assert_eq!(posts[0].published.as_deref(), Some("2026-03-01T08:00:00.000Z"));
        }
        assert!(posts("{\"db\": []}").unwrap_err().contains("no db[0].data.posts"));
        assert!(posts("<html>").unwrap_err().contains("not a Ghost export"));
    }
}
