//! The embedding model and the retrieval artifacts of a dataset revision: what the dataset
//! pipeline writes and the gateway reads, without the collectors (git, archives, crawling)
//! that only the pipeline needs.

pub use twin_bert as bert;
pub mod embedder;
pub mod revision;

pub use embedder::{EmbedError, Embedder, default_models_dir, resolve_model};
