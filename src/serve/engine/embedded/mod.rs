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
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::template::{CHATML, ChatTemplate};
use super::{Completion, Engine, EngineError, EngineInfo, FinishReason, Piece, PieceStream, Prompt};
use crate::serve::api::{Sampling, Usage};

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

/// Tokens the worker decodes in one step at most (prompts are fed in pieces of this size).
const BATCH_TOKENS: usize = 512;
/// Sampling when a request sets none (llama.cpp's server uses the same).
const DEFAULT_TEMPERATURE: f32 = 0.8;
const DEFAULT_TOP_P: f32 = 0.95;
/// Candidates kept before top-p (llama.cpp's default too): top-p alone would sort the whole
/// vocabulary for every token of every answer.
const TOP_K: i32 = 40;

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

/// One request for the worker.
struct Job {
    prompt: Vec<LlamaToken>,
    sampling: Sampling,
    max_tokens: usize,
    pieces: UnboundedSender<Result<Piece, EngineError>>,
    /// Set when the worker gives the request a place in the batch (it left the queue).
    admitted: Arc<AtomicBool>,
    /// The adapter to answer with (an index into the worker's), or the base model.
    adapter: Option<usize>,
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
                let worker =
                    Worker { model, context, parallel, context_tokens, adapters, applied: None, turn: 0 };
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

/// An answer being written.
struct Slot {
    sequence: i32,
    job: Job,
    /// Prompt tokens fed so far.
    fed: usize,
    /// Position of the next token.
    position: i32,
    sampler: LlamaSampler,
    /// Where this slot's logits are in the last batch.
    logits_at: Option<i32>,
    last: LlamaToken,
    generated: usize,
    /// Bytes of a character split across tokens.
    partial: Vec<u8>,
    /// Text held back because it may begin a stop sequence.
    held: String,
    done: bool,
}

struct Worker {
    model: &'static LlamaModel,
    context: LlamaContext<'static>,
    parallel: usize,
    context_tokens: usize,
    /// The twins' adapters.
    adapters: Vec<LlamaLoraAdapter>,
    /// The adapter the context applies now (`None`: the base model).
    applied: Option<usize>,
    /// Steps taken, for the round robin of adapters.
    turn: usize,
}

impl Worker {
    fn run(mut self, jobs: Receiver<Job>) {
        let mut slots: Vec<Slot> = Vec::with_capacity(self.parallel);
        let mut batch = LlamaBatch::new(BATCH_TOKENS.max(self.parallel), self.parallel as i32);
        loop {
            // Take new requests while there is room; sleep on the queue when idle.
            while slots.len() < self.parallel {
                let job = if slots.is_empty() {
                    match jobs.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    }
                } else {
                    match jobs.try_recv() {
                        Ok(job) => job,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return,
                    }
                };
                if job.pieces.is_closed() {
                    // Its caller stopped waiting (timed out in the queue, or hung up).
                    continue;
                }
                job.admitted.store(true, Ordering::Release);
                let sequence = (0..self.parallel as i32)
                    .find(|s| slots.iter().all(|slot| slot.sequence != *s))
                    .expect("a free sequence");
                slots.push(Slot {
                    sequence,
                    sampler: sampler(&job.sampling),
                    job,
                    fed: 0,
                    position: 0,
                    logits_at: None,
                    last: LlamaToken(0),
                    generated: 0,
                    partial: Vec::new(),
                    held: String::new(),
                    done: false,
                });
            }
            // One adapter per step, in turn: the context applies one set of adapters at a time.
            let mut groups: Vec<Option<usize>> = Vec::new();
            for slot in &slots {
                if !groups.contains(&slot.job.adapter) {
                    groups.push(slot.job.adapter);
                }
            }
            groups.sort();
            if let Some(&group) = groups.get(self.turn % groups.len().max(1)) {
                self.turn = self.turn.wrapping_add(1);
                if let Err(message) = self.apply(group) {
                    for slot in slots.iter_mut().filter(|s| s.job.adapter == group) {
                        let _ = slot.job.pieces.send(Err(EngineError::Failed(message.clone())));
                        slot.done = true;
                    }
                } else {
                    let mut turn: Vec<&mut Slot> =
                        slots.iter_mut().filter(|s| s.job.adapter == group).collect();
                    self.step(&mut turn, &mut batch);
                }
            }
            for slot in slots.iter().filter(|s| s.done || s.job.pieces.is_closed()) {
                let _ = self.context.clear_kv_cache_seq(Some(slot.sequence as u32), None, None);
            }
            slots.retain(|s| !s.done && !s.job.pieces.is_closed());
        }
    }

    /// Makes the context apply `adapter` (or none), if it does not already.
    fn apply(&mut self, adapter: Option<usize>) -> Result<(), String> {
        if adapter == self.applied {
            return Ok(());
        }
        let result = match (adapter, self.applied) {
            (Some(i), _) => {
                self.context.lora_adapter_set(&mut self.adapters[i], 1.0).map_err(|e| e.to_string())
            }
            (None, Some(j)) => {
                self.context.lora_adapter_remove(&mut self.adapters[j]).map_err(|e| e.to_string())
            }
            (None, None) => Ok(()),
        };
        result.map_err(|e| format!("cannot apply the LoRA adapter: {e}"))?;
        self.applied = adapter;
        Ok(())
    }

