//! Export archives: a LinkedIn data export (`Shares.csv`, `Articles/*.html`), a Medium export
//! (`posts/*.html`), a Substack export (`posts.csv`, `posts/*.html`), a zip of Markdown files
//! (all zips), a WordPress export (WXR, `.xml`) or a Ghost export (`.json`), each of the last
//! two on its own or zipped. Archives are untrusted: their size, entry count and total
//! uncompressed bytes are bounded (zip bombs), an entry's size is enforced while it is read (not taken from its
//! header), and a path that would leave the archive's folder fails the source.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::Path;

use zip::ZipArchive;

use super::CollectOptions;
use super::files::document_from_file;
use super::html::{extract_article, fragment_to_markdown};
use super::{ghost, wordpress};
use crate::api::dataset::{ArchiveFormat, ArchiveSource};
use crate::net::http::Fetcher;
use crate::pipeline::document::Document;
use crate::storage::{ObjectStore, StorageUri};

/// Limits on one archive.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveLimits {
    /// Largest archive file, in bytes.
    pub max_archive_bytes: u64,
    /// Most entries in the archive.
    pub max_entries: usize,
    /// Most bytes decompressed from the archive in all.
    pub max_uncompressed_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_archive_bytes: 512 * 1024 * 1024,
            max_entries: 50_000,
            max_uncompressed_bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// An opened archive, its entries read under the limits.
struct Reader<'a> {
    zip: ZipArchive<Cursor<Vec<u8>>>,
    uri: &'a str,
    max_entry_bytes: u64,
    remaining_bytes: u64,
}

impl<'a> Reader<'a> {
    fn open(bytes: Vec<u8>, uri: &'a str, options: &CollectOptions) -> Result<Self, String> {
        let limits = options.archive;
        let zip =
            ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("{uri} is not a zip archive: {e}"))?;
        if zip.len() > limits.max_entries {
            return Err(format!(
                "{uri} has {} entries, more than the limit of {}",
                zip.len(),
                limits.max_entries
            ));
        }
        let mut reader = Self {
            zip,
            uri,
            max_entry_bytes: options.max_document_bytes,
            remaining_bytes: limits.max_uncompressed_bytes,
        };
        // Every name is checked up front: an archive that tries to escape is refused whole.
        for index in 0..reader.zip.len() {
            let entry =
                reader.zip.by_index_raw(index).map_err(|e| format!("{uri}: bad entry {index}: {e}"))?;
            if entry.enclosed_name().is_none() {
                return Err(format!(
                    "{uri}: entry {:?} has a path that leaves the archive's folder; refusing the archive",
                    entry.name()
                ));
            }
        }
        Ok(reader)
    }

    /// File entries (not folders), in archive order.
    fn names(&self) -> Vec<String> {
        self.zip
            .file_names()
            .filter_map(Result::ok)
            .filter(|n| !n.ends_with('/'))
            .map(|n| n.into_owned())
            .collect()
    }

    /// An entry's bytes, at most the per-entry limit and within the archive's remaining budget,
    /// counted as decompressed (a header that lies about the size does not help).
    fn read(&mut self, name: &str) -> Result<Vec<u8>, String> {
        let uri = self.uri;
        let entry = self.zip.by_name(name).map_err(|e| format!("{uri}: cannot open {name:?}: {e}"))?;
        let limit = self.max_entry_bytes.min(self.remaining_bytes);
        let bomb = || {
            format!(
                "{uri}: {name:?} expands past {limit} bytes (the limit per entry is {} and per archive is what \
                 is left of the uncompressed budget); refusing a possible zip bomb",
                self.max_entry_bytes
            )
        };
        if entry.size() > limit {
            return Err(bomb());
        }
        let mut bytes = Vec::new();
        entry
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{uri}: cannot decompress {name:?}: {e}"))?;
        if bytes.len() as u64 > limit {
            return Err(bomb());
        }
        self.remaining_bytes -= bytes.len() as u64;
        Ok(bytes)
    }
}

/// Fetches the archive's bytes from wherever its URI points, within the size limit.
async fn load(spec: &ArchiveSource, options: &CollectOptions, fetcher: &Fetcher) -> Result<Vec<u8>, String> {
    let limit = options.archive.max_archive_bytes;
    let too_large = || format!("{} is larger than the archive limit of {limit} bytes", spec.uri);
    if spec.uri.starts_with("http://") || spec.uri.starts_with("https://") {
        let fetched = fetcher.get_limited(&spec.uri, limit).await.map_err(|e| e.to_string())?;
        return Ok(fetched.body);
    }
    let uri: StorageUri = spec.uri.parse().map_err(|e| format!("{e}"))?;
    if let Ok(path) = uri.local_path(&options.pvc_root) {
        let size = std::fs::metadata(&path).map_err(|e| format!("cannot read {}: {e}", spec.uri))?.len();
        if size > limit {
            return Err(too_large());
        }
        return std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", spec.uri));
    }
    // An object in S3: the parent is the store, the last segment the key.
    let (parent, key) = spec.uri.rsplit_once('/').ok_or_else(|| format!("{}: no object key", spec.uri))?;
    let store =
        ObjectStore::open(&parent.parse().map_err(|e| format!("{e}"))?, &options.pvc_root, &options.s3)
            .await
            .map_err(|e| e.to_string())?;
    let bytes = store
        .read(key)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} does not exist", spec.uri))?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// An `archive` source.
