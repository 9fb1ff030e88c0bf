//! Chunking: token-aware splitting with overlap, counted with the embedding model's own
//! tokenizer, Markdown-aware (headings, code blocks, lists) where the text is Markdown.

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

use super::document::{Document, sha256_hex};

/// One retrieval passage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    /// `<document id>-<ordinal>`.
    pub id: String,
    /// The document it comes from.
    pub document_id: String,
    /// Position in the document, from 0.
    pub ordinal: usize,
    /// The passage.
    pub text: String,
    /// The nearest Markdown heading above the passage, or the document's title.
    #[serde(skip)]
    pub heading: Option<String>,
}

impl Chunk {
    /// A hash of the passage's text: the key of the embedding cache.
    pub fn content_hash(&self) -> String {
        sha256_hex(self.text.as_bytes())
    }
}

/// Splits documents into chunks of at most `max_tokens` tokens (the tokenizer's special tokens
/// not counted, as the model adds them) with `overlap_tokens` shared by neighbours.
pub fn chunk_documents(
    documents: &[Document],
    tokenizer: &Tokenizer,
    max_tokens: usize,
    overlap_tokens: usize,
) -> Result<Vec<Chunk>, String> {
    let config = || -> Result<ChunkConfig<Tokenizer>, String> {
        Ok(ChunkConfig::new(max_tokens)
            .with_overlap(overlap_tokens)
            .map_err(|e| format!("invalid chunking: {e}"))?
            .with_sizer(tokenizer.clone())
            .with_trim(true))
    };
    let markdown = MarkdownSplitter::new(config()?);
    let text = TextSplitter::new(config()?);
    let mut chunks = Vec::new();
    for document in documents {
        let pieces: Vec<(usize, &str)> = if document.markdown {
            markdown.chunk_indices(&document.text).collect()
        } else {
            text.chunk_indices(&document.text).collect()
        };
        for (ordinal, (offset, piece)) in pieces.into_iter().enumerate() {
            chunks.push(Chunk {
                id: format!("{}-{ordinal}", document.id),
                document_id: document.id.clone(),
                ordinal,
                text: piece.to_string(),
                // The chunk's own first line counts: a passage often starts with its heading.
                heading: nearest_heading(&document.text[..offset + piece.find('\n').unwrap_or(piece.len())])
                    .or_else(|| document.title.clone()),
            });
        }
    }
    Ok(chunks)
}

/// The last Markdown heading in `before`.
fn nearest_heading(before: &str) -> Option<String> {
    let mut in_code = false;
    let mut heading = None;
    for line in before.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            let title = line.trim_start_matches('#').trim();
            if !title.is_empty() {
                heading = Some(title.to_string());
            }
        }
    }
    heading
}
