//! The artifacts of a revision (DESIGN §4), written under
//! `<output>/datasets/<dataset>/<revision>/` with `manifest.json` last, so a reader that finds
//! the manifest finds a complete revision; and the embedding cache beside the revisions.

use std::collections::HashMap;

use serde_json::Value;

use super::chunk::Chunk;
use super::document::Document;
use super::instruct::{SftSample, Split};
use crate::embedding::revision::{
    CHUNKS, ChunkRecord, DOCUMENTS, EMBEDDINGS, EMBEDDINGS_TENSOR, MANIFEST, embeddings_safetensors,
};
use crate::storage::{ObjectStore, StorageError};

/// One JSON object a line.
pub fn jsonl<'a, T: serde::Serialize + 'a>(records: impl IntoIterator<Item = &'a T>) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        serde_json::to_writer(&mut out, record).expect("records serialise");
        out.push(b'\n');
    }
    out
}

/// What a revision holds.
pub struct RevisionContent<'a> {
    /// Cleaned documents.
    pub documents: &'a [Document],
    /// Chunks, in embedding order.
    pub chunks: &'a [Chunk],
    /// One vector per chunk.
    pub embeddings: &'a [Vec<f32>],
    /// Vector dimension.
    pub dimension: usize,
    /// SFT samples.
    pub sft: &'a [SftSample],
    /// DPO preference triples (none without a generator).
    pub preference: &'a [SftSample],
    /// The manifest, written last.
    pub manifest: &'a Value,
}

/// Writes a revision under `prefix`: data files first, the manifest last.
pub async fn write_revision(
    store: &ObjectStore,
    prefix: &str,
    content: &RevisionContent<'_>,
) -> Result<(), StorageError> {
    let chunk_records: Vec<ChunkRecord> = content.chunks.iter().map(Chunk::record).collect();
    store.write(&format!("{prefix}/{DOCUMENTS}"), &jsonl(content.documents)).await?;
    store.write(&format!("{prefix}/{CHUNKS}"), &jsonl(&chunk_records)).await?;
    let metadata = HashMap::from([("rows".to_string(), "chunks.jsonl lines, in order".to_string())]);
    store
        .write(
            &format!("{prefix}/{EMBEDDINGS}"),
            &embeddings_safetensors(EMBEDDINGS_TENSOR, content.embeddings, content.dimension, metadata),
        )
        .await?;
    let sets = [("instruct", content.sft), ("preference", content.preference)];
    for (folder, samples) in sets.into_iter().filter(|(folder, s)| *folder == "instruct" || !s.is_empty()) {
        for (split, file) in [(Split::Train, "train"), (Split::Test, "test")] {
            let records: Vec<&Value> =
                samples.iter().filter(|s| s.split == split).map(|s| &s.record).collect();
            store.write(&format!("{prefix}/{folder}/{file}.jsonl"), &jsonl(records)).await?;
        }
    }
    let manifest = serde_json::to_vec_pretty(content.manifest).expect("the manifest serialises");
    store.write(&format!("{prefix}/{MANIFEST}"), &manifest).await
}