pub async fn collect_archive(
    source: &str,
    spec: &ArchiveSource,
    options: &CollectOptions,
    fetcher: &Fetcher,
) -> Result<Vec<Document>, String> {
    let bytes = load(spec, options, fetcher).await?;
    let zip = |bytes| Reader::open(bytes, &spec.uri, options);
    match spec.format {
        ArchiveFormat::Linkedin => linkedin(source, spec, &mut zip(bytes)?),
        ArchiveFormat::Medium => medium(source, spec, &mut zip(bytes)?),
        ArchiveFormat::Substack => substack(source, spec, &mut zip(bytes)?),
        ArchiveFormat::Markdown => markdown(source, spec, &mut zip(bytes)?),
        ArchiveFormat::Wordpress => blog_export(source, spec, options, bytes, ".xml", wordpress::posts),
        ArchiveFormat::Ghost => blog_export(source, spec, options, bytes, ".json", ghost::posts),
    }
}

/// A published post or page of a blog's export.
#[derive(Debug)]
pub(super) struct ExportedPost {
    /// Its URL, when the export says.
    pub url: Option<String>,
    /// Where it is in the export (an id or slug), when there is no URL.
    pub key: String,
    pub title: Option<String>,
    pub published: Option<String>,
    /// Its body, as HTML.
    pub html: String,
}

/// A WordPress or Ghost export: the file itself, or a zip of files ending in `extension`; each
/// file's published posts (read by `posts`) become documents.
fn blog_export(
    source: &str,
    spec: &ArchiveSource,
    options: &CollectOptions,
    bytes: Vec<u8>,
    extension: &str,
    posts: fn(&str) -> Result<Vec<ExportedPost>, String>,
) -> Result<Vec<Document>, String> {
    let mut files = Vec::new();
    let zipped = bytes.starts_with(b"PK\x03\x04");
    if zipped {
        let mut reader = Reader::open(bytes, &spec.uri, options)?;
        for name in reader.names() {
            if name.to_ascii_lowercase().ends_with(extension) {
                files.push((name.clone(), reader.read(&name)?));
            }
        }
    } else {
        files.push((file_name(&spec.uri).to_string(), bytes));
    }
    let mut documents = Vec::new();
    let mut skipped = Vec::new();
    for (name, bytes) in files {
        let text = String::from_utf8_lossy(&bytes);
        let found = match posts(&text) {
            Ok(found) => found,
            Err(error) => {
                skipped.push(format!("{name}: {error}"));
                continue;
            }
        };
        for post in found {
            let key = if zipped { format!("{name}#{}", post.key) } else { post.key.clone() };
            let place = post.url.clone().unwrap_or_else(|| location(spec, &key));
            let Some(text) = fragment_to_markdown(&post.html, post.url.as_deref()) else {
                skipped.push(format!("{name}: post {} holds no text", post.key));
                continue;
            };
            let mut document = Document::new(source, "archive", &place, post.title, text, true);
            document.published = post.published;
            documents.push(document);
        }
    }
    finish(source, spec, documents, skipped)
}

fn location(spec: &ArchiveSource, name: &str) -> String {
    format!("{}#{name}", spec.uri)
}

fn file_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn has_folder(name: &str, folder: &str) -> bool {
    name.split('/').rev().skip(1).any(|part| part.eq_ignore_ascii_case(folder))
}

fn is_html(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".html") || lower.ends_with(".htm")
}

/// Rows of a CSV file as maps from header to value (headers trimmed, byte-order mark dropped).
fn csv_rows(bytes: &[u8], what: &str) -> Result<Vec<BTreeMap<String, String>>, String> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("{what} is not CSV: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("{what} is not CSV: {e}"))?;
        rows.push(headers.iter().cloned().zip(record.iter().map(str::to_string)).collect());
    }
    Ok(rows)
}

/// A standalone HTML page (an article) as a document.
fn html_document(
    source: &str,
    spec: &ArchiveSource,
    name: &str,
    bytes: &[u8],
) -> Result<Option<Document>, String> {
    document_from_file(source, "archive", &location(spec, name), file_name(name), bytes)
        .map_err(|e| format!("{name}: {e}"))
}

/// Keeps an entry's document, or notes why there is none.
fn keep(
    found: Result<Option<Document>, String>,
    name: &str,
    documents: &mut Vec<Document>,
    skipped: &mut Vec<String>,
) {
    match found {
        Ok(Some(document)) => documents.push(document),
        Ok(None) => skipped.push(format!("{name} is binary")),
        Err(error) => skipped.push(error),
    }
}

