//! `POST /v1/chat/completions`: retrieval, the fitted prompt, the engine's answer whole or as
//! server-sent events (the sources in the first event), and the answer's prompt-log line,
//! metrics and spans.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::answer::{Prepared, engine_error, generate_span, log_answer};
use super::api::{
    AnswerMessage, ApiError, ChatCompletion, ChatRequest, Choice, Lineage, Role, Source, Usage, ValidChat,
};
use super::engine::{Engine, Prompt};
use super::gateway::{Gateway, InFlight, JsonBody, admit, internal, model_not_found, not_ready, refused};
use super::index::Passage;
use super::prompt::{TokenCounter, default_system_prompt, fit};
use super::promptlog::Latency;

struct Counter<'a>(&'a dyn Engine);

impl TokenCounter for Counter<'_> {
    fn count(&self, text: &str) -> usize {
        self.0.count_tokens(text)
    }
    fn per_turn(&self) -> usize {
        self.0.tokens_per_turn()
    }
}

pub(super) async fn chat_completions(
    State(gateway): State<Arc<Gateway>>,
    JsonBody(chat): JsonBody<ChatRequest>,
) -> Response {
    let started = Instant::now();
    let permit = match admit(&gateway) {
        Ok(permit) => InFlight::new(gateway.metrics.clone(), permit),
        Err(error) => return error.into_response(),
    };
    let span = tracing::debug_span!(
        "chat",
        model = %gateway.name,
        stream = tracing::field::Empty,
        passages = tracing::field::Empty,
        prompt_tokens = tracing::field::Empty,
        completion_tokens = tracing::field::Empty,
        finish_reason = tracing::field::Empty,
    );
    async move {
        if let Some(model) = chat.model.as_deref()
            && model != gateway.name
        {
            return model_not_found(&gateway, model).into_response();
        }
        let chat = match chat.validate() {
            Ok(chat) => chat,
            Err(error) => return refused(&gateway, error),
        };
        tracing::Span::current().record("stream", chat.stream);
        let prepared = match prepare(&gateway, &chat, started).await {
            Ok(prepared) => prepared,
            Err(error) => return refused(&gateway, error),
        };
        if chat.stream {
            super::stream::stream_answer(gateway, prepared, chat.include_usage, permit).await
        } else {
            whole_answer(&gateway, prepared).await
        }
    }
    .instrument(span)
    .await
}

