//! The `embedded` engine: a GGUF model run in this process by llama.cpp on the CPU, with an
//! optional GGUF LoRA adapter. One worker thread owns the context and decodes every running
//! answer together: each step is one batch holding the next token of each answer (and the
//! prompts of new ones), so that concurrent requests share each pass over the weights. Up to
//! `parallel` answers run at once; up to `queue` more wait; beyond that, requests get 429.
//!
//! Several twins of one base model share one engine ([`EmbeddedEngine::load_shared`]): one copy
//! of the weights, one context and one worker, each twin a handle with its own adapter. llama.cpp
//! applies adapters per context, so a step decodes the answers of one adapter, in turn with the
//! others (round robin), switching the context's adapter between steps. No
//! request waits unbounded: one still queued at the first-token timeout gets 429 (and leaves
//! the queue), one begun but without a token 504, and a whole answer ends at the request timeout.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

mod worker;

use worker::{BATCH_TOKENS, Job, Worker};

use super::template::{CHATML, ChatTemplate};
use super::{Completion, Engine, EngineError, EngineInfo, Piece, PieceStream, Prompt};

/// How the model runs.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// The GGUF file.
    pub model: std::path::PathBuf,
    /// A GGUF LoRA adapter to apply (of the one engine [`EmbeddedEngine::load`] gives).
    pub adapter: Option<std::path::PathBuf>,
    /// Tokens of context per answer (prompt and answer); unset: the model's training context,
    /// at most 4096.
    pub context_tokens: Option<usize>,
    /// Answers decoded together.
    pub parallel: usize,
    /// Requests waiting for a place.
    pub queue: usize,
    /// CPU threads.
    pub threads: usize,
    /// Longest wait for an answer's first token, the time in the queue included.
    pub first_token_timeout: std::time::Duration,
    /// Longest a whole (not streamed) answer takes.
    pub request_timeout: std::time::Duration,
}

/// llama.cpp's backend may be initialised once per process.
pub fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| format!("cannot start llama.cpp: {e}"))?;
            // llama.cpp logs every tensor at load time to stderr; the gateway logs what matters.
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A submitted request: its pieces as they come, and whether it has left the queue.
struct Submitted {
    pieces: UnboundedReceiver<Result<Piece, EngineError>>,
    admitted: Arc<AtomicBool>,
}

/// What the handles of one worker share: the model (read-only, with the worker), its chat
/// template, the queue.
struct Shared {
    model: &'static LlamaModel,
    template: ChatTemplate,
    jobs: SyncSender<Job>,
    add_bos: bool,
    first_token_timeout: std::time::Duration,
    request_timeout: std::time::Duration,
}

/// The engine's handle: what request threads use. Handles of one shared engine differ by their
/// adapter only.
pub struct EmbeddedEngine {
    shared: Arc<Shared>,
    /// The adapter this handle answers with, an index into the worker's.
    adapter: Option<usize>,
    info: EngineInfo,
}

/// Loads a GGUF model (blocking). It lives as long as the process: contexts borrow it.
pub fn load_model(path: &Path) -> Result<LlamaModel, String> {
    let backend = backend()?;
    if !path.is_file() {
        return Err(format!("the GGUF model {} does not exist", path.display()));
    }
    LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
        .map_err(|e| format!("cannot load the GGUF model {}: {e}", path.display()))
}

/// Loads a GGUF LoRA adapter for `model` (applied per context, so one model in memory serves
/// contexts with and without it).
pub fn load_adapter(model: &mut LlamaModel, path: &Path) -> Result<LlamaLoraAdapter, String> {
    if !path.is_file() {
        return Err(format!("the GGUF LoRA adapter {} does not exist", path.display()));
    }
    model.lora_adapter_init(path).map_err(|e| {
        format!(
            "cannot load the LoRA adapter {} (it must be a GGUF adapter for this model): {e}",
            path.display()
        )
    })
}

/// The chat template a model's GGUF carries (ChatML when it carries none), with its special
/// tokens, and whether its tokenizer adds a BOS token.
pub fn chat_template(model: &LlamaModel) -> Result<(ChatTemplate, bool), String> {
    let vocab = model.vocab();
    let special =
        |token: LlamaToken| String::from_utf8_lossy(&vocab.token_to_piece(token, true, None)).into_owned();
    let source = model.meta_val_str("tokenizer.chat_template").unwrap_or_else(|_| CHATML.to_string());
    Ok((ChatTemplate::new(&source, &special(vocab.bos()), &special(vocab.eos()))?, vocab.should_add_bos()))
}

