//! Voice by likelihood: the mean negative log-likelihood per token that a model (with or without
//! a LoRA adapter) gives a text, as the answer to its instruction (rendered with the model's chat
//! template, as the trainer saw it) or as plain text. The twin and its baseline each get a
//! llama.cpp context on one copy of the weights: an adapter applies per context.

use std::num::NonZeroU32;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use crate::serve::api::{Role, Turn};
use crate::serve::engine::embedded::{backend, chat_template, tokenize_rendered};
use crate::serve::engine::template::ChatTemplate;

/// Tokens one scored text may have, its prompt included; longer ones are cut at the end.
pub const SCORE_CONTEXT: usize = 768;

/// What a text is scored as.
pub enum Scored<'a> {
    /// The answer to a conversation (system prompt and instruction).
    Answer {
        /// The system prompt the sample was trained with.
        system: &'a str,
        /// The instruction.
        instruction: &'a str,
        /// The author's answer.
        answer: &'a str,
    },
    /// Text on its own.
    Plain(&'a str),
}

/// NLL of one text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Likelihood {
    /// Sum of the tokens' negative log-likelihoods, in nats.
    pub nll: f64,
    /// Tokens scored.
    pub tokens: usize,
}

impl Likelihood {
    /// Nats per token.
    pub fn per_token(&self) -> f64 {
        self.nll / self.tokens.max(1) as f64
    }
}

/// Scores texts under a model, with or without an adapter.
pub struct Scorer<'m> {
    model: &'m LlamaModel,
    context: LlamaContext<'m>,
    template: ChatTemplate,
    add_bos: bool,
    batch: LlamaBatch<'static>,
}

impl<'m> Scorer<'m> {
    /// A context on `model` with `adapter` applied (blocking).
    pub fn new(
        model: &'m LlamaModel,
        adapter: Option<&mut LlamaLoraAdapter>,
        threads: usize,
    ) -> Result<Self, String> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(SCORE_CONTEXT as u32))
            .with_n_batch(SCORE_CONTEXT as u32)
            .with_n_ubatch(SCORE_CONTEXT as u32)
            .with_n_threads(threads.max(1) as i32)
            .with_n_threads_batch(threads.max(1) as i32);
        let mut context = model
            .new_context(backend()?, params)
            .map_err(|e| format!("cannot create a llama.cpp context: {e}"))?;
        if let Some(adapter) = adapter {
            context
                .lora_adapter_set(adapter, 1.0)
                .map_err(|e| format!("cannot apply the LoRA adapter: {e}"))?;
        }
        let (template, add_bos) = chat_template(model)?;
        Ok(Self { model, context, template, add_bos, batch: LlamaBatch::new(SCORE_CONTEXT, 1) })
    }

    /// The prompt's tokens and the scored tokens of `text`.
    fn tokens(&self, text: &Scored) -> Result<(Vec<LlamaToken>, Vec<LlamaToken>), String> {
        let vocab = self.model.vocab();
        match text {
            Scored::Answer { system, instruction, answer } => {
                let turns = [
                    Turn { role: Role::System, content: system.to_string() },
                    Turn { role: Role::User, content: instruction.to_string() },
                ];
                let prompt = tokenize_rendered(self.model, &self.template.render(&turns)?, self.add_bos);
                Ok((prompt, vocab.tokenize(answer.as_bytes(), false, false)))
            }
            Scored::Plain(text) => {
                let mut tokens = vocab.tokenize(text.as_bytes(), false, false);
                let first = if self.add_bos {
                    vec![vocab.bos()]
                } else {
                    tokens.drain(..1.min(tokens.len())).collect()
                };
                Ok((first, tokens))
            }
        }
    }

    /// The NLL of `text`'s tokens, each given all before it.
    pub fn score(&mut self, text: &Scored) -> Result<Likelihood, String> {
        let (prompt, mut scored) = self.tokens(text)?;
        if prompt.is_empty() || prompt.len() + 1 >= SCORE_CONTEXT {
            return Err(format!(
                "the prompt is {} tokens; at most {} are scored",
                prompt.len(),
                SCORE_CONTEXT - 1
            ));
        }
        scored.truncate(SCORE_CONTEXT - prompt.len());
        if scored.is_empty() {
            return Ok(Likelihood { nll: 0.0, tokens: 0 });
        }
        self.context.clear_kv_cache();
        self.batch.clear();
        let all: Vec<LlamaToken> = prompt.iter().chain(&scored).copied().collect();
        // Logits are wanted where the next token is a scored one: the prompt's last token on.
        let first_output = prompt.len() - 1;
        for (position, token) in all.iter().enumerate() {
            let wanted = position >= first_output && position + 1 < all.len();
            self.batch.add(*token, position as i32, &[0], wanted).map_err(|e| format!("batch: {e}"))?;
        }
        self.context.decode(&mut self.batch).map_err(|e| format!("llama.cpp could not decode: {e}"))?;
        let mut nll = 0.0;
        for (offset, target) in scored.iter().enumerate() {
            let logits = self.context.get_logits_ith((first_output + offset) as i32);
            nll += negative_log_softmax(logits, target.0 as usize);
        }
        Ok(Likelihood { nll, tokens: scored.len() })
    }
}

/// `−log softmax(logits)[target]`, computed stably in f64.
pub fn negative_log_softmax(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    sum.ln() + max - logits[target] as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_negative_log_softmax_is_that_of_the_distribution() {
        let logits = [0.0f32, (2.0f32).ln(), 0.0];
        // Probabilities 1/4, 1/2, 1/4.
        assert!((negative_log_softmax(&logits, 1) - 2f64.ln()).abs() < 1e-9);
        assert!((negative_log_softmax(&logits, 0) - 4f64.ln()).abs() < 1e-9);
        let large = [1000.0f32, 1000.0];
        assert!((negative_log_softmax(&large, 0) - 2f64.ln()).abs() < 1e-9);
    }
}