    /// One decode of one adapter's answers: the next token of each, then as much of new
    /// prompts as fits.
    fn step(&mut self, slots: &mut [&mut Slot], batch: &mut LlamaBatch) {
        batch.clear();
        for slot in slots.iter_mut() {
            slot.logits_at = None;
            if slot.fed == slot.job.prompt.len() && slot.generated > 0 {
                batch
                    .add(slot.last, slot.position, &[slot.sequence], true)
                    .expect("room for one token per slot");
                slot.logits_at = Some(batch.n_tokens() - 1);
                slot.position += 1;
            }
        }
        for slot in slots.iter_mut() {
            let left = BATCH_TOKENS.saturating_sub(batch.n_tokens() as usize);
            if slot.fed == slot.job.prompt.len() || left == 0 {
                continue;
            }
            let end = (slot.fed + left).min(slot.job.prompt.len());
            for i in slot.fed..end {
                let last = i + 1 == slot.job.prompt.len();
                batch
                    .add(slot.job.prompt[i], slot.position, &[slot.sequence], last)
                    .expect("within the batch size");
                slot.position += 1;
                if last {
                    slot.logits_at = Some(batch.n_tokens() - 1);
                }
            }
            slot.fed = end;
        }
        if batch.n_tokens() == 0 {
            return;
        }
        if let Err(error) = self.context.decode(batch) {
            for slot in slots.iter_mut().filter(|s| s.logits_at.is_some() || s.fed > 0) {
                let _ = slot
                    .job
                    .pieces
                    .send(Err(EngineError::Failed(format!("llama.cpp could not decode: {error}"))));
                slot.done = true;
            }
            return;
        }
        let vocab = self.model.vocab();
        for slot in slots.iter_mut() {
            let Some(at) = slot.logits_at else { continue };
            let token = slot.sampler.sample(&self.context, at);
            slot.last = token;
            if vocab.is_eog(token) {
                self.finish(slot, FinishReason::Stop);
                continue;
            }
            slot.generated += 1;
            slot.partial.extend(vocab.token_to_piece(token, false, None));
            let valid = match std::str::from_utf8(&slot.partial) {
                Ok(text) => text.len(),
                Err(e) => e.valid_up_to(),
            };
            let text: String = String::from_utf8_lossy(&slot.partial[..valid]).into_owned();
            slot.partial.drain(..valid);
            slot.held.push_str(&text);
            if let Some(cut) = stop_at(&slot.held, &slot.job.sampling.stop) {
                slot.held.truncate(cut);
                self.finish(slot, FinishReason::Stop);
                continue;
            }
            let safe = safe_prefix(&slot.held, &slot.job.sampling.stop);
            if safe > 0 {
                let out: String = slot.held.drain(..safe).collect();
                if slot.job.pieces.send(Ok(Piece::Text(out))).is_err() {
                    slot.done = true;
                    continue;
                }
            }
            if slot.generated >= slot.job.max_tokens || slot.position as usize + 1 >= self.context_tokens {
                self.finish(slot, FinishReason::Length);
            }
        }
    }

    fn finish(&self, slot: &mut Slot, reason: FinishReason) {
        if !slot.held.is_empty() {
            let _ = slot.job.pieces.send(Ok(Piece::Text(std::mem::take(&mut slot.held))));
        }
        let usage = Usage::new(slot.job.prompt.len() as u32, slot.generated as u32);
        let _ = slot.job.pieces.send(Ok(Piece::Done { finish_reason: reason, usage: Some(usage) }));
        slot.done = true;
    }
}

/// The sampler chain for a request: greedy at temperature 0, else the 40 likeliest tokens,
/// top-p, temperature, and a seeded draw.
fn sampler(sampling: &Sampling) -> LlamaSampler {
    let temperature = sampling.temperature.unwrap_or(DEFAULT_TEMPERATURE);
    if temperature <= 0.0 {
        return LlamaSampler::greedy();
    }
    let seed = sampling.seed.map_or_else(|| fastrand::u32(..), |s| s as u32);
    LlamaSampler::chain_simple([
        LlamaSampler::top_k(TOP_K),
        LlamaSampler::top_p(sampling.top_p.unwrap_or(DEFAULT_TOP_P), 1),
        LlamaSampler::temp(temperature),
        LlamaSampler::dist(seed),
    ])
}

/// Where the first stop sequence begins in `text`, if one occurs.
fn stop_at(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter_map(|s| text.find(s.as_str())).min()
}

/// How much of `text` can be sent: all but a tail that might be the start of a stop sequence.
fn safe_prefix(text: &str, stops: &[String]) -> usize {
    let mut safe = text.len();
    for stop in stops {
        for (i, _) in text.char_indices() {
            if i < safe && stop.starts_with(&text[i..]) {
                safe = i;
                break;
            }
        }
    }
    safe
}

/// The default model's path in a models folder, as `scripts/fetch-models` lays it out.
pub fn default_model(models_dir: &Path) -> std::path::PathBuf {
    models_dir.join("SmolLM2-135M-Instruct").join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_sequences_cut_the_answer_and_hold_back_a_possible_start() {
        let stops = vec!["\n\n".to_string(), "END".to_string()];
        assert_eq!(stop_at("one\n\ntwo", &stops), Some(3));
        assert_eq!(stop_at("one END", &stops), Some(4));
        assert_eq!(stop_at("one", &stops), None);
        assert_eq!(safe_prefix("hello E", &stops), 6);
        assert_eq!(safe_prefix("hello EN", &stops), 6);
        assert_eq!(safe_prefix("hello\n", &stops), 5);
        assert_eq!(safe_prefix("héllo", &stops), "héllo".len());
        assert_eq!(safe_prefix("abc", &[]), 3);
    }
}
