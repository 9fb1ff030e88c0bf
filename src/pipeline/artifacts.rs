//! The artifacts of a revision (DESIGN §4), written under
//! `<output>/datasets/<dataset>/<revision>/` with `manifest.json` last, so a reader that finds
//! the manifest finds a complete revision; and the embedding cache beside the revisions.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;

use super::chunk::Chunk;
use super::document::Document;
use super::instruct::{SftSample, Split};
use crate::storage::{ObjectStore, StorageError};

/// File names inside a revision.
pub const MANIFEST: &str = "manifest.json";

/// One JSON object a line.
pub fn jsonl<'a, T: serde::Serialize + 'a>(records: impl IntoIterator<Item = &'a T>) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        serde_json::to_writer(&mut out, record).expect("records serialise");
        out.push(b'\n');
    }
    out
}

/// `f32 [rows, dimension]` as a safetensors file with one tensor.
pub fn embeddings_safetensors(
    name: &str,
    vectors: &[Vec<f32>],
    dimension: usize,
    metadata: HashMap<String, String>,
) -> Vec<u8> {
    let data: Vec<u8> = vectors.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
    let view =
        TensorView::new(Dtype::F32, vec![vectors.len(), dimension], &data).expect("shape matches the data");
    safetensors::serialize([(name, view)], Some(metadata)).expect("safetensors serialise")
}

/// Reads `f32 [rows, dimension]` back.
pub fn read_embeddings(bytes: &[u8], name: &str) -> Result<Vec<Vec<f32>>, String> {
    let tensors =
        safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let view = tensors.tensor(name).map_err(|e| format!("no tensor {name:?}: {e}"))?;
    let [_, dimension] = view.shape() else { return Err(format!("tensor {name:?} is not two-dimensional")) };
    if view.dtype() != Dtype::F32 {
        return Err(format!("tensor {name:?} is not f32"));
    }
    let floats: Vec<f32> =
        view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok(floats.chunks(*dimension).map(<[f32]>::to_vec).collect())
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
    #[derive(serde::Serialize)]
    struct ChunkRecord<'a> {
        id: &'a str,
        document_id: &'a str,
        ordinal: usize,
        text: &'a str,
    }
    let chunk_records: Vec<ChunkRecord> = content
        .chunks
        .iter()
        .map(|c| ChunkRecord { id: &c.id, document_id: &c.document_id, ordinal: c.ordinal, text: &c.text })
        .collect();
    store.write(&format!("{prefix}/documents.jsonl"), &jsonl(content.documents)).await?;
    store.write(&format!("{prefix}/chunks.jsonl"), &jsonl(&chunk_records)).await?;
    let metadata = HashMap::from([("rows".to_string(), "chunks.jsonl lines, in order".to_string())]);
    store
        .write(
            &format!("{prefix}/embeddings.safetensors"),
            &embeddings_safetensors("embeddings", content.embeddings, content.dimension, metadata),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_through_safetensors() {
        let vectors = vec![vec![0.5f32, -1.0, 2.25], vec![0.0, 1e-7, -3.5]];
        let bytes = embeddings_safetensors("embeddings", &vectors, 3, HashMap::new());
        assert_eq!(read_embeddings(&bytes, "embeddings").unwrap(), vectors);
        assert!(read_embeddings(&bytes, "other").is_err());
    }
}
