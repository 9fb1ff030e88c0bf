//! The engines a gateway answers with, behind one trait: `openai` (any OpenAI-compatible
//! upstream: vLLM, TGI, Ollama, llama.cpp's server, hosted APIs) and `embedded` (a GGUF model
//! run in this process by llama.cpp).

pub mod embedded;
pub mod openai;
pub mod template;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::{Map, Value};

use super::api::{Sampling, Turn, Usage};

/// What an engine is asked to continue: the whole prompt, already fitted to its context.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    /// System prompt with the passages first, then the conversation.
    pub turns: Vec<Turn>,
    /// Sampling settings.
    pub sampling: Sampling,
    /// Request fields the gateway does not read, for an upstream.
    pub extra: Map<String, Value>,
}

/// Why an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model finished, or a stop sequence came.
    Stop,
    /// `max_tokens` was reached.
    Length,
}

impl FinishReason {
    /// The name OpenAI's API gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }

    /// Reads an upstream's `finish_reason` (anything but `length` ends as `stop`).
    pub fn parse(text: &str) -> Self {
        if text == "length" { FinishReason::Length } else { FinishReason::Stop }
    }
}

/// A whole answer.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Completion {
    pub text: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts, when the engine reports them.
    pub usage: Option<Usage>,
}

/// A part of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// New text.
    Text(String),
    /// The end, with why and (when known) the token counts.
    Done {
        /// Why it ended.
        finish_reason: FinishReason,
        /// Token counts, when the engine reports them.
        usage: Option<Usage>,
    },
}

/// A streamed answer: text pieces, then [`Piece::Done`]; an error ends it early.
pub type PieceStream = BoxStream<'static, Result<Piece, EngineError>>;

/// Why an engine could not answer; each maps to an HTTP status and an error type.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The upstream cannot be reached, or answered with a server error.
    #[error("{0}")]
    Unavailable(String),
    /// The upstream took longer than a timeout allows.
    #[error("{0}")]
    Timeout(String),
    /// The upstream answered with something that is not an OpenAI answer.
    #[error("{0}")]
    BadResponse(String),
    /// The upstream refused the request (a 4xx): the client's to fix.
    #[error("{message}")]
    Rejected {
        /// The upstream's status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// The engine is at capacity.
    #[error("{0}")]
    Busy(String),
    /// The engine is starting (from zero replicas) and did not come up within the wait.
    #[error("{0}")]
    Starting(String),
    /// The engine failed on its own.
    #[error("{0}")]
    Failed(String),
}

impl EngineError {
    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::Unavailable(_) => "upstream_unavailable",
            EngineError::Timeout(_) => "upstream_timeout",
            EngineError::BadResponse(_) => "upstream_bad_response",
            EngineError::Rejected { .. } => "upstream_rejected",
            EngineError::Busy(_) => "engine_busy",
            EngineError::Starting(_) => "engine_starting",
            EngineError::Failed(_) => "engine_failed",
        }
    }
}

/// What the gateway knows of its engine.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    /// `openai` or `embedded`.
    pub kind: &'static str,
    /// The model it runs (an upstream's model name, or the GGUF's path or URI).
    pub model: String,
    /// The LoRA adapter on top, if any.
    pub adapter: Option<String>,
    /// Tokens of context: prompt and answer together.
    pub context_tokens: usize,
}

/// An engine: counts tokens as its model does, and answers prompts whole or streamed.
pub trait Engine: Send + Sync + 'static {
    /// What it runs.
    fn info(&self) -> &EngineInfo;

    /// Tokens of a text in the model's tokenizer.
    fn count_tokens(&self, text: &str) -> usize;

    /// Tokens the model's chat format adds around each turn (role markers, separators).
    fn tokens_per_turn(&self) -> usize {
        6
    }

    /// The whole answer.
    fn complete(&self, prompt: Prompt) -> BoxFuture<'static, Result<Completion, EngineError>>;

    /// The answer as it is written. The future resolves once the engine has accepted the
    /// request (an upstream's headers), so that a refusal is still an HTTP error status.
    fn stream(&self, prompt: Prompt) -> BoxFuture<'static, Result<PieceStream, EngineError>>;
}

/// Reads a streamed answer whole. `deadline` bounds the whole answer (a whole answer is asked
/// for streamed, so that its first token is bounded by the first-token timeout as a streamed
/// answer's is, and the rest by the whole-request timeout).
pub async fn collect(
    mut pieces: PieceStream,
    deadline: Option<tokio::time::Instant>,
    budget: std::time::Duration,
) -> Result<Completion, EngineError> {
    let mut text = String::new();
    loop {
        let next = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, pieces.next()).await.map_err(|_| {
                EngineError::Timeout(format!("the answer was not finished within {budget:?}"))
            })?,
            None => pieces.next().await,
        };
        match next {
            Some(piece) => match piece? {
                Piece::Text(t) => text.push_str(&t),
                Piece::Done { finish_reason, usage } => return Ok(Completion { text, finish_reason, usage }),
            },
            None => return Err(EngineError::Failed("the engine stopped mid-answer".into())),
        }
    }
}
