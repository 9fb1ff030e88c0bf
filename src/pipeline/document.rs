//! A document as the pipeline carries it from collection to the artifacts.

use serde::{Deserialize, Serialize};

use crate::hashing::sha256_hex;

/// One piece of the author's writing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Stable id: a hash of the source name and the document's location.
    pub id: String,
    /// The source's name in the spec.
    pub source: String,
    /// The source's kind: feed, git, web, archive, configMap or files.
    pub kind: String,
    /// Where it came from (URL, path in the repository or archive, ConfigMap key).
    pub url: Option<String>,
    /// Title, when known.
    pub title: Option<String>,
    /// Publication date (RFC 3339), when known.
    pub published: Option<String>,
    /// The text; Markdown when `markdown` is true.
    pub text: String,
    /// Whether `text` is Markdown (headings, lists, code), which the chunker respects.
    #[serde(skip)]
    pub markdown: bool,
}

impl Document {
    /// A document whose id derives from its source and location.
    pub fn new(
        source: &str,
        kind: &str,
        location: &str,
        title: Option<String>,
        text: String,
        markdown: bool,
    ) -> Self {
        Self {
            id: sha256_hex(format!("{source}\n{location}").as_bytes())[..16].to_string(),
            source: source.into(),
            kind: kind.into(),
            url: Some(location.into()),
            title,
            published: None,
            text,
            markdown,
        }
    }
}