/// Retrieval and the fitted prompt.
async fn prepare(gateway: &Arc<Gateway>, chat: &ValidChat, started: Instant) -> Result<Prepared, ApiError> {
    let engine = gateway.engine()?;
    let knowledge = gateway.shelf.get();
    if gateway.has_dataset && knowledge.is_none() {
        return Err(not_ready("the dataset index is still loading"));
    }
    let question =
        chat.turns.iter().rev().find(|t| t.role == Role::User).map(|t| t.content.clone()).unwrap_or_default();
    let top_k = chat.top_k.unwrap_or(gateway.top_k).min(64) as usize;
    let mut latency = Latency::default();
    let mut hits = Vec::new();
    if let Some(knowledge) = knowledge.as_ref().filter(|_| top_k > 0) {
        let knowledge = knowledge.clone();
        let text = question.clone();
        let metrics = gateway.metrics.clone();
        let span = tracing::debug_span!("retrieve", top_k, passages = knowledge.index.len());
        let (found, embedding, retrieval) = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let t0 = Instant::now();
            let vector = tracing::debug_span!("embed").in_scope(|| knowledge.embedder.embed_one(&text))?;
            let embedding = t0.elapsed();
            let t1 = Instant::now();
            let found = knowledge.index.search(&vector, &text, top_k);
            let retrieval = t1.elapsed();
            metrics.embedding.observe(embedding.as_secs_f64());
            metrics.retrieval.observe(retrieval.as_secs_f64());
            Ok::<_, crate::embedding::EmbedError>((found, embedding, retrieval))
        })
        .await
        .map_err(|e| internal(format!("retrieval panicked: {e}")))?
        .map_err(|e| internal(format!("embedding the question failed: {e}")))?;
        latency.embedding = embedding.as_secs_f64() * 1e3;
        latency.retrieval = retrieval.as_secs_f64() * 1e3;
        hits = found;
    }
    let info = engine.info();
    let answer_tokens = chat.sampling.max_tokens.unwrap_or(gateway.answer_tokens) as usize;
    if answer_tokens >= info.context_tokens {
        return Err(ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::invalid(
                format!(
                    "max_tokens {answer_tokens} leaves no room for the prompt in this twin's {}-token context",
                    info.context_tokens
                ),
                "max_tokens",
            )
        });
    }
    let author =
        knowledge.as_ref().map(|k| k.author.as_str()).filter(|a| !a.is_empty()).unwrap_or("the author");
    let system = gateway.system_prompt.clone().unwrap_or_else(|| default_system_prompt(author));
    let passages: Vec<&Passage> = match &knowledge {
        Some(k) => hits.iter().map(|h| k.index.passage(h.passage)).collect(),
        None => Vec::new(),
    };
    let fitted =
        fit(&system, &chat.turns, &passages, info.context_tokens - answer_tokens, &Counter(engine.as_ref()))?;
    let sources: Vec<Source> = hits
        .iter()
        .take(fitted.passages_used)
        .zip(&passages)
        .map(|(hit, passage)| Source {
            chunk_id: passage.chunk_id.clone(),
            title: passage.title.clone(),
            url: passage.url.clone(),
            score: hit.score,
            similarity: hit.dense,
            bm25: hit.lexical,
        })
        .collect();
    let mut sampling = chat.sampling.clone();
    sampling.max_tokens = Some(answer_tokens as u32);
    let (base_model, adapter, adapter_revision) = gateway.model_named(info);
    let lineage = Lineage {
        dataset: knowledge.as_ref().map(|k| k.dataset.clone()),
        revision: knowledge.as_ref().map(|k| k.revision.clone()),
        engine: info.kind.to_string(),
        base_model,
        adapter,
        adapter_revision,
    };
    Ok(Prepared {
        id: format!("chatcmpl-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        created: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
        prompt: Prompt { turns: fitted.turns, sampling, extra: chat.extra.clone() },
        sources,
        prompt_tokens: fitted.prompt_tokens,
        question,
        latency,
        started,
        engine: engine.clone(),
        lineage,
        span: tracing::Span::current(),
    })
}

async fn whole_answer(gateway: &Arc<Gateway>, mut prepared: Prepared) -> Response {
    let prompt = std::mem::take(&mut prepared.prompt);
    let engine = prepared.engine.clone();
    let generate = generate_span(&prepared);
    let generated = engine.complete(prompt).instrument(generate.clone()).await;
    let completion = match generated {
        Ok(completion) => completion,
        Err(error) => {
            gateway.metrics.error(error.kind());
            log_answer(gateway, &prepared, "", "error", Some(error.to_string()), Usage::default());
            return engine_error(&error).into_response();
        }
    };
    prepared.latency.first_token = prepared.started.elapsed().as_secs_f64() * 1e3;
    gateway.metrics.time_to_first_token.observe(prepared.started.elapsed().as_secs_f64());
    let usage = completion.usage.unwrap_or_else(|| {
        Usage::new(prepared.prompt_tokens as u32, engine.count_tokens(&completion.text) as u32)
    });
    generate.record("prompt_tokens", i64::from(usage.prompt_tokens));
    generate.record("completion_tokens", i64::from(usage.completion_tokens));
    let body = ChatCompletion {
        id: &prepared.id,
        object: "chat.completion",
        created: prepared.created,
        model: &gateway.name,
        choices: [Choice {
            index: 0,
            message: AnswerMessage { role: "assistant", content: &completion.text },
            finish_reason: completion.finish_reason.as_str(),
        }],
        usage,
        sources: &prepared.sources,
        lineage: &prepared.lineage,
    };
    let bytes = serde_json::to_vec(&body).expect("an answer serialises");
    log_answer(gateway, &prepared, &completion.text, completion.finish_reason.as_str(), None, usage);
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}
