//! The retrieval half of a dataset revision (DESIGN §4): `manifest.json`, `chunks.jsonl` and
//! `embeddings.safetensors` (row i is the vector of line i), with the format's names, the
//! safetensors encoding both ways, and a reader that refuses an incomplete revision.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::storage::{ObjectStore, StorageError};

/// The manifest, written last: a revision without it is not published.
pub const MANIFEST: &str = "manifest.json";
/// The cleaned documents, one JSON object a line.
pub const DOCUMENTS: &str = "documents.jsonl";
/// The passages, one JSON object a line.
pub const CHUNKS: &str = "chunks.jsonl";
/// The vectors of the passages.
pub const EMBEDDINGS: &str = "embeddings.safetensors";
/// Beside a dataset's revisions (`datasets/<name>/LATEST`): the id of the revision published
/// last, so that a reader given the dataset's folder finds its newest revision in one read.
pub const LATEST: &str = "LATEST";
/// The tensor's name inside [`EMBEDDINGS`].
pub const EMBEDDINGS_TENSOR: &str = "embeddings";

/// One line of `chunks.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// `<document id>-<ordinal>`.
    pub id: String,
    /// The document it comes from (a line of `documents.jsonl`).
    pub document_id: String,
    /// Position in the document, from 0.
    pub ordinal: usize,
    /// The passage.
    pub text: String,
}

/// A published revision's passages and their vectors, as a retriever holds them.
#[derive(Debug, Clone)]
pub struct Revision {
    /// `manifest.json`.
    pub manifest: serde_json::Value,
    /// The passages, in vector order.
    pub chunks: Vec<ChunkRecord>,
    /// One L2-normalised vector per passage.
    pub embeddings: Vec<Vec<f32>>,
}

/// Why a revision could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A file is missing or does not hold what the format says.
    #[error("revision {prefix}: {reason}")]
    Invalid {
        /// The revision's folder in the store.
        prefix: String,
        /// What is wrong.
        reason: String,
    },
}

/// Reads the revision under `prefix`; `None` when it has no manifest (not published, or still
/// being written).
pub async fn read_revision(store: &ObjectStore, prefix: &str) -> Result<Option<Revision>, RevisionError> {
    let invalid = |reason: String| RevisionError::Invalid { prefix: prefix.to_string(), reason };
    let Some(manifest) = store.read(&format!("{prefix}/{MANIFEST}")).await? else { return Ok(None) };
    let manifest = serde_json::from_slice(&manifest).map_err(|e| invalid(format!("{MANIFEST}: {e}")))?;
    let read = |name: &'static str| async move {
        store.read(&format!("{prefix}/{name}")).await?.ok_or_else(|| invalid(format!("{name} is missing")))
    };
    let chunks = read(CHUNKS).await?;
    let chunks = String::from_utf8_lossy(&chunks)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|e| invalid(format!("{CHUNKS} line {}: {e}", index + 1)))
        })
        .collect::<Result<Vec<ChunkRecord>, _>>()?;
    let embeddings = read_embeddings(&read(EMBEDDINGS).await?, EMBEDDINGS_TENSOR).map_err(invalid)?;
    if embeddings.len() != chunks.len() {
        return Err(invalid(format!("{} vectors for {} chunks", embeddings.len(), chunks.len())));
    }
    Ok(Some(Revision { manifest, chunks, embeddings }))
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
