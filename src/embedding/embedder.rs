//! Sentence embeddings: a BERT encoder (all-MiniLM-L6-v2 by default, see [`super::bert`]) on
//! the CPU, pooled as the model's sentence-transformers configuration says (mean over the
//! tokens by default), L2-normalised; batched by length, one batch per core at a time.

use std::path::{Path, PathBuf};

use crate::net::http::Fetcher;
use crate::storage::hub::{HubModel, HubOptions, download};

use super::bert::{Bert, BertConfig, Pooling};
use crate::parallel;
use tokenizers::{Tokenizer, TruncationParams};

/// Errors of loading or running the model.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A model file is missing or unreadable.
    #[error("cannot load the embedding model from {path}: {reason}")]
    Load {
        /// The model folder.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The forward pass failed.
    #[error("embedding failed: {0}")]
    Run(String),
}

/// A loaded sentence-embedding model.
pub struct Embedder {
    model: Bert,
    tokenizer: Tokenizer,
    pooling: Pooling,
    /// Dimension of the vectors.
    pub dimension: usize,
    /// Longest input in tokens (special tokens included); longer inputs are truncated.
    pub max_seq_length: usize,
}

impl Embedder {
    /// Loads a sentence-transformers folder: `config.json`, `model.safetensors`,
    /// `tokenizer.json`, and when present `sentence_bert_config.json` (sequence length) and
    /// `1_Pooling/config.json` (pooling mode).
    pub fn load(folder: &Path) -> Result<Self, EmbedError> {
        let load_error = |reason: String| EmbedError::Load { path: folder.display().to_string(), reason };
        let read = |name: &str| {
            std::fs::read_to_string(folder.join(name)).map_err(|e| load_error(format!("{name}: {e}")))
        };
        let optional_json = |name: &str| {
            std::fs::read_to_string(folder.join(name))
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .unwrap_or_default()
        };
        let config: BertConfig = serde_json::from_str(&read("config.json")?)
            .map_err(|e| load_error(format!("config.json: {e}")))?;
        let max_seq_length = optional_json("sentence_bert_config.json")["max_seq_length"]
            .as_u64()
            .map(|v| v as usize)
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        let pooling_config = optional_json("1_Pooling/config.json");
        let pooling = if pooling_config["pooling_mode_cls_token"] == true {
            Pooling::Cls
        } else if pooling_config.is_null() || pooling_config["pooling_mode_mean_tokens"] == true {
            Pooling::Mean
        } else {
            return Err(load_error(format!(
                "1_Pooling/config.json: only mean and CLS pooling are supported: {pooling_config}"
            )));
        };
        let mut tokenizer = Tokenizer::from_file(folder.join("tokenizer.json"))
            .map_err(|e| load_error(format!("tokenizer.json: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_seq_length, ..Default::default() }))
            .map_err(|e| load_error(format!("tokenizer truncation: {e}")))?;
        // Batches are packed without padding.
        tokenizer.with_padding(None);
        let weights = std::fs::read(folder.join("model.safetensors"))
            .map_err(|e| load_error(format!("model.safetensors: {e}")))?;
        let model = Bert::load(&weights, &config).map_err(load_error)?;
        Ok(Self { dimension: model.hidden_size(), model, tokenizer, pooling, max_seq_length })
    }

    /// The tokenizer (for the chunker, without truncation).
    pub fn tokenizer_for_counting(&self) -> Tokenizer {
        let mut tokenizer = self.tokenizer.clone();
        let _ = tokenizer.with_truncation(None);
        tokenizer
    }

    /// Embeds texts in batches of `batch_size`; returns one L2-normalised vector per text, in
    /// the order of `texts`. Texts are batched by length.
    pub fn embed(&self, texts: &[&str], batch_size: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_with_progress(texts, batch_size, |_| {})
    }

    /// [`Embedder::embed`], calling `progress` with the number of texts done after each batch.
    ///
    /// Batches run on one thread per core, each with single-threaded matrix products, which
    /// keeps every core busy through the whole forward pass without a synchronisation per
    /// product; with fewer batches than cores, each product is spread over the cores instead.
    pub fn embed_with_progress(
        &self,
        texts: &[&str],
        batch_size: usize,
        progress: impl Fn(usize) + Sync,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let batches: Vec<&[usize]> = order.chunks(batch_size.max(1)).collect();
        let cores = parallel::cores();
        let (workers, parallelism) = if batches.len() >= cores {
            (cores, crate::embedding::bert::Parallelism::None)
        } else {
            (
                1,
                if cores > 1 {
                    crate::embedding::bert::Parallelism::Rayon(cores)
                } else {
                    crate::embedding::bert::Parallelism::None
                },
            )
        };
        let out: Mutex<Vec<Vec<f32>>> = Mutex::new(vec![Vec::new(); texts.len()]);
        let done = AtomicUsize::new(0);
        let failure: Mutex<Option<EmbedError>> = Mutex::new(None);
        parallel::for_each_index(
            batches.len(),
            workers,
            || (),
            |_, index| {
                let batch = batches[index];
                let batch_texts: Vec<&str> = batch.iter().map(|&i| texts[i]).collect();
                match self.embed_batch(&batch_texts, parallelism) {
                    Ok(vectors) => {
                        let mut out = out.lock().expect("no worker panicked");
                        for (&i, vector) in batch.iter().zip(vectors) {
                            out[i] = vector;
                        }
                    }
                    Err(error) => {
                        *failure.lock().expect("no worker panicked") = Some(error);
                        return false;
                    }
                }
                progress(done.fetch_add(batch.len(), Ordering::Relaxed) + batch.len());
                true
            },
        );
        if let Some(error) = failure.into_inner().expect("no worker panicked") {
            return Err(error);
        }
        Ok(out.into_inner().expect("no worker panicked"))
    }

    /// One text, on the calling thread alone: a question at serving time, where concurrent
    /// requests, not one product, should share the cores.
    pub fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut vectors = self.embed_batch(&[text], crate::embedding::bert::Parallelism::None)?;
        Ok(vectors.pop().expect("one vector per text"))
    }

    fn embed_batch(
        &self,
        texts: &[&str],
        parallelism: crate::embedding::bert::Parallelism,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings =
            self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| EmbedError::Run(e.to_string()))?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let mut vectors = self.model.pooled(&ids, self.pooling, parallelism).map_err(EmbedError::Run)?;
        for vector in &mut vectors {
            let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            vector.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(vectors)
    }
}

/// The models folder when none is given: `$XDG_CACHE_HOME/twin/models` or
/// `~/.cache/twin/models`.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("twin/models")
}

/// Where a model URI points on this machine: `file:///folder`, or `hf://org/name[@revision]`
/// found in the models folder (as `<dir>/<org>/<name>`, or `<dir>/<name>` as
/// `scripts/fetch-models` lays it out), else downloaded there from the Hub.
pub async fn resolve_model(
    uri: &str,
    models_dir: Option<&Path>,
    hub: &HubOptions,
    fetcher: &Fetcher,
) -> Result<PathBuf, String> {
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(PathBuf::from(path));
    }
    if uri.starts_with("hf://") {
        let model = HubModel::parse(uri)?;
        let dir = models_dir.map(Path::to_path_buf).unwrap_or_else(default_models_dir);
        let name = model.repo.rsplit('/').next().unwrap_or(&model.repo);
        if model.revision == "main" && dir.join(name).join("config.json").is_file() {
            return Ok(dir.join(name));
        }
        return download(&model, &dir, hub, fetcher).await;
    }
    Err(format!("model {uri} cannot be loaded here: use hf:// or file://"))
}
