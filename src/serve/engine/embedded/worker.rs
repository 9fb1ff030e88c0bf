//! The embedded engine's worker: the thread that owns the llama.cpp context and decodes every
//! running answer, a batch per step (one adapter's answers per step, in turn), with each
//! request's sampler and stop sequences.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use crate::serve::api::{Sampling, Usage};
use crate::serve::engine::{EngineError, FinishReason, Piece};

/// Tokens the worker decodes in one step at most (prompts are fed in pieces of this size).
pub(super) const BATCH_TOKENS: usize = 512;
/// Sampling when a request sets none (llama.cpp's server uses the same).
const DEFAULT_TEMPERATURE: f32 = 0.8;
const DEFAULT_TOP_P: f32 = 0.95;
/// Candidates kept before top-p (llama.cpp's default too): top-p alone would sort the whole
/// vocabulary for every token of every answer.
const TOP_K: i32 = 40;

/// One request for the worker.
pub(super) struct Job {
    pub(super) prompt: Vec<LlamaToken>,
    pub(super) sampling: Sampling,
    pub(super) max_tokens: usize,
    pub(super) pieces: UnboundedSender<Result<Piece, EngineError>>,
    /// Set when the worker gives the request a place in the batch (it left the queue).
    pub(super) admitted: Arc<AtomicBool>,
    /// The adapter to answer with (an index into the worker's), or the base model.
    pub(super) adapter: Option<usize>,
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

pub(super) struct Worker {
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
    /// A worker over `context` of `model`, with the twins' `adapters`.
    pub(super) fn new(
        model: &'static LlamaModel,
        context: LlamaContext<'static>,
        parallel: usize,
        context_tokens: usize,
        adapters: Vec<LlamaLoraAdapter>,
    ) -> Self {
        Self { model, context, parallel, context_tokens, adapters, applied: None, turn: 0 }
    }

    pub(super) fn run(mut self, jobs: Receiver<Job>) {
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
