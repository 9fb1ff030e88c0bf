//! Files under a folder (`file://` locally, a mounted `pvc://` in a cluster) and ConfigMaps
//! mounted as folders: Markdown, text and HTML, filtered by include/exclude globs.

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::CollectOptions;
use super::html::extract_article;
use crate::api::dataset::{ConfigMapSource, FilesSource};
use crate::pipeline::document::Document;
use crate::storage::StorageUri;

/// Globs as in `.gitignore`: `*` stays within one folder, `**` crosses folders.
pub fn glob_set(patterns: &[String]) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("bad glob {pattern:?}: {e}"))?;
        builder.add(glob);
    }
    builder.build().map_err(|e| format!("bad globs: {e}"))
}

/// Every file below `root`, as paths relative to it, sorted (symbolic links are not followed,
/// so a link cannot lead the collector out of the folder).
fn walk(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let file_type =
                entry.file_type().map_err(|e| format!("cannot stat {}: {e}", entry.path().display()))?;
            if file_type.is_dir() {
                pending.push(entry.path());
            } else if file_type.is_file() {
                out.push(entry.path().strip_prefix(root).expect("below the root").to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Turns one file's bytes into a document, by its extension. `None` for binary files.
pub fn document_from_file(
    source: &str,
    kind: &str,
    location: &str,
    name: &str,
    bytes: &[u8],
) -> Result<Option<Document>, String> {
    if bytes.contains(&0) {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(bytes);
    let extension =
        Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    let stem = Path::new(name).file_stem().and_then(|s| s.to_str()).unwrap_or(name).replace(['-', '_'], " ");
    let document = match extension.as_str() {
        "html" | "htm" => {
            let article = extract_article(&text, None).map_err(|e| format!("{location}: {e}"))?;
            let mut document =
                Document::new(source, kind, location, article.title.or(Some(stem)), article.markdown, true);
            document.published = article.published;
            document
        }
        "md" | "markdown" | "mdx" => {
            let (front_title, body) = strip_front_matter(&text);
            let title = front_title.or_else(|| first_heading(body)).or(Some(stem));
            Document::new(source, kind, location, title, body.to_string(), true)
        }
        _ => Document::new(source, kind, location, Some(stem), text.into_owned(), false),
    };
    Ok(Some(document))
}

/// Removes a YAML front matter block, returning its `title` if it has one.
fn strip_front_matter(text: &str) -> (Option<String>, &str) {
    let Some(rest) = text.strip_prefix("---\n") else { return (None, text) };
    let Some(end) = rest.find("\n---\n") else { return (None, text) };
    let title = rest[..end]
        .lines()
        .find_map(|l| l.strip_prefix("title:"))
        .map(|t| t.trim().trim_matches('"').to_string());
    (title, &rest[end + 5..])
}

fn first_heading(markdown: &str) -> Option<String> {
    markdown.lines().find_map(|l| l.strip_prefix("# ")).map(|t| t.trim().to_string())
}

/// A `files` source.
pub fn collect_files(
    source: &str,
    spec: &FilesSource,
    options: &CollectOptions,
) -> Result<Vec<Document>, String> {
    let uri: StorageUri = spec.uri.parse().map_err(|e| format!("{e}"))?;
    let root = uri.local_path(&options.pvc_root).map_err(|e| e.to_string())?;
    if !root.is_dir() {
        return Err(format!(
            "{} is not a folder{}",
            spec.uri,
            if matches!(uri, StorageUri::Pvc { .. }) { " (is the claim mounted?)" } else { "" }
        ));
    }
    let include = glob_set(&spec.include)?;
    let exclude = glob_set(&spec.exclude)?;
    let mut documents = Vec::new();
    let mut skipped = Vec::new();
    for relative in walk(&root)? {
        if !include.is_match(&relative) || exclude.is_match(&relative) {
            continue;
        }
        let path = root.join(&relative);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size > options.max_document_bytes {
            skipped.push(format!(
                "{} is larger than {} bytes",
                relative.display(),
                options.max_document_bytes
            ));
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let location = spec.uri.trim_end_matches('/').to_string() + "/" + &relative.to_string_lossy();
        match document_from_file(source, "files", &location, &relative.to_string_lossy(), &bytes) {
            Ok(Some(document)) => documents.push(document),
            Ok(None) => {}
            Err(error) => skipped.push(error),
        }
    }
    for reason in &skipped {
        tracing::warn!(source, "skipped: {reason}");
    }
    Ok(documents)
}

/// A `configMap` source, mounted at `<configmap_root>/<name>/`: each key is a document.
pub fn collect_config_map(
    source: &str,
    spec: &ConfigMapSource,
    options: &CollectOptions,
) -> Result<Vec<Document>, String> {
    let root = options.configmap_root.join(&spec.name);
    if !root.is_dir() {
        return Err(format!("ConfigMap {:?} is not mounted at {}", spec.name, root.display()));
    }
    // Kubernetes mounts keys as links into a `..data` folder; list the keys themselves.
    let mut keys: Vec<String> = std::fs::read_dir(&root)
        .map_err(|e| format!("cannot list {}: {e}", root.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|k| !k.starts_with(".."))
        .collect();
    keys.sort();
    if !spec.keys.is_empty() {
        if let Some(missing) = spec.keys.iter().find(|k| !keys.contains(k)) {
            return Err(format!("ConfigMap {:?} has no key {missing:?}", spec.name));
        }
        keys.retain(|k| spec.keys.contains(k));
    }
    let mut documents = Vec::new();
    for key in keys {
        let bytes = std::fs::read(root.join(&key)).map_err(|e| format!("cannot read key {key:?}: {e}"))?;
        let location = format!("configmap://{}/{key}", spec.name);
        if let Some(document) = document_from_file(source, "configMap", &location, &key, &bytes)? {
            documents.push(document);
        }
    }
    Ok(documents)
}