/// Logs entries that could not be read; fails when nothing was.
fn finish(
    source: &str,
    spec: &ArchiveSource,
    documents: Vec<Document>,
    skipped: Vec<String>,
) -> Result<Vec<Document>, String> {
    for reason in &skipped {
        tracing::warn!(source, "archive entry skipped: {reason}");
    }
    if documents.is_empty() {
        let format = serde_json::to_value(spec.format).ok().and_then(|v| v.as_str().map(str::to_string));
        let mut message =
            format!("{} holds nothing usable as a {} export", spec.uri, format.unwrap_or_default());
        if !skipped.is_empty() {
            message += &format!(": {}", skipped.join("; "));
        }
        return Err(message);
    }
    Ok(documents)
}

/// LinkedIn: each share with commentary in `Shares.csv` (columns `Date`, `ShareLink`,
/// `ShareCommentary`), and each article under an `Articles/` folder.
fn linkedin(source: &str, spec: &ArchiveSource, reader: &mut Reader) -> Result<Vec<Document>, String> {
    let mut documents = Vec::new();
    let mut skipped = Vec::new();
    for name in reader.names() {
        if file_name(&name).eq_ignore_ascii_case("Shares.csv") {
            let rows = csv_rows(&reader.read(&name)?, &name)?;
            for (index, row) in rows.iter().enumerate() {
                let text = row.get("ShareCommentary").map(|t| t.replace("\"\"", "\"")).unwrap_or_default();
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let link = row.get("ShareLink").filter(|l| !l.is_empty()).cloned();
                let place = link.clone().unwrap_or_else(|| location(spec, &format!("{name}:{}", index + 2)));
                let title = text.lines().next().map(|l| l.chars().take(80).collect::<String>());
                let mut document = Document::new(source, "archive", &place, title, text.to_string(), false);
                document.published = row.get("Date").filter(|d| !d.is_empty()).cloned();
                documents.push(document);
            }
        } else if has_folder(&name, "Articles") && is_html(&name) {
            let bytes = reader.read(&name)?;
            keep(html_document(source, spec, &name, &bytes), &name, &mut documents, &mut skipped);
        }
    }
    finish(source, spec, documents, skipped)
}

/// Medium: each published post under `posts/` (drafts, named `draft_…`, are left out).
fn medium(source: &str, spec: &ArchiveSource, reader: &mut Reader) -> Result<Vec<Document>, String> {
    let mut documents = Vec::new();
    let mut skipped = Vec::new();
    for name in reader.names() {
        if !(has_folder(&name, "posts") && is_html(&name)) || file_name(&name).starts_with("draft_") {
            continue;
        }
        let bytes = reader.read(&name)?;
        keep(html_document(source, spec, &name, &bytes), &name, &mut documents, &mut skipped);
    }
    finish(source, spec, documents, skipped)
}

/// Substack: `posts.csv` lists the posts (`post_id`, `post_date`, `is_published`, `title`,
/// `subtitle`); each published one's body is `posts/<post_id>.html`, an HTML fragment.
fn substack(source: &str, spec: &ArchiveSource, reader: &mut Reader) -> Result<Vec<Document>, String> {
    let names = reader.names();
    let index_name = names
        .iter()
        .find(|n| file_name(n).eq_ignore_ascii_case("posts.csv"))
        .ok_or_else(|| format!("{} has no posts.csv: not a Substack export", spec.uri))?
        .clone();
    let rows = csv_rows(&reader.read(&index_name)?, &index_name)?;
    let mut documents = Vec::new();
    let mut skipped = Vec::new();
    for row in rows {
        let field = |key: &str| row.get(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let Some(id) = field("post_id") else { continue };
        if field("is_published").is_some_and(|p| p.eq_ignore_ascii_case("false")) {
            continue;
        }
        let Some(name) = names.iter().find(|n| {
            has_folder(n, "posts")
                && is_html(n)
                && Path::new(file_name(n)).file_stem().is_some_and(|s| s == id.as_str())
        }) else {
            skipped.push(format!("post {id} has no posts/{id}.html"));
            continue;
        };
        let bytes = reader.read(name)?;
        let html = String::from_utf8_lossy(&bytes);
        let Some(mut text) = fragment_to_markdown(&html, None).or_else(|| {
            extract_article(&html, None).ok().map(|a| a.markdown).filter(|m| !m.trim().is_empty())
        }) else {
            skipped.push(format!("{name} holds no text"));
            continue;
        };
        if let Some(subtitle) = field("subtitle") {
            text = format!("*{subtitle}*\n\n{text}");
        }
        let mut document =
            Document::new(source, "archive", &location(spec, name), field("title"), text, true);
        document.published = field("post_date");
        documents.push(document);
    }
    finish(source, spec, documents, skipped)
}

/// A zip of Markdown (and text) files.
fn markdown(source: &str, spec: &ArchiveSource, reader: &mut Reader) -> Result<Vec<Document>, String> {
    let mut documents = Vec::new();
    let mut skipped = Vec::new();
    for name in reader.names() {
        let lower = name.to_ascii_lowercase();
        if !(lower.ends_with(".md") || lower.ends_with(".markdown") || lower.ends_with(".txt")) {
            continue;
        }
        let bytes = reader.read(&name)?;
        let found = document_from_file(source, "archive", &location(spec, &name), file_name(&name), &bytes);
        keep(found, &name, &mut documents, &mut skipped);
    }
    finish(source, spec, documents, skipped)
}