/// Tokens of a rendered prompt, with a BOS token unless the model adds none or the template
/// wrote it already.
pub fn tokenize_rendered(model: &LlamaModel, text: &str, add_bos: bool) -> Vec<LlamaToken> {
    let vocab = model.vocab();
    let bos = String::from_utf8_lossy(&vocab.token_to_piece(vocab.bos(), true, None)).into_owned();
    // A template that writes the BOS token itself must not get a second one.
    let add_bos = add_bos && (bos.is_empty() || !text.starts_with(&bos));
    vocab.tokenize(text.as_bytes(), add_bos, true)
}

impl EmbeddedEngine {
    /// Loads the model (and adapter) and starts the worker. Blocking: call it off the runtime.
    pub fn load(options: &EmbeddedOptions) -> Result<Self, String> {
        let mut engines = Self::load_shared(options, std::slice::from_ref(&options.adapter))?;
        Ok(engines.remove(0))
    }

    /// Loads the model once with every adapter of `twins` (each twin's, or none) and starts one
    /// worker for all of them: one handle per twin, in order. Blocking: call it off the runtime.
    pub fn load_shared(
        options: &EmbeddedOptions,
        twins: &[Option<std::path::PathBuf>],
    ) -> Result<Vec<Self>, String> {
        let mut model = load_model(&options.model)?;
        let mut adapters: Vec<(std::path::PathBuf, LlamaLoraAdapter)> = Vec::new();
        for path in twins.iter().flatten() {
            if !adapters.iter().any(|(loaded, _)| loaded == path) {
                adapters.push((path.clone(), load_adapter(&mut model, path)?));
            }
        }
        // The model lives as long as the process: the worker's context borrows it.
        let model: &'static LlamaModel = Box::leak(Box::new(model));
        let handles = twins
            .iter()
            .map(|path| {
                path.as_ref().map(|p| adapters.iter().position(|(loaded, _)| loaded == p).expect("loaded"))
            })
            .collect::<Vec<_>>();
        let (paths, adapters): (Vec<_>, Vec<_>) = adapters.into_iter().unzip();
        Self::start_shared(model, adapters, &paths, &handles, options)
    }

    /// Starts the worker on a loaded model, with `adapter` applied (loaded from
    /// `options.adapter`): several engines may share one model, each with its own adapter.
    pub fn start(
        model: &'static LlamaModel,
        adapter: Option<LlamaLoraAdapter>,
        options: &EmbeddedOptions,
    ) -> Result<Self, String> {
        let paths: Vec<std::path::PathBuf> = options.adapter.iter().cloned().collect();
        let handle = adapter.as_ref().map(|_| 0);
        let mut engines =
            Self::start_shared(model, adapter.into_iter().collect(), &paths, &[handle], options)?;
        Ok(engines.remove(0))
    }

    /// Starts one worker on a loaded model with `adapters` (loaded from `paths`), and one handle
    /// per entry of `handles` (an index into `adapters`, or the base model).
    fn start_shared(
        model: &'static LlamaModel,
        adapters: Vec<LlamaLoraAdapter>,
        paths: &[std::path::PathBuf],
        handles: &[Option<usize>],
        options: &EmbeddedOptions,
    ) -> Result<Vec<Self>, String> {
        let backend = backend()?;
        let (template, add_bos) = chat_template(model)?;
        let trained = model.n_ctx_train() as usize;
        let context_tokens = options.context_tokens.unwrap_or(trained.min(4096)).min(trained.max(1));
        let parallel = options.parallel.max(1);
        let (jobs, received) = std::sync::mpsc::sync_channel(options.queue);
        let threads = options.threads.max(1);
        let (started, start_result) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("llama-worker".into())
            .spawn(move || {
                let params = LlamaContextParams::default()
                    .with_n_ctx(NonZeroU32::new((context_tokens * parallel) as u32))
                    .with_n_batch(BATCH_TOKENS as u32)
                    .with_n_ubatch(BATCH_TOKENS as u32)
                    .with_n_seq_max(parallel as u32)
                    // One KV stream per answer: in a unified cache every token attends over the
                    // cells of every answer (masked), which doubles the work of a batched step.
                    .with_kv_unified(false)
                    .with_n_threads(threads as i32)
                    .with_n_threads_batch(threads as i32);
                let context = match model.new_context(backend, params) {
                    Ok(context) => context,
                    Err(e) => {
                        let _ = started.send(Err(format!("cannot create the llama.cpp context: {e}")));
                        return;
                    }
                };
                let _ = started.send(Ok(()));
                let worker = Worker::new(model, context, parallel, context_tokens, adapters);
                worker.run(received);
            })
            .map_err(|e| format!("cannot start the llama.cpp worker: {e}"))?;
        start_result.recv().map_err(|_| "the llama.cpp worker stopped while starting".to_string())??;
        let shared = Arc::new(Shared {
            model,
            template,
            jobs,
            add_bos,
            first_token_timeout: options.first_token_timeout,
            request_timeout: options.request_timeout,
        });
        Ok(handles
            .iter()
            .map(|adapter| Self {
                shared: shared.clone(),
                adapter: *adapter,
                info: EngineInfo {
                    kind: "embedded",
                    model: options.model.display().to_string(),
                    adapter: adapter.map(|i| paths[i].display().to_string()),
                    context_tokens,
                },
            })
            .collect())
    }

