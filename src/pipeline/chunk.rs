//! Chunking: token-aware splitting with overlap, counted with the embedding model's own
//! tokenizer, Markdown-aware (headings, code blocks, lists) where the text is Markdown.

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

use super::document::Document;
use crate::embedding::revision::ChunkRecord;
use crate::hashing::sha256_hex;
use crate::parallel;

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
}

impl Chunk {
    /// The chunk as `chunks.jsonl` stores it.
    pub fn record(&self) -> ChunkRecord {
        ChunkRecord {
            id: self.id.clone(),
            document_id: self.document_id.clone(),
            ordinal: self.ordinal,
            text: self.text.clone(),
        }
    }

    /// A hash of the passage's text: the key of the embedding cache.
    pub fn content_hash(&self) -> String {
        sha256_hex(self.text.as_bytes())
    }
}

/// Splits documents into chunks of at most `max_tokens` tokens (the tokenizer's special tokens
/// not counted, as the model adds them) with `overlap_tokens` shared by neighbours. Documents
/// are split on every core at once; the chunks come out in document order.
pub fn chunk_documents(
    documents: &[Document],
    tokenizer: &Tokenizer,
    max_tokens: usize,
    overlap_tokens: usize,
) -> Result<Vec<Chunk>, String> {
    use std::sync::Mutex;
    let config = || -> Result<ChunkConfig<Tokenizer>, String> {
        Ok(ChunkConfig::new(max_tokens)
            .with_overlap(overlap_tokens)
            .map_err(|e| format!("invalid chunking: {e}"))?
            .with_sizer(tokenizer.clone())
            .with_trim(true))
    };
    config()?;
    let per_document: Vec<Mutex<Vec<Chunk>>> = documents.iter().map(|_| Mutex::new(Vec::new())).collect();
    parallel::for_each_index(
        documents.len(),
        parallel::cores(),
        || {
            let markdown = MarkdownSplitter::new(config().expect("checked above"));
            (markdown, TextSplitter::new(config().expect("checked above")))
        },
        |(markdown, text), index| {
            let document = &documents[index];
            *per_document[index].lock().expect("no worker panicked") = if document.markdown {
                chunks_of(document, markdown.chunk_indices(&document.text))
            } else {
                chunks_of(document, text.chunk_indices(&document.text))
            };
            true
        },
    );
    Ok(per_document.into_iter().flat_map(|chunks| chunks.into_inner().expect("no worker panicked")).collect())
}

/// The chunks of one document from the splitter's `(offset, piece)` pairs.
fn chunks_of<'a>(document: &Document, pieces: impl Iterator<Item = (usize, &'a str)>) -> Vec<Chunk> {
    pieces
        .enumerate()
        .map(|(ordinal, (_, piece))| Chunk {
            id: format!("{}-{ordinal}", document.id),
            document_id: document.id.clone(),
            ordinal,
            text: piece.to_string(),
        })
        .collect()
}
