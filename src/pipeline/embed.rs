//! Sentence embeddings: a BERT encoder (all-MiniLM-L6-v2 by default) run by candle on the CPU,
//! mean pooling over the attention mask, L2 normalisation; batched, as sentence-transformers
//! computes them.

use std::path::{Path, PathBuf};

use crate::net::http::Fetcher;
use crate::storage::hub::{HubModel, HubOptions, download};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

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
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    /// Dimension of the vectors.
    pub dimension: usize,
    /// Longest input in tokens (special tokens included); longer inputs are truncated.
    pub max_seq_length: usize,
}

impl Embedder {
    /// Loads a sentence-transformers folder: `config.json`, `model.safetensors`,
    /// `tokenizer.json`, and `sentence_bert_config.json` for the sequence length.
    pub fn load(folder: &Path) -> Result<Self, EmbedError> {
        let load_error = |reason: String| EmbedError::Load { path: folder.display().to_string(), reason };
        let read = |name: &str| {
            std::fs::read_to_string(folder.join(name)).map_err(|e| load_error(format!("{name}: {e}")))
        };
        let config: Config = serde_json::from_str(&read("config.json")?)
            .map_err(|e| load_error(format!("config.json: {e}")))?;
        let max_seq_length = std::fs::read_to_string(folder.join("sentence_bert_config.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["max_seq_length"].as_u64())
            .map(|v| v as usize)
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        let mut tokenizer = Tokenizer::from_file(folder.join("tokenizer.json"))
            .map_err(|e| load_error(format!("tokenizer.json: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_seq_length, ..Default::default() }))
            .map_err(|e| load_error(format!("tokenizer truncation: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        let device = Device::Cpu;
        let weights = folder.join("model.safetensors");
        // SAFETY-free: `from_mmaped_safetensors` is unsafe because the file could change while
        // mapped; read it into memory instead.
        let bytes = std::fs::read(&weights).map_err(|e| load_error(format!("model.safetensors: {e}")))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
            .map_err(|e| load_error(format!("model.safetensors: {e}")))?;
        let model = BertModel::load(vb, &config).map_err(|e| load_error(format!("weights: {e}")))?;
        Ok(Self { model, tokenizer, device, dimension: config.hidden_size, max_seq_length })
    }

    /// The tokenizer (for the chunker, without padding or truncation).
    pub fn tokenizer_for_counting(&self) -> Tokenizer {
        let mut tokenizer = self.tokenizer.clone();
        tokenizer.with_padding(None);
        let _ = tokenizer.with_truncation(None);
        tokenizer
    }

    /// Embeds texts in batches of `batch_size`; returns one L2-normalised vector per text, in
    /// the order of `texts`. Texts are batched by length, so that little is padding.
    pub fn embed(&self, texts: &[&str], batch_size: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_with_progress(texts, batch_size, |_| {})
    }

    /// [`Embedder::embed`], calling `progress` with the number of texts done after each batch.
    pub fn embed_with_progress(
        &self,
        texts: &[&str],
        batch_size: usize,
        progress: impl Fn(usize),
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut done = 0;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for batch in order.chunks(batch_size.max(1)) {
            let batch_texts: Vec<&str> = batch.iter().map(|&i| texts[i]).collect();
            for (&i, vector) in batch.iter().zip(self.embed_batch(&batch_texts)?) {
                out[i] = vector;
            }
            done += batch.len();
            progress(done);
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let run = |e: candle_core::Error| EmbedError::Run(e.to_string());
        let encodings =
            self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| EmbedError::Run(e.to_string()))?;
        let ids: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_ids(), &self.device))
            .collect::<Result<_, _>>()
            .map_err(run)?;
        let masks: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_attention_mask(), &self.device))
            .collect::<Result<_, _>>()
            .map_err(run)?;
        let input_ids = Tensor::stack(&ids, 0).map_err(run)?;
        let attention_mask = Tensor::stack(&masks, 0).map_err(run)?;
        let token_type_ids = input_ids.zeros_like().map_err(run)?;
        let hidden = self.model.forward(&input_ids, &token_type_ids, Some(&attention_mask)).map_err(run)?;
        // Mean pooling over real tokens only, then L2 normalisation.
        let mask = attention_mask.to_dtype(DType::F32).map_err(run)?.unsqueeze(2).map_err(run)?;
        let summed = hidden.broadcast_mul(&mask).map_err(run)?.sum(1).map_err(run)?;
        let counts = mask.sum(1).map_err(run)?.clamp(1e-9, f64::MAX).map_err(run)?;
        let mean = summed.broadcast_div(&counts).map_err(run)?;
        let norms = mean
            .sqr()
            .map_err(run)?
            .sum_keepdim(1)
            .map_err(run)?
            .sqrt()
            .map_err(run)?
            .clamp(1e-12, f64::MAX)
            .map_err(run)?;
        let normalised = mean.broadcast_div(&norms).map_err(run)?;
        normalised.to_vec2::<f32>().map_err(run)
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