    fn tokenize_prompt(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, EngineError> {
        let text = self.shared.template.render(&prompt.turns).map_err(EngineError::Failed)?;
        Ok(tokenize_rendered(self.shared.model, &text, self.shared.add_bos))
    }

    /// Queues a request; its pieces arrive on the returned receiver.
    fn submit(&self, prompt: Prompt) -> Result<Submitted, EngineError> {
        let tokens = self.tokenize_prompt(&prompt)?;
        let context = self.info.context_tokens;
        if tokens.len() >= context {
            return Err(EngineError::Rejected {
                status: 400,
                message: format!("the prompt is {} tokens; the model's context is {context}", tokens.len()),
            });
        }
        let room = context - tokens.len();
        let max_tokens = prompt.sampling.max_tokens.map_or(room, |m| (m as usize).min(room));
        let (pieces, receiver) = unbounded_channel();
        let admitted = Arc::new(AtomicBool::new(false));
        let job = Job {
            prompt: tokens,
            sampling: prompt.sampling,
            max_tokens,
            pieces,
            admitted: admitted.clone(),
            adapter: self.adapter,
        };
        match self.shared.jobs.try_send(job) {
            Ok(()) => Ok(Submitted { pieces: receiver, admitted }),
            Err(TrySendError::Full(_)) => Err(EngineError::Busy(
                "the embedded engine's queue is full (--parallel answers running, --queue waiting); retry shortly".into(),
            )),
            Err(TrySendError::Disconnected(_)) => Err(EngineError::Failed("the llama.cpp worker has stopped".into())),
        }
    }
}

impl Engine for EmbeddedEngine {
    fn info(&self) -> &EngineInfo {
        &self.info
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.shared.model.vocab().tokenize(text.as_bytes(), false, true).len()
    }

    fn tokens_per_turn(&self) -> usize {
        5
    }

    fn complete(&self, prompt: Prompt) -> BoxFuture<'static, Result<Completion, EngineError>> {
        let budget = self.shared.request_timeout;
        let deadline = tokio::time::Instant::now() + budget;
        let pieces = self.stream(prompt);
        async move { super::collect(pieces.await?, Some(deadline), budget).await }.boxed()
    }

    /// Waits for the first piece within the first-token timeout (dropping the request, which
    /// the worker then skips, when it does not come), so that an overloaded engine answers
    /// 429 or 504 rather than holding requests for as long as the queue takes.
    fn stream(&self, prompt: Prompt) -> BoxFuture<'static, Result<PieceStream, EngineError>> {
        let submitted = self.submit(prompt);
        let wait = self.shared.first_token_timeout;
        async move {
            let Submitted { mut pieces, admitted } = submitted?;
            let first = match tokio::time::timeout(wait, pieces.recv()).await {
                Err(_) if !admitted.load(Ordering::Acquire) => {
                    return Err(EngineError::Busy(format!(
                        "the request waited {wait:?} in the embedded engine's queue without a place \
                         (--parallel answers were running); retry shortly"
                    )));
                }
                Err(_) => {
                    return Err(EngineError::Timeout(format!(
                        "the embedded engine wrote no token within {wait:?}"
                    )));
                }
                Ok(None) => return Err(EngineError::Failed("the llama.cpp worker has stopped".into())),
                Ok(Some(first)) => first?,
            };
            let rest = futures::stream::unfold(pieces, |mut pieces| async move {
                pieces.recv().await.map(|piece| (piece, pieces))
            });
            Ok(futures::stream::iter([Ok(first)]).chain(rest).boxed())
        }
        .boxed()
    }
}

/// The default model's path in a models folder, as `scripts/fetch-models` lays it out.
pub fn default_model(models_dir: &Path) -> std::path::PathBuf {
    models_dir.join("SmolLM2-135M-Instruct").join("SmolLM2-135M-Instruct.Q4_1.gguf")
}
